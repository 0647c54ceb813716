//! Time zones of scheduled actions: IANA names, UTC when none is given.
//! The model matches schedules against civil times; this module turns
//! instants into civil times of a zone and back.

use std::time::SystemTime;

use hail_model::autoscaling::{Civil, ValidationError};
use jiff::tz::TimeZone;

fn zone(name: Option<&str>) -> Option<TimeZone> {
    match name {
        None => Some(TimeZone::UTC),
        Some(n) => TimeZone::get(n).ok(),
    }
}

/// Checks a `Timezone` parameter: a name of the IANA time zone database.
pub fn check_timezone(name: &str) -> Result<(), ValidationError> {
    if zone(Some(name)).is_some() {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "Timezone {name} is not a valid IANA time zone name (such as Etc/GMT+9 or \
             Pacific/Tahiti)"
        )))
    }
}

/// The wall-clock time at `instant` in zone `name` (UTC when `None`).
pub fn civil_at(instant: SystemTime, name: Option<&str>) -> Option<Civil> {
    let tz = zone(name)?;
    let ts = jiff::Timestamp::try_from(instant).ok()?;
    let z = ts.to_zoned_datetime(tz);
    Some(Civil {
        year: z.year().into(),
        month: u8::try_from(z.month()).ok()?,
        day: u8::try_from(z.day()).ok()?,
        hour: u8::try_from(z.hour()).ok()?,
        minute: u8::try_from(z.minute()).ok()?,
        second: u8::try_from(z.second()).ok()?,
        weekday: u8::try_from(z.weekday().to_sunday_one_offset()).ok()?,
    })
}

/// The instant wall-clock time `civil` names in zone `name`. A time a
/// daylight-saving change skips is taken as the instant after the gap; a
/// time it repeats, as the earlier of the two.
pub fn instant_of(civil: &Civil, name: Option<&str>) -> Option<SystemTime> {
    let tz = zone(name)?;
    let year = i16::try_from(civil.year).ok()?;
    let dt = jiff::civil::DateTime::new(
        year,
        i8::try_from(civil.month).ok()?,
        i8::try_from(civil.day).ok()?,
        i8::try_from(civil.hour).ok()?,
        i8::try_from(civil.minute).ok()?,
        i8::try_from(civil.second).ok()?,
        0,
    )
    .ok()?;
    let z = dt.to_zoned_datetime(tz).ok()?;
    SystemTime::try_from(z).ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use hail_model::autoscaling::schedule::weekday;

    use super::*;

    #[test]
    fn civil_times_of_zones() {
        // 2024-01-01T00:00:00Z, a Monday.
        let t = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        let utc = civil_at(t, None).unwrap();
        assert_eq!((utc.year, utc.month, utc.day, utc.hour), (2024, 1, 1, 0));
        assert_eq!(utc.weekday, 2);
        let tokyo = civil_at(t, Some("Asia/Tokyo")).unwrap();
        assert_eq!((tokyo.day, tokyo.hour), (1, 9));
        let ny = civil_at(t, Some("America/New_York")).unwrap();
        assert_eq!((ny.year, ny.month, ny.day, ny.hour), (2023, 12, 31, 19));
        assert_eq!(ny.weekday, 1);
        assert_eq!(instant_of(&tokyo, Some("Asia/Tokyo")), Some(t));
        check_timezone("Pacific/Tahiti").unwrap();
        check_timezone("Etc/GMT+9").unwrap();
        assert!(check_timezone("Mars/Olympus").is_err());
        assert!(civil_at(t, Some("Mars/Olympus")).is_none());
        let c = Civil {
            year: 2024,
            month: 3,
            day: 10,
            hour: 2,
            minute: 30,
            second: 0,
            weekday: weekday(2024, 3, 10),
        };
        // 02:30 does not exist in New York that day; it is taken as 03:30 EDT.
        let skipped = instant_of(&c, Some("America/New_York")).unwrap();
        assert_eq!(skipped, UNIX_EPOCH + Duration::from_secs(1_710_055_800));
    }
}
