//! From circles to money: calibration on the quarter, then each coin by
//! its diameter, with copper colour to tell a penny from a dime.

use serde::Serialize;

use crate::detect::{Blob, Circle};
use crate::error::CountError;

/// A US coin in circulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Denomination {
    Penny,
    Nickel,
    Dime,
    Quarter,
}

impl Denomination {
    pub const ALL: [Denomination; 4] = [
        Denomination::Dime,
        Denomination::Penny,
        Denomination::Nickel,
        Denomination::Quarter,
    ];

    pub fn cents(self) -> u32 {
        match self {
            Denomination::Penny => 1,
            Denomination::Nickel => 5,
            Denomination::Dime => 10,
            Denomination::Quarter => 25,
        }
    }

    /// The diameter set by the US Mint, in millimetres.
    pub fn diameter_mm(self) -> f32 {
        match self {
            Denomination::Penny => 19.05,
            Denomination::Nickel => 21.21,
            Denomination::Dime => 17.91,
            Denomination::Quarter => 24.26,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Denomination::Penny => "penny",
            Denomination::Nickel => "nickel",
            Denomination::Dime => "dime",
            Denomination::Quarter => "quarter",
        }
    }
}

/// A counted coin, in the coordinates of the work picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Coin {
    pub circle: Circle,
    pub denomination: Denomination,
    pub diameter_mm: f32,
    pub copper: bool,
}

/// Circles smaller than this share of the quarter's diameter are not coins
/// (a dime is 0.74).
const SMALLEST_RATIO: f32 = 0.62;

/// Circles within this share of the largest one are all taken to be
/// quarters for the calibration (a nickel is 13% smaller).
const QUARTER_GROUP: f32 = 0.05;

/// Copper coins must be at least this much redder (in ln(red / blue)) than
/// the silver coins nearest to them in redness…
const COPPER_GAP: f32 = 0.15;

/// …and at least this much redder than the median silver coin.
const COPPER_OVER_SILVER: f32 = 0.2;

/// Turns the circles found in a picture into coins.
///
/// Colour first: the coins split into a redder group and the rest where
/// their redness splits best (Otsu's criterion, in one dimension); the
/// redder group is copper if it stands clearly apart. Lighting and white
/// balance differ from photo to photo, so this is a comparison within the
/// photo, never against a fixed colour. Then size: the largest silver
/// circles are quarters and set the scale; a copper coin is a penny, and
/// every other coin is the silver coin whose diameter is nearest.
pub fn classify(blobs: &[Blob]) -> Result<Vec<Coin>, CountError> {
    if blobs.is_empty() {
        return Err(CountError::NoCoins);
    }
    let copper = copper_split(blobs);
    let largest = blobs.iter().map(|b| b.circle.r).fold(0f32, f32::max);
    let quarters: Vec<&Blob> = blobs
        .iter()
        .zip(&copper)
        .filter(|(b, &is_copper)| !is_copper && b.circle.r >= largest * (1.0 - QUARTER_GROUP))
        .map(|(b, _)| b)
        .collect();
    if quarters.is_empty() {
        return Err(CountError::NoQuarter {
            reason: "the largest coin is copper".into(),
        });
    }
    let quarter_r = quarters.iter().map(|b| b.circle.r).sum::<f32>() / quarters.len() as f32;
    let mm_per_px = Denomination::Quarter.diameter_mm() / (2.0 * quarter_r);

    let mut coins = Vec::new();
    for (blob, &is_copper) in blobs.iter().zip(&copper) {
        if blob.circle.r / quarter_r < SMALLEST_RATIO {
            continue;
        }
        let diameter_mm = 2.0 * blob.circle.r * mm_per_px;
        let denomination = if is_copper {
            Denomination::Penny
        } else {
            [
                Denomination::Dime,
                Denomination::Nickel,
                Denomination::Quarter,
            ]
            .into_iter()
            .min_by(|a, b| {
                (a.diameter_mm() - diameter_mm)
                    .abs()
                    .total_cmp(&(b.diameter_mm() - diameter_mm).abs())
            })
            .unwrap_or(Denomination::Quarter)
        };
        coins.push(Coin {
            circle: blob.circle,
            denomination,
            diameter_mm,
            copper: is_copper,
        });
    }
    Ok(coins)
}

/// Which blobs are copper: the redder side of the best two-way split of
/// redness, if it stands [`COPPER_GAP`] apart from the other side and
/// [`COPPER_OVER_SILVER`] above its median.
fn copper_split(blobs: &[Blob]) -> Vec<bool> {
    let mut values: Vec<f32> = blobs.iter().map(|b| b.redness).collect();
    values.sort_by(f32::total_cmp);
    let n = values.len();
    if n < 2 {
        return vec![false; n];
    }
    // The split that leaves the least spread within the two sides.
    let spread = |side: &[f32]| {
        let mean = side.iter().sum::<f32>() / side.len() as f32;
        side.iter().map(|v| (v - mean).powi(2)).sum::<f32>()
    };
    let Some(split) = (1..n).min_by(|&a, &b| {
        (spread(&values[..a]) + spread(&values[a..]))
            .total_cmp(&(spread(&values[..b]) + spread(&values[b..])))
    }) else {
        return vec![false; n];
    };
    let gap = values[split] - values[split - 1];
    let silver = values[(split - 1) / 2];
    let threshold = values[split];
    if gap < COPPER_GAP || threshold - silver < COPPER_OVER_SILVER {
        return vec![false; n];
    }
    blobs.iter().map(|b| b.redness >= threshold).collect()
}
