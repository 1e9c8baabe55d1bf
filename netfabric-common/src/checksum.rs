//! Incremental IPv4 header checksum update (RFC 1624) for a TTL decrement.

/// The new header checksum after decrementing the TTL by one.
///
/// `check` is the checksum field read as a big-endian number. TTL is the high
/// byte of its 16-bit word, so the word drops by `0x0100` and the one's
/// complement checksum rises by `0x0100` with end-around carry. This mirrors
/// the kernel's `ip_decrease_ttl` (including its `>= 0xffff` fold).
#[inline(always)]
pub const fn ttl_decrement(check: u16) -> u16 {
    let sum = check as u32 + 0x0100;
    (sum + (sum >= 0xffff) as u32) as u16
}

/// Full RFC 791 checksum of a header whose checksum field is zero or
/// included; returns the value to store (big-endian number).
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i + 1 < header.len() {
        sum += u16::from_be_bytes([header[i], header[i + 1]]) as u32;
        i += 2;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ttl: u8, id: u16) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 84, 0, 0, 0x40, 0, ttl, 1, 0, 0, 10, 1, 1, 5, 10, 1, 2, 9,
        ];
        h[4..6].copy_from_slice(&id.to_be_bytes());
        let c = ipv4_header_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn incremental_update_matches_full_recompute() {
        for ttl in 2..=255u8 {
            for id in (0..=u16::MAX).step_by(257) {
                let mut h = header(ttl, id);
                let old = u16::from_be_bytes([h[10], h[11]]);
                h[8] -= 1;
                let new = ttl_decrement(old);
                h[10..12].copy_from_slice(&new.to_be_bytes());
                // A valid header sums to 0xffff (checksum over it is 0).
                assert_eq!(ipv4_header_checksum(&h), 0, "ttl {ttl} id {id}");
            }
        }
    }
}
