//! Where routed records go: one JSON object per line, on standard output
//! and optionally appended to a file.
//!
//! A line is the record's fields in the sender's order, preceded by
//! `"time"` (RFC 3339, nanoseconds, UTC) and `"tag"` unless the record has
//! fields of those names itself:
//!
//! `{"time":"2024-05-01T12:00:00.000000001Z","tag":"app-firelens-1f2e","log":"GET /","source":"stdout","container_name":"app",…}`
//!
//! A thread of its own does the (blocking) writes, a batch per frame, and
//! reports back when the batch is written, so the frame can be
//! acknowledged only then.

use std::fs::File;
use std::io::{self, Write};

use rmpv::Value;
use tokio::sync::{mpsc, oneshot};

use crate::clock::rfc3339_nanos;
use crate::forward::Entry;

#[derive(Debug, thiserror::Error)]
#[error("cannot write records to {sink}: {source}")]
pub struct OutputError {
    pub sink: String,
    pub source: io::Error,
}

/// A MessagePack value as JSON: binary and invalid UTF-8 become strings
/// (lossily, since log lines are text), non-finite floats `null`, ext
/// values `{"ext": type, "hex": "…"}`.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => J::from(n),
            (None, Some(n)) => J::from(n),
            (None, None) => J::Null,
        },
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => J::Object(
            pairs
                .iter()
                .map(|(k, v)| (key_string(k), to_json(v)))
                .collect(),
        ),
        Value::Ext(ty, data) => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({"ext": ty, "hex": hex})
        }
    }
}

/// A map key as a JSON object key.
fn key_string(k: &Value) -> String {
    match k {
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

/// Appends the JSON line of `entry` to `out`.
pub fn json_line(out: &mut Vec<u8>, tag: &str, entry: &Entry) {
    let has = |name: &str| {
        entry
            .record
            .iter()
            .any(|(k, _)| matches!(k, Value::String(s) if s.as_bytes() == name.as_bytes()))
    };
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, key: &str, value: &serde_json::Value| {
        out.push(if first { b'{' } else { b',' });
        first = false;
        // Serializing strings and JSON values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    };
    if !has("time") {
        let time = rfc3339_nanos(entry.time.secs, entry.time.nanos);
        field(out, "time", &serde_json::Value::String(time));
    }
    if !has("tag") {
        field(out, "tag", &serde_json::Value::String(tag.to_owned()));
    }
    for (k, v) in &entry.record {
        field(out, &key_string(k), &to_json(v));
    }
    if first {
        out.push(b'{');
    }
    out.extend_from_slice(b"}\n");
}

struct Batch {
    lines: Vec<u8>,
    done: oneshot::Sender<Result<(), OutputError>>,
}

/// The handle to the writer thread.
#[derive(Clone)]
pub struct Output {
    batches: mpsc::Sender<Batch>,
}

impl Output {
    /// Starts the writer: to stdout if `stdout`, and to `file` (opened for
    /// appending) if given.
    pub fn start(stdout: bool, file: Option<(String, File)>) -> io::Result<Self> {
        // A few frames queued at most: past that, connections wait, stop
        // reading, and TCP pushes back on the senders.
        let (batches, mut receiver) = mpsc::channel::<Batch>(16);
        std::thread::Builder::new()
            .name("log-output".into())
            .spawn(move || {
                let mut file = file;
                while let Some(batch) = receiver.blocking_recv() {
                    let result = write_batch(stdout, file.as_mut(), &batch.lines);
                    let _ = batch.done.send(result);
                }
            })?;
        Ok(Output { batches })
    }

    /// Writes `lines` to every sink; Ok once they all have them.
    pub async fn write(&self, lines: Vec<u8>) -> Result<(), OutputError> {
        let gone = || OutputError {
            sink: "output".into(),
            source: io::Error::other("the writer thread has stopped"),
        };
        let (done, wait) = oneshot::channel();
        self.batches
            .send(Batch { lines, done })
            .await
            .map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}

fn write_batch(
    stdout: bool,
    file: Option<&mut (String, File)>,
    lines: &[u8],
) -> Result<(), OutputError> {
    if stdout {
        let mut out = io::stdout().lock();
        out.write_all(lines)
            .and_then(|()| out.flush())
            .map_err(|source| OutputError {
                sink: "stdout".into(),
                source,
            })?;
    }
    if let Some((name, file)) = file {
        // One write(2) of the whole batch on an O_APPEND file: readers see
        // whole lines. It is in the page cache when acknowledged — it
        // survives the router, not the machine.
        file.write_all(lines).map_err(|source| OutputError {
            sink: name.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{record, EventTime};

    #[test]
    fn lines_keep_the_record_order_and_add_time_and_tag() {
        let mut out = Vec::new();
        let mut entry = Entry {
            time: EventTime {
                secs: 971_186_136,
                nanos: 7,
            },
            record: record([("log", "say \"hi\"\n"), ("source", "stdout")]),
        };
        entry.record.push((Value::from("n"), Value::from(-3)));
        entry
            .record
            .push((Value::from(1), Value::Binary(b"raw\xff".to_vec())));
        entry.record.push((
            Value::from("nested"),
            Value::Map(vec![(
                Value::from("a"),
                Value::Array(vec![Value::F64(0.5), Value::Nil]),
            )]),
        ));
        json_line(&mut out, "app-firelens-1", &entry);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":\"2000-10-10T13:55:36.000000007Z\",\"tag\":\"app-firelens-1\",\
             \"log\":\"say \\\"hi\\\"\\n\",\"source\":\"stdout\",\"n\":-3,\"1\":\"raw\u{fffd}\",\
             \"nested\":{\"a\":[0.5,null]}}\n"
        );

        let mut out = Vec::new();
        let entry = Entry {
            time: EventTime { secs: 0, nanos: 0 },
            record: record([("time", "mine"), ("tag", "t")]),
        };
        json_line(&mut out, "x", &entry);
        assert_eq!(out, b"{\"time\":\"mine\",\"tag\":\"t\"}\n");
    }

    #[tokio::test]
    async fn batches_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let output = Output::start(false, Some(("out.jsonl".into(), file))).unwrap();
        output.write(b"{\"a\":1}\n".to_vec()).await.unwrap();
        output.write(b"{\"b\":2}\n".to_vec()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
    }
}
