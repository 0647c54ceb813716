//! The access log: one line per request in the combined log format of
//! Apache and nginx, followed by the request time —
//!
//! `10.0.0.7 - - [10/Oct/2000:13:55:36 +0000] "GET /a?b HTTP/1.1" 200 2326 "http://r/" "curl/8.5.0" rt=0.004`
//!
//! Lines are written by a thread of their own through a bounded queue, so
//! a slow reader of stdout (the log pipeline of the task) slows nobody's
//! request: when the queue is full a line is dropped and counted instead.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::common_log_time;

/// What one access log line tells.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    pub client: IpAddr,
    pub time: SystemTime,
    pub method: &'a str,
    /// The request target as received (path and query).
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub duration: Duration,
}

impl AccessRecord<'_> {
    /// The combined log format line, request time appended as `rt=SECONDS`.
    pub fn line(&self) -> String {
        let quoted = |v: Option<&[u8]>| match v {
            Some(v) if !v.is_empty() => escape(v),
            _ => "-".to_owned(),
        };
        format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" rt={:.3}",
            self.client,
            common_log_time(self.time),
            escape(self.method.as_bytes()),
            escape(self.target.as_bytes()),
            self.version,
            self.status,
            self.bytes,
            quoted(self.referer),
            quoted(self.user_agent),
            self.duration.as_secs_f64(),
        )
    }
}

/// Escapes as nginx does: `"` and `\` get a backslash, bytes outside
/// printable ASCII become `\xHH`, so a line is one line and its quoted
/// fields can be split unambiguously.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    out
}

/// How long lines gather between two writes; the most a line waits.
const GATHER: Duration = Duration::from_millis(5);

enum Message {
    Line(String),
    Flush(mpsc::Sender<()>),
}

/// Where access log lines go.
#[derive(Clone)]
pub struct AccessLog {
    sender: Option<SyncSender<Message>>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Lines queued (up to `queue` of them) for a thread writing to `out`.
    pub fn to_writer(out: Box<dyn Write + Send>, queue: usize) -> Self {
        let (sender, receiver) = mpsc::sync_channel(queue);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(out, receiver))
            .map(|_| AccessLog {
                sender: Some(sender),
                dropped: Arc::default(),
            })
            // No thread, no log: the proxy still works.
            .unwrap_or_else(|e| {
                eprintln!("ambassador: access log disabled: cannot start its writer: {e}");
                Self::disabled()
            })
    }

    pub fn disabled() -> Self {
        AccessLog {
            sender: None,
            dropped: Arc::default(),
        }
    }

    pub fn log(&self, line: String) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until every line logged so far is written.
    pub fn flush(&self, timeout: Duration) {
        let Some(sender) = &self.sender else { return };
        let (done, wait) = mpsc::channel();
        if sender.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

fn write_lines(out: Box<dyn Write + Send>, lines: Receiver<Message>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let write = |out: &mut std::io::BufWriter<_>, message| match message {
        Message::Line(line) => {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
        }
        Message::Flush(done) => {
            let _ = out.flush();
            let _ = done.send(());
        }
    };
    // Block for the first line, then take whatever else is queued before
    // flushing: one write per burst of requests, not one per line. Then
    // let lines gather for a few milliseconds before blocking again: under
    // load, waking this thread for every line would cost a futex wake and
    // a context switch per request.
    while let Ok(message) = lines.recv() {
        write(&mut out, message);
        while let Ok(message) = lines.try_recv() {
            write(&mut out, message);
        }
        let _ = out.flush();
        std::thread::sleep(GATHER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    #[test]
    fn combined_format() {
        let record = AccessRecord {
            client: "10.0.0.7".parse().unwrap(),
            time: UNIX_EPOCH + Duration::from_secs(971_186_136),
            method: "GET",
            target: "/apache_pb.gif?a=\"b\"",
            version: "HTTP/1.1",
            status: 200,
            bytes: 2326,
            referer: Some(b"http://www.example.com/start.html"),
            user_agent: Some("Mozilla/4.08 [en] (Win98; I ;Nav)\n\u{e9}".as_bytes()),
            duration: Duration::from_micros(4321),
        };
        assert_eq!(
            record.line(),
            "10.0.0.7 - - [10/Oct/2000:13:55:36 +0000] \"GET /apache_pb.gif?a=\\\"b\\\" HTTP/1.1\" \
             200 2326 \"http://www.example.com/start.html\" \
             \"Mozilla/4.08 [en] (Win98; I ;Nav)\\x0A\\xC3\\xA9\" rt=0.004"
        );
        let bare = AccessRecord {
            referer: None,
            user_agent: Some(b""),
            ..record
        };
        assert!(bare.line().ends_with(" 2326 \"-\" \"-\" rt=0.004"));
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_and_flush_waits_for_them() {
        let out = Shared::default();
        let log = AccessLog::to_writer(Box::new(out.clone()), 10_000);
        for i in 0..1000 {
            log.log(format!("line {i}"));
        }
        log.flush(Duration::from_secs(10));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(log.dropped(), 0);
    }
}
