//! A small Forward protocol client: what a log driver does to hand records
//! to the router (the tests use it to drive the router).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{decode_ack, encode_frame, frame_len, Frame};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("forward to {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("forward to {addr}: connection closed before the ack of chunk {chunk}")]
    Closed { addr: SocketAddr, chunk: String },
    #[error("forward to {addr}: no ack of chunk {chunk} within {timeout:?}")]
    Timeout {
        addr: SocketAddr,
        chunk: String,
        timeout: Duration,
    },
    #[error("forward to {addr}: expected the ack of chunk {expected}, got {got}")]
    WrongAck {
        addr: SocketAddr,
        expected: String,
        got: String,
    },
}

/// One connection to a Forward receiver.
pub struct ForwardClient {
    addr: SocketAddr,
    stream: TcpStream,
    pending: Vec<u8>,
    /// How long to wait for an acknowledgement.
    pub ack_timeout: Duration,
}

impl ForwardClient {
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        Ok(ForwardClient {
            addr,
            stream,
            pending: Vec::new(),
            ack_timeout: Duration::from_secs(10),
        })
    }

    /// Sends raw bytes (a frame encoded elsewhere, or garbage).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let addr = self.addr;
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| ClientError::Io { addr, source })
    }

    /// Sends `frame`; if it names a chunk, waits for its acknowledgement.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.send_raw(&encode_frame(frame)).await?;
        match &frame.chunk {
            Some(chunk) => self.wait_ack(chunk).await,
            None => Ok(()),
        }
    }

    /// Reads the next acknowledgement and checks it names `chunk`.
    pub async fn wait_ack(&mut self, chunk: &str) -> Result<(), ClientError> {
        let addr = self.addr;
        let timeout = self.ack_timeout;
        let value = tokio::time::timeout(timeout, self.read_value())
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                chunk: chunk.to_owned(),
                timeout,
            })??
            .ok_or_else(|| ClientError::Closed {
                addr,
                chunk: chunk.to_owned(),
            })?;
        match decode_ack(&value) {
            Some(got) if got == chunk => Ok(()),
            _ => Err(ClientError::WrongAck {
                addr,
                expected: chunk.to_owned(),
                got: value.to_string(),
            }),
        }
    }

    /// The next MessagePack value from the receiver, or `None` at EOF.
    async fn read_value(&mut self) -> Result<Option<Value>, ClientError> {
        let addr = self.addr;
        loop {
            // An ack is a few dozen bytes; 64 KiB is plenty.
            if let Ok(Some(len)) = frame_len(&self.pending, 64 * 1024) {
                let value = rmpv::decode::read_value(&mut &self.pending[..len]).map_err(|e| {
                    ClientError::Io {
                        addr,
                        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                    }
                })?;
                self.pending.drain(..len);
                return Ok(Some(value));
            }
            let mut buf = [0u8; 4096];
            let n = self
                .stream
                .read(&mut buf)
                .await
                .map_err(|source| ClientError::Io { addr, source })?;
            if n == 0 {
                return Ok(None);
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Whether the receiver has closed the connection (reads until EOF or
    /// `timeout`; bytes received meanwhile are kept).
    pub async fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        let wait = async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}
