//! FireLens-style log routing: the output of a container whose
//! `logConfiguration` uses the `awsfirelens` driver goes to the task's log
//! router container (the one with a `firelensConfiguration`) over the Fluent
//! Forward protocol, as ECS's FireLens sends it through Docker's fluentd
//! driver.
//!
//! The wire: TCP to the router's port [`FORWARD_PORT`] at the task's
//! address, one Forward-mode message per batch —
//! `[tag, [[EventTime, record], …], {"chunk": id, "size": n}]` — answered by
//! the router with `{"ack": id}` once it holds the records. The tag is
//! `<container>-firelens-<task id>`; each record carries the line under
//! `log`, `source` (`stdout`/`stderr`), `container_name`, and the task's
//! `ecs_cluster`, `ecs_task_arn`, `ecs_task_definition`, as FireLens adds them.
//!
//! Delivery is at least once: the shipper moves its durable cursor only
//! after the router acknowledged the batch; a router that is not listening
//! yet (or restarts) is retried on the next poll, and the lines wait in the
//! container's own log file meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use hail_runtime::logs::{LogRecord, Stream};
use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Fluent Forward port a log router listens on inside the task, as
/// FireLens's Fluent Bit and Fluentd configurations do.
pub const FORWARD_PORT: u16 = 24224;

/// How long a router may take to connect or to acknowledge a batch.
const ROUTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest acknowledgement accepted; an ack is a one-entry map.
const MAX_ACK_BYTES: usize = 4096;

/// Where one container's output is routed, and what each record says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirelensRoute {
    /// The log router's Forward endpoint: the task's address and [`FORWARD_PORT`].
    pub router: SocketAddr,
    pub tag: String,
    /// Added to every record: `container_name`, `ecs_cluster`, `ecs_task_arn`,
    /// `ecs_task_definition`.
    pub fields: Vec<(String, String)>,
}

impl FirelensRoute {
    pub fn tag_for(container: &str, task_id: &str) -> String {
        format!("{container}-firelens-{task_id}")
    }
}

/// A connection to a router, kept across batches and remade after a failure.
pub struct Forwarder {
    route: FirelensRoute,
    connection: Option<TcpStream>,
    next_chunk: u64,
}

impl Forwarder {
    pub fn new(route: FirelensRoute) -> Self {
        Self {
            route,
            connection: None,
            next_chunk: 0,
        }
    }

    /// Sends `records` as one Forward message and waits for the router's
    /// acknowledgement. On any failure the connection is dropped, so the
    /// next attempt starts clean.
    pub async fn send(&mut self, records: &[LogRecord]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.next_chunk += 1;
        let chunk = format!("{}-{}", self.route.tag, self.next_chunk);
        let message = encode_forward(&self.route, records, &chunk)?;
        let result = tokio::time::timeout(ROUTER_TIMEOUT, self.exchange(&message, &chunk)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.connection = None;
                Err(e)
            }
            Err(_) => {
                self.connection = None;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("log router at {} did not acknowledge", self.route.router),
                ))
            }
        }
    }

    async fn exchange(&mut self, message: &[u8], chunk: &str) -> std::io::Result<()> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(self.route.router).await?;
            stream.set_nodelay(true)?;
            self.connection = Some(stream);
        }
        let Some(stream) = self.connection.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        stream.write_all(message).await?;
        let mut buf = Vec::with_capacity(64);
        loop {
            let mut piece = [0u8; 256];
            let n = stream.read(&mut piece).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "log router closed the connection before acknowledging",
                ));
            }
            buf.extend_from_slice(&piece[..n]);
            match rmpv::decode::read_value(&mut buf.as_slice()) {
                Ok(ack) => return check_ack(&ack, chunk),
                Err(_) if buf.len() < MAX_ACK_BYTES => continue,
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("log router answered something other than an ack: {e}"),
                    ))
                }
            }
        }
    }
}

fn check_ack(ack: &Value, chunk: &str) -> std::io::Result<()> {
    let acked = ack.as_map().and_then(|m| {
        m.iter()
            .find(|(k, _)| k.as_str() == Some("ack"))
            .and_then(|(_, v)| v.as_str())
    });
    if acked == Some(chunk) {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("log router acknowledged {acked:?}, not chunk {chunk:?}"),
        ))
    }
}

/// One Forward-mode message: `[tag, [[time, record], …], options]`, times as
/// Fluent's EventTime (ext type 0: seconds and nanoseconds, big-endian).
fn encode_forward(
    route: &FirelensRoute,
    records: &[LogRecord],
    chunk: &str,
) -> std::io::Result<Vec<u8>> {
    let entries = records
        .iter()
        .map(|r| {
            let (secs, nanos) = r
                .timestamp()
                .map_or_else(now, |t| (t.timestamp(), t.timestamp_subsec_nanos()));
            let mut time = Vec::with_capacity(8);
            time.extend_from_slice(&u32::try_from(secs).unwrap_or(0).to_be_bytes());
            time.extend_from_slice(&nanos.to_be_bytes());
            let line = r.log.strip_suffix('\n').unwrap_or(&r.log);
            let line = line.strip_suffix('\r').unwrap_or(line);
            let source = match r.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            let mut record = vec![
                (Value::from("log"), Value::from(line)),
                (Value::from("source"), Value::from(source)),
            ];
            record.extend(
                route
                    .fields
                    .iter()
                    .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))),
            );
            Value::Array(vec![Value::Ext(0, time), Value::Map(record)])
        })
        .collect();
    let message = Value::Array(vec![
        Value::from(route.tag.as_str()),
        Value::Array(entries),
        Value::Map(vec![
            (Value::from("chunk"), Value::from(chunk)),
            (Value::from("size"), Value::from(records.len() as u64)),
        ]),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &message)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(out)
}

fn now() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    fn route(router: SocketAddr) -> FirelensRoute {
        FirelensRoute {
            router,
            tag: FirelensRoute::tag_for("app", "0123"),
            fields: vec![("container_name".into(), "app".into())],
        }
    }

    fn record(line: &str, stream: Stream) -> LogRecord {
        LogRecord {
            log: format!("{line}\n"),
            stream,
            time: "2026-01-01T00:00:01.000000002Z".into(),
        }
    }

    /// A router that decodes one message per read loop and acks its chunk
    /// (or a wrong one when `honest` is false).
    async fn router(honest: bool) -> (SocketAddr, tokio::task::JoinHandle<Vec<Value>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut piece = [0u8; 4096];
            let n = socket.read(&mut piece).await.unwrap();
            buf.extend_from_slice(&piece[..n]);
            let message = rmpv::decode::read_value(&mut buf.as_slice()).unwrap();
            let chunk = message[2]["chunk"].as_str().unwrap().to_owned();
            let ack = if honest { chunk } else { "other".to_owned() };
            let mut out = Vec::new();
            rmpv::encode::write_value(
                &mut out,
                &Value::Map(vec![(Value::from("ack"), Value::from(ack))]),
            )
            .unwrap();
            socket.write_all(&out).await.unwrap();
            vec![message]
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn sends_forward_mode_with_event_time_and_waits_for_the_ack() {
        let (addr, handle) = router(true).await;
        let mut forwarder = Forwarder::new(route(addr));
        forwarder
            .send(&[record("one", Stream::Stdout), record("two", Stream::Stderr)])
            .await
            .unwrap();
        let message = handle.await.unwrap().remove(0);
        assert_eq!(message[0].as_str(), Some("app-firelens-0123"));
        let entries = message[1].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0][0],
            Value::Ext(0, vec![0x69, 0x55, 0xb9, 0x01, 0, 0, 0, 2])
        );
        assert_eq!(entries[0][1]["log"].as_str(), Some("one"));
        assert_eq!(entries[0][1]["source"].as_str(), Some("stdout"));
        assert_eq!(entries[1][1]["source"].as_str(), Some("stderr"));
        assert_eq!(entries[1][1]["container_name"].as_str(), Some("app"));
        assert_eq!(message[2]["size"].as_u64(), Some(2));
    }

    #[tokio::test]
    async fn a_wrong_ack_or_no_router_is_an_error() {
        let (addr, _handle) = router(false).await;
        let mut forwarder = Forwarder::new(route(addr));
        let err = forwarder
            .send(&[record("one", Stream::Stdout)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not chunk"), "{err}");

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut forwarder = Forwarder::new(route(addr));
        assert!(forwarder
            .send(&[record("x", Stream::Stdout)])
            .await
            .is_err());
    }
}
