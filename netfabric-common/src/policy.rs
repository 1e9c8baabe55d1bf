//! The rule of docs/policy.md#the-rule as one function, used by the kernel programs and by the userspace
//! reference model, so that the two cannot drift apart.

use crate::{OWNER_GROUP_KEYS, OwnerGroups, OwnerPair, SYSTEM_OWNER};

/// Who sent (or receives) a packet, as far as policy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// A container of this owner.
    Owner(u32),
    /// An address outside every zone (internet clients, the hosts themselves).
    Outside,
}

/// May `src` talk to `dst`?
///
/// * same owner: yes;
/// * either side is the system owner: yes;
/// * a container may always send outside every zone (to the host stack,
///   which does NAT); from outside every zone only the system owner's
///   containers may be reached;
/// * different owners: yes iff `shares_group` says the normalised pair
///   shares at least one group. It is called only in that last case, so the
///   same-owner and system paths cost no hash lookup.
#[inline(always)]
pub fn allows(src: Party, dst: Party, shares_group: impl FnOnce(&OwnerPair) -> bool) -> bool {
    match (src, dst) {
        (Party::Owner(s), Party::Owner(d)) => {
            s == d || s == SYSTEM_OWNER || d == SYSTEM_OWNER || shares_group(&OwnerPair::new(s, d))
        }
        (Party::Owner(_), Party::Outside) => true,
        (Party::Outside, Party::Owner(o)) => o == SYSTEM_OWNER,
        (Party::Outside, Party::Outside) => true,
    }
}

/// `Endpoint::groups`: set when the other bits are the owner's groups
/// bloom and flags; clear means unknown (every pair is looked up, and no
/// flag below is set).
pub const GROUPS_KNOWN: u32 = 1 << 31;
/// `Endpoint::groups` flag: the owner narrowed what reaches its containers
/// (security groups): a packet to them from another owner (or, scoped to
/// itself, from the owner itself) is looked up in `PORT_SCOPES`.
pub const INGRESS_SCOPED: u32 = 1 << 30;
/// `Endpoint::groups` flag: the owner's containers may not open connections
/// to addresses outside every zone.
pub const EGRESS_DENIED: u32 = 1 << 29;
/// `Endpoint::groups` flag: the container is a member of a service
/// (docs/services.md): its packets to a container of this host may be
/// replies of a balanced flow, whose source the programs translate back to
/// the service's VIP (`SERVICE_FLOWS`). Other containers' packets skip that
/// lookup.
pub const SERVICE_BACKEND: u32 = 1 << 28;
/// Bloom bits: the rest.
const GROUP_BITS: u32 = (1 << 28) - 1;

/// The key of a group: FNV-1a of its name, stable across agents and
/// restarts. It picks the group's bloom bit ([`group_bit`]) and is what
/// `OWNER_GROUPS` lists hold.
pub fn group_key(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The bloom bit of the group with key `group` ([`group_key`] of its name): one of 28, spread by murmur3's finaliser.
#[inline(always)]
pub const fn group_bit(group: u32) -> u32 {
    let mut h = group;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    1 << (h % 28)
}

/// The `Endpoint::groups` value of an owner in `groups` (keys as for
/// [`group_bit`]); an owner in no group gets [`GROUPS_KNOWN`] alone.
pub fn groups_bloom(groups: impl IntoIterator<Item = u32>) -> u32 {
    groups
        .into_iter()
        .fold(GROUPS_KNOWN, |bloom, g| bloom | group_bit(g))
}

/// May two owners with these `Endpoint::groups` share a group? `false` is
/// exact (no common group); `true` means "ask `GROUP_PAIRS`". Either bloom
/// unknown: `true`. The flags take no part.
#[inline(always)]
pub const fn may_share_group(a: u32, b: u32) -> bool {
    let both = a & b;
    both & GROUPS_KNOWN == 0 || both & GROUP_BITS != 0
}

/// Do two owners' exact group lists ([`OwnerGroups`], both complete and
/// each of the owner asked about) share a key? Fixed bounds, so the kernel
/// programs can run it as is.
#[inline(always)]
pub fn lists_share_a_group(a: &OwnerGroups, b: &OwnerGroups) -> bool {
    let mut i = 0;
    while i < OWNER_GROUP_KEYS {
        if (i as u32) < a.count {
            let mut j = 0;
            while j < OWNER_GROUP_KEYS {
                if (j as u32) < b.count && a.keys[i] == b.keys[j] {
                    return true;
                }
                j += 1;
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blooms_never_hide_a_shared_group() {
        // Owners in overlapping sets of groups always may share one.
        for shared in 0..2_000u32 {
            let a = groups_bloom([shared, shared.wrapping_mul(7) + 1]);
            let b = groups_bloom([shared, shared ^ 0x5555]);
            assert!(may_share_group(a, b), "group {shared}");
        }
        // No groups at all: exact "no".
        assert!(!may_share_group(groups_bloom([]), groups_bloom([3, 4])));
        // Unknown on either side: ask.
        assert!(may_share_group(0, groups_bloom([])));
        assert!(may_share_group(groups_bloom([]), 0));
        // 28 bits: every group key lands on one of them, and they spread.
        let all = (0..1_000).map(group_bit).fold(0, |acc, b| {
            assert!(b.count_ones() == 1 && b & !GROUP_BITS == 0);
            acc | b
        });
        assert_eq!(all, GROUP_BITS, "all 28 bits in use");
        // Flags alone never look like a shared group.
        let flagged = groups_bloom([]) | INGRESS_SCOPED | EGRESS_DENIED | SERVICE_BACKEND;
        assert!(!may_share_group(flagged, flagged));
    }

    #[test]
    fn disjoint_owners_mostly_skip_the_lookup() {
        // 1,000 groups, owners in two each: most disjoint pairs are told
        // apart by the bloom alone.
        let groups = |i: u32| [i % 1_000, (i * 37 + 11) % 1_000];
        let mut skipped = 0;
        let mut pairs = 0;
        for i in 0..300u32 {
            for j in 0..300u32 {
                let (gi, gj) = (groups(i), groups(j));
                if gi.iter().any(|g| gj.contains(g)) {
                    continue;
                }
                pairs += 1;
                if !may_share_group(groups_bloom(gi), groups_bloom(gj)) {
                    skipped += 1;
                }
            }
        }
        assert!(skipped * 100 > pairs * 80, "{skipped} of {pairs} skipped");
    }

    #[test]
    fn group_lists_share_exactly_a_common_key() {
        let g = |keys: &[u32]| OwnerGroups::new(5, keys).expect("fits");
        assert!(lists_share_a_group(&g(&[1, 2, 3]), &g(&[9, 3])));
        assert!(!lists_share_a_group(
            &g(&[1, 2, 3]),
            &g(&[4, 5, 6, 7, 8, 9])
        ));
        assert!(!lists_share_a_group(&g(&[]), &g(&[0, 1])));
        // Unused key slots (zeros) never match a real key 0.
        assert!(!lists_share_a_group(&g(&[0]), &g(&[7])));
        assert!(lists_share_a_group(&g(&[0]), &g(&[7, 0])));
        let six = [11, 12, 13, 14, 15, 16];
        assert!(lists_share_a_group(&g(&six), &g(&[16])));
        assert!(
            OwnerGroups::new(5, &[1, 2, 3, 4, 5, 6, 7]).is_none(),
            "7 keys do not fit"
        );
    }

    fn never(_: &OwnerPair) -> bool {
        panic!("the group table must not be consulted here")
    }

    #[test]
    fn same_owner_and_system_need_no_group_lookup() {
        assert!(allows(Party::Owner(7), Party::Owner(7), never));
        assert!(allows(Party::Owner(SYSTEM_OWNER), Party::Owner(9), never));
        assert!(allows(Party::Owner(9), Party::Owner(SYSTEM_OWNER), never));
        assert!(allows(Party::Outside, Party::Owner(SYSTEM_OWNER), never));
        assert!(allows(Party::Owner(SYSTEM_OWNER), Party::Outside, never));
        assert!(allows(Party::Owner(5), Party::Outside, never));
        assert!(!allows(Party::Outside, Party::Owner(5), never));
    }

    #[test]
    fn different_owners_ask_for_the_normalised_pair() {
        let mut asked = None;
        assert!(!allows(Party::Owner(9), Party::Owner(4), |p| {
            asked = Some(*p);
            false
        }));
        assert_eq!(asked, Some(OwnerPair { low: 4, high: 9 }));
        assert!(allows(Party::Owner(4), Party::Owner(9), |_| true));
    }
}
