//! What the tests share: the project's coin photos with their true values,
//! and the bean-counter binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A coin photo of `shared/data/coins` and its true total.
pub struct Photo {
    pub file: &'static str,
    pub cents: u32,
    pub coins: usize,
}

/// Every photo of the data set (see `shared/data/README.md`).
pub const PHOTOS: [Photo; 7] = [
    Photo {
        file: "jeffninghan_coins_coin.JPG",
        cents: 117,
        coins: 8,
    },
    Photo {
        file: "jeffninghan_coins_penny_nickel_dime_quarter.jpg",
        cents: 41,
        coins: 4,
    },
    Photo {
        file: "omart075_Spare-Change_coins3.jpg",
        cents: 82,
        coins: 8,
    },
    Photo {
        file: "omart075_Spare-Change_coins4.JPG",
        cents: 153,
        coins: 9,
    },
    Photo {
        file: "omart075_Spare-Change_coins5.jpg",
        cents: 75,
        coins: 9,
    },
    Photo {
        file: "agupta231_Change-Counter_test_image.jpg",
        cents: 92,
        coins: 7,
    },
    Photo {
        file: "lizajivnani_Counting-Coins_1.png",
        cents: 425,
        coins: 17,
    },
];

/// The directory of the coin photos: `$HAIL_SHARED_DATA/coins`, or
/// `shared/data/coins` beside one of the directories above this crate (the
/// layout of a checkout next to the project's shared data). `None` when it
/// is nowhere, which fails the test under `CI=true`.
pub fn coins_dir() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("HAIL_SHARED_DATA") {
        Some(dir) => vec![PathBuf::from(dir).join("coins")],
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/data/coins"))
            .collect(),
    };
    if let Some(dir) = candidates.iter().find(|d| d.is_dir()) {
        return Some(dir.clone());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the coin photos are missing (looked in {candidates:?}; set HAIL_SHARED_DATA to the shared data directory)"
    );
    eprintln!("skipping: the coin photos are missing (set HAIL_SHARED_DATA)");
    None
}

/// The bean-counter binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_bean-counter")
}
