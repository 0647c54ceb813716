//! Calendar formatting of UTC instants, for log lines.
//!
//! Done by hand (Howard Hinnant's `civil_from_days`) because the sidecars
//! only ever print UTC and a calendar library would bring time zones the
//! static image could not load anyway.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// The UTC calendar time `secs` seconds after the Unix epoch (negative
    /// before it).
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // `of_day` is in 0..86_400, so these fit a u32.
        let of_day = of_day as u32;
        Civil {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
        }
    }
}

/// (year, month 1..=12, day 1..=31) of the day `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn unix_seconds(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        // Before 1970: only a badly set clock gets here; print the epoch.
        Err(_) => (0, 0),
    }
}

/// `10/Oct/2000:13:55:36 +0000`, the time of the common and combined log
/// formats.
pub fn common_log_time(t: SystemTime) -> String {
    let c = Civil::from_unix(unix_seconds(t).0);
    let month = MONTHS[(c.month as usize).saturating_sub(1) % 12];
    format!(
        "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day, c.year, c.hour, c.minute, c.second
    )
}

/// `2000-10-10T13:55:36.123456789Z`.
pub fn rfc3339_nanos(secs: i64, nanos: u32) -> String {
    let c = Civil::from_unix(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        nanos.min(999_999_999)
    )
}

/// [`rfc3339_nanos`] of a system time.
pub fn rfc3339(t: SystemTime) -> String {
    let (secs, nanos) = unix_seconds(t);
    rfc3339_nanos(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        // The example of the Apache documentation: 10 Oct 2000 13:55:36 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(common_log_time(t), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(rfc3339_nanos(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(951_782_400, 5),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(rfc3339_nanos(-1, 0), "1969-12-31T23:59:59.000000000Z");
        assert_eq!(
            rfc3339_nanos(4_102_444_799, 999_999_999),
            "2099-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        let mut prev = civil_from_days(-800);
        for z in -799..200_000 {
            let cur = civil_from_days(z);
            let next_day = prev.2 + 1 == cur.2 && prev.1 == cur.1 && prev.0 == cur.0;
            let next_month = cur.2 == 1 && (prev.1 % 12) + 1 == cur.1;
            assert!(next_day || next_month, "{prev:?} -> {cur:?}");
            prev = cur;
        }
    }
}
