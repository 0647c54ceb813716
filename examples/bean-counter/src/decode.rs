//! Turning uploaded bytes into a small, upright RGB picture.
//!
//! Counting needs a coin to be about a hundred pixels across, not three
//! thousand, so the picture is reduced to [`WORK_LONG_SIDE`] pixels on its
//! long side as early as possible: JPEG is decoded straight to a fraction of
//! its size (the decoder scales in the DCT domain), PNG is decoded one row at
//! a time into a box-filtered accumulator. Neither ever holds the full-size
//! picture, so a 50-megapixel photo costs a few megabytes. Other formats are
//! decoded whole by the `image` crate under an allocation limit.
//!
//! The EXIF orientation is applied afterwards, on the small picture.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, RgbImage};

use crate::error::CountError;

/// The long side of the picture the counter works on, in pixels, at most.
pub const WORK_LONG_SIDE: u32 = 1024;

/// A JPEG is decoded at the smallest DCT scale that keeps its long side at
/// least this long (a 4032-pixel photo at 1/4 is 1008 pixels and needs no
/// further resizing).
const MIN_DECODE_LONG_SIDE: u32 = 960;

/// The most pixels a JPEG or PNG may have (both are decoded without holding
/// the full-size picture).
pub const MAX_PIXELS: u64 = 100_000_000;

/// The most pixels another format may have: it is decoded whole.
pub const MAX_PIXELS_WHOLE: u64 = 24_000_000;

/// The most bytes a decoder may allocate.
const MAX_DECODER_BYTES: usize = 256 << 20;

/// A picture ready to count: upright, at most [`WORK_LONG_SIDE`] on its long
/// side, with the size it had in the upload.
#[derive(Debug)]
pub struct WorkImage {
    pub rgb: RgbImage,
    /// Width and height of the upload, before scaling, after orientation.
    pub original: (u32, u32),
}

/// Decodes `bytes` (JPEG, PNG, GIF, BMP or WebP) into a [`WorkImage`].
pub fn decode(bytes: &[u8]) -> Result<WorkImage, CountError> {
    let format = image::guess_format(bytes).map_err(|_| CountError::NotAnImage {
        reason: "unrecognised format".into(),
    })?;
    let (rgb, original, orientation) = match format {
        ImageFormat::Jpeg => decode_jpeg(bytes)?,
        ImageFormat::Png => decode_png(bytes)?,
        ImageFormat::Gif | ImageFormat::Bmp | ImageFormat::WebP => decode_whole(bytes, format)?,
        other => {
            return Err(CountError::NotAnImage {
                reason: format!("unsupported format {other:?}"),
            })
        }
    };
    let rgb = shrink(rgb, WORK_LONG_SIDE);
    let swaps = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let original = if swaps {
        (original.1, original.0)
    } else {
        original
    };
    let rgb = if orientation == Orientation::NoTransforms {
        rgb
    } else {
        let mut image = DynamicImage::ImageRgb8(rgb);
        image.apply_orientation(orientation);
        image.into_rgb8()
    };
    Ok(WorkImage { rgb, original })
}

fn check_pixels(width: u32, height: u32, max: u64) -> Result<(), CountError> {
    if width == 0 || height == 0 {
        return Err(CountError::NotAnImage {
            reason: format!("empty picture {width}x{height}"),
        });
    }
    if u64::from(width) * u64::from(height) > max {
        return Err(CountError::TooLarge {
            width,
            height,
            max_pixels: max,
        });
    }
    Ok(())
}

/// The orientation an EXIF block (TIFF data) asks for; none if unreadable.
fn exif_orientation(tiff: &[u8]) -> Orientation {
    let Ok(exif) = exif::Reader::new().read_raw(tiff.to_vec()) else {
        return Orientation::NoTransforms;
    };
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|field| field.value.get_uint(0))
        .and_then(|value| u8::try_from(value).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

type Decoded = (RgbImage, (u32, u32), Orientation);

fn decode_jpeg(bytes: &[u8]) -> Result<Decoded, CountError> {
    let bad = |e: jpeg_decoder::Error| CountError::NotAnImage {
        reason: format!("jpeg: {e}"),
    };
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.set_max_decoding_buffer_size(MAX_DECODER_BYTES);
    decoder.read_info().map_err(bad)?;
    let info = decoder.info().ok_or_else(|| CountError::NotAnImage {
        reason: "jpeg: no frame header".into(),
    })?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, MAX_PIXELS)?;
    // The decoder picks the smallest of 1/8, 1/4, 1/2 and 1 that still gives
    // at least the requested size.
    let long = width.max(height);
    let (want_w, want_h) = if long > WORK_LONG_SIDE {
        (
            (u64::from(width) * u64::from(MIN_DECODE_LONG_SIDE)).div_ceil(u64::from(long)),
            (u64::from(height) * u64::from(MIN_DECODE_LONG_SIDE)).div_ceil(u64::from(long)),
        )
    } else {
        (u64::from(width), u64::from(height))
    };
    let (w, h) = decoder
        .scale(
            u16::try_from(want_w).unwrap_or(u16::MAX),
            u16::try_from(want_h).unwrap_or(u16::MAX),
        )
        .map_err(bad)?;
    let pixels = decoder.decode().map_err(bad)?;
    let info = decoder.info().ok_or_else(|| CountError::NotAnImage {
        reason: "jpeg: no frame header".into(),
    })?;
    let (w, h) = (u32::from(w), u32::from(h));
    let count = (w as usize) * (h as usize);
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .map(|c| c[0])
            .flat_map(|l| [l, l, l])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|c| {
                let k = u16::from(c[3]);
                let f = |v: u8| u8::try_from(u16::from(v) * k / 255).unwrap_or(u8::MAX);
                [f(c[0]), f(c[1]), f(c[2])]
            })
            .collect(),
    };
    if rgb.len() < count * 3 {
        return Err(CountError::NotAnImage {
            reason: "jpeg: truncated pixels".into(),
        });
    }
    let image = RgbImage::from_raw(w, h, rgb).ok_or_else(|| CountError::NotAnImage {
        reason: "jpeg: inconsistent size".into(),
    })?;
    let orientation = decoder
        .exif_data()
        .map(exif_orientation)
        .unwrap_or(Orientation::NoTransforms);
    Ok((image, (width, height), orientation))
}

fn decode_png(bytes: &[u8]) -> Result<Decoded, CountError> {
    // The size is checked from the header before the decoder sizes its
    // buffers: width and height are the first fields of IHDR.
    if bytes.len() >= 24 && &bytes[12..16] == b"IHDR" {
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        check_pixels(be(&bytes[16..20]), be(&bytes[20..24]), MAX_PIXELS)?;
    }
    let bad = |e: png::DecodingError| CountError::NotAnImage {
        reason: format!("png: {e}"),
    };
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: MAX_DECODER_BYTES,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(bad)?;
    let (width, height, interlaced, orientation) = {
        let info = reader.info();
        let orientation = info
            .exif_metadata
            .as_deref()
            .map(exif_orientation)
            .unwrap_or(Orientation::NoTransforms);
        (info.width, info.height, info.interlaced, orientation)
    };
    check_pixels(width, height, MAX_PIXELS)?;
    let (color, _) = reader.output_color_type();
    let channels = color.samples();
    let to_rgb = move |px: &[u8]| -> [u8; 3] {
        // Transparent pixels lie on a white table.
        let over_white = |v: u8, a: u8| {
            let v = u32::from(v) * u32::from(a) + 255 * (255 - u32::from(a));
            u8::try_from(v / 255).unwrap_or(u8::MAX)
        };
        match channels {
            1 => [px[0]; 3],
            2 => [over_white(px[0], px[1]); 3],
            3 => [px[0], px[1], px[2]],
            _ => [
                over_white(px[0], px[3]),
                over_white(px[1], px[3]),
                over_white(px[2], px[3]),
            ],
        }
    };
    if interlaced {
        // Interlaced rows arrive in seven passes; those are decoded whole.
        check_pixels(width, height, MAX_PIXELS_WHOLE)?;
        let mut buffer = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buffer).map_err(bad)?;
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for row in buffer[..frame.buffer_size()].chunks_exact(frame.line_size) {
            for px in row.chunks_exact(channels).take(width as usize) {
                rgb.extend_from_slice(&to_rgb(px));
            }
        }
        let image =
            RgbImage::from_raw(width, height, rgb).ok_or_else(|| CountError::NotAnImage {
                reason: "png: inconsistent size".into(),
            })?;
        return Ok((image, (width, height), orientation));
    }
    let mut shrinker = BoxShrinker::new(width, height, WORK_LONG_SIDE);
    let mut row_px = vec![[0u8; 3]; width as usize];
    while let Some(row) = reader.next_row().map_err(bad)? {
        for (out, px) in row_px.iter_mut().zip(row.data().chunks_exact(channels)) {
            *out = to_rgb(px);
        }
        shrinker.push_row(&row_px);
    }
    let image = shrinker.finish().ok_or_else(|| CountError::NotAnImage {
        reason: "png: truncated pixels".into(),
    })?;
    Ok((image, (width, height), orientation))
}

fn decode_whole(bytes: &[u8], format: ImageFormat) -> Result<Decoded, CountError> {
    let bad = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => CountError::TooLarge {
            width: 0,
            height: 0,
            max_pixels: MAX_PIXELS_WHOLE,
        },
        e => CountError::NotAnImage {
            reason: format!("{format:?}: {e}"),
        },
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODER_BYTES as u64);
    reader.limits(limits);
    let (width, height) = reader.into_dimensions().map_err(bad)?;
    check_pixels(width, height, MAX_PIXELS_WHOLE)?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODER_BYTES as u64);
    reader.limits(limits);
    let image = reader.decode().map_err(bad)?;
    let image = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => {
            // Transparent pixels lie on a white table.
            let rgba = other.into_rgba8();
            let (w, h) = rgba.dimensions();
            let mut rgb = RgbImage::new(w, h);
            for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
                let a = u32::from(px[3]);
                for c in 0..3 {
                    let v = (u32::from(px[c]) * a + 255 * (255 - a)) / 255;
                    out[c] = u8::try_from(v).unwrap_or(u8::MAX);
                }
            }
            rgb
        }
    };
    Ok((image, (width, height), Orientation::NoTransforms))
}

/// Shrinks `image` so its long side is at most `long_side`.
fn shrink(image: RgbImage, long_side: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let long = w.max(h);
    if long <= long_side {
        return image;
    }
    let scale = f64::from(long_side) / f64::from(long);
    let nw = ((f64::from(w) * scale).round() as u32).max(1);
    let nh = ((f64::from(h) * scale).round() as u32).max(1);
    // Area averaging: fast, and what a reduction by a large factor needs.
    image::imageops::thumbnail(&image, nw, nh)
}

/// Averages blocks of `factor × factor` pixels as rows stream in, so a
/// picture can be reduced without ever being held whole.
struct BoxShrinker {
    width: u32,
    factor: u32,
    out_width: u32,
    sums: Vec<[u32; 3]>,
    rows_in_block: u32,
    out: Vec<u8>,
    out_rows: u32,
}

impl BoxShrinker {
    /// A shrinker by the largest whole factor that keeps the long side at
    /// least `long_side`.
    fn new(width: u32, height: u32, long_side: u32) -> Self {
        let factor = (width.max(height) / long_side).max(1);
        let out_width = width.div_ceil(factor);
        let out_height = height.div_ceil(factor);
        Self {
            width,
            factor,
            out_width,
            sums: vec![[0; 3]; out_width as usize],
            rows_in_block: 0,
            out: Vec::with_capacity(out_width as usize * out_height as usize * 3),
            out_rows: 0,
        }
    }

    fn push_row(&mut self, row: &[[u8; 3]]) {
        for (x, px) in row.iter().enumerate().take(self.width as usize) {
            let sum = &mut self.sums[x / self.factor as usize];
            for c in 0..3 {
                sum[c] += u32::from(px[c]);
            }
        }
        self.rows_in_block += 1;
        if self.rows_in_block == self.factor {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.rows_in_block == 0 {
            return;
        }
        for (ox, sum) in self.sums.iter_mut().enumerate() {
            let x0 = ox as u32 * self.factor;
            let cols = self.factor.min(self.width - x0);
            let n = cols * self.rows_in_block;
            for value in sum.iter_mut() {
                self.out.push(u8::try_from(*value / n).unwrap_or(u8::MAX));
                *value = 0;
            }
        }
        self.rows_in_block = 0;
        self.out_rows += 1;
    }

    fn finish(mut self) -> Option<RgbImage> {
        self.flush();
        RgbImage::from_raw(self.out_width, self.out_rows, self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_shrinker_averages_blocks_and_keeps_the_ragged_edge() {
        let mut s = BoxShrinker::new(5, 3, 2);
        assert_eq!(s.factor, 2);
        for y in 0..3u8 {
            let row: Vec<[u8; 3]> = (0..5u8).map(|x| [x * 10 + y, 0, 255]).collect();
            s.push_row(&row);
        }
        let img = s.finish().unwrap();
        assert_eq!(img.dimensions(), (3, 2));
        // (0+1+10+11)/4 = 5, last column (40+41)/2 = 40, last row (2+12)/2 = 7.
        assert_eq!(img.get_pixel(0, 0)[0], 5);
        assert_eq!(img.get_pixel(2, 0)[0], 40);
        assert_eq!(img.get_pixel(0, 1)[0], 7);
        assert_eq!(img.get_pixel(0, 0)[2], 255);
    }

    #[test]
    fn garbage_is_not_an_image() {
        assert!(matches!(
            decode(b"hello, world"),
            Err(CountError::NotAnImage { .. })
        ));
        let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
        fake_png.extend_from_slice(&[0; 40]);
        assert!(matches!(
            decode(&fake_png),
            Err(CountError::NotAnImage { .. })
        ));
    }
}
