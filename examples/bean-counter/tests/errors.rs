//! Photos that cannot be counted fail with the right error, and huge ones
//! do so within bounded memory.

mod common;

use std::io::Write;
use std::process::Command;

use bean_counter::CountError;

/// A PNG of `width × height` drawn row by row by `pixel`, never held whole.
fn png_by_rows(
    width: u32,
    height: u32,
    mut pixel: impl FnMut(u32, u32) -> [u8; 3],
    out: impl Write,
) {
    let mut encoder = png::Encoder::new(out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let mut row = vec![0u8; width as usize * 3];
    for y in 0..height {
        for x in 0..width {
            row[x as usize * 3..x as usize * 3 + 3].copy_from_slice(&pixel(x, y));
        }
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
}

/// A light table with discs `(x, y, r, colour)` on it.
fn table_with_discs(width: u32, height: u32, discs: &[(f32, f32, f32, [u8; 3])]) -> Vec<u8> {
    let mut out = Vec::new();
    png_by_rows(
        width,
        height,
        |x, y| {
            for &(cx, cy, r, colour) in discs {
                if (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) <= r * r {
                    return colour;
                }
            }
            [240, 238, 235]
        },
        &mut out,
    );
    out
}

const SILVER: [u8; 3] = [150, 152, 155];
const COPPER: [u8; 3] = [185, 105, 60];

#[test]
fn bytes_that_are_no_picture_are_not_an_image() {
    for bytes in [
        &b"hello"[..],
        b"",
        b"\x89PNG\r\n\x1a\n\0\0\0\0",
        b"\xff\xd8\xff\xe0junk",
    ] {
        assert!(
            matches!(
                bean_counter::count(bytes),
                Err(CountError::NotAnImage { .. })
            ),
            "{bytes:?}"
        );
    }
}

#[test]
fn an_empty_table_has_no_coins() {
    let blank = table_with_discs(800, 600, &[]);
    assert_eq!(
        bean_counter::count(&blank).unwrap_err(),
        CountError::NoCoins
    );
}

#[test]
fn drawn_coins_count_by_their_sizes() {
    // 10 pixels per millimetre: a quarter, a nickel, a dime and a penny.
    let png = table_with_discs(
        900,
        400,
        &[
            (150.0, 200.0, 121.3, SILVER),
            (400.0, 200.0, 106.05, SILVER),
            (620.0, 200.0, 89.55, SILVER),
            (800.0, 200.0, 95.25, COPPER),
        ],
    );
    let count = bean_counter::count(&png).unwrap();
    assert_eq!(count.total_cents, 41, "{:?}", count.coins);
}

#[test]
fn a_largest_coin_of_copper_is_no_quarter() {
    let png = table_with_discs(
        800,
        400,
        &[(200.0, 200.0, 120.0, COPPER), (500.0, 200.0, 90.0, SILVER)],
    );
    assert!(matches!(
        bean_counter::count(&png),
        Err(CountError::NoQuarter { .. })
    ));
}

#[test]
fn a_picture_with_too_many_pixels_is_refused_before_decoding() {
    // Only the header: 20000 × 20000 is 400 megapixels.
    let mut header = Vec::new();
    let mut encoder = png::Encoder::new(&mut header, 20_000, 20_000);
    encoder.set_color(png::ColorType::Rgb);
    drop(encoder.write_header().unwrap());
    assert!(matches!(
        bean_counter::count(&header),
        Err(CountError::TooLarge { .. })
    ));
}

/// Runs `bean-counter count --peak-memory FILE` and returns its output and
/// peak resident memory in KiB.
fn count_in_subprocess(file: &std::path::Path) -> (String, u64) {
    let out = Command::new(common::binary())
        .args(["count", "--peak-memory"])
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let peak = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak memory: "))
        .and_then(|v| v.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no peak memory in {stdout:?}"));
    (stdout, peak)
}

/// A 50-megapixel photo takes ~150 MB decoded; counting it must not.
const PEAK_LIMIT_KIB: u64 = 120 * 1024;

#[test]
fn a_50_megapixel_png_is_counted_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.png");
    let (w, h) = (8660u32, 5774u32);
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    // A quarter and a dime at 40 pixels per millimetre.
    let discs = [(2500.0f32, 2800.0f32, 485.2f32), (5500.0, 2800.0, 358.2)];
    png_by_rows(
        w,
        h,
        |x, y| {
            for &(cx, cy, r) in &discs {
                if (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) <= r * r {
                    return SILVER;
                }
            }
            [240, 238, 235]
        },
        file,
    );
    let (stdout, peak) = count_in_subprocess(&path);
    assert!(stdout.contains("$0.35"), "{stdout}");
    assert!(peak < PEAK_LIMIT_KIB, "peak memory {peak} KiB for 50 MP");
}

#[test]
fn a_50_megapixel_jpeg_is_counted_in_bounded_memory() {
    // FFmpeg makes the JPEG quickly; without it the test has nothing to
    // read (and CI, which installs FFmpeg, must not skip it).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jpg");
    let made = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=0xf0eeeb:s=8660x5774,drawbox=x=2000:y=2300:w=1000:h=1000:color=0x96989b:t=fill",
            "-frames:v",
            "1",
            "-q:v",
            "4",
        ])
        .arg(&path)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ffmpeg is needed to make the 50 MP JPEG under CI=true"
        );
        eprintln!("skipping: ffmpeg could not make a JPEG");
        return;
    }
    let (_, peak) = count_in_subprocess(&path);
    assert!(peak < PEAK_LIMIT_KIB, "peak memory {peak} KiB for 50 MP");
}
