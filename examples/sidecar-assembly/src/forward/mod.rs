//! The Fluent Forward protocol (v1), as Fluentd and Fluent Bit speak it
//! over TCP: a stream of MessagePack values, each one *frame*.
//!
//! A frame is an array whose first element is the tag (a string), in one
//! of three modes:
//!
//! - Message: `[tag, time, record]` or `[tag, time, record, option]`;
//! - Forward: `[tag, [[time, record], …]]` (+ option);
//! - PackedForward: `[tag, entries]` (+ option), where `entries` is a bin
//!   or str holding a concatenation of MessagePack `[time, record]` arrays.
//!
//! `time` is an integer (Unix seconds), a float, or an EventTime: ext type
//! 0 of 8 bytes, seconds then nanoseconds, both u32 big-endian. `record` is
//! a map. `option` is a map; with `"chunk": "<id>"` the receiver answers
//! `{"ack": "<id>"}` once the frame's records are stored, so a sender that
//! resends unacknowledged chunks loses nothing (at-least-once).
//! CompressedPackedForward (`"compressed": "gzip"`) and the handshake of
//! `shared_key` authentication are not supported.
//!
//! [`frame_len`] finds where a frame ends without building it, so a
//! reader knows when it has a whole one and can bound what it buffers;
//! [`decode_frame`] then builds it.

pub mod client;

use std::io::Cursor;

use rmpv::Value;

/// Frames larger than this are refused (Fluent Bit's default chunk size is
/// far smaller; Fluentd's buffer chunks are 8 MiB).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// MessagePack values a frame may hold; bounds the memory a frame of tiny
/// values could make the decoder allocate (each decoded value is ~32 bytes).
pub const MAX_FRAME_VALUES: usize = 2_000_000;

/// Entries a frame may carry, PackedForward's included.
pub const MAX_FRAME_ENTRIES: usize = 1_000_000;

/// Nesting deeper than this in a record is refused (the decoder recurses).
const MAX_DEPTH: usize = 64;

/// A frame that breaks the protocol or the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("frame exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("frame holds more than {limit} values")]
    TooManyValues { limit: usize },
    #[error("frame holds more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("byte 0xc1 is not MessagePack")]
    InvalidMarker,
    #[error("not MessagePack: {0}")]
    Decode(String),
    #[error("a frame must be an array starting with a tag, got {0}")]
    NotAFrame(&'static str),
    #[error("the tag must be a UTF-8 string")]
    BadTag,
    #[error("frame has no entries")]
    MissingEntries,
    #[error("frame's second element must be a time, an array or a packed stream, got {0}")]
    BadEntries(&'static str),
    #[error("entry {index}: {reason}")]
    BadEntry { index: usize, reason: String },
    #[error("time must be an integer, a float or an EventTime, got {0}")]
    BadTime(String),
    #[error("record must be a map, got {0}")]
    BadRecord(&'static str),
    #[error("option must be a map, got {0}")]
    BadOption(&'static str),
    #[error("compressed frames ({0}) are not supported")]
    Compressed(String),
}

/// When an event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime {
    pub secs: i64,
    pub nanos: u32,
}

impl EventTime {
    /// The EventTime extension value (type 0): u32 seconds and u32
    /// nanoseconds, big-endian. Seconds outside u32 are clamped.
    pub fn to_value(self) -> Value {
        let secs = u32::try_from(self.secs.max(0)).unwrap_or(u32::MAX);
        let mut data = Vec::with_capacity(8);
        data.extend_from_slice(&secs.to_be_bytes());
        data.extend_from_slice(&self.nanos.to_be_bytes());
        Value::Ext(0, data)
    }

    pub fn from_value(v: &Value) -> Result<Self, ForwardError> {
        match v {
            Value::Integer(i) => i
                .as_i64()
                .map(|secs| EventTime { secs, nanos: 0 })
                .ok_or_else(|| ForwardError::BadTime(i.to_string())),
            Value::F64(_) | Value::F32(_) => {
                let f = v.as_f64().unwrap_or(f64::NAN);
                if !f.is_finite() || f.abs() > 1e15 {
                    return Err(ForwardError::BadTime(f.to_string()));
                }
                let secs = f.floor();
                let nanos = ((f - secs) * 1e9).round().min(999_999_999.0) as u32;
                Ok(EventTime {
                    secs: secs as i64,
                    nanos,
                })
            }
            Value::Ext(0, data) if data.len() == 8 => {
                let secs = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let nanos = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                if nanos > 999_999_999 {
                    return Err(ForwardError::BadTime(format!("{nanos} nanoseconds")));
                }
                Ok(EventTime {
                    secs: i64::from(secs),
                    nanos,
                })
            }
            Value::Ext(ty, data) => Err(ForwardError::BadTime(format!(
                "ext type {ty} of {} bytes",
                data.len()
            ))),
            other => Err(ForwardError::BadTime(kind(other).to_owned())),
        }
    }

    /// Now, by the system clock.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        EventTime {
            secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
        }
    }
}

/// A record: MessagePack key/value pairs in the sender's order.
pub type Record = Vec<(Value, Value)>;

/// A record of string fields, in order.
pub fn record<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Record {
    fields
        .into_iter()
        .map(|(k, v)| (Value::from(k), Value::from(v)))
        .collect()
}

/// The string field `key` of a record.
pub fn field<'r>(record: &'r Record, key: &str) -> Option<&'r str> {
    record
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .and_then(|(_, v)| v.as_str())
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub time: EventTime,
    pub record: Record,
}

/// How a frame carried its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Message,
    Forward,
    PackedForward,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Message => "message",
            Mode::Forward => "forward",
            Mode::PackedForward => "packed_forward",
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub tag: String,
    pub mode: Mode,
    pub entries: Vec<Entry>,
    /// The chunk id to acknowledge, if the sender asked for one.
    pub chunk: Option<String>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::F32(_) | Value::F64(_) => "a float",
        Value::String(_) => "a string",
        Value::Binary(_) => "a bin",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an ext",
    }
}

/// Where the MessagePack value at the start of `buf` ends: `Some(len)`
/// once `buf` holds all of it, `None` while more bytes are needed.
pub fn frame_len(buf: &[u8], max_bytes: usize) -> Result<Option<usize>, ForwardError> {
    FrameScanner::new().scan(buf, max_bytes)
}

/// Finds where a frame ends without building it, so a reader knows when
/// it has a whole one and can bound what it buffers before decoding.
///
/// It walks the markers iteratively (no recursion, no allocation),
/// counting the values still expected, and remembers where it stopped: a
/// frame arriving in many reads is scanned once overall, not once per read.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    /// Where the next value starts (may lie beyond the bytes received when
    /// the last one's payload has not all arrived).
    pos: usize,
    /// Values still to come before the frame is complete.
    pending: u64,
    values: usize,
}

impl Default for FrameScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameScanner {
    pub fn new() -> Self {
        FrameScanner {
            pos: 0,
            pending: 1,
            values: 0,
        }
    }

    /// Continues over `buf` (the same bytes as before, possibly more of
    /// them): `Some(len)` when the frame is complete (the scanner is then
    /// reset for the next frame, which starts at `buf[len]` — drain those
    /// bytes before the next call), `None` when more bytes are needed.
    pub fn scan(&mut self, buf: &[u8], max_bytes: usize) -> Result<Option<usize>, ForwardError> {
        while self.pending > 0 {
            let Some((end, children)) = value_header(buf, self.pos, max_bytes)? else {
                return Ok(None);
            };
            self.values += 1;
            if self.values > MAX_FRAME_VALUES {
                return Err(ForwardError::TooManyValues {
                    limit: MAX_FRAME_VALUES,
                });
            }
            self.pending = self.pending - 1 + children;
            // Every value takes at least a byte, so values that could
            // never all fit under the limit are refused now.
            if end.saturating_add(self.pending) > max_bytes as u64 {
                return Err(ForwardError::TooLarge { limit: max_bytes });
            }
            // `end` is at most `max_bytes`, a usize.
            self.pos = end as usize;
        }
        if self.pos > buf.len() {
            return Ok(None);
        }
        let len = self.pos;
        *self = FrameScanner::new();
        Ok(Some(len))
    }
}

/// Reads the header of the value at `pos`: where the value ends (its
/// payload skipped, children not included) and how many child values
/// follow, or `None` if the header is not all in `buf` yet.
fn value_header(
    buf: &[u8],
    pos: usize,
    max_bytes: usize,
) -> Result<Option<(u64, u64)>, ForwardError> {
    if pos >= max_bytes {
        return Err(ForwardError::TooLarge { limit: max_bytes });
    }
    let Some(&marker) = buf.get(pos) else {
        return Ok(None);
    };
    let mut pos = pos + 1;
    // A big-endian length of `n` bytes at `pos`.
    let be = |pos: usize, n: usize| -> Option<u64> {
        let bytes = buf.get(pos..pos + n)?;
        Some(bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    };
    // (payload bytes after the header, child values)
    let (skip, children): (u64, u64) = match marker {
        0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
        0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
        0x90..=0x9f => (0, u64::from(marker & 0x0f)),
        0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
        0xc1 => return Err(ForwardError::InvalidMarker),
        0xc4 | 0xd9 | 0xc5 | 0xda | 0xc6 | 0xdb => {
            let n = match marker {
                0xc4 | 0xd9 => 1,
                0xc5 | 0xda => 2,
                _ => 4,
            };
            let Some(len) = be(pos, n) else {
                return Ok(None);
            };
            pos += n;
            (len, 0)
        }
        0xc7..=0xc9 => {
            let n = 1 << (marker - 0xc7);
            let Some(len) = be(pos, n) else {
                return Ok(None);
            };
            pos += n;
            // The type byte, then the data.
            (len + 1, 0)
        }
        0xca | 0xce | 0xd2 => (4, 0),
        0xcb | 0xcf | 0xd3 => (8, 0),
        0xcc | 0xd0 => (1, 0),
        0xcd | 0xd1 => (2, 0),
        0xd4..=0xd8 => (1 + (1 << (marker - 0xd4)), 0),
        0xdc..=0xdf => {
            let n = if marker == 0xdc || marker == 0xde {
                2
            } else {
                4
            };
            let Some(count) = be(pos, n) else {
                return Ok(None);
            };
            pos += n;
            let per = if marker >= 0xde { 2 } else { 1 };
            (0, count * per)
        }
    };
    Ok(Some(((pos as u64).saturating_add(skip), children)))
}

fn read_value(bytes: &mut Cursor<&[u8]>) -> Result<Value, ForwardError> {
    rmpv::decode::read_value_with_max_depth(bytes, MAX_DEPTH)
        .map_err(|e| ForwardError::Decode(e.to_string()))
}

fn entry_of(value: Value, index: usize) -> Result<Entry, ForwardError> {
    let bad = |reason: String| ForwardError::BadEntry { index, reason };
    let Value::Array(pair) = value else {
        return Err(bad(format!("must be [time, record], got {}", kind(&value))));
    };
    let mut pair = pair.into_iter();
    let (Some(time), Some(record)) = (pair.next(), pair.next()) else {
        return Err(bad("must be [time, record]".into()));
    };
    let time = EventTime::from_value(&time).map_err(|e| bad(e.to_string()))?;
    match record {
        Value::Map(record) => Ok(Entry { time, record }),
        other => Err(bad(ForwardError::BadRecord(kind(&other)).to_string())),
    }
}

/// The entries of a PackedForward stream.
fn unpack(stream: &[u8]) -> Result<Vec<Entry>, ForwardError> {
    let mut cursor = Cursor::new(stream);
    let mut entries = Vec::new();
    while (cursor.position() as usize) < stream.len() {
        if entries.len() >= MAX_FRAME_ENTRIES {
            return Err(ForwardError::TooManyEntries {
                limit: MAX_FRAME_ENTRIES,
            });
        }
        let index = entries.len();
        let value = read_value(&mut cursor).map_err(|e| ForwardError::BadEntry {
            index,
            reason: e.to_string(),
        })?;
        entries.push(entry_of(value, index)?);
    }
    Ok(entries)
}

/// The chunk id of an option map; refuses compression.
fn chunk_of(option: Option<Value>) -> Result<Option<String>, ForwardError> {
    let map = match option {
        None | Some(Value::Nil) => return Ok(None),
        Some(Value::Map(map)) => map,
        Some(other) => return Err(ForwardError::BadOption(kind(&other))),
    };
    let mut chunk = None;
    for (k, v) in map {
        match (k.as_str(), v) {
            (Some("chunk"), Value::String(s)) => chunk = s.into_str(),
            (Some("compressed"), v) => {
                let how = v.as_str().unwrap_or("?").to_owned();
                if how != "text" {
                    return Err(ForwardError::Compressed(how));
                }
            }
            _ => {}
        }
    }
    Ok(chunk)
}

/// Decodes one whole frame (as delimited by [`frame_len`]).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, ForwardError> {
    let value = read_value(&mut Cursor::new(bytes))?;
    let Value::Array(items) = value else {
        return Err(ForwardError::NotAFrame(kind(&value)));
    };
    let mut items = items.into_iter();
    let tag = match items.next() {
        Some(Value::String(s)) => s.into_str().ok_or(ForwardError::BadTag)?,
        Some(_) => return Err(ForwardError::BadTag),
        None => return Err(ForwardError::NotAFrame("an empty array")),
    };
    let second = items.next().ok_or(ForwardError::MissingEntries)?;
    let is_message = matches!(
        second,
        Value::Integer(_) | Value::F32(_) | Value::F64(_) | Value::Ext(..)
    );
    let record = if is_message { items.next() } else { None };
    // The option first: a compressed stream must be refused as such, not
    // reported as undecodable entries.
    let chunk = chunk_of(items.next())?;
    let (mode, entries) = match second {
        Value::Array(entries) => {
            if entries.len() > MAX_FRAME_ENTRIES {
                return Err(ForwardError::TooManyEntries {
                    limit: MAX_FRAME_ENTRIES,
                });
            }
            let entries = entries
                .into_iter()
                .enumerate()
                .map(|(i, e)| entry_of(e, i))
                .collect::<Result<_, _>>()?;
            (Mode::Forward, entries)
        }
        Value::Binary(stream) => (Mode::PackedForward, unpack(&stream)?),
        Value::String(stream) => (Mode::PackedForward, unpack(stream.as_bytes())?),
        time if is_message => {
            let time = EventTime::from_value(&time)?;
            let record = match record {
                Some(Value::Map(record)) => record,
                Some(other) => return Err(ForwardError::BadRecord(kind(&other))),
                None => return Err(ForwardError::BadRecord("nothing")),
            };
            (Mode::Message, vec![Entry { time, record }])
        }
        other => return Err(ForwardError::BadEntries(kind(&other))),
    };
    Ok(Frame {
        tag,
        mode,
        entries,
        chunk,
    })
}

fn option_value(chunk: Option<&str>) -> Option<Value> {
    chunk.map(|c| Value::Map(vec![(Value::from("chunk"), Value::from(c))]))
}

fn entry_value(e: &Entry) -> Value {
    Value::Array(vec![e.time.to_value(), Value::Map(e.record.clone())])
}

fn to_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

/// Encodes `frame` in its mode (a Message frame sends its first entry).
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let mut items = vec![Value::from(frame.tag.as_str())];
    match frame.mode {
        Mode::Message => {
            let entry = frame.entries.first();
            let time = entry.map_or(EventTime::now(), |e| e.time);
            items.push(time.to_value());
            items.push(Value::Map(
                entry.map(|e| e.record.clone()).unwrap_or_default(),
            ));
        }
        Mode::Forward => items.push(Value::Array(
            frame.entries.iter().map(entry_value).collect(),
        )),
        Mode::PackedForward => {
            let mut stream = Vec::new();
            for e in &frame.entries {
                let _ = rmpv::encode::write_value(&mut stream, &entry_value(e));
            }
            items.push(Value::Binary(stream));
        }
    }
    if let Some(option) = option_value(frame.chunk.as_deref()) {
        items.push(option);
    }
    to_bytes(&Value::Array(items))
}

/// The acknowledgement of a chunk: `{"ack": "<id>"}`.
pub fn encode_ack(chunk: &str) -> Vec<u8> {
    to_bytes(&Value::Map(vec![(Value::from("ack"), Value::from(chunk))]))
}

/// The chunk id an acknowledgement carries.
pub fn decode_ack(value: &Value) -> Option<&str> {
    match value {
        Value::Map(map) => map
            .iter()
            .find(|(k, _)| k.as_str() == Some("ack"))
            .and_then(|(_, v)| v.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(secs: i64, nanos: u32, log: &str) -> Entry {
        Entry {
            time: EventTime { secs, nanos },
            record: record([("log", log), ("source", "stdout")]),
        }
    }

    fn frame(mode: Mode, chunk: Option<&str>) -> Frame {
        let entries = match mode {
            Mode::Message => vec![entry(1_700_000_000, 5, "one")],
            _ => vec![
                entry(1_700_000_000, 5, "one"),
                entry(1_700_000_001, 0, "two"),
            ],
        };
        Frame {
            tag: "app-firelens-abc".into(),
            mode,
            entries,
            chunk: chunk.map(str::to_owned),
        }
    }

    #[test]
    fn every_mode_round_trips() {
        for mode in [Mode::Message, Mode::Forward, Mode::PackedForward] {
            for chunk in [None, Some("Y2h1bmsx")] {
                let f = frame(mode, chunk);
                let bytes = encode_frame(&f);
                assert_eq!(frame_len(&bytes, MAX_FRAME_BYTES), Ok(Some(bytes.len())));
                assert_eq!(decode_frame(&bytes), Ok(f), "{mode:?}");
            }
        }
    }

    #[test]
    fn frame_len_waits_for_every_byte() {
        let bytes = encode_frame(&frame(Mode::PackedForward, Some("c")));
        for cut in 0..bytes.len() {
            assert_eq!(frame_len(&bytes[..cut], MAX_FRAME_BYTES), Ok(None), "{cut}");
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(frame_len(&two, MAX_FRAME_BYTES), Ok(Some(bytes.len())));
    }

    #[test]
    fn the_scanner_resumes_where_it_stopped() {
        let one = encode_frame(&frame(Mode::Forward, Some("c")));
        let mut stream = one.clone();
        stream.extend_from_slice(&one);
        // Fed a byte at a time, it finds the first frame's end exactly.
        let mut scanner = FrameScanner::new();
        let mut found = None;
        for n in 1..=stream.len() {
            if let Some(len) = scanner.scan(&stream[..n], MAX_FRAME_BYTES).unwrap() {
                found = Some((n, len));
                break;
            }
        }
        assert_eq!(found, Some((one.len(), one.len())));
        // Reset, it finds the next one in the remaining bytes.
        let rest = &stream[one.len()..];
        assert_eq!(scanner.scan(rest, MAX_FRAME_BYTES), Ok(Some(one.len())));
    }

    #[test]
    fn frame_len_matches_the_decoder_on_every_kind_of_value() {
        let values = vec![
            Value::Nil,
            Value::from(true),
            Value::from(-1),
            Value::from(-200),
            Value::from(300),
            Value::from(70_000),
            Value::from(-70_000),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F32(1.5),
            Value::F64(2.5),
            Value::from("x".repeat(31)),
            Value::from("x".repeat(200)),
            Value::from("x".repeat(70_000)),
            Value::Binary(vec![1; 10]),
            Value::Binary(vec![1; 300]),
            Value::Binary(vec![1; 70_000]),
            Value::Ext(5, vec![1]),
            Value::Ext(5, vec![1; 2]),
            Value::Ext(5, vec![1; 4]),
            Value::Ext(5, vec![1; 8]),
            Value::Ext(5, vec![1; 16]),
            Value::Ext(5, vec![1; 3]),
            Value::Ext(5, vec![1; 300]),
            Value::Ext(5, vec![1; 70_000]),
            Value::Array((0..20).map(Value::from).collect()),
            Value::Array((0..70_000).map(|_| Value::Nil).collect()),
            Value::Map((0..20).map(|i| (Value::from(i), Value::Nil)).collect()),
            Value::Map((0..70_000).map(|i| (Value::from(i), Value::Nil)).collect()),
        ];
        for v in &values {
            let bytes = to_bytes(v);
            assert_eq!(
                frame_len(&bytes, MAX_FRAME_BYTES),
                Ok(Some(bytes.len())),
                "{v:.40}"
            );
        }
        let all = to_bytes(&Value::Array(values));
        assert_eq!(frame_len(&all, MAX_FRAME_BYTES), Ok(Some(all.len())));
    }

    #[test]
    fn limits_are_enforced_before_decoding() {
        // A declared 100 MiB bin is refused on its header alone.
        let mut bytes = vec![0x92, 0xa1, b't', 0xc6];
        bytes.extend_from_slice(&(100u32 << 20).to_be_bytes());
        assert_eq!(
            frame_len(&bytes, MAX_FRAME_BYTES),
            Err(ForwardError::TooLarge {
                limit: MAX_FRAME_BYTES
            })
        );
        // So is an array announcing more elements than bytes could hold.
        let bytes = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            frame_len(&bytes, 1024),
            Err(ForwardError::TooLarge { .. })
        ));
        assert_eq!(frame_len(&[0xc1], 1024), Err(ForwardError::InvalidMarker));
        // Nesting beyond the decoder's depth is an error, not a crash.
        let mut deep = vec![0x91; 10_000];
        deep.push(0xc0);
        assert_eq!(frame_len(&deep, MAX_FRAME_BYTES), Ok(Some(deep.len())));
        assert!(decode_frame(&deep).is_err());
    }

    #[test]
    fn times_of_every_kind() {
        let t = |v: Value| EventTime::from_value(&v);
        assert_eq!(t(Value::from(5)), Ok(EventTime { secs: 5, nanos: 0 }));
        assert_eq!(
            t(Value::F64(1.25)),
            Ok(EventTime {
                secs: 1,
                nanos: 250_000_000
            })
        );
        let ext = Value::Ext(0, vec![0x65, 0x53, 0xf1, 0x00, 0x3b, 0x9a, 0xc9, 0xff]);
        assert_eq!(
            t(ext),
            Ok(EventTime {
                secs: 0x6553_f100,
                nanos: 999_999_999
            })
        );
        assert!(t(Value::Ext(0, vec![0; 7])).is_err());
        assert!(t(Value::Ext(0, vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])).is_err());
        assert!(t(Value::F64(f64::NAN)).is_err());
        assert!(t(Value::from("now")).is_err());
        assert!(t(Value::from(u64::MAX)).is_err());
    }

    #[test]
    fn malformed_frames_are_named() {
        let enc = |v: Value| decode_frame(&to_bytes(&v));
        assert_eq!(
            enc(Value::from(1)),
            Err(ForwardError::NotAFrame("an integer"))
        );
        assert_eq!(
            enc(Value::Array(vec![])),
            Err(ForwardError::NotAFrame("an empty array"))
        );
        assert_eq!(
            enc(Value::Array(vec![Value::from(1)])),
            Err(ForwardError::BadTag)
        );
        assert_eq!(
            enc(Value::Array(vec![Value::from("t")])),
            Err(ForwardError::MissingEntries)
        );
        assert_eq!(
            enc(Value::Array(vec![Value::from("t"), Value::from(1)])),
            Err(ForwardError::BadRecord("nothing"))
        );
        assert_eq!(
            enc(Value::Array(vec![
                Value::from("t"),
                Value::from(1),
                Value::from("x")
            ])),
            Err(ForwardError::BadRecord("a string"))
        );
        assert!(matches!(
            enc(Value::Array(vec![
                Value::from("t"),
                Value::Array(vec![Value::Array(vec![Value::from(1)])])
            ])),
            Err(ForwardError::BadEntry { index: 0, .. })
        ));
        assert_eq!(
            enc(Value::Array(vec![
                Value::from("t"),
                Value::Binary(vec![]),
                Value::Map(vec![(Value::from("compressed"), Value::from("gzip"))])
            ])),
            Err(ForwardError::Compressed("gzip".into()))
        );
        assert!(matches!(
            enc(Value::Array(vec![
                Value::from("t"),
                Value::Binary(vec![0x92, 0x01])
            ])),
            Err(ForwardError::BadEntry { index: 0, .. })
        ));
    }

    #[test]
    fn acks_round_trip() {
        let bytes = encode_ack("abc");
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        assert_eq!(decode_ack(&v), Some("abc"));
    }
}
