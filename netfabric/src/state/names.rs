//! Names: what zones, hosts, owners, groups and containers may be called,
//! and what an interface may be called.

/// Longest name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// The naming rule, as shown in error messages.
pub const NAME_RULE: &str = "a name is 1 to 63 characters of lowercase letters a-z, digits and '-', \
                             starting with a letter (like a DNS label)";

/// Whether `name` follows [`NAME_RULE`] (`^[a-z][a-z0-9-]{0,62}$`).
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Whether `name` is a valid Linux interface name (what the kernel's
/// `dev_valid_name` accepts: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or
/// whitespace).
pub fn is_valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "web-1", "a0", &"a".repeat(63)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "A",
            "a_b",
            "a.b",
            "é",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn interface_names() {
        assert!(is_valid_interface_name("eth0"));
        assert!(is_valid_interface_name("nf-h1-uplink"));
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(!is_valid_interface_name(bad), "{bad}");
        }
    }
}
