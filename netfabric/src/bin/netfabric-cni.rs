//! `netfabric-cni`: the CNI plugin (`netfabric::cni`). A container runtime
//! runs it with the `CNI_*` environment and the network configuration on
//! stdin; it prints the result (or the error document) on stdout and logs
//! on stderr (`RUST_LOG`, default `warn`).

use std::{io::Read as _, process::ExitCode};

use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        tracing::warn!(error = %e, "reading stdin");
    }
    let out = netfabric::cni::run(|k| std::env::var(k).ok(), &stdin);
    if let Some(doc) = out.stdout {
        println!("{doc}");
    }
    if out.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
