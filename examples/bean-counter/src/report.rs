//! How a count is written on the wire: `$1.17` as plain text, or a JSON
//! document with every coin.

use serde::Serialize;

use crate::coins::Denomination;
use crate::Count;

/// A total in cents as dollars: `$1.17`, `$0.05`.
pub fn dollars(cents: u32) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// The plain-text answer: the total and a newline.
pub fn text(count: &Count) -> String {
    format!("{}\n", dollars(count.total_cents))
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Report {
    pub total_cents: u32,
    pub total: String,
    pub counts: Counts,
    pub coins: Vec<CoinReport>,
    pub image: Size,
}

#[derive(Debug, Serialize, PartialEq, Default)]
pub struct Counts {
    pub penny: u32,
    pub nickel: u32,
    pub dime: u32,
    pub quarter: u32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CoinReport {
    pub denomination: Denomination,
    pub cents: u32,
    /// Centre in pixels of the uploaded photo (after EXIF orientation).
    pub center: Point,
    /// Radius in pixels of the uploaded photo.
    pub radius_px: f32,
    pub diameter_mm: f32,
    pub copper: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

/// The JSON answer.
pub fn report(count: &Count) -> Report {
    let scale = if count.work_size.0 == 0 {
        1.0
    } else {
        count.original_size.0 as f32 / count.work_size.0 as f32
    };
    let round1 = |v: f32| (v * 10.0).round() / 10.0;
    let round2 = |v: f32| (v * 100.0).round() / 100.0;
    let mut counts = Counts::default();
    for coin in &count.coins {
        *match coin.denomination {
            Denomination::Penny => &mut counts.penny,
            Denomination::Nickel => &mut counts.nickel,
            Denomination::Dime => &mut counts.dime,
            Denomination::Quarter => &mut counts.quarter,
        } += 1;
    }
    Report {
        total_cents: count.total_cents,
        total: dollars(count.total_cents),
        counts,
        coins: count
            .coins
            .iter()
            .map(|coin| CoinReport {
                denomination: coin.denomination,
                cents: coin.denomination.cents(),
                center: Point {
                    x: round1(coin.circle.x * scale),
                    y: round1(coin.circle.y * scale),
                },
                radius_px: round1(coin.circle.r * scale),
                diameter_mm: round2(coin.diameter_mm),
                copper: coin.copper,
            })
            .collect(),
        image: Size {
            width: count.original_size.0,
            height: count.original_size.1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_have_two_decimals() {
        assert_eq!(dollars(117), "$1.17");
        assert_eq!(dollars(5), "$0.05");
        assert_eq!(dollars(425), "$4.25");
        assert_eq!(dollars(0), "$0.00");
    }
}
