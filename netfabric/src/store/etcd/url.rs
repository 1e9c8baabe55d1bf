//! Parsing of `etcd://` / `etcds://` store URLs.
//!
//! ```text
//! etcd://[user:pass@]host:port[,host:port...][/prefix][?ca=F&cert=F&key=F&prefix=P]
//! etcds://...          the same over TLS (a `ca=` file is then required)
//! ```
//! A `ca=`, `cert=` or `key=` parameter also turns TLS on with `etcd://`.
//! The prefix defaults to `/netfabric/`; it always starts and ends with `/`.

use std::path::PathBuf;

use super::super::StoreError;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/netfabric/";

/// TLS files of an etcd URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// What an etcd URL says.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `host:port` of every member given.
    pub endpoints: Vec<String>,
    /// Key prefix, `/netfabric/` by default.
    pub prefix: String,
    /// `(user, password)`.
    pub user: Option<(String, String)>,
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|u| &u.0))
            .field("tls", &self.tls)
            .finish()
    }
}

impl EtcdConfig {
    /// Parses an `etcd://` or `etcds://` URL.
    pub fn parse(url: &str) -> Result<EtcdConfig, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        let (tls_scheme, rest) = if let Some(r) = url.strip_prefix("etcd://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("etcds://") {
            (true, r)
        } else {
            return Err(bad("expected etcd:// or etcds://"));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => {
                let (name, pass) = u
                    .split_once(':')
                    .ok_or_else(|| bad("credentials must be user:password@"))?;
                if name.is_empty() {
                    return Err(bad("empty user name"));
                }
                (Some((percent_decode(name), percent_decode(pass))), h)
            }
            None => (None, authority),
        };
        let mut endpoints = Vec::new();
        for ep in hosts.split(',') {
            let (host, port) = ep
                .rsplit_once(':')
                .ok_or_else(|| bad("every member needs host:port, e.g. etcd://127.0.0.1:2379"))?;
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number 1-65535"))?;
            endpoints.push(ep.to_owned());
        }
        let mut prefix = match path {
            Some(p) if p != "/" => p.to_owned(),
            _ => DEFAULT_PREFIX.to_owned(),
        };
        let mut tls = TlsFiles::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("query parameters are key=value"))?;
            let v = percent_decode(v);
            match k {
                "ca" => tls.ca = Some(v.into()),
                "cert" => tls.cert = Some(v.into()),
                "key" => tls.key = Some(v.into()),
                "prefix" => prefix = v,
                _ => {
                    return Err(bad(&format!(
                        "unknown parameter {k:?} (ca, cert, key, prefix)"
                    )));
                }
            }
        }
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(bad("cert= and key= go together (the client certificate)"));
        }
        let tls = if tls_scheme || tls != TlsFiles::default() {
            if tls.ca.is_none() {
                return Err(bad(
                    "TLS needs ca=/path/to/ca.pem (the CA of the etcd servers)",
                ));
            }
            Some(tls)
        } else {
            None
        };
        Ok(EtcdConfig {
            endpoints,
            prefix,
            user,
            tls,
        })
    }

    /// The URL again, without the password.
    pub fn display_url(&self) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        let user = self
            .user
            .as_ref()
            .map(|(u, _)| format!("{u}:***@"))
            .unwrap_or_default();
        let prefix = if self.prefix == DEFAULT_PREFIX {
            String::new()
        } else {
            self.prefix.trim_end_matches('/').to_owned()
        };
        format!("{scheme}://{user}{}{prefix}", self.endpoints.join(","))
    }
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..auth_end].rsplit_once('@') {
        Some((cred, hosts)) => {
            let user = cred.split(':').next().unwrap_or("");
            format!(
                "{}{user}:***@{hosts}{}",
                &url[..scheme_end],
                &rest[auth_end..]
            )
        }
        None => url.to_owned(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_cluster_url() {
        let c = EtcdConfig::parse("etcd://127.0.0.1:2379,127.0.0.1:2381").unwrap();
        assert_eq!(c.endpoints, ["127.0.0.1:2379", "127.0.0.1:2381"]);
        assert_eq!(c.prefix, "/netfabric/");
        assert!(c.user.is_none() && c.tls.is_none());
        assert_eq!(c.display_url(), "etcd://127.0.0.1:2379,127.0.0.1:2381");
    }

    #[test]
    fn auth_prefix_and_tls() {
        let c = EtcdConfig::parse(
            "etcds://root:p%40ss@e1:2379,e2:2379/prod/nf?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem",
        )
        .unwrap();
        assert_eq!(c.user, Some(("root".into(), "p@ss".into())));
        assert_eq!(c.prefix, "/prod/nf/");
        let tls = c.tls.clone().unwrap();
        assert_eq!(tls.ca.unwrap(), PathBuf::from("/etc/ca.pem"));
        assert_eq!(tls.key.unwrap(), PathBuf::from("/k.pem"));
        assert_eq!(c.display_url(), "etcds://root:***@e1:2379,e2:2379/prod/nf");
        assert!(!format!("{c:?}").contains("p@ss"));
        let q = EtcdConfig::parse("etcd://h:1?prefix=x&ca=/ca").unwrap();
        assert_eq!(q.prefix, "/x/");
        assert!(q.tls.is_some(), "ca= turns TLS on");
    }

    #[test]
    fn bad_urls_are_refused_without_leaking_the_password() {
        for bad in [
            "etcd://",
            "etcd://host",
            "etcd://host:0",
            "etcd://host:99999",
            "etcd://:2379",
            "etcd://u@h:1",
            "etcds://h:1",
            "etcd://h:1?cert=/c",
            "etcd://h:1?foo=1",
        ] {
            assert!(EtcdConfig::parse(bad).is_err(), "{bad}");
        }
        let err = EtcdConfig::parse("etcd://u:secret@h")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(redact("etcd://u:secret@h:1/p"), "etcd://u:***@h:1/p");
    }
}
