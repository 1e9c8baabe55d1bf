//! Forwarding of every name that is not ours to the host's upstream
//! resolvers, through hickory's resolver (its cache keeps answers for their
//! TTL, negative ones for their SOA minimum).

use std::{net::SocketAddr, path::Path, time::Duration};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, Record, RecordType},
};
use hickory_resolver::{
    Resolver, TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
    net::{DnsError, NetError, runtime::TokioRuntimeProvider},
};

/// Where the upstream resolvers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSource {
    /// The `nameserver` lines of this resolv.conf (read once, at start).
    ResolvConf(std::path::PathBuf),
    /// These servers (port 53 unless given).
    Servers(Vec<SocketAddr>),
}

/// The upstream resolvers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("reading the upstream resolvers from {path}: {source}")]
    ResolvConf {
        path: String,
        source: std::io::Error,
    },
    #[error("building the upstream resolver: {0}")]
    Resolver(#[from] NetError),
}

/// The `nameserver` addresses of a resolv.conf, without `exclude` (our own
/// listening address: forwarding to ourselves would loop).
pub fn nameservers_of(
    path: &Path,
    exclude: std::net::IpAddr,
) -> Result<Vec<SocketAddr>, UpstreamError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpstreamError::ResolvConf {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A scoped IPv6 address (`fe80::1%eth0`) is not for us.
            words.next()?.parse::<std::net::IpAddr>().ok()
        })
        .filter(|ip| *ip != exclude)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect())
}

/// What the upstream resolvers said.
#[derive(Debug)]
pub enum Forwarded {
    /// An answer (its records, TTLs as left in the cache).
    Records(Vec<Record>),
    /// No records: NXDOMAIN or NODATA (`NoError`), with the zone's SOA if
    /// upstream sent one.
    Negative {
        code: ResponseCode,
        soa: Option<Box<Record>>,
    },
    /// No usable answer (timeout, SERVFAIL, refused upstream).
    Failed,
}

/// The upstream resolvers and their cache.
pub struct Upstream {
    resolver: TokioResolver,
    servers: Vec<SocketAddr>,
}

impl Upstream {
    /// A caching forwarder to `servers` (UDP, TCP for truncated answers).
    pub fn new(servers: Vec<SocketAddr>) -> Result<Self, UpstreamError> {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        let opts: &mut ResolverOpts = builder.options_mut();
        // The client already applied its search list: names are absolute.
        opts.ndots = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.cache_size = 4096;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.preserve_intermediates = true;
        opts.edns0 = true;
        Ok(Upstream {
            resolver: builder.build()?,
            servers,
        })
    }

    /// The servers forwarded to.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Looks `name` up upstream (or in the cache).
    pub async fn forward(&self, name: Name, qtype: RecordType) -> Forwarded {
        match self.resolver.lookup(name, qtype).await {
            Ok(lookup) => Forwarded::Records(lookup.answers().to_vec()),
            Err(NetError::Dns(DnsError::NoRecordsFound(no))) => match no.response_code {
                code @ (ResponseCode::NXDomain | ResponseCode::NoError) => Forwarded::Negative {
                    code,
                    soa: no.soa.map(|soa| Box::new(soa.into_record_of_rdata())),
                },
                _ => Forwarded::Failed,
            },
            Err(e) => {
                tracing::debug!(error = %e, "upstream lookup failed");
                Forwarded::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_come_from_resolv_conf_without_ourselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch example.org\nnameserver 192.0.2.53\n\
             nameserver 169.254.1.1\nnameserver fe80::1%eth0\n  nameserver   2001:db8::53\n\
             options ndots:2\n",
        )
        .unwrap();
        let ours = std::net::IpAddr::V4(crate::conventions::GATEWAY);
        assert_eq!(
            nameservers_of(&path, ours).unwrap(),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        let missing = nameservers_of(&dir.path().join("nope"), ours).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
