//! `cargo xtask`: set-up, tests, the lab and the benchmarks.
//!
//! * `setup`: installs what the build and the tests need on a fresh Debian
//!   machine (idempotent; a few hundred ms when everything is present).
//! * `test`: setup, then fmt, clippy (userspace and eBPF passes) and every test.
//! * `run [-- ARGS]`: setup, then the lab (no args) or `netfabric ARGS`.
//! * `bench [--quick] [--only decision,e2e,control,zone,dns,services]`: setup,
//!   then the benchmarks (`zone`, 254 agents on etcd, `dns`, the agent's DNS
//!   against dnsmasq, and `services`, Maglev's disruption and HTTP through a
//!   VIP against direct and haproxy, run in full mode or when named).
//! * `fresh-check [--keep]`: the README's two commands in a pristine Debian
//!   12 root (debootstrap), proving setup installs everything they need.
//! * `cli-docs`: regenerates the man pages and shell completions in `docs/`.

mod fresh_check;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "netfabric's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the Debian packages, the `debian-web` toolchain link, bpf-linker and bpffs.
    Setup,
    /// Setup, then `cargo fmt --check`, clippy (userspace + eBPF) and all tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, then start the lab (no arguments) or run `netfabric ARGS...`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, then the datapath benchmarks (report under target/bench/).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `cargo xtask test` and a `cargo xtask run` smoke in a pristine Debian
    /// 12 root with only the README's prerequisites (about half an hour).
    FreshCheck {
        /// Keep the root under /var/tmp afterwards (to look around in it).
        #[arg(long)]
        keep: bool,
    },
    /// Setup, then regenerate the man pages (docs/man/) and shell completions
    /// (docs/completions/) from the command line.
    CliDocs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::run().map(|_| ()),
        Task::Test { args } => test(&args),
        Task::Run { args } => run(&args),
        Task::Bench { args } => bench(&args),
        Task::FreshCheck { keep } => fresh_check::run(keep),
        Task::CliDocs => cli_docs(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Run a command in the workspace root, inheriting stdio; fail on non-zero.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {shown}");
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(args: &[String]) -> Result<()> {
    let started = Instant::now();
    setup::run()?;
    run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "netfabric-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate in its own pass, with the toolchain that builds it.
    run_cmd(
        Command::new("cargo")
            .args([
                &format!("+{}", setup::TOOLCHAIN),
                "clippy",
                "--package",
                "netfabric-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--target-dir",
                "target/ebpf-clippy",
                "--",
                "-D",
                "warnings",
            ])
            .env("RUSTC_BOOTSTRAP", "1")
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )?;
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "netfabric-ebpf",
        "--no-fail-fast",
    ]);
    if !args.is_empty() {
        cmd.args(args);
    }
    run_cmd(&mut cmd)?;
    eprintln!("xtask: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo run --release` of a binary of the workspace with `args`.
fn run_release(package: &str, bin: &str, args: &[&str]) -> Result<()> {
    run_cmd(
        cargo()
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                package,
                "--bin",
                bin,
                "--",
            ])
            .args(args),
    )
}

fn run(args: &[String]) -> Result<()> {
    setup::run()?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args.is_empty() {
        // The lab (docs/lab.md#what-the-lab-builds). Runs in the foreground and tears down on Ctrl-C.
        run_release("netfabric", "netfabric", &["lab", "run"])
    } else {
        run_release("netfabric", "netfabric", &args)
    }
}

/// The test that checks the checked-in CLI reference rewrites it when
/// `NETFABRIC_BLESS=1`.
fn cli_docs() -> Result<()> {
    setup::run()?;
    run_cmd(
        cargo()
            .args(["test", "--package", "netfabric", "--test", "cli_reference"])
            .env("NETFABRIC_BLESS", "1"),
    )
}

fn bench(args: &[String]) -> Result<()> {
    setup::run()?;
    if bench_runs_zone(args) {
        // The zone's agents are the `netfabric` binary of the same build.
        run_cmd(cargo().args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "netfabric",
            "--bin",
            "netfabric",
        ]))?;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_release("netfabric-tests", "netfabric-bench", &args)
}

/// Whether `netfabric-bench ARGS` runs its `zone` part: named in `--only`,
/// or a full run without `--only`.
fn bench_runs_zone(args: &[String]) -> bool {
    match args.iter().position(|a| a == "--only") {
        Some(i) => args
            .get(i + 1)
            .is_some_and(|list| list.split(',').any(|p| p == "zone")),
        None => !args.iter().any(|a| a == "--quick"),
    }
}
