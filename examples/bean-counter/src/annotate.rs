//! Drawing the count on the photo: a circle per coin in its denomination's
//! colour, its value in cents, and the total in the top-left corner.
//!
//! Labels use a built-in 5×7 pixel font so the binary needs no font file.

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_circle_mut};
use imageproc::rect::Rect;

use crate::coins::Denomination;
use crate::Count;

fn colour(denomination: Denomination) -> Rgb<u8> {
    match denomination {
        Denomination::Penny => Rgb([230, 60, 20]),
        Denomination::Nickel => Rgb([20, 160, 40]),
        Denomination::Dime => Rgb([30, 90, 230]),
        Denomination::Quarter => Rgb([200, 20, 200]),
    }
}

/// The work picture with the count drawn on it.
pub fn annotate(rgb: &RgbImage, count: &Count) -> RgbImage {
    let mut canvas = rgb.clone();
    let (w, h) = canvas.dimensions();
    let line = (w.max(h) / 400).clamp(1, 4) as i32;
    for coin in &count.coins {
        let c = coin.circle;
        let centre = (c.x.round() as i32, c.y.round() as i32);
        for k in 0..line {
            draw_hollow_circle_mut(
                &mut canvas,
                centre,
                c.r.round() as i32 + k,
                colour(coin.denomination),
            );
        }
        let scale = ((c.r / 20.0).round() as u32).clamp(1, 6);
        let label = format!("{}c", coin.denomination.cents());
        let (tw, th) = text_size(&label, scale);
        let x = centre.0 - tw as i32 / 2;
        let y = centre.1 - th as i32 / 2;
        draw_label(&mut canvas, &label, x, y, scale, colour(coin.denomination));
    }
    let scale = (w.max(h) / 200).clamp(1, 6);
    let total = format!(
        "${}.{:02}",
        count.total_cents / 100,
        count.total_cents % 100
    );
    draw_label(&mut canvas, &total, 4, 4, scale, Rgb([0, 0, 0]));
    canvas
}

fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let chars = text.chars().count() as u32;
    ((chars * 6).saturating_sub(1) * scale, 7 * scale)
}

/// Draws `text` in `ink` on a white box with its top-left corner at (x, y).
fn draw_label(canvas: &mut RgbImage, text: &str, x: i32, y: i32, scale: u32, ink: Rgb<u8>) {
    let (tw, th) = text_size(text, scale);
    let pad = scale as i32;
    draw_filled_rect_mut(
        canvas,
        Rect::at(x - pad, y - pad).of_size(tw + 2 * scale, th + 2 * scale),
        Rgb([255, 255, 255]),
    );
    let (w, h) = canvas.dimensions();
    for (i, ch) in text.chars().enumerate() {
        let Some(rows) = glyph(ch) else { continue };
        let gx = x + (i as i32) * 6 * scale as i32;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0b10000 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale as i32 {
                    for dx in 0..scale as i32 {
                        let px = gx + col * scale as i32 + dx;
                        let py = y + row as i32 * scale as i32 + dy;
                        if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                            canvas.put_pixel(px as u32, py as u32, ink);
                        }
                    }
                }
            }
        }
    }
}

/// Rows of a 5×7 glyph, top first, most significant bit leftmost.
fn glyph(ch: char) -> Option<[u8; 7]> {
    Some(match ch {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'c' => [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        '$' => [0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_character_has_a_glyph() {
        for ch in "0123456789c$.".chars() {
            assert!(glyph(ch).is_some(), "{ch}");
        }
    }
}
