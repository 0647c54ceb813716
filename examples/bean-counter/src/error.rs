//! What can go wrong while counting a picture.

/// Why a picture could not be counted.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CountError {
    /// The bytes are not a picture this service can read.
    #[error("not an image: {reason}")]
    NotAnImage { reason: String },
    /// The picture has more pixels than the service will decode.
    #[error("image too large: {width}x{height} is more than {max_pixels} pixels")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Nothing coin-like stands out from the table.
    #[error("no coins found")]
    NoCoins,
    /// Coins were found but none can serve as the quarter that sets the
    /// scale.
    #[error("no quarter found: {reason}")]
    NoQuarter { reason: String },
}
