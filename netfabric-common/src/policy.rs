//! SPEC §2 as one function, used by the kernel programs and by the userspace
//! reference model, so that the two cannot drift apart.

use crate::{OwnerPair, SYSTEM_OWNER};

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

#[cfg(test)]
mod tests {
    use super::*;

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
