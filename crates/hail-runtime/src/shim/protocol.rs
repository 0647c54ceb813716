//! The shim's control protocol: one JSON request per line, one JSON response per line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::task::TaskStatus;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ShimRequest {
    /// The task's current status.
    Status,
    /// Answered once the task has stopped.
    Wait,
    /// Stop every container (stop signal, then SIGKILL after each one's stop timeout).
    Stop { reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ShimResponse {
    Status { status: Box<TaskStatus> },
    Error { message: String },
}

/// The runtime's side of the socket.
pub struct ShimClient {
    socket: PathBuf,
}

impl ShimClient {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    /// Sends one request; `Err` when the shim is unreachable (not running).
    pub async fn call(&self, request: &ShimRequest) -> std::io::Result<ShimResponse> {
        let stream = UnixStream::connect(&self.socket).await?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut reader = BufReader::new(read);
        let mut response = String::new();
        if reader.read_line(&mut response).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "shim closed the connection without answering",
            ));
        }
        serde_json::from_str(&response).map_err(std::io::Error::other)
    }
}
