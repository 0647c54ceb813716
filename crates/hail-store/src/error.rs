//! The store's error type.

use std::path::PathBuf;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation; `op` names what the store was doing.
    #[error("sqlite: {op}: {source}")]
    Sqlite {
        op: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Someone else changed the record first, or it already exists.
    #[error("conflict: {what}")]
    Conflict { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("schema migration {version}: {reason}")]
    Migration { version: u32, reason: String },
    #[error("database schema version {found} is newer than this binary knows (up to {known}): run a newer hail")]
    SchemaTooNew { found: u32, known: u32 },
    /// A stored document does not parse as the shape it should hold.
    #[error("{what}: stored document is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    /// The writer thread has stopped; no further writes are possible.
    #[error("the store's writer thread has stopped")]
    WriterGone,
    /// A pagination token this store did not issue (or issued for another list).
    #[error("pagination token {token:?} is not valid")]
    InvalidToken { token: String },
    /// A caller-supplied argument is out of range, such as `maxResults`.
    #[error("{what}: {reason}")]
    InvalidArgument { what: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used throughout the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the name of the operation to SQLite errors.
pub(crate) trait SqlContext<T> {
    fn ctx(self, op: &str) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, op: &str) -> Result<T> {
        self.map_err(|source| StoreError::Sqlite {
            op: op.to_owned(),
            source,
        })
    }
}

/// Parses the JSON document of `what`.
pub(crate) fn parse_doc<T: serde::de::DeserializeOwned>(what: &str, doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// Serialises `value` for a `doc` column. The model's shapes always serialise;
/// a failure would mean a non-string map key, which is reported, not panicked on.
pub(crate) fn to_doc<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::InvalidArgument {
        what: what.to_owned(),
        reason: format!("cannot be stored as JSON: {e}"),
    })
}
