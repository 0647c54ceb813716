//! Progress reporting for long operations (pulls, imports, unpacking).
//!
//! The library only reports; the CLI draws bars. Implementations must be cheap:
//! `advance` is called for every chunk copied.

/// Receives progress of a long operation made of steps (one per blob or layer).
pub trait Progress: Send + Sync {
    /// A step starts: `what` names it (`layer 3f2a…`), `total` is its size when known.
    fn begin(&self, what: &str, total: Option<u64>);
    /// `bytes` more of the current step are done.
    fn advance(&self, bytes: u64);
    /// The current step is done.
    fn end(&self);
}

/// Discards progress; for tests and quiet callers.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _what: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn end(&self) {}
}

/// Wraps a reader so every read reports progress.
pub struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<'a, R> ProgressReader<'a, R> {
    pub fn new(inner: R, progress: &'a dyn Progress) -> Self {
        Self { inner, progress }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
