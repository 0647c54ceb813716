//! The bean counter: counts the value of the US coins in a photo.
//!
//! [`count`] is the whole method; the service in `main.rs` only moves bytes
//! to it and its answer back.

#![forbid(unsafe_code)]

pub mod annotate;
pub mod bucket;
pub mod coins;
pub mod config;
pub mod decode;
pub mod detect;
pub mod error;
pub mod report;
pub mod service;

pub use coins::{Coin, Denomination};
pub use error::CountError;

/// What a photo is worth, and the coins that make it up.
#[derive(Debug, Clone)]
pub struct Count {
    pub coins: Vec<Coin>,
    /// Size of the work picture the coins' circles refer to.
    pub work_size: (u32, u32),
    /// Size of the upload (after EXIF orientation).
    pub original_size: (u32, u32),
    pub total_cents: u32,
}

/// Counts the coins in an encoded photo.
pub fn count(bytes: &[u8]) -> Result<Count, CountError> {
    let image = decode::decode(bytes)?;
    count_image(&image.rgb, image.original)
}

/// Counts the coins in a decoded work picture.
pub fn count_image(rgb: &image::RgbImage, original_size: (u32, u32)) -> Result<Count, CountError> {
    let detection = detect::find_blobs(rgb);
    let coins = coins::classify(&detection.blobs, rgb.dimensions())?;
    let total_cents = coins.iter().map(|c| c.denomination.cents()).sum();
    Ok(Count {
        coins,
        work_size: rgb.dimensions(),
        original_size,
        total_cents,
    })
}
