//! The `PORT_SCOPES` entries a state's security groups imply
//! (docs/security-groups.md): per receiving owner R and sender S whose
//! every shared way in R narrowed, the union of their rules. The agent
//! writes them; validation bounds them.

use std::collections::{BTreeMap, BTreeSet};

use netfabric_common::{
    PORT_SCOPES_ENTRIES, SYSTEM_OWNER,
    conntrack::{PORT_SCOPE_RULES, ScopedPair},
};

use super::{
    error::{StateError, path},
    model::State,
    security::{Allow, SecurityGroup, Via, merge_rules},
};

impl State {
    pub fn security_group(&self, owner: &str, via: &Via) -> Option<&SecurityGroup> {
        self.security_groups
            .iter()
            .find(|g| g.owner == owner && g.via == *via)
    }

    /// Owners that have at least one security group (the receivers whose
    /// endpoints carry `INGRESS_SCOPED`).
    pub fn scoped_owners(&self) -> BTreeSet<&str> {
        self.security_groups
            .iter()
            .map(|g| g.owner.as_str())
            .collect()
    }

    /// Every `PORT_SCOPES` entry the state implies: per receiving owner R
    /// with security groups, each sender whose access is narrowed, and the
    /// merged rules it keeps.
    ///
    /// * Via own: R's own containers (pair (R, R)) get that group's rules.
    /// * Another owner S (not the system owner) that shares groups with R:
    ///   if any shared group has no security group of R, S is not narrowed
    ///   (groups add up; the most open wins); otherwise the union of R's
    ///   rules for the shared groups.
    ///
    /// Refused (naming the field): a pair whose merged rules exceed
    /// [`PORT_SCOPE_RULES`], or more pairs than `PORT_SCOPES` holds. Names
    /// that do not resolve are skipped (validation reports them first).
    pub fn port_scopes(&self) -> Result<BTreeMap<ScopedPair, Vec<Allow>>, StateError> {
        let ids: BTreeMap<&str, u32> = self
            .owners
            .iter()
            .map(|o| (o.name.as_str(), o.id))
            .collect();
        // receiver -> via -> its security group
        let mut by_owner: BTreeMap<&str, BTreeMap<&Via, &SecurityGroup>> = BTreeMap::new();
        for sg in &self.security_groups {
            by_owner
                .entry(sg.owner.as_str())
                .or_default()
                .insert(&sg.via, sg);
        }
        let mut out = BTreeMap::new();
        for (receiver, vias) in by_owner {
            let Some(&r) = ids.get(receiver) else {
                continue;
            };
            if let Some(own) = vias.get(&Via::Own) {
                out.insert(
                    ScopedPair {
                        receiver: r,
                        sender: r,
                    },
                    merge_rules(own.allow.iter().copied()),
                );
            }
            // sender -> (narrowed through these security groups, or open)
            let mut senders: BTreeMap<u32, Option<Vec<&SecurityGroup>>> = BTreeMap::new();
            for group in self.groups.iter().filter(|g| g.members.contains(receiver)) {
                let sg = vias.get(&Via::Group(group.name.clone())).copied();
                for member in &group.members {
                    let Some(&s) = ids.get(member.as_str()) else {
                        continue;
                    };
                    if s == r || s == SYSTEM_OWNER {
                        continue;
                    }
                    let entry = senders.entry(s).or_insert_with(|| Some(Vec::new()));
                    match (entry.as_mut(), sg) {
                        (Some(list), Some(sg)) => list.push(sg),
                        _ => *entry = None,
                    }
                }
            }
            for (s, narrowed) in senders {
                let Some(sgs) = narrowed else { continue };
                let rules = merge_rules(sgs.iter().flat_map(|sg| sg.allow.iter().copied()));
                if rules.len() > PORT_SCOPE_RULES {
                    let sender = self.owner_by_id(s).map_or("?", |o| o.name.as_str());
                    let names: Vec<String> = sgs.iter().map(|sg| sg.id()).collect();
                    return Err(StateError::invalid(
                        path("security_groups", &names[0], "allow"),
                        format!(
                            "owner {sender} reaches {receiver} only through the narrowed groups \
                             of {}, whose rules together are {} after merging overlapping \
                             and adjacent ranges; one pair of owners holds at most \
                             {PORT_SCOPE_RULES} (use port ranges)",
                            names.join(", "),
                            rules.len(),
                        ),
                    ));
                }
                out.insert(
                    ScopedPair {
                        receiver: r,
                        sender: s,
                    },
                    rules,
                );
            }
        }
        if out.len() > PORT_SCOPES_ENTRIES as usize {
            return Err(StateError::invalid(
                "security_groups",
                format!(
                    "they narrow {} pairs of owners; the datapath's PORT_SCOPES holds at most \
                     {PORT_SCOPES_ENTRIES}",
                    out.len()
                ),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(s: &str) -> Allow {
        s.parse().unwrap()
    }

    /// alice, bob, carol, dave; team = {alice, bob, carol, system},
    /// ops = {alice, bob}, dev = {alice, dave}.
    fn state() -> State {
        let mut s = State::default();
        for o in ["alice", "bob", "carol", "dave"] {
            s.create_owner(o).unwrap();
        }
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        s.create_group("team", &names(&["alice", "bob", "carol", "system"]))
            .unwrap();
        s.create_group("ops", &names(&["alice", "bob"])).unwrap();
        s.create_group("dev", &names(&["alice", "dave"])).unwrap();
        s
    }

    fn id(s: &State, name: &str) -> u32 {
        s.owner(name).unwrap().id
    }

    fn scopes(s: &State) -> BTreeMap<(String, String), Vec<String>> {
        s.port_scopes()
            .unwrap()
            .into_iter()
            .map(|(pair, rules)| {
                let name = |id| s.owner_by_id(id).unwrap().name.clone();
                (
                    (name(pair.receiver), name(pair.sender)),
                    rules.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    fn set(s: &mut State, owner: &str, via: Via, rules: &[&str]) {
        let rules: Vec<Allow> = rules.iter().map(|r| allow(r)).collect();
        s.set_security_group(owner, via, &rules).unwrap();
        s.validate().unwrap();
    }

    fn key(r: &str, s: &str) -> (String, String) {
        (r.to_owned(), s.to_owned())
    }

    #[test]
    fn groups_add_up_and_the_most_open_wins() {
        let mut s = state();
        assert!(scopes(&s).is_empty(), "no security group: nothing narrowed");
        set(&mut s, "alice", Via::Group("team".into()), &["tcp/5432"]);
        // carol shares only team with alice: narrowed. bob shares ops too,
        // which alice did not narrow: open. system is never narrowed; dave
        // does not share team.
        assert_eq!(
            scopes(&s),
            BTreeMap::from([(key("alice", "carol"), vec!["tcp/5432".to_owned()])])
        );
        assert_eq!(s.scoped_owners(), BTreeSet::from(["alice"]));
        // Narrow ops too: bob gets the union of both.
        set(
            &mut s,
            "alice",
            Via::Group("ops".into()),
            &["udp/53", "tcp/5433"],
        );
        let got = scopes(&s);
        assert_eq!(got[&key("alice", "bob")], ["tcp/5432-5433", "udp/53"]);
        assert_eq!(got[&key("alice", "carol")], ["tcp/5432"]);
        assert_eq!(got.len(), 2);
        // Own containers: only through the own scope.
        set(&mut s, "alice", Via::Own, &[]);
        assert_eq!(scopes(&s)[&key("alice", "alice")], Vec::<String>::new());
        // A receiver's scope says nothing about its own sending.
        assert!(!scopes(&s).keys().any(|(r, _)| r != "alice"));
        // Replacing a scope replaces its rules; an identical set is no change.
        let five = [allow("tcp/5")];
        assert!(
            s.set_security_group("alice", Via::Group("team".into()), &five)
                .unwrap()
        );
        assert!(
            !s.set_security_group("alice", Via::Group("team".into()), &five)
                .unwrap()
        );
        assert_eq!(scopes(&s)[&key("alice", "carol")], ["tcp/5"]);
        // Deleting the group deletes its security groups.
        s.delete_group("team").unwrap();
        s.validate().unwrap();
        assert!(
            s.security_group("alice", &Via::Group("team".into()))
                .is_none()
        );
        assert!(!scopes(&s).contains_key(&key("alice", "carol")));
        assert_eq!(id(&s, "alice"), 2);
    }

    #[test]
    fn a_security_group_of_a_departed_member_narrows_nothing() {
        let mut s = state();
        set(&mut s, "alice", Via::Group("dev".into()), &["tcp/80"]);
        assert!(scopes(&s).contains_key(&key("alice", "dave")));
        s.remove_group_members("dev", &["alice".into()]).unwrap();
        s.validate().unwrap();
        assert!(scopes(&s).is_empty());
        s.add_group_members("dev", &["alice".into()]).unwrap();
        assert!(
            scopes(&s).contains_key(&key("alice", "dave")),
            "back: narrowed again"
        );
        // Deleting the owner deletes its security groups.
        s.remove_group_members("dev", &["alice".into()]).unwrap();
        for g in ["team", "ops"] {
            s.remove_group_members(g, &["alice".into()]).unwrap();
        }
        s.delete_owner("alice").unwrap();
        assert!(s.security_groups.is_empty());
        s.validate().unwrap();
    }

    fn refused(s: &State) -> StateError {
        s.validate().expect_err("must be refused")
    }

    #[test]
    fn bad_security_groups_are_refused_naming_the_field() {
        let mut s = state();
        let team = Via::Group("team".into());
        let err = s.set_security_group("zed", team.clone(), &[]).unwrap_err();
        assert_eq!(err.field(), "security_groups[zed/team].owner");
        let err = s
            .set_security_group("alice", Via::Group("nope".into()), &[])
            .unwrap_err();
        assert_eq!(err.field(), "security_groups[alice/nope].via");
        let err = s.set_security_group("dave", team.clone(), &[]).unwrap_err();
        assert_eq!(err.field(), "security_groups[dave/team].via");
        assert!(err.to_string().contains("not a member"), "{err}");

        let mut sys = s.clone();
        sys.set_security_group("system", team.clone(), &[]).unwrap();
        let err = refused(&sys);
        assert_eq!(err.field(), "security_groups[system/team].owner");

        let mut dup = s.clone();
        dup.set_security_group("alice", team.clone(), &[]).unwrap();
        dup.security_groups.push(dup.security_groups[0].clone());
        assert_eq!(refused(&dup).field(), "security_groups[alice/team]");

        let mut dangling = s.clone();
        dangling
            .set_security_group("alice", team.clone(), &[])
            .unwrap();
        dangling.groups.retain(|g| g.name != "team");
        assert_eq!(
            refused(&dangling).field(),
            "security_groups[alice/team].via"
        );

        // Nine separate ports: too many for one scope.
        let nine: Vec<Allow> = (0..9)
            .map(|i| allow(&format!("tcp/{}", 100 + 2 * i)))
            .collect();
        let mut big = s.clone();
        big.security_groups.push(SecurityGroup {
            owner: "alice".into(),
            via: team.clone(),
            allow: nine.clone(),
        });
        let err = refused(&big);
        assert_eq!(err.field(), "security_groups[alice/team].allow");
        assert!(err.to_string().contains("9 rules"), "{err}");
        // Nine that merge into one are fine.
        let mut merged = s.clone();
        let run: Vec<Allow> = (0..9).map(|i| allow(&format!("tcp/{}", 100 + i))).collect();
        merged
            .set_security_group("alice", team.clone(), &run)
            .unwrap();
        merged.validate().unwrap();
        assert_eq!(merged.security_groups[0].allow, [allow("tcp/100-108")]);

        // Two scopes of five each are fine alone; bob, narrowed by both,
        // would need ten.
        let mut union = s.clone();
        let five = |base: u16| -> Vec<Allow> {
            (0..5)
                .map(|i| allow(&format!("udp/{}", base + 2 * i)))
                .collect()
        };
        union
            .set_security_group("alice", team, &five(1000))
            .unwrap();
        union.validate().unwrap();
        union
            .set_security_group("alice", Via::Group("ops".into()), &five(2000))
            .unwrap();
        let err = refused(&union);
        assert!(err.field().starts_with("security_groups[alice/"), "{err}");
        assert!(err.to_string().contains("owner bob"), "{err}");
    }

    #[test]
    fn more_pairs_than_the_map_holds_are_refused() {
        // 257 x 256 members of one group narrowed by each of them: 65,792
        // pairs.
        let mut s = State::default();
        let members: Vec<String> = (0..257).map(|i| format!("o{i}")).collect();
        for m in &members {
            s.create_owner(m).unwrap();
        }
        s.create_group("all", &members).unwrap();
        for m in &members {
            s.security_groups.push(SecurityGroup {
                owner: m.clone(),
                via: Via::Group("all".into()),
                allow: vec![],
            });
        }
        let err = refused(&s);
        assert_eq!(err.field(), "security_groups");
        assert!(err.to_string().contains("65792 pairs"), "{err}");
        s.security_groups.pop();
        s.validate().expect("256 x 256 = 65,536 pairs fit");
    }
}
