//! The agent's DNS server: every host answers at the containers' gateway,
//! `169.254.1.1:53` (UDP and TCP), built on hickory's server and protocol
//! crates.
//!
//! * Names: `<container>.<owner>.<domain>` (A), the reverse of container
//!   addresses (PTR), AAAA answered NODATA ([`names`]). TTL 5 s.
//! * Visibility follows the policy: the asker is the query's source address
//!   (the datapath guarantees it is genuine); a name resolves only if the
//!   asker may talk to its owner (same owner, a shared group, a system asker
//!   or target; the host asks as "outside", so it sees system containers
//!   only), else NXDOMAIN.
//! * Only this host's containers and the host itself get answers: the
//!   sockets are bound to the gateway address alone, and any other source is
//!   REFUSED.
//! * Every other name goes to the upstream resolvers (the host's
//!   resolv.conf, or configured) through a cache; REFUSED when there are
//!   none ([`upstream`]).
//! * The agent hands over each state it applies ([`DnsServer::publish`]):
//!   the next query sees it.
//! * UDP is answered on receive threads of the server's own, in batches,
//!   and a repeated query from the same owner under the same state gets
//!   the reply built for it before (`udp`); TCP goes through hickory's
//!   server ([`server`]). Both decide and build replies with the same code.

pub mod names;
pub mod server;
mod udp;
pub mod upstream;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use hickory_server::Server;

pub use names::{Asker, DEFAULT_DOMAIN, Directory, Resolution, TTL, parse_domain};
pub use upstream::{Upstream, UpstreamSource};

use crate::{conventions, observe::metrics::DnsMetrics, state::State};

/// Where the host's resolv.conf is (the default upstream resolvers).
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The port containers query.
pub const PORT: u16 = 53;
/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// How the agent serves DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where to listen: the gateway, port 53.
    pub listen: SocketAddr,
    /// The domain of container names (absolute, lower case).
    pub domain: Name,
    /// Where names that are not ours are forwarded.
    pub upstream: UpstreamSource,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::new(IpAddr::V4(conventions::GATEWAY), PORT),
            domain: parse_domain(DEFAULT_DOMAIN).expect("the default domain is valid"),
            upstream: UpstreamSource::ResolvConf(HOST_RESOLV_CONF.into()),
        }
    }
}

/// The DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("binding DNS {proto} to {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the DNS receive threads: {0}")]
    Threads(std::io::Error),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
}

/// The running server; [`DnsServer::publish`] hands it each applied state.
pub struct DnsServer {
    directory: Arc<ArcSwap<Directory>>,
    domain: Name,
    host: String,
    upstreams: Vec<SocketAddr>,
    listen: SocketAddr,
    /// The UDP receive threads (stopped when the server is dropped).
    _udp: udp::UdpServer,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` and serves for host `host`:
    /// UDP on threads of its own until the server is dropped, TCP (and the
    /// upstream lookups) on the current tokio runtime until it ends. Before
    /// the first [`publish`](Self::publish) only the host gets answers.
    pub fn start(config: &DnsConfig, host: &str, metrics: DnsMetrics) -> Result<Self, DnsError> {
        let upstreams = match &config.upstream {
            UpstreamSource::Servers(s) => s.clone(),
            UpstreamSource::ResolvConf(path) => upstream::nameservers_of(path, config.listen.ip())?,
        };
        let upstream = if upstreams.is_empty() {
            None
        } else {
            Some(Arc::new(Upstream::new(upstreams.clone())?))
        };
        let directory = Arc::new(ArcSwap::from_pointee(Directory::empty(
            config.domain.clone(),
        )));
        let (udp, tcp) = bind(config.listen, udp_sockets())?;
        let handler = Arc::new(server::Handler {
            directory: directory.clone(),
            upstream,
            counters: metrics.counters(),
        });
        let udp = udp::UdpServer::start(udp, handler.clone(), tokio::runtime::Handle::current())
            .map_err(DnsError::Threads)?;
        let mut server = Server::new(server::TcpHandler(handler));
        server.register_listener(tcp, TCP_IDLE, 64);
        tokio::spawn(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::error!(error = %e, "the DNS server stopped");
            }
        });
        tracing::info!(
            listen = %config.listen,
            domain = %config.domain,
            upstreams = ?upstreams,
            "DNS server started"
        );
        Ok(DnsServer {
            directory,
            domain: config.domain.clone(),
            host: host.to_owned(),
            upstreams,
            listen: config.listen,
            _udp: udp,
        })
    }

    /// The names of `state` (at `revision`) from now on.
    pub fn publish(&self, state: &State, revision: u64) {
        self.directory.store(Arc::new(Directory::new(
            self.domain.clone(),
            state,
            &self.host,
            revision,
        )));
    }

    /// One line for `status`: where, which domain, which upstreams.
    pub fn summary(&self) -> String {
        let upstreams = if self.upstreams.is_empty() {
            "none (other names refused)".to_owned()
        } else {
            self.upstreams
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} udp+tcp, domain {}, upstream {upstreams}",
            self.listen,
            self.domain.to_string().trim_end_matches('.')
        )
    }
}

/// One UDP socket per two CPUs (at least one, at most 4), sharing the port
/// (`SO_REUSEPORT`): the kernel spreads askers over them by flow, and each
/// has its own receive thread. Half the CPUs because the askers and the
/// rest of the host need the others: on 2 CPUs one thread answered more
/// queries per second than two (fuller batches, no thread taking the
/// askers' CPU; `cargo xtask bench --only dns`).
fn udp_sockets() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4))
}

/// `udp` UDP sockets (blocking, for [`udp`]'s threads) and a TCP listener
/// on `addr`.
type Sockets = (Vec<std::net::UdpSocket>, tokio::net::TcpListener);

/// Binds [`Sockets`] even before the address exists (`IP_FREEBIND`: the
/// bridge that holds the gateway address is created by the first
/// `container attach`, maybe after the agent started).
fn bind(addr: SocketAddr, udp: usize) -> Result<Sockets, DnsError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |proto| {
        move |source| DnsError::Bind {
            proto,
            addr,
            source,
        }
    };
    let udp = (0..udp.max(1))
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_freebind_v4(true)?;
            s.set_reuse_port(true)?;
            s.bind(&addr.into())?;
            Ok(s.into())
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(err("udp"))?;
    let tcp = (|| {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_freebind_v4(true)?;
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        tokio::net::TcpListener::from_std(s.into())
    })()
    .map_err(err("tcp"))?;
    Ok((udp, tcp))
}
