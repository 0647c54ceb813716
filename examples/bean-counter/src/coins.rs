//! From circles to money: calibration on the quarter, then each coin by
//! its diameter, with copper colour to tell a penny from a dime, and the
//! calibration refined across the picture for a photo taken at a slant.

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

/// How firmly the scale resists tilting across the picture (see
/// [`Scale::fit`]): a ridge on its slopes, in (ln of the scale per long side
/// of the picture)². It is the square of the measuring error (about 1.5%
/// of a diameter) over the square of the slant to expect (about 0.09 per
/// long side): a steeper slant is believed when many coins spread over the
/// picture show it, and a few coins measured badly cannot tilt the scale
/// to make a quarter pass for a nickel.
const TILT_DAMPING: f64 = 0.03;

/// The silver coins, smallest first.
const SILVER: [Denomination; 3] = [
    Denomination::Dime,
    Denomination::Nickel,
    Denomination::Quarter,
];

/// Turns the circles found in a picture of `picture` pixels into coins.
///
/// Colour first: the coins split into a redder group and the rest where
/// their redness splits best (Otsu's criterion, in one dimension); the
/// redder group is copper if it stands clearly apart. Lighting and white
/// balance differ from photo to photo, so this is a comparison within the
/// photo, never against a fixed colour. Then size: the largest silver
/// circles are quarters and set the scale; a copper coin is a penny, and
/// every other coin is the silver coin whose diameter is nearest.
///
/// A photo taken at a slant shows the nearer coins larger: a quarter far
/// from the camera can measure like a nickel near it. The table is a
/// plane, so the scale changes smoothly across the picture (see
/// [`Scale`]); it is fitted to the silver coins as labelled, and their
/// labels are changed one at a time while a change lets a scale explain
/// them better.
pub fn classify(blobs: &[Blob], picture: (u32, u32)) -> Result<Vec<Coin>, CountError> {
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
    let found: Vec<(&Blob, bool)> = blobs
        .iter()
        .zip(copper)
        .filter(|(blob, _)| blob.circle.r / quarter_r >= SMALLEST_RATIO)
        .collect();

    // First at one scale, set by the quarters.
    let flat = Scale::flat(2.0 * quarter_r / Denomination::Quarter.diameter_mm());
    let mut labels = label(&found, &flat);
    // Then the labels of the silver coins change one at a time, each time
    // the change that lowers the cost of the fitted scale most, while one
    // does. The largest silver coin stays the quarter that anchors the
    // scale.
    let silver: Vec<usize> = (0..found.len()).filter(|&i| !found[i].1).collect();
    let anchor = silver
        .iter()
        .copied()
        .max_by(|&a, &b| found[a].0.circle.r.total_cmp(&found[b].0.circle.r));
    let mut fit = fit_scale(&found, &labels, picture).unwrap_or(Fit {
        scale: flat,
        cost: 0.0,
    });
    // Each change lowers the cost, so this ends; the bound only guards it.
    for _ in 0..4 * silver.len() {
        let mut best: Option<(usize, Denomination, Fit)> = None;
        for &i in silver.iter().filter(|&&i| Some(i) != anchor) {
            let current = labels[i];
            for denomination in SILVER.into_iter().filter(|&d| d != current) {
                labels[i] = denomination;
                let trial = fit_scale(&found, &labels, picture);
                labels[i] = current;
                let to_beat = best.as_ref().map_or(fit.cost, |(_, _, b)| b.cost);
                if let Some(trial) = trial.filter(|t| t.cost < to_beat) {
                    best = Some((i, denomination, trial));
                }
            }
        }
        let Some((i, denomination, better)) = best else {
            break;
        };
        labels[i] = denomination;
        fit = better;
    }
    let scale = fit.scale;

    Ok(found
        .iter()
        .zip(labels)
        .map(|(&(blob, is_copper), denomination)| {
            let c = blob.circle;
            Coin {
                circle: c,
                denomination,
                diameter_mm: 2.0 * c.r / scale.px_per_mm(c.x, c.y),
                copper: is_copper,
            }
        })
        .collect())
}

/// Each coin's denomination at the given scale: a copper coin is a penny,
/// a silver one the silver coin of the nearest diameter.
fn label(found: &[(&Blob, bool)], scale: &Scale) -> Vec<Denomination> {
    found
        .iter()
        .map(|&(blob, is_copper)| {
            if is_copper {
                return Denomination::Penny;
            }
            let c = blob.circle;
            let diameter_mm = 2.0 * c.r / scale.px_per_mm(c.x, c.y);
            SILVER
                .into_iter()
                .min_by(|a, b| {
                    (a.diameter_mm() - diameter_mm)
                        .abs()
                        .total_cmp(&(b.diameter_mm() - diameter_mm).abs())
                })
                .unwrap_or(Denomination::Quarter)
        })
        .collect()
}

/// The scale that best explains the silver coins as labelled (see
/// [`Scale::fit`]); `None` without silver coins.
fn fit_scale(found: &[(&Blob, bool)], labels: &[Denomination], picture: (u32, u32)) -> Option<Fit> {
    let samples: Vec<(f32, f32, f32)> = found
        .iter()
        .zip(labels)
        .filter(|((_, is_copper), _)| !is_copper)
        .map(|((blob, _), denomination)| {
            let c = blob.circle;
            (c.x, c.y, 2.0 * c.r / denomination.diameter_mm())
        })
        .collect();
    Scale::fit(&samples, picture)
}

/// A scale fitted to the coins, and its cost: the sum of the squared
/// residuals (in ln of the scale) plus [`TILT_DAMPING`] times the squared
/// slopes.
struct Fit {
    scale: Scale,
    cost: f64,
}

/// Pixels per millimetre across the picture. Seen through a camera, the
/// scale of a plane changes smoothly with the position in the picture; to
/// first order its logarithm is linear in it, which is the model here:
/// `ln(scale) = level + slope · (position - origin) / size`.
#[derive(Debug, Clone, PartialEq)]
struct Scale {
    level: f64,
    slope: (f64, f64),
    origin: (f64, f64),
    size: f64,
}

impl Scale {
    /// The same scale everywhere.
    fn flat(px_per_mm: f32) -> Self {
        Self {
            level: f64::from(px_per_mm).ln(),
            slope: (0.0, 0.0),
            origin: (0.0, 0.0),
            size: 1.0,
        }
    }

    /// The scale that best explains `samples` (each a position and the
    /// scale a coin measures there), in least squares on the logarithm,
    /// with the slopes held back by [`TILT_DAMPING`]; positions are in a
    /// picture of `picture` pixels. `None` without samples.
    fn fit(samples: &[(f32, f32, f32)], picture: (u32, u32)) -> Option<Fit> {
        if samples.is_empty() {
            return None;
        }
        let n = samples.len() as f64;
        let size = f64::from(picture.0.max(picture.1).max(1));
        let origin = (
            samples.iter().map(|s| f64::from(s.0)).sum::<f64>() / n,
            samples.iter().map(|s| f64::from(s.1)).sum::<f64>() / n,
        );
        let level = samples.iter().map(|s| f64::from(s.2).ln()).sum::<f64>() / n;
        // Centred positions make the level the mean and leave a 2×2
        // system for the slopes.
        let (mut uu, mut uv, mut vv, mut ue, mut ve) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for &(x, y, px_per_mm) in samples {
            let u = (f64::from(x) - origin.0) / size;
            let v = (f64::from(y) - origin.1) / size;
            let e = f64::from(px_per_mm).ln() - level;
            uu += u * u;
            uv += u * v;
            vv += v * v;
            ue += u * e;
            ve += v * e;
        }
        uu += TILT_DAMPING;
        vv += TILT_DAMPING;
        let det = uu * vv - uv * uv;
        let slope = ((ue * vv - ve * uv) / det, (ve * uu - ue * uv) / det);
        let scale = Self {
            level,
            slope,
            origin,
            size,
        };
        let residuals: f64 = samples
            .iter()
            .map(|&(x, y, px_per_mm)| {
                (f64::from(px_per_mm).ln() - f64::from(scale.px_per_mm(x, y)).ln()).powi(2)
            })
            .sum();
        let cost = residuals + TILT_DAMPING * (slope.0 * slope.0 + slope.1 * slope.1);
        Some(Fit { scale, cost })
    }

    fn px_per_mm(&self, x: f32, y: f32) -> f32 {
        let u = (f64::from(x) - self.origin.0) / self.size;
        let v = (f64::from(y) - self.origin.1) / self.size;
        (self.level + self.slope.0 * u + self.slope.1 * v).exp() as f32
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn silver(x: f32, y: f32, r: f32) -> Blob {
        Blob {
            circle: Circle { x, y, r },
            support: 1.0,
            redness: 0.0,
        }
    }

    #[test]
    fn a_slanted_photo_is_measured_with_the_scale_where_each_coin_lies() {
        // Taken at a slant: the bottom of the picture is nearer the camera,
        // and the scale grows by a quarter from top to bottom. The far
        // quarter measures smaller than the near nickel.
        let picture = (800, 1000);
        let px_per_mm = |y: f32| 3.0 * (0.25 * (y - 500.0) / 1000.0).exp();
        let coins = [
            (200.0, 900.0, Denomination::Quarter),
            (600.0, 150.0, Denomination::Quarter),
            (500.0, 450.0, Denomination::Quarter),
            (400.0, 880.0, Denomination::Nickel),
            (300.0, 500.0, Denomination::Nickel),
            (650.0, 650.0, Denomination::Dime),
            (150.0, 300.0, Denomination::Dime),
        ];
        let blobs: Vec<Blob> = coins
            .iter()
            .map(|&(x, y, d)| silver(x, y, d.diameter_mm() * px_per_mm(y) / 2.0))
            .collect();
        let counted = classify(&blobs, picture).unwrap();
        assert_eq!(counted.len(), coins.len());
        for (coin, &(x, y, denomination)) in counted.iter().zip(&coins) {
            assert_eq!(coin.denomination, denomination, "at ({x}, {y}): {coin:?}");
            assert!(
                (coin.diameter_mm - denomination.diameter_mm()).abs() < 0.3,
                "at ({x}, {y}): {coin:?}"
            );
        }
    }

    #[test]
    fn a_photo_from_above_keeps_one_scale() {
        let blobs = [
            silver(100.0, 100.0, 48.52),
            silver(300.0, 120.0, 42.42),
            silver(500.0, 90.0, 35.82),
        ];
        let counted = classify(&blobs, (600, 200)).unwrap();
        let names: Vec<_> = counted.iter().map(|c| c.denomination).collect();
        assert_eq!(
            names,
            [
                Denomination::Quarter,
                Denomination::Nickel,
                Denomination::Dime
            ]
        );
        for coin in &counted {
            assert!((coin.diameter_mm - coin.denomination.diameter_mm()).abs() < 0.01);
        }
    }
}
