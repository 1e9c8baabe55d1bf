//! The address plan (docs/address-plan.md) as bit arithmetic.
//!
//! A zone is a /16, a host a /24 inside it (third octet 1..=254), a container
//! one of `.1`..=`.254` of its host's /24. Because the plan is rigid, every
//! lookup is an array index built from address bits.

/// Top 16 bits: index into `ZONE_BY_PREFIX`.
#[inline(always)]
pub const fn zone_prefix_index(addr: u32) -> u32 {
    addr >> 16
}

/// Third octet: the host number inside the zone.
#[inline(always)]
pub const fn host_octet(addr: u32) -> u32 {
    (addr >> 8) & 0xff
}

/// Fourth octet: the container number inside the host's /24.
#[inline(always)]
pub const fn container_octet(addr: u32) -> u32 {
    addr & 0xff
}

/// Index into `ENDPOINTS`.
#[inline(always)]
pub const fn endpoint_index(zone_slot: u32, addr: u32) -> u32 {
    (zone_slot << 16) | (addr & 0xffff)
}

/// Index into `NEXT_HOPS`.
#[inline(always)]
pub const fn next_hop_index(zone_slot: u32, host_octet: u32) -> u32 {
    (zone_slot << 8) | (host_octet & 0xff)
}

/// Host numbers a zone may use.
pub const fn is_valid_host_octet(h: u32) -> bool {
    h >= 1 && h <= 254
}

/// Container numbers a host may hand out.
pub const fn is_valid_container_octet(c: u32) -> bool {
    c >= 1 && c <= 254
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_an_address_into_zone_host_container() {
        let a = u32::from_be_bytes([10, 1, 3, 77]);
        assert_eq!(zone_prefix_index(a), 0x0a01);
        assert_eq!(host_octet(a), 3);
        assert_eq!(container_octet(a), 77);
        assert_eq!(endpoint_index(2, a), (2 << 16) | 0x034d);
        assert_eq!(next_hop_index(2, 3), 0x203);
    }

    #[test]
    fn host_and_container_ranges() {
        assert!(!is_valid_host_octet(0) && is_valid_host_octet(1));
        assert!(is_valid_host_octet(254) && !is_valid_host_octet(255));
        assert!(!is_valid_container_octet(0) && !is_valid_container_octet(255));
    }
}
