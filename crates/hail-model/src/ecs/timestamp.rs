//! Timestamps as the ECS JSON API carries them: epoch seconds as a JSON number
//! with a fractional part (`1732797623.512`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, held as whole milliseconds since the Unix epoch.
///
/// Milliseconds are what the API's fractional seconds carry in practice, and an
/// integer keeps comparisons and equality exact. The model never reads the
/// clock: callers construct timestamps from whatever clock they own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: i64,
}

impl Timestamp {
    /// The timestamp `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self { millis }
    }

    /// The timestamp `secs` whole seconds after the Unix epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Self {
            millis: secs.saturating_mul(1000),
        }
    }

    /// The timestamp of `time`, or `None` before the epoch or past the range of
    /// `i64` milliseconds.
    pub fn from_system_time(time: std::time::SystemTime) -> Option<Self> {
        let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(since.as_millis()).ok().map(Self::from_millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.millis
    }

    /// Seconds since the Unix epoch, fractional, as the API writes them.
    pub fn as_secs_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// The timestamp `secs` (fractional) seconds after the epoch, rounded to the
    /// millisecond; `None` for values that are not finite or out of range.
    pub fn from_secs_f64(secs: f64) -> Option<Self> {
        let millis = (secs * 1000.0).round();
        // The bounds keep the cast exact; i64::MAX as f64 rounds up past it.
        if millis.is_finite() && (-9.0e18..=9.0e18).contains(&millis) {
            Some(Self::from_millis(millis as i64))
        } else {
            None
        }
    }

    /// This timestamp moved `secs` seconds later.
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self {
            millis: self.millis.saturating_add(secs.saturating_mul(1000)),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Whole seconds are written without a fraction, as ECS does for
        // values that have none; serde_json writes `1.0` otherwise.
        if self.millis % 1000 == 0 {
            serializer.serialize_i64(self.millis / 1000)
        } else {
            serializer.serialize_f64(self.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Self::from_secs_f64(secs)
            .ok_or_else(|| serde::de::Error::custom(format!("timestamp {secs} is out of range")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_fractional_epoch_seconds() {
        let t = Timestamp::from_millis(1_732_797_623_512);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1732797623.512");
        assert_eq!(
            serde_json::to_string(&Timestamp::from_secs(1_732_797_623)).unwrap(),
            "1732797623"
        );
    }

    #[test]
    fn parses_integers_and_fractions() {
        let t: Timestamp = serde_json::from_str("1732797623.512").unwrap();
        assert_eq!(t.as_millis(), 1_732_797_623_512);
        let t: Timestamp = serde_json::from_str("1732797623").unwrap();
        assert_eq!(t, Timestamp::from_secs(1_732_797_623));
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("1e300").is_err());
    }

    #[test]
    fn converts_from_system_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        assert_eq!(
            Timestamp::from_system_time(t),
            Some(Timestamp::from_millis(1500))
        );
        assert_eq!(Timestamp::from_millis(1500).plus_secs(2).as_millis(), 3500);
    }
}
