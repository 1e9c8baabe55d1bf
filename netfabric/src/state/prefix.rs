//! IPv4 prefixes in CIDR notation: zones' /16s and hosts' /24s.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 prefix in CIDR notation, e.g. `10.1.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        Ipv4Prefix { addr, len }
    }

    /// The mask as a number (`len` leading ones).
    pub fn mask(self) -> u32 {
        match self.len {
            0 => 0,
            len => u32::MAX << (32 - u32::from(len.min(32))),
        }
    }

    /// The first address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The last address (host bits set).
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether the address part has no host bits set.
    pub fn is_canonical(self) -> bool {
        self.network() == self.addr
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains_prefix(self, other: Ipv4Prefix) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    pub fn overlaps(self, other: Ipv4Prefix) -> bool {
        self.contains_prefix(other) || other.contains_prefix(self)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 prefix {0:?}: expected CIDR notation such as 10.1.0.0/16")]
pub struct ParsePrefixError(String);

impl FromStr for Ipv4Prefix {
    type Err = ParsePrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePrefixError(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let len: u8 = len.parse().map_err(|_| err())?;
        if len > 32 {
            return Err(err());
        }
        Ok(Ipv4Prefix { addr, len })
    }
}

impl Serialize for Ipv4Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::host_subnet;

    #[test]
    fn prefixes() {
        let p: Ipv4Prefix = "10.1.0.0/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.is_canonical());
        assert!(p.contains(Ipv4Addr::new(10, 1, 200, 3)));
        assert!(!p.contains(Ipv4Addr::new(10, 2, 0, 1)));
        assert_eq!(p.broadcast(), Ipv4Addr::new(10, 1, 255, 255));
        let h = host_subnet(p, 7);
        assert_eq!(h.to_string(), "10.1.7.0/24");
        assert!(p.contains_prefix(h) && !h.contains_prefix(p) && p.overlaps(h));
        assert!(!"10.1.0.5/16".parse::<Ipv4Prefix>().unwrap().is_canonical());
        for bad in [
            "10.1.0.0",
            "10.1.0.0/33",
            "10.1.0/16",
            "10.1.0.0/",
            "10.1.0.0/+1",
            "x/16",
        ] {
            assert!(bad.parse::<Ipv4Prefix>().is_err(), "{bad}");
        }
        let all: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }
}
