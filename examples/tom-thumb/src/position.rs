//! The position of the frame to take, as `POSITION_TIME_DURATION` gives it.

use std::fmt;
use std::str::FromStr;

/// A non-negative offset into a video, with microsecond precision (finer than
/// any frame rate, and the precision FFmpeg's own time parser keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    micros: u64,
}

/// Why a position string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a position: {reason} (want HH:MM:SS[.mmm], MM:SS[.mmm] or seconds)")]
pub struct PositionError {
    input: String,
    reason: &'static str,
}

impl Position {
    pub const fn from_micros(micros: u64) -> Self {
        Self { micros }
    }

    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    pub fn as_secs_f64(self) -> f64 {
        self.micros as f64 / 1e6
    }

    /// Whether this position lies at or past a video of `duration_secs`, the
    /// point from which no frame can be shown.
    pub fn is_past(self, duration_secs: f64) -> bool {
        self.as_secs_f64() >= duration_secs
    }

    /// The argument for FFmpeg's `-ss`: plain seconds, which every FFmpeg
    /// version parses the same way.
    pub fn ffmpeg_arg(self) -> String {
        let (secs, frac) = (self.micros / 1_000_000, self.micros % 1_000_000);
        if frac == 0 {
            secs.to_string()
        } else {
            let digits = format!("{frac:06}");
            format!("{secs}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Display for Position {
    /// `HH:MM:SS`, with the fraction only when there is one (`00:00:02.5`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.micros / 1_000_000;
        let frac = self.micros % 1_000_000;
        write!(
            f,
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if frac != 0 {
            let digits = format!("{frac:06}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

impl FromStr for Position {
    type Err = PositionError;

    /// Accepts `HH:MM:SS[.f]`, `MM:SS[.f]` and `S[.f]` with up to six fraction
    /// digits; in the colon forms minutes and seconds are below 60.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| PositionError {
            input: s.to_owned(),
            reason,
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        let frac_micros = match frac {
            None => 0,
            Some(f) if f.is_empty() || f.len() > 6 => {
                return Err(fail("the fraction must have 1 to 6 digits"))
            }
            Some(f) => {
                let value = digits(f).ok_or_else(|| fail("the fraction is not a number"))?;
                value * 10u64.pow(6 - f.len() as u32)
            }
        };
        let fields: Vec<&str> = whole.split(':').collect();
        if fields.len() > 3 {
            return Err(fail("it has more than three fields"));
        }
        let mut secs: u64 = 0;
        for (i, field) in fields.iter().enumerate() {
            let value = digits(field).ok_or_else(|| fail("a field is not a whole number"))?;
            // The first field is unbounded (hours, or minutes in `MM:SS`).
            if i > 0 && value >= 60 {
                return Err(fail("minutes and seconds must be below 60"));
            }
            secs = secs
                .checked_mul(60)
                .and_then(|s| s.checked_add(value))
                .ok_or_else(|| fail("it is too large"))?;
        }
        let micros = secs
            .checked_mul(1_000_000)
            .and_then(|m| m.checked_add(frac_micros))
            .ok_or_else(|| fail("it is too large"))?;
        Ok(Self { micros })
    }
}

/// The value of a string of ASCII digits (no sign, no spaces), if it is one.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A duration in seconds as people read it: `9.64`, `14`, `0.5`.
pub fn format_seconds(secs: f64) -> String {
    let text = format!("{secs:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<u64, PositionError> {
        s.parse::<Position>().map(Position::as_micros)
    }

    #[test]
    fn parses_the_accepted_forms() {
        let cases = [
            ("00:00:02", 2_000_000),
            ("00:10:00", 600_000_000),
            ("01:02:03.5", 3_723_500_000),
            ("00:00:09.250", 9_250_000),
            ("12:34", 754_000_000),
            ("2", 2_000_000),
            ("2.5", 2_500_000),
            ("0", 0),
            ("0.000001", 1),
            ("100:00:00", 360_000_000_000),
            (" 3 ", 3_000_000),
            ("7200", 7_200_000_000),
        ];
        for (input, micros) in cases {
            assert_eq!(p(input), Ok(micros), "{input}");
        }
    }

    #[test]
    fn refuses_what_ffmpeg_would_misread() {
        for input in [
            "",
            " ",
            "-1",
            "+1",
            "1e3",
            "abc",
            "00:60:00",
            "00:00:60",
            "1:2:3:4",
            "1.",
            ".5",
            "1.1234567",
            "00::01",
            "1,5",
            "0x10",
            "00:00:01.5.5",
            "99999999999999999999",
        ] {
            assert!(p(input).is_err(), "{input:?} should be refused");
        }
    }

    #[test]
    fn errors_name_the_input_and_the_accepted_forms() {
        let err = "00:61:00".parse::<Position>().unwrap_err().to_string();
        assert_eq!(
            err,
            "\"00:61:00\" is not a position: minutes and seconds must be below 60 \
             (want HH:MM:SS[.mmm], MM:SS[.mmm] or seconds)"
        );
    }

    #[test]
    fn displays_as_clock_time() {
        let show = |s: &str| s.parse::<Position>().unwrap().to_string();
        assert_eq!(show("600"), "00:10:00");
        assert_eq!(show("2.5"), "00:00:02.5");
        assert_eq!(show("01:02:03.040"), "01:02:03.04");
        assert_eq!(show("100:00:00"), "100:00:00");
    }

    #[test]
    fn ffmpeg_argument_is_plain_seconds() {
        let arg = |s: &str| s.parse::<Position>().unwrap().ffmpeg_arg();
        assert_eq!(arg("00:00:02"), "2");
        assert_eq!(arg("00:01:02.250"), "62.25");
        assert_eq!(arg("0.000001"), "0.000001");
    }

    #[test]
    fn past_the_end_includes_the_end_itself() {
        let at = |s: &str| s.parse::<Position>().unwrap();
        assert!(!at("9.63").is_past(9.64));
        assert!(at("9.64").is_past(9.64));
        assert!(at("00:10:00").is_past(9.64));
    }

    #[test]
    fn seconds_read_like_people_write_them() {
        assert_eq!(format_seconds(9.64), "9.64");
        assert_eq!(format_seconds(14.0), "14");
        assert_eq!(format_seconds(30.003), "30.003");
        assert_eq!(format_seconds(0.5), "0.5");
    }
}
