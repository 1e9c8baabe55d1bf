//! Kernel time (CLOCK_MONOTONIC, as `bpf_ktime_get_ns` stamps drop events
//! and the monitor lease) to wall-clock text.

/// Converts the kernel's monotonic timestamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime − monotonic, in ns.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    pub fn now() -> Self {
        Clock {
            offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC),
        }
    }

    /// CLOCK_MONOTONIC now, in ns (the kernel's `bpf_ktime_get_ns`).
    pub fn monotonic_ns() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }

    /// RFC 3339 UTC time of a monotonic timestamp.
    pub fn format(&self, mono_ns: u64) -> String {
        format_utc_ns(i128::from(mono_ns) + self.offset_ns)
    }
}

/// `2024-05-01T12:34:56.789Z` of nanoseconds since the Unix epoch.
pub fn format_utc_ns(unix_ns: i128) -> String {
    let ms_total = unix_ns.div_euclid(1_000_000);
    let ms = ms_total.rem_euclid(1000);
    let secs = ms_total.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_instants() {
        assert_eq!(format_utc_ns(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59.123Z
        assert_eq!(
            format_utc_ns(1_709_251_199_123_000_000),
            "2024-02-29T23:59:59.123Z"
        );
    }
}
