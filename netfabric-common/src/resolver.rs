//! The one exception to "from outside every zone, only system containers":
//! the replies of the host's DNS resolver (the agent, at the containers'
//! gateway, port 53) reach every container, so that names resolve. Used by
//! `to_container` and the userspace reference model.

/// The resolver's address: the containers' gateway, 169.254.1.1 (host order).
pub const RESOLVER_ADDR: u32 = 0xa9fe_0101;
/// The resolver's port.
pub const RESOLVER_PORT: u16 = 53;
/// IP protocol numbers the resolver answers over.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Whether a packet the host stack sends into a container is a reply of the
/// resolver: from [`RESOLVER_ADDR`], UDP or TCP, source port
/// [`RESOLVER_PORT`]. `src_port` is `None` when the packet has no readable
/// transport header (a later fragment, a truncated packet): never a reply.
#[inline(always)]
pub fn is_resolver_reply(src: u32, protocol: u8, src_port: Option<u16>) -> bool {
    src == RESOLVER_ADDR
        && (protocol == IPPROTO_UDP || protocol == IPPROTO_TCP)
        && src_port == Some(RESOLVER_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_resolvers_port_53_over_udp_and_tcp() {
        assert!(is_resolver_reply(RESOLVER_ADDR, IPPROTO_UDP, Some(53)));
        assert!(is_resolver_reply(RESOLVER_ADDR, IPPROTO_TCP, Some(53)));
        assert!(!is_resolver_reply(RESOLVER_ADDR, IPPROTO_UDP, Some(54)));
        assert!(!is_resolver_reply(RESOLVER_ADDR, 1, Some(53)), "ICMP");
        assert!(
            !is_resolver_reply(RESOLVER_ADDR, IPPROTO_UDP, None),
            "no header"
        );
        assert!(!is_resolver_reply(0xa9fe_0102, IPPROTO_UDP, Some(53)));
        assert!(!is_resolver_reply(0x0a00_0001, IPPROTO_TCP, Some(53)));
    }
}
