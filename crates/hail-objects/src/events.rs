//! Bucket notification event records, as S3 writes them (event message
//! structure version 2.1).

use serde_json::{json, Value};

/// What one event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts<'a> {
    /// `s3:ObjectCreated:Put`, …
    pub event_name: &'a str,
    pub region: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    /// Size and ETag (unquoted) of a created object; `None` for removals.
    pub object: Option<(u64, &'a str)>,
    /// Strictly increasing across the store.
    pub sequence: i64,
    /// Milliseconds since the epoch.
    pub time_millis: i64,
    pub principal: &'a str,
    pub source_ip: &'a str,
    pub request_id: &'a str,
}

/// The sequencer S3 writes: upper-case hex, fixed width so that later
/// events compare greater as strings too.
pub fn sequencer(sequence: i64) -> String {
    format!("{:016X}", sequence.max(0))
}

/// `2026-11-28T23:15:02.123Z`.
pub fn iso_time(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
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

/// The notification body (`{"Records": [...]}`) for one rule.
pub fn event_record(facts: &EventFacts<'_>, configuration_id: &str) -> Value {
    let mut object = json!({
        "key": hail_model::s3::event_key(facts.key),
        "sequencer": sequencer(facts.sequence),
    });
    if let Some((size, etag)) = facts.object {
        object["size"] = json!(size);
        object["eTag"] = json!(etag);
    }
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": facts.region,
        "eventTime": iso_time(facts.time_millis),
        "eventName": facts.event_name.strip_prefix("s3:").unwrap_or(facts.event_name),
        "userIdentity": {"principalId": facts.principal},
        "requestParameters": {"sourceIPAddress": facts.source_ip},
        "responseElements": {
            "x-amz-request-id": facts.request_id,
            "x-amz-id-2": facts.request_id,
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": facts.bucket,
                "ownerIdentity": {"principalId": facts.principal},
                "arn": format!("arn:aws:s3:::{}", facts.bucket),
            },
            "object": object,
        }
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_aws_shape() {
        let facts = EventFacts {
            event_name: "s3:ObjectCreated:Put",
            region: "us-east-1",
            bucket: "media",
            key: "video/my clip.mp4",
            object: Some((1024, "d41d8cd98f00b204e9800998ecf8427e")),
            sequence: 0x5F3A,
            time_millis: 1_796_000_102_123,
            principal: "AKIAEXAMPLE",
            source_ip: "127.0.0.1",
            request_id: "req",
        };
        let r = event_record(&facts, "hail-trigger-thumbs");
        let rec = &r["Records"][0];
        assert_eq!(rec["eventVersion"], "2.1");
        assert_eq!(rec["eventSource"], "aws:s3");
        assert_eq!(rec["eventName"], "ObjectCreated:Put");
        assert_eq!(rec["eventTime"], "2026-11-30T00:55:02.123Z");
        assert_eq!(rec["s3"]["configurationId"], "hail-trigger-thumbs");
        assert_eq!(rec["s3"]["bucket"]["arn"], "arn:aws:s3:::media");
        assert_eq!(rec["s3"]["object"]["key"], "video/my+clip.mp4");
        assert_eq!(rec["s3"]["object"]["size"], 1024);
        assert_eq!(rec["s3"]["object"]["sequencer"], "0000000000005F3A");
        let removed = EventFacts {
            event_name: "s3:ObjectRemoved:Delete",
            object: None,
            ..facts
        };
        let rec = event_record(&removed, "c")["Records"][0].clone();
        assert!(rec["s3"]["object"].get("size").is_none());
        assert!(sequencer(10) > sequencer(9));
    }

    #[test]
    fn times_format_as_iso_8601() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
