//! Schedules of scheduled actions: `at(yyyy-mm-ddThh:mm:ss)`,
//! `rate(value unit)` and `cron(minutes hours day-of-month month
//! day-of-week year)`, as the Application Auto Scaling API documents them.
//!
//! `at` and `cron` read in the action's time zone. This module does no
//! time-zone arithmetic (it has no time-zone database, and the model does no
//! I/O): it matches cron expressions against a civil time the caller
//! computed, and hands `at` back as a civil time for the caller to place.

use super::ValidationError;

/// A wall-clock time in some time zone, to the second. `weekday` is 1 for
/// Sunday through 7 for Saturday, as cron counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub weekday: u8,
}

/// Days in `month` (1–12) of `year`.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Once, at this wall-clock time of the action's time zone.
    At(Civil),
    /// Every `seconds`, counted from the action's start time (or its
    /// creation when it has none).
    Rate { seconds: u64 },
    /// Whenever the expression matches a minute of the action's time zone.
    Cron(CronExpr),
}

impl Schedule {
    /// Parses a schedule expression.
    pub fn parse(expr: &str) -> Result<Schedule, ValidationError> {
        let bad =
            |why: &str| ValidationError::new(format!("Schedule {expr:?} is not valid: {why}"));
        let inner = |prefix: &str| {
            expr.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(at) = inner("at(") {
            return parse_at(at)
                .map(Schedule::At)
                .ok_or_else(|| bad("at(...) must hold a time as yyyy-mm-ddThh:mm:ss"));
        }
        if let Some(rate) = inner("rate(") {
            let mut parts = rate.split_whitespace();
            let value: u64 = parts
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| bad("rate(...) must start with a positive whole number"))?;
            let unit = match parts.next() {
                Some("minute" | "minutes") => 60,
                Some("hour" | "hours") => 3600,
                Some("day" | "days") => 86_400,
                _ => return Err(bad("the unit of rate(...) must be minutes, hours or days")),
            };
            if parts.next().is_some() {
                return Err(bad("rate(...) takes a value and a unit"));
            }
            let seconds = value
                .checked_mul(unit)
                .ok_or_else(|| bad("the rate is too long"))?;
            return Ok(Schedule::Rate { seconds });
        }
        if let Some(cron) = inner("cron(") {
            return CronExpr::parse(cron)
                .map(Schedule::Cron)
                .map_err(|why| bad(&why));
        }
        Err(bad("it must be at(...), rate(...) or cron(...)"))
    }
}

fn parse_at(s: &str) -> Option<Civil> {
    let (date, time) = s.split_once('T')?;
    let num = |t: &str, len: usize| -> Option<u32> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([y, mo, da], [h, mi, se]) = (&d[..], &t[..]) else {
        return None;
    };
    let (year, month, day) = (num(y, 4)? as i32, num(mo, 2)? as u8, num(da, 2)? as u8);
    let (hour, minute, second) = (num(h, 2)? as u8, num(mi, 2)? as u8, num(se, 2)? as u8);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        weekday: weekday(year, month, day),
    })
}

/// The weekday of a date, 1 = Sunday … 7 = Saturday.
pub fn weekday(year: i32, month: u8, day: u8) -> u8 {
    // Sakamoto's method.
    const T: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if month < 3 { year - 1 } else { year };
    let w = (y + y.div_euclid(4) - y.div_euclid(100)
        + y.div_euclid(400)
        + T[usize::from(month.clamp(1, 12)) - 1]
        + i32::from(day))
    .rem_euclid(7);
    w as u8 + 1
}

/// A field of a cron expression: the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    allowed: Vec<bool>,
    any: bool,
}

impl Field {
    fn matches(&self, v: u32) -> bool {
        self.any || self.allowed.get(v as usize).copied().unwrap_or(false)
    }
}

/// What the day-of-month field asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    Any,
    Days(Field),
    /// `L`: the last day of the month.
    Last,
    /// `nW`: the weekday nearest to day n, within the month.
    NearestWeekday(u8),
}

/// What the day-of-week field asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    Any,
    Days(Field),
    /// `dL`: the last weekday d of the month.
    Last(u8),
    /// `d#n`: the n-th weekday d of the month.
    Nth(u8, u8),
}

/// A six-field cron expression (minutes, hours, day of month, month, day of
/// week, year) in the EventBridge dialect the API uses: `* , - /`, `?` in one
/// of the day fields, `L`, `W` and `#`, month and weekday names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    minutes: Field,
    hours: Field,
    dom: DayOfMonth,
    months: Field,
    dow: DayOfWeek,
    years: Field,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const YEARS: (u32, u32) = (1970, 2199);

fn value(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(lo + i as u32);
    }
    match s.parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not between {lo} and {hi}")),
    }
}

fn field(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Field, String> {
    if s == "*" {
        return Ok(Field {
            allowed: Vec::new(),
            any: true,
        });
    }
    let mut allowed = vec![false; hi as usize + 1];
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let step: u32 = st
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("step {st:?} is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (start, end) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, lo, hi, names)?, value(b, lo, hi, names)?)
        } else {
            let v = value(range, lo, hi, names)?;
            // `5/15` runs from 5 to the end of the range.
            (v, if part.contains('/') { hi } else { v })
        };
        if start > end {
            return Err(format!("range {range:?} runs backwards"));
        }
        let mut v = start;
        while v <= end {
            allowed[v as usize] = true;
            v += step;
        }
    }
    Ok(Field {
        allowed,
        any: false,
    })
}

impl CronExpr {
    /// Parses the six fields inside `cron(...)`.
    pub fn parse(s: &str) -> Result<CronExpr, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [minutes, hours, dom, months, dow, years] = parts[..] else {
            return Err(format!(
                "cron(...) needs 6 fields (minutes hours day-of-month month day-of-week year), \
                 not {}",
                parts.len()
            ));
        };
        let dom = match dom {
            "?" => DayOfMonth::Any,
            "L" => DayOfMonth::Last,
            d if d.ends_with('W') => {
                let n = value(&d[..d.len() - 1], 1, 31, &[])?;
                DayOfMonth::NearestWeekday(n as u8)
            }
            d => DayOfMonth::Days(field(d, 1, 31, &[])?),
        };
        let dow = match dow {
            "?" => DayOfWeek::Any,
            d if d.len() > 1 && d.ends_with('L') => {
                DayOfWeek::Last(value(&d[..d.len() - 1], 1, 7, &WEEKDAYS)? as u8)
            }
            "L" => DayOfWeek::Last(7),
            d if d.contains('#') => {
                let (day, nth) = d.split_once('#').unwrap_or_default();
                let day = value(day, 1, 7, &WEEKDAYS)? as u8;
                let nth = value(nth, 1, 5, &[])? as u8;
                DayOfWeek::Nth(day, nth)
            }
            d => DayOfWeek::Days(field(d, 1, 7, &WEEKDAYS)?),
        };
        if (dom == DayOfMonth::Any) == (dow == DayOfWeek::Any) {
            return Err("exactly one of day-of-month and day-of-week must be ?".into());
        }
        Ok(CronExpr {
            minutes: field(minutes, 0, 59, &[])?,
            hours: field(hours, 0, 23, &[])?,
            dom,
            months: field(months, 1, 12, &MONTHS)?,
            dow,
            years: field(years, YEARS.0, YEARS.1, &[])?,
        })
    }

    /// Whether the expression fires in the minute `t` is in.
    pub fn matches(&self, t: &Civil) -> bool {
        let last = days_in_month(t.year, t.month);
        let day_ok = match &self.dom {
            DayOfMonth::Any => true,
            DayOfMonth::Days(f) => f.matches(t.day.into()),
            DayOfMonth::Last => t.day == last,
            DayOfMonth::NearestWeekday(n) => t.day == nearest_weekday(t.year, t.month, *n),
        } && match &self.dow {
            DayOfWeek::Any => true,
            DayOfWeek::Days(f) => f.matches(t.weekday.into()),
            DayOfWeek::Last(d) => t.weekday == *d && t.day + 7 > last,
            DayOfWeek::Nth(d, n) => t.weekday == *d && (t.day - 1) / 7 + 1 == *n,
        };
        day_ok
            && self.minutes.matches(t.minute.into())
            && self.hours.matches(t.hour.into())
            && self.months.matches(t.month.into())
            && t.year >= 0
            && self.years.matches(t.year as u32)
    }
}

/// The weekday (Monday–Friday) nearest day `n` of the month, never leaving
/// the month.
fn nearest_weekday(year: i32, month: u8, n: u8) -> u8 {
    let last = days_in_month(year, month);
    let n = n.min(last);
    match weekday(year, month, n) {
        7 if n == 1 => 3,        // Saturday the 1st: Monday the 3rd.
        7 => n - 1,              // Saturday: Friday before.
        1 if n == last => n - 2, // Sunday the last: Friday before.
        1 => n + 1,              // Sunday: Monday after.
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> Civil {
        Civil {
            year,
            month,
            day,
            hour,
            minute,
            second: 0,
            weekday: weekday(year, month, day),
        }
    }

    #[test]
    fn weekdays_count_from_sunday() {
        assert_eq!(weekday(2024, 1, 1), 2); // A Monday.
        assert_eq!(weekday(2000, 2, 29), 3); // A Tuesday.
        assert_eq!(weekday(2026, 11, 1), 1); // A Sunday.
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
    }

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            Schedule::parse("at(2026-03-01T09:30:00)").unwrap(),
            Schedule::At(civil(2026, 3, 1, 9, 30))
        );
        assert_eq!(
            Schedule::parse("rate(5 minutes)").unwrap(),
            Schedule::Rate { seconds: 300 }
        );
        assert_eq!(
            Schedule::parse("rate(1 day)").unwrap(),
            Schedule::Rate { seconds: 86_400 }
        );
        assert!(matches!(
            Schedule::parse("cron(0 9 ? * MON-FRI *)").unwrap(),
            Schedule::Cron(_)
        ));
        for bad in [
            "at(2026-02-30T09:00:00)",
            "at(2026-03-01 09:00:00)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "cron(0 9 * * MON *)",
            "cron(0 9 ? * *)",
            "cron(61 9 ? * * *)",
            "every day",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_matches_minutes_of_the_zone() {
        let Schedule::Cron(c) = Schedule::parse("cron(0/15 9-17 ? * MON-FRI *)").unwrap() else {
            unreachable!()
        };
        assert!(c.matches(&civil(2024, 1, 1, 9, 0)));
        assert!(c.matches(&civil(2024, 1, 1, 17, 45)));
        assert!(!c.matches(&civil(2024, 1, 1, 9, 5)));
        assert!(!c.matches(&civil(2024, 1, 6, 9, 0))); // Saturday.
        let c = CronExpr::parse("30 2 L * ? 2024").unwrap();
        assert!(c.matches(&civil(2024, 2, 29, 2, 30)));
        assert!(!c.matches(&civil(2024, 2, 28, 2, 30)));
        assert!(!c.matches(&civil(2025, 2, 28, 2, 30)));
        let c = CronExpr::parse("0 8 ? * 2#1 *").unwrap(); // First Monday.
        assert!(c.matches(&civil(2024, 1, 1, 8, 0)));
        assert!(!c.matches(&civil(2024, 1, 8, 8, 0)));
        let c = CronExpr::parse("0 8 ? * 6L *").unwrap(); // Last Friday.
        assert!(c.matches(&civil(2024, 1, 26, 8, 0)));
        assert!(!c.matches(&civil(2024, 1, 19, 8, 0)));
        let c = CronExpr::parse("0 8 15W * ? *").unwrap();
        // 15 June 2024 is a Saturday: the nearest weekday is Friday the 14th.
        assert!(c.matches(&civil(2024, 6, 14, 8, 0)));
        assert!(!c.matches(&civil(2024, 6, 15, 8, 0)));
        let c = CronExpr::parse("0 0 1 JAN,JUL ? *").unwrap();
        assert!(c.matches(&civil(2024, 7, 1, 0, 0)));
        assert!(!c.matches(&civil(2024, 8, 1, 0, 0)));
    }
}
