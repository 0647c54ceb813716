//! Finding the coins in a picture: circles with a precise radius and a
//! colour.
//!
//! The table is estimated first, as a smooth field: the picture is cut into
//! cells, the most common cell colour seeds a region grown across cells
//! that change little from their neighbours (so a lighting gradient, a fold
//! of cloth or a soft shadow stays "table"), and the cells the region never
//! reached (coins, and cells crossing a coin's edge) are filled in from
//! around them. Every pixel is then divided by the table under it, which
//! both evens out the lighting and white-balances the picture; how far that
//! ratio is from 1 is the pixel's *contrast*. A second, *shadowless*
//! contrast counts only what a shadow cannot do to the table: change its
//! colour, or brighten it.
//!
//! Otsu's threshold on the contrast gives blobs. Touching coins make one
//! blob, so each blob is covered greedily by the largest circles its
//! distance transform offers (the inscribed circle of two touching discs is
//! each disc in turn). Each circle's radius is then measured to a fraction
//! of a pixel: in each of [`SECTORS`] directions the edge is where the
//! contrast falls to halfway between the coin's rim and the table. A coin
//! that stands out in the shadowless contrast (silver on wood) is measured
//! in it, so that its shadow does not make it larger; for the others, the
//! directions that see no clean edge (a neighbouring coin, a shadow) are
//! outvoted by the others.

use std::collections::VecDeque;

use image::{GrayImage, Luma, RgbImage};
use imageproc::distance_transform::euclidean_squared_distance_transform;
use imageproc::region_labelling::{connected_components, Connectivity};

/// A circle in the picture, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

/// A coin-like circle and what was measured about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub circle: Circle,
    /// The share of directions in which a clean edge was found (0 to 1).
    pub support: f32,
    /// How red the coin is against blue, relative to the table (see
    /// [`redness`]): copper coins come out higher than silver ones.
    pub redness: f32,
}

/// Directions in which a coin's edge is looked for.
pub const SECTORS: usize = 72;

/// Contrast is scaled by this to fit a byte for Otsu's threshold.
const CONTRAST_SCALE: f32 = 400.0;

/// Below this contrast (ratio distance from the table) nothing is a coin,
/// whatever Otsu says: a blank table must give no coins.
const MIN_CONTRAST: f32 = 0.07;

/// The smallest radius, in pixels, a coin may have in the work picture.
const MIN_RADIUS: f32 = 6.0;

/// Share of directions that must see a clean edge for a circle to be a
/// coin.
const MIN_SUPPORT: f32 = 0.3;

/// Everything found in a picture: the coins and the contrast map (kept for
/// drawing and debugging).
pub struct Detection {
    pub blobs: Vec<Blob>,
    pub threshold: f32,
}

/// Finds the coin-like circles of `rgb`, largest first.
pub fn find_blobs(rgb: &RgbImage) -> Detection {
    let (w, h) = rgb.dimensions();
    if w < 8 || h < 8 {
        return Detection {
            blobs: Vec::new(),
            threshold: 0.0,
        };
    }
    let table = Table::estimate(rgb);
    let contrast = contrast_map(rgb, &table);
    let threshold = threshold(&contrast).max(MIN_CONTRAST);
    let mask = clean_mask(&contrast, threshold);
    // Proposals that agree (the box and the inscribed circle of a lone
    // coin) are refined once.
    let mut proposals: Vec<Circle> = Vec::new();
    for p in propose_circles(&mask) {
        let same = proposals.iter().any(|q| {
            ((q.x - p.x).powi(2) + (q.y - p.y).powi(2)).sqrt() < 0.2 * q.r.max(p.r)
                && (q.r - p.r).abs() < 0.15 * q.r.max(p.r)
        });
        if !same {
            proposals.push(p);
        }
    }
    let mut blobs: Vec<Blob> = refine_all(rgb, &table, &contrast, &proposals);
    // Coins lie side by side, not on top of each other: of two circles
    // that overlap, the one whose edge is better supported is the coin.
    blobs.sort_by(|a, b| {
        b.support
            .total_cmp(&a.support)
            .then(b.circle.r.total_cmp(&a.circle.r))
    });
    let mut kept: Vec<Blob> = Vec::with_capacity(blobs.len());
    for blob in blobs {
        let overlaps = kept.iter().any(|k| {
            let d = ((k.circle.x - blob.circle.x).powi(2) + (k.circle.y - blob.circle.y).powi(2))
                .sqrt();
            d < 0.85 * (k.circle.r + blob.circle.r)
        });
        if !overlaps {
            kept.push(blob);
        }
    }
    kept.sort_by(|a, b| b.circle.r.total_cmp(&a.circle.r));
    Detection {
        blobs: kept,
        threshold,
    }
}

/// The colour of the bare table, as a coarse grid interpolated bilinearly.
struct Table {
    cell: u32,
    gw: usize,
    gh: usize,
    colour: Vec<[f32; 3]>,
}

impl Table {
    fn estimate(rgb: &RgbImage) -> Self {
        let (w, h) = rgb.dimensions();
        let cell = (w.max(h) / 48).max(4);
        let gw = w.div_ceil(cell) as usize;
        let gh = h.div_ceil(cell) as usize;
        // Sums of channels and of squared brightness (R+G+B, so ×9).
        let mut sum = vec![[0u64; 3]; gw * gh];
        let mut sum_sq = vec![0u64; gw * gh];
        let mut count = vec![0u32; gw * gh];
        for (y, line) in rgb.as_raw().chunks_exact(w as usize * 3).enumerate() {
            let row = (y / cell as usize) * gw;
            for (x, px) in line.chunks_exact(3).enumerate() {
                let i = row + x / cell as usize;
                let (r, g, b) = (u64::from(px[0]), u64::from(px[1]), u64::from(px[2]));
                sum[i][0] += r;
                sum[i][1] += g;
                sum[i][2] += b;
                sum_sq[i] += (r + g + b) * (r + g + b);
                count[i] += 1;
            }
        }
        let mut mean = vec![[0f32; 3]; gw * gh];
        let mut spread = vec![0f32; gw * gh];
        for i in 0..gw * gh {
            let n = f64::from(count[i].max(1));
            let m = [
                sum[i][0] as f64 / n,
                sum[i][1] as f64 / n,
                sum[i][2] as f64 / n,
            ];
            let l = (m[0] + m[1] + m[2]) / 3.0;
            mean[i] = [m[0] as f32, m[1] as f32, m[2] as f32];
            spread[i] = (sum_sq[i] as f64 / 9.0 / n - l * l).max(0.0).sqrt() as f32;
        }

        // The most common colour (in bins of 16 levels) among the quieter
        // half of the cells seeds the table.
        let mut quiet = spread.clone();
        quiet.sort_by(f32::total_cmp);
        let median_spread = quiet[quiet.len() / 2];
        let bin = |m: &[f32; 3]| {
            let q = |v: f32| (v as usize / 16).min(15);
            (q(m[0]) * 16 + q(m[1])) * 16 + q(m[2])
        };
        let mut histogram = vec![0u32; 4096];
        for i in 0..gw * gh {
            if spread[i] <= median_spread {
                histogram[bin(&mean[i])] += 1;
            }
        }
        let mode = histogram
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .map(|(b, _)| b)
            .unwrap_or(0);
        let seeds: Vec<usize> = (0..gw * gh)
            .filter(|&i| spread[i] <= median_spread && bin(&mean[i]) == mode)
            .collect();
        let mut seed_spread: Vec<f32> = seeds.iter().map(|&i| spread[i]).collect();
        seed_spread.sort_by(f32::total_cmp);
        let typical = seed_spread
            .get(seed_spread.len() / 2)
            .copied()
            .unwrap_or(2.0);
        let spread_limit = (typical * 2.5).max(4.0);
        let step_limit = (typical * 2.0).max(7.0);

        // Grow the table over cells that are quiet and close in colour to
        // the neighbour they are reached from.
        let mut known = vec![false; gw * gh];
        let mut queue: VecDeque<usize> = VecDeque::new();
        for &i in &seeds {
            known[i] = true;
            queue.push_back(i);
        }
        while let Some(i) = queue.pop_front() {
            let (cx, cy) = (i % gw, i / gw);
            for (nx, ny) in neighbours4(cx, cy, gw, gh) {
                let j = ny * gw + nx;
                if known[j] || spread[j] > spread_limit {
                    continue;
                }
                let step = (0..3)
                    .map(|c| (mean[j][c] - mean[i][c]).abs())
                    .fold(0f32, f32::max);
                if step <= step_limit {
                    known[j] = true;
                    queue.push_back(j);
                }
            }
        }

        // Fill the cells under coins from the table around them, ring by
        // ring.
        let mut colour: Vec<[f32; 3]> = mean;
        let mut filled = known;
        loop {
            let mut next = Vec::new();
            for i in 0..gw * gh {
                if filled[i] {
                    continue;
                }
                let (cx, cy) = (i % gw, i / gw);
                let mut acc = [0f32; 3];
                let mut n = 0f32;
                for (nx, ny) in neighbours8(cx, cy, gw, gh) {
                    let j = ny * gw + nx;
                    if filled[j] {
                        for c in 0..3 {
                            acc[c] += colour[j][c];
                        }
                        n += 1.0;
                    }
                }
                if n > 0.0 {
                    next.push((i, [acc[0] / n, acc[1] / n, acc[2] / n]));
                }
            }
            if next.is_empty() {
                break;
            }
            for (i, c) in next {
                colour[i] = c;
                filled[i] = true;
            }
        }
        // One pass of smoothing takes the cell-to-cell jitter out.
        let mut smooth = colour.clone();
        for (i, out) in smooth.iter_mut().enumerate() {
            let (cx, cy) = (i % gw, i / gw);
            let mut acc = colour[i];
            let mut n = 1f32;
            for (nx, ny) in neighbours8(cx, cy, gw, gh) {
                for c in 0..3 {
                    acc[c] += colour[ny * gw + nx][c];
                }
                n += 1.0;
            }
            *out = [acc[0] / n, acc[1] / n, acc[2] / n];
        }
        Self {
            cell,
            gw,
            gh,
            colour: smooth,
        }
    }

    /// The table's colour along row `y` from column `x_start`, one entry
    /// per pixel of `out`.
    fn row(&self, y: f32, x_start: u32, out: &mut [[f32; 3]]) {
        let half = self.cell as f32 / 2.0;
        let gy = ((y - half) / self.cell as f32).clamp(0.0, (self.gh - 1) as f32);
        let y0 = gy.floor() as usize;
        let y1 = (y0 + 1).min(self.gh - 1);
        let fy = gy - y0 as f32;
        // The row of cell colours interpolated at this y.
        let cells: Vec<[f32; 3]> = (0..self.gw)
            .map(|x| {
                let (a, b) = (self.colour[y0 * self.gw + x], self.colour[y1 * self.gw + x]);
                [
                    a[0] + (b[0] - a[0]) * fy,
                    a[1] + (b[1] - a[1]) * fy,
                    a[2] + (b[2] - a[2]) * fy,
                ]
            })
            .collect();
        for (i, value) in out.iter_mut().enumerate() {
            let x = x_start as usize + i;
            let gx = ((x as f32 - half) / self.cell as f32).clamp(0.0, (self.gw - 1) as f32);
            let x0 = gx.floor() as usize;
            let x1 = (x0 + 1).min(self.gw - 1);
            let fx = gx - x0 as f32;
            for k in 0..3 {
                value[k] = (cells[x0][k] + (cells[x1][k] - cells[x0][k]) * fx).max(1.0);
            }
        }
    }
}

fn neighbours4(x: usize, y: usize, w: usize, h: usize) -> impl Iterator<Item = (usize, usize)> {
    [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)]
        .into_iter()
        .filter_map(move |(dx, dy)| offset(x, y, dx, dy, w, h))
}

fn neighbours8(x: usize, y: usize, w: usize, h: usize) -> impl Iterator<Item = (usize, usize)> {
    [
        (-1i64, -1i64),
        (0, -1),
        (1, -1),
        (-1, 0),
        (1, 0),
        (-1, 1),
        (0, 1),
        (1, 1),
    ]
    .into_iter()
    .filter_map(move |(dx, dy)| offset(x, y, dx, dy, w, h))
}

fn offset(x: usize, y: usize, dx: i64, dy: i64, w: usize, h: usize) -> Option<(usize, usize)> {
    let nx = x as i64 + dx;
    let ny = y as i64 + dy;
    (nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h)
        .then_some((nx as usize, ny as usize))
}

/// Each pixel divided by the table under it (1 where the table is bare),
/// and two contrasts of that ratio, side by side in `values` in the order
/// of [`Signal`]: how far it is from 1 at all, and how far in ways a
/// shadow cannot explain.
struct Contrast {
    w: u32,
    h: u32,
    values: Vec<[f32; 2]>,
}

/// Which contrast an edge is looked for in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// The root-mean-square distance of the ratio from 1: anything that is
    /// not the bare table, shadows included.
    Any,
    /// The distance from the table in colour (the ratio's channels
    /// differing from each other) plus any brightening. A shadow darkens
    /// the table and leaves its colour nearly as it was, so it scores low
    /// here; a silver coin on wood or a rim catching the light does not.
    Shadowless,
}

impl Contrast {
    /// The [`Signal::Any`] contrast of a pixel.
    fn get(&self, x: u32, y: u32) -> f32 {
        self.values[(y * self.w + x) as usize][Signal::Any as usize]
    }

    fn inside(&self, x: f32, y: f32) -> bool {
        x >= 0.0 && y >= 0.0 && x <= (self.w - 1) as f32 && y <= (self.h - 1) as f32
    }

    /// Bilinear sample of both contrasts; outside the picture counts as
    /// table.
    fn sample(&self, x: f32, y: f32) -> [f32; 2] {
        if !self.inside(x, y) {
            return [0.0; 2];
        }
        let (i, (fx, fy)) = self.corners(x, y);
        let (a, b, c, d) = (
            self.values[i[0]],
            self.values[i[1]],
            self.values[i[2]],
            self.values[i[3]],
        );
        let mut out = [0f32; 2];
        for (s, out) in out.iter_mut().enumerate() {
            let top = a[s] + (b[s] - a[s]) * fx;
            let bottom = c[s] + (d[s] - c[s]) * fx;
            *out = top + (bottom - top) * fy;
        }
        out
    }

    fn corners(&self, x: f32, y: f32) -> ([usize; 4], (f32, f32)) {
        let (x0, y0) = (x.floor() as u32, y.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let at = |x: u32, y: u32| (y * self.w + x) as usize;
        (
            [at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1)],
            (x - x0 as f32, y - y0 as f32),
        )
    }
}

fn contrast_map(rgb: &RgbImage, table: &Table) -> Contrast {
    let (w, h) = rgb.dimensions();
    let mut values = vec![[0f32; 2]; (w * h) as usize];
    let row_len = w as usize;
    // Rows are independent: split them between threads.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let rows_per = (h as usize).div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (part, out) in values.chunks_mut(rows_per * row_len).enumerate() {
            scope.spawn(move || {
                let mut row_table = vec![[0f32; 3]; row_len];
                // Each row into two plain arrays first, interleaved after:
                // the compiler vectorises that loop four pixels at a time.
                let mut any = vec![0f32; row_len];
                let mut shadowless = vec![0f32; row_len];
                for (i, out_row) in out.chunks_exact_mut(row_len).enumerate() {
                    let y = part * rows_per + i;
                    table.row(y as f32, 0, &mut row_table);
                    let line = &rgb.as_raw()[y * row_len * 3..(y + 1) * row_len * 3];
                    for (((px, t), a), s) in line
                        .chunks_exact(3)
                        .zip(&row_table)
                        .zip(&mut any)
                        .zip(&mut shadowless)
                    {
                        [*a, *s] = contrasts([
                            f32::from(px[0]) / t[0],
                            f32::from(px[1]) / t[1],
                            f32::from(px[2]) / t[2],
                        ]);
                    }
                    for ((value, a), s) in out_row.iter_mut().zip(&any).zip(&shadowless) {
                        *value = [*a, *s];
                    }
                }
            });
        }
    });
    Contrast { w, h, values }
}

/// The two contrasts of a pixel's ratio to the table (see [`Signal`]).
fn contrasts([r, g, b]: [f32; 3]) -> [f32; 2] {
    let any = ((1.0 - r) * (1.0 - r) + (1.0 - g) * (1.0 - g) + (1.0 - b) * (1.0 - b)) / 3.0;
    let mean = (r + g + b) / 3.0;
    // The colour is each channel's share of the brightness; black has
    // none.
    let per_mean = if mean > 1e-3 { 1.0 / mean } else { 0.0 };
    let spread =
        ((r - mean) * (r - mean) + (g - mean) * (g - mean) + (b - mean) * (b - mean)) / 3.0;
    let colour = spread * per_mean * per_mean;
    let brighter = (mean - 1.0).max(0.0);
    [any.sqrt(), (colour + brighter * brighter).sqrt()]
}

/// Otsu's threshold on the contrast, in contrast units.
fn threshold(contrast: &Contrast) -> f32 {
    let gray = GrayImage::from_fn(contrast.w, contrast.h, |x, y| {
        Luma([(contrast.get(x, y) * CONTRAST_SCALE).clamp(0.0, 255.0) as u8])
    });
    f32::from(imageproc::contrast::otsu_level(&gray)) / CONTRAST_SCALE
}

/// The coin mask: contrast above the threshold, holes filled (a coin's
/// highlights can be as bright as the table), specks and threads removed.
fn clean_mask(contrast: &Contrast, threshold: f32) -> GrayImage {
    let (w, h) = (contrast.w, contrast.h);
    let mut mask = GrayImage::from_fn(w, h, |x, y| {
        Luma([if contrast.get(x, y) > threshold {
            255
        } else {
            0
        }])
    });
    // Close with a 3×3 square, fill holes, open with a 5×5 square.
    mask = square_filter(&square_filter(&mask, 1, true), 1, false);
    fill_holes(&mut mask);
    mask = square_filter(&square_filter(&mask, 2, false), 2, true);
    mask
}

/// Dilates (`grow`) or erodes a 0/255 mask with a square of side
/// `2 × radius + 1`, in two one-dimensional passes of running counts.
/// Outside the picture counts as neither: a window is only what lies
/// inside.
fn square_filter(mask: &GrayImage, radius: u32, grow: bool) -> GrayImage {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let r = radius as usize;
    let decide = |on: u32, span: usize| {
        if (grow && on > 0) || (!grow && on as usize == span) {
            255u8
        } else {
            0
        }
    };
    // Rows: a sliding count along each row.
    let src = mask.as_raw();
    let mut rows = vec![0u8; w * h];
    for y in 0..h {
        let line = &src[y * w..(y + 1) * w];
        let out = &mut rows[y * w..(y + 1) * w];
        let mut on: u32 = line[..r.min(w)].iter().map(|&v| u32::from(v != 0)).sum();
        for x in 0..w {
            if x + r < w {
                on += u32::from(line[x + r] != 0);
            }
            if x > r {
                on -= u32::from(line[x - r - 1] != 0);
            }
            let span = (x + r + 1).min(w) - x.saturating_sub(r);
            out[x] = decide(on, span);
        }
    }
    // Columns: a sliding count per column, row after row.
    let mut counts = vec![0u32; w];
    for y in 0..r.min(h) {
        for (c, &v) in counts.iter_mut().zip(&rows[y * w..(y + 1) * w]) {
            *c += u32::from(v != 0);
        }
    }
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        if y + r < h {
            for (c, &v) in counts.iter_mut().zip(&rows[(y + r) * w..(y + r + 1) * w]) {
                *c += u32::from(v != 0);
            }
        }
        if y > r {
            for (c, &v) in counts.iter_mut().zip(&rows[(y - r - 1) * w..(y - r) * w]) {
                *c -= u32::from(v != 0);
            }
        }
        let span = (y + r + 1).min(h) - y.saturating_sub(r);
        for (o, &c) in out[y * w..(y + 1) * w].iter_mut().zip(&counts) {
            *o = decide(c, span);
        }
    }
    GrayImage::from_raw(w as u32, h as u32, out).unwrap_or_else(|| GrayImage::new(0, 0))
}

/// Sets every background pixel that the border cannot reach to foreground.
fn fill_holes(mask: &mut GrayImage) {
    let (w, h) = mask.dimensions();
    let mut outside = vec![false; (w * h) as usize];
    let mut queue = VecDeque::new();
    let visit = |x: u32, y: u32, outside: &mut Vec<bool>, queue: &mut VecDeque<(u32, u32)>| {
        let i = (y * w + x) as usize;
        if !outside[i] && mask.get_pixel(x, y)[0] == 0 {
            outside[i] = true;
            queue.push_back((x, y));
        }
    };
    for x in 0..w {
        visit(x, 0, &mut outside, &mut queue);
        visit(x, h - 1, &mut outside, &mut queue);
    }
    for y in 0..h {
        visit(0, y, &mut outside, &mut queue);
        visit(w - 1, y, &mut outside, &mut queue);
    }
    while let Some((x, y)) = queue.pop_front() {
        for (nx, ny) in neighbours4(x as usize, y as usize, w as usize, h as usize) {
            visit(nx as u32, ny as u32, &mut outside, &mut queue);
        }
    }
    for (i, px) in mask.pixels_mut().enumerate() {
        if !outside[i] {
            px[0] = 255;
        }
    }
}

/// Proposes circles for the blobs of `mask`: for a blob about as wide as
/// it is tall, the circle of its bounding box (right even when glare bit a
/// piece out of the coin); for every blob, the largest circles that fit in
/// it, so touching coins come out one circle each.
fn propose_circles(mask: &GrayImage) -> Vec<Circle> {
    // Proposals only need to be roughly right: large pictures are proposed
    // on a half-size mask (a pixel is on if two of its four are).
    let (w, h) = mask.dimensions();
    if w.max(h) > 512 {
        let half = GrayImage::from_fn(w / 2, h / 2, |x, y| {
            let on = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .filter(|(dx, dy)| mask.get_pixel(2 * x + dx, 2 * y + dy)[0] != 0)
                .count();
            Luma([if on >= 2 { 255 } else { 0 }])
        });
        return propose_circles_at(&half, 2.0);
    }
    propose_circles_at(mask, 1.0)
}

/// [`propose_circles`] on a mask `scale` times smaller than the picture.
fn propose_circles_at(mask: &GrayImage, scale: f32) -> Vec<Circle> {
    let (w, h) = mask.dimensions();
    let min_radius = MIN_RADIUS / scale;
    let to_picture = |c: Circle| Circle {
        x: (c.x + 0.5) * scale - 0.5,
        y: (c.y + 0.5) * scale - 0.5,
        r: c.r * scale,
    };
    let labels = connected_components(mask, Connectivity::Four, Luma([0u8]));
    let inverted = GrayImage::from_fn(w, h, |x, y| {
        Luma([if mask.get_pixel(x, y)[0] == 0 { 255 } else { 0 }])
    });
    let distance = euclidean_squared_distance_transform(&inverted);
    let mut per_label: Vec<Vec<(f32, u32, u32)>> = Vec::new();
    let mut boxes: Vec<[u32; 4]> = Vec::new();
    for (x, y, label) in labels.enumerate_pixels() {
        let label = label[0] as usize;
        if label == 0 {
            continue;
        }
        if per_label.len() < label {
            per_label.resize_with(label, Vec::new);
            boxes.resize(label, [u32::MAX, u32::MAX, 0, 0]);
        }
        let b = &mut boxes[label - 1];
        *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        let r = distance.get_pixel(x, y)[0].sqrt() as f32;
        if r >= min_radius {
            per_label[label - 1].push((r, x, y));
        }
    }
    let mut circles = Vec::new();
    for (mut pixels, b) in per_label.into_iter().zip(boxes) {
        let Some(&(largest, _, _)) = pixels.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
            continue;
        };
        let (bw, bh) = ((b[2] - b[0] + 1) as f32, (b[3] - b[1] + 1) as f32);
        if bw.min(bh) >= 2.0 * min_radius && bw.max(bh) <= 1.3 * bw.min(bh) {
            circles.push(to_picture(Circle {
                x: (b[0] + b[2]) as f32 / 2.0,
                y: (b[1] + b[3]) as f32 / 2.0,
                r: (bw + bh) / 4.0,
            }));
        }
        pixels.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut mine: Vec<Circle> = Vec::new();
        for (r, x, y) in pixels {
            if r < 0.5 * largest {
                break;
            }
            let (x, y) = (x as f32, y as f32);
            let apart = mine.iter().all(|c| {
                let d = ((c.x - x).powi(2) + (c.y - y).powi(2)).sqrt();
                d >= 0.75 * (c.r + r)
            });
            if apart {
                mine.push(Circle { x, y, r });
            }
        }
        circles.extend(mine.into_iter().map(to_picture));
    }
    circles
}

/// Refines every proposal, on up to four threads.
fn refine_all(
    rgb: &RgbImage,
    table: &Table,
    contrast: &Contrast,
    proposals: &[Circle],
) -> Vec<Blob> {
    let one = |c: &Circle| {
        refine(contrast, *c).map(|(circle, support)| Blob {
            circle,
            support,
            redness: redness(rgb, table, circle),
        })
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads < 2 || proposals.len() < 4 {
        return proposals.iter().filter_map(one).collect();
    }
    let chunk = proposals.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = proposals
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().filter_map(one).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    })
}

/// Finds the coin's edge around a rough circle and fits a circle to it;
/// returns the fitted circle and the share of directions whose edge lies
/// on it, or `None` when too few do (not a coin).
fn refine(contrast: &Contrast, rough: Circle) -> Option<(Circle, f32)> {
    let mut circle = rough;
    let mut support = 0.0;
    // The second pass looks again from the better centre and radius.
    for _ in 0..2 {
        let edges = edge_points(contrast, circle)?;
        let (fitted, inliers) = robust_circle_fit(&edges)?;
        support = inliers as f32 / SECTORS as f32;
        if support < MIN_SUPPORT || fitted.r < MIN_RADIUS {
            return None;
        }
        // A fit that wandered far from where it started found something
        // else.
        let moved = ((fitted.x - rough.x).powi(2) + (fitted.y - rough.y).powi(2)).sqrt();
        if moved > 0.5 * rough.r || fitted.r > 1.5 * rough.r || fitted.r < 0.6 * rough.r {
            return None;
        }
        circle = fitted;
    }
    Some((circle, support))
}

/// The coin's edge in each of [`SECTORS`] directions: scanning in from
/// the table, the first place where the contrast rises to halfway between
/// the table and the coin's rim, interpolated between samples. A direction
/// counts only if its far end is bare table (so it does not end inside a
/// neighbouring coin).
///
/// A shadow is as much "not table" as the coin, so in the directions it
/// falls in it moves the edge outwards. When the coin stands out from the
/// table by colour or brightness (not only by being darker), the edge is
/// looked for in the [`Signal::Shadowless`] contrast instead, in which the
/// shadow is table; otherwise [`robust_circle_fit`] leaves out the
/// shadowed directions if they are few.
fn edge_points(contrast: &Contrast, c: Circle) -> Option<Vec<(f32, f32)>> {
    let step = 0.5f32;
    let inner = 0.6 * c.r;
    let outer = OUTER * c.r + 3.0;
    let samples = ((outer - inner) / step) as usize + 1;
    if samples < 8 {
        return None;
    }
    let directions: Vec<(f32, f32)> = (0..SECTORS)
        .map(|s| {
            let angle = s as f32 * std::f32::consts::TAU / SECTORS as f32;
            (angle.cos(), angle.sin())
        })
        .collect();
    let ray = Ray {
        inner,
        step,
        samples,
    };
    let [any, shadowless] = Profiles::measure(contrast, c, &directions, &ray);
    if any.rim <= any.table {
        return None;
    }
    let profiles = if shadowless.rim - shadowless.table >= SHADOWLESS_SHARE * (any.rim - any.table)
    {
        &shadowless
    } else {
        &any
    };
    let half = profiles.table + 0.5 * (profiles.rim - profiles.table);
    let mut edges = Vec::with_capacity(SECTORS);
    for (&(cos, sin), profile) in directions.iter().zip(profiles.values.chunks_exact(samples)) {
        let last = profile.len() - 1;
        if profile[last] >= half || profile[last - 1] >= half {
            continue;
        }
        let Some(k) = (1..=last).rev().find(|&k| profile[k - 1] >= half) else {
            continue;
        };
        let (a, b) = (profile[k - 1], profile[k]);
        let frac = if a > b { (a - half) / (a - b) } else { 0.5 };
        let rho = inner + ((k - 1) as f32 + frac) * step;
        edges.push((c.x + rho * cos, c.y + rho * sin));
    }
    Some(edges)
}

/// A coin's edge is looked for in the [`Signal::Shadowless`] contrast when
/// its rim stands out from the table there by at least this share of what
/// it does in the [`Signal::Any`] contrast. Silver coins on wood reach
/// 0.6 to 0.9; silver on white paper or a pale wall, which it differs from
/// mostly by being darker, 0.05 to 0.35.
const SHADOWLESS_SHARE: f32 = 0.4;

/// Where along each direction from a circle's centre the contrast is
/// sampled: `samples` points `step` apart from `inner` outwards.
struct Ray {
    inner: f32,
    step: f32,
    samples: usize,
}

/// One contrast sampled along every direction around a circle, with the
/// levels of the rim band just inside the edge and of the table just
/// outside it.
struct Profiles {
    values: Vec<f32>,
    rim: f32,
    table: f32,
}

impl Profiles {
    /// Both contrasts around `c`, in the order of [`Signal`].
    fn measure(contrast: &Contrast, c: Circle, directions: &[(f32, f32)], ray: &Ray) -> [Self; 2] {
        let mut values = [0, 1].map(|_| Vec::with_capacity(directions.len() * ray.samples));
        let mut rim = [0, 1].map(|_| Vec::with_capacity(directions.len() * 8));
        let mut table = [0, 1].map(|_| Vec::with_capacity(directions.len() * 8));
        for &(cos, sin) in directions {
            for k in 0..ray.samples {
                let rho = ray.inner + k as f32 * ray.step;
                let v = contrast.sample(c.x + rho * cos, c.y + rho * sin);
                let mut band = if rho >= 0.75 * c.r && rho <= 0.92 * c.r {
                    Some(&mut rim)
                } else if rho >= (OUTER - 0.1) * c.r + 2.0 {
                    Some(&mut table)
                } else {
                    None
                };
                for signal in [Signal::Any, Signal::Shadowless] {
                    let s = signal as usize;
                    if let Some(band) = band.as_deref_mut() {
                        band[s].push(v[s]);
                    }
                    values[s].push(v[s]);
                }
            }
        }
        let level = |mut v: Vec<f32>| median(&mut v);
        let [values_any, values_shadowless] = values;
        let [rim_any, rim_shadowless] = rim;
        let [table_any, table_shadowless] = table;
        [
            Self {
                values: values_any,
                rim: level(rim_any),
                table: level(table_any),
            },
            Self {
                values: values_shadowless,
                rim: level(rim_shadowless),
                table: level(table_shadowless),
            },
        ]
    }
}

/// How far out the edge is looked for, as a share of the rough radius.
const OUTER: f32 = 1.3;

/// Least-squares circle through `points` (Kåsa's algebraic fit), refitted
/// without the points that lie well outside it (a shadow only ever pushes
/// the edge out) or far inside; returns the circle and how many points it
/// keeps.
fn robust_circle_fit(points: &[(f32, f32)]) -> Option<(Circle, usize)> {
    let mut kept: Vec<(f32, f32)> = points.to_vec();
    let mut circle = fit_circle(&kept)?;
    for _ in 0..6 {
        let residual = |&(x, y): &(f32, f32)| {
            ((x - circle.x).powi(2) + (y - circle.y).powi(2)).sqrt() - circle.r
        };
        let mut spread: Vec<f32> = kept.iter().map(|p| residual(p).abs()).collect();
        let sigma = (1.4826 * median(&mut spread)).max(0.35);
        let next: Vec<(f32, f32)> = points
            .iter()
            .copied()
            .filter(|p| {
                let r = residual(p);
                r <= 1.5 * sigma && r >= -3.0 * sigma
            })
            .collect();
        if next.len() == kept.len() {
            break;
        }
        kept = next;
        circle = fit_circle(&kept)?;
    }
    Some((circle, kept.len()))
}

fn fit_circle(points: &[(f32, f32)]) -> Option<Circle> {
    if points.len() < 5 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0f64, 0f64), |(sx, sy), &(x, y)| {
        (sx + f64::from(x), sy + f64::from(y))
    });
    let (mx, my) = (mx / n, my / n);
    // Centred coordinates keep the normal equations well conditioned.
    let (mut sxx, mut sxy, mut syy, mut sxz, mut syz, mut sz) =
        (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for &(x, y) in points {
        let (x, y) = (f64::from(x) - mx, f64::from(y) - my);
        let z = x * x + y * y;
        sxx += x * x;
        sxy += x * y;
        syy += y * y;
        sxz += x * z;
        syz += y * z;
        sz += z;
    }
    // With centred data the sums of x and y vanish: solve
    // [sxx sxy; sxy syy] [a b] = [sxz syz] / 2 for the centre (a, b).
    let det = sxx * syy - sxy * sxy;
    if det.abs() < 1e-9 {
        return None;
    }
    let a = 0.5 * (sxz * syy - syz * sxy) / det;
    let b = 0.5 * (syz * sxx - sxz * sxy) / det;
    let r2 = a * a + b * b + sz / n;
    if r2 <= 0.0 {
        return None;
    }
    Some(Circle {
        x: (a + mx) as f32,
        y: (b + my) as f32,
        r: r2.sqrt() as f32,
    })
}

fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let middle = values.len() / 2;
    *values.select_nth_unstable_by(middle, f32::total_cmp).1
}

/// How red the coin is against blue: the median over its inner area of
/// ln(red / blue), both relative to the table, leaving out glare and deep
/// shadow. Silver coins all come out alike, copper ones higher.
fn redness(rgb: &RgbImage, table: &Table, c: Circle) -> f32 {
    let (w, h) = rgb.dimensions();
    let reach = 0.8 * c.r;
    let x0 = (c.x - reach).floor().max(0.0) as u32;
    let y0 = (c.y - reach).floor().max(0.0) as u32;
    let x1 = ((c.x + reach).ceil().max(0.0) as u32).min(w - 1);
    let y1 = ((c.y + reach).ceil().max(0.0) as u32).min(h - 1);
    if x1 < x0 || y1 < y0 {
        return 0.0;
    }
    let mut values = Vec::new();
    let mut row_table = vec![[0f32; 3]; (x1 - x0 + 1) as usize];
    for y in y0..=y1 {
        table.row(y as f32, x0, &mut row_table);
        for (x, t) in (x0..=x1).zip(&row_table) {
            let (fx, fy) = (x as f32 - c.x, y as f32 - c.y);
            if fx * fx + fy * fy > reach * reach {
                continue;
            }
            let px = rgb.get_pixel(x, y);
            let ratio = [
                f32::from(px[0]) / t[0],
                f32::from(px[1]) / t[1],
                f32::from(px[2]) / t[2],
            ];
            let brightness = (ratio[0] + ratio[1] + ratio[2]) / 3.0;
            if !(0.15..=1.2).contains(&brightness) {
                continue;
            }
            values.push(ratio[0].max(1e-3) / ratio[2].max(1e-3));
        }
    }
    // The logarithm is monotonic: the median's is the median of theirs.
    if values.is_empty() {
        return 0.0;
    }
    median(&mut values).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_filter_grows_and_shrinks_by_its_radius() {
        let mut mask = GrayImage::new(9, 9);
        mask.put_pixel(4, 4, Luma([255]));
        let grown = square_filter(&mask, 2, true);
        let on: Vec<(u32, u32)> = grown
            .enumerate_pixels()
            .filter(|(_, _, p)| p[0] != 0)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(on.len(), 25);
        assert!(on
            .iter()
            .all(|&(x, y)| (2..=6).contains(&x) && (2..=6).contains(&y)));
        assert_eq!(square_filter(&grown, 2, false), mask);
        // A full picture stays full: outside the picture is not background.
        let full = GrayImage::from_pixel(5, 5, Luma([255]));
        assert_eq!(square_filter(&full, 2, false), full);
    }

    /// A silver coin of radius `r` on orange wood, lit from the upper left.
    /// Its shadow, if any, is its own disc moved `shadow` pixels towards
    /// the lower right, a third as bright as the table, with an edge that
    /// fades out over 6 pixels.
    fn coin_on_wood(r: f32, shadow: Option<f32>) -> RgbImage {
        let table = [200f32, 140.0, 90.0];
        let (cx, cy) = (150f32, 150f32);
        RgbImage::from_fn(300, 300, |x, y| {
            // The coin's share of the pixel, from 4×4 samples.
            let mut coin = 0f32;
            for k in 0..16 {
                let sx = x as f32 + (k % 4) as f32 / 4.0 - 0.375;
                let sy = y as f32 + (k / 4) as f32 / 4.0 - 0.375;
                if (sx - cx).hypot(sy - cy) <= r {
                    coin += 1.0 / 16.0;
                }
            }
            let d = (x as f32 - cx).hypot(y as f32 - cy);
            let face = if d > r - 4.0 {
                [225.0, 230.0, 235.0]
            } else {
                [150.0, 160.0, 170.0]
            };
            let dark = shadow.map_or(1.0, |shadow| {
                let offset = shadow / std::f32::consts::SQRT_2;
                let beyond = (x as f32 - cx - offset).hypot(y as f32 - cy - offset) - r;
                1.0 - 0.65 * (1.0 - beyond / 6.0).clamp(0.0, 1.0)
            });
            let px: Vec<u8> = (0..3)
                .map(|k| (coin * face[k] + (1.0 - coin) * table[k] * dark).round() as u8)
                .collect();
            image::Rgb([px[0], px[1], px[2]])
        })
    }

    #[test]
    fn a_shadow_on_wood_does_not_make_a_coin_larger() {
        for shadow in [None, Some(0.0), Some(8.0), Some(14.0)] {
            let found = find_blobs(&coin_on_wood(60.0, shadow)).blobs;
            assert_eq!(found.len(), 1, "shadow {shadow:?}: {found:?}");
            let c = found[0].circle;
            assert!(
                (c.r - 60.0).abs() < 0.6 && (c.x - 150.0).abs() < 0.6 && (c.y - 150.0).abs() < 0.6,
                "shadow {shadow:?}: {c:?}"
            );
        }
    }

    #[test]
    fn a_shadow_is_table_in_the_shadowless_contrast() {
        let rgb = RgbImage::from_fn(64, 64, |x, _| {
            if x < 32 {
                image::Rgb([200, 140, 90])
            } else {
                // The same wood in shadow, and silver.
                image::Rgb([80, 56, 36])
            }
        });
        let table = Table::estimate(&RgbImage::from_pixel(64, 64, image::Rgb([200, 140, 90])));
        let contrast = contrast_map(&rgb, &table);
        assert!(contrast.get(48, 10) > 0.5);
        assert!(contrast.sample(48.0, 10.0)[Signal::Shadowless as usize] < 0.01);
        let silver = contrast_map(
            &RgbImage::from_pixel(64, 64, image::Rgb([150, 160, 170])),
            &table,
        );
        assert!(silver.sample(10.0, 10.0)[Signal::Shadowless as usize] > 0.2);
    }
}
