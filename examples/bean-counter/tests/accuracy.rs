//! The counter against photos whose true value is known.

mod common;

use common::{coins_dir, PHOTOS};

#[test]
fn every_photo_counts_to_its_true_total() {
    let Some(dir) = coins_dir() else { return };
    let mut failures = Vec::new();
    for photo in &PHOTOS {
        let bytes = std::fs::read(dir.join(photo.file)).expect("read the photo");
        let count = match bean_counter::count(&bytes) {
            Ok(count) => count,
            Err(e) => {
                failures.push(format!("{}: {e}", photo.file));
                continue;
            }
        };
        let counted: Vec<_> = count.coins.iter().map(|c| c.denomination.name()).collect();
        eprintln!(
            "{}: {} cents (true {}), {counted:?}",
            photo.file, count.total_cents, photo.cents
        );
        if count.total_cents != photo.cents || count.coins.len() != photo.coins {
            failures.push(format!(
                "{}: {} cents in {} coins, not {} cents in {} coins",
                photo.file,
                count.total_cents,
                count.coins.len(),
                photo.cents,
                photo.coins
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_bundled_photos_count_right() {
    let count = bean_counter::count(bean_counter::service::TEST_PHOTO).unwrap();
    assert_eq!(count.total_cents, 117);
    let small = include_bytes!("../assets/jeffninghan_coins_penny_nickel_dime_quarter.jpg");
    assert_eq!(bean_counter::count(small).unwrap().total_cents, 41);
}

#[test]
fn a_rotated_photo_counts_the_same() {
    // The bundled phone photo carries an EXIF orientation; its coins are
    // reported in upright coordinates.
    let count = bean_counter::count(bean_counter::service::TEST_PHOTO).unwrap();
    assert_eq!(count.original_size, (2448, 3264));
    let (w, h) = count.work_size;
    assert!(h > w, "work picture {w}x{h} is not upright");
}
