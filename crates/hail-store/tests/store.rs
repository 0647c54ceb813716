//! The store itself: opening, migrations, the single writer, reads.

mod common;

use std::sync::Arc;

use hail_store::{clusters, migrate, task_definitions, Store, StoreError};

#[tokio::test]
async fn migrations_apply_once_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).unwrap();
    let first: Vec<(u32, String, i64)> = store
        .read(|c| {
            let mut s = c.prepare("SELECT version, name, applied_at FROM schema_migrations")?;
            let rows = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, TestError>(rows)
        })
        .await
        .unwrap();
    assert_eq!(first.len(), migrate::MIGRATIONS.len());
    assert_eq!((first[0].0, first[0].1.as_str()), (1, "initial"));
    drop(store);

    let store = Store::open(&path).unwrap();
    let again: Vec<(u32, String, i64)> = store
        .read(|c| {
            let mut s = c.prepare("SELECT version, name, applied_at FROM schema_migrations")?;
            let rows = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, TestError>(rows)
        })
        .await
        .unwrap();
    assert_eq!(again, first, "reopening applies nothing twice");

    let (mode, sync, fk): (String, i64, i64) = store
        .write(|tx| {
            Ok::<_, TestError>((
                tx.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
                tx.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(
        (mode.as_str(), sync, fk),
        ("wal", 2, 1),
        "WAL, FULL, foreign keys"
    );
}

impl From<rusqlite::Error> for TestError {
    fn from(e: rusqlite::Error) -> Self {
        TestError(e.to_string())
    }
}
impl From<StoreError> for TestError {
    fn from(e: StoreError) -> Self {
        TestError(e.to_string())
    }
}
#[derive(Debug, PartialEq)]
struct TestError(String);

#[tokio::test]
async fn reopening_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).unwrap();
    store
        .write(|tx| clusters::insert_or_get(tx, &common::cluster("kept")))
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let got = store
        .read(|c| clusters::get(c, "kept"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, common::cluster("kept"));
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
        [],
    )
    .unwrap();
    drop(raw);
    let err = Store::open(&path).unwrap_err();
    match &err {
        StoreError::SchemaTooNew { found, known } => {
            assert_eq!((*found, *known), (999, migrate::known_version()))
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(
        err.to_string().contains("newer than this binary knows"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_write_rolls_back_entirely() {
    let (_dir, store) = common::temp_store();
    let err = store
        .write(|tx| {
            clusters::insert_or_get(tx, &common::cluster("half"))?;
            Err::<(), _>(StoreError::Conflict {
                what: "test abort".into(),
            })
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    assert!(store
        .read(|c| clusters::get(c, "half"))
        .await
        .unwrap()
        .is_none());
    // The writer is still usable after a failed write.
    store
        .write(|tx| clusters::insert_or_get(tx, &common::cluster("whole")))
        .await
        .unwrap();
    assert!(store
        .read(|c| clusters::get(c, "whole"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_panicking_write_rolls_back_and_the_writer_survives() {
    let (_dir, store) = common::temp_store();
    let s = store.clone();
    let joined = tokio::spawn(async move {
        s.write(|tx| {
            clusters::insert_or_get(tx, &common::cluster("boom"))?;
            if tx.is_autocommit() {
                return Ok::<(), StoreError>(());
            }
            panic!("closure failed mid-transaction");
        })
        .await
    })
    .await;
    assert!(
        joined.unwrap_err().is_panic(),
        "the panic reaches the caller"
    );
    assert!(store
        .read(|c| clusters::get(c, "boom"))
        .await
        .unwrap()
        .is_none());
    store
        .write(|tx| clusters::insert_or_get(tx, &common::cluster("after")))
        .await
        .unwrap();
}

#[tokio::test]
async fn readers_are_query_only() {
    let (_dir, store) = common::temp_store();
    let err = store
        .read(|c| {
            clusters::get(c, "x").map(|_| ()).and_then(|_| {
                c.execute("DELETE FROM clusters", [])
                    .map(|_| ())
                    .map_err(|source| StoreError::Sqlite {
                        op: "sneaky write".into(),
                        source,
                    })
            })
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sneaky write"), "{err}");
}

#[tokio::test]
async fn reads_do_not_wait_for_a_long_write() {
    let (_dir, store) = common::temp_store();
    store
        .write(|tx| clusters::insert_or_get(tx, &common::cluster("seen")))
        .await
        .unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
    let s = store.clone();
    let writer = tokio::spawn(async move {
        s.write(move |tx| {
            clusters::insert_or_get(tx, &common::cluster("pending"))?;
            started_tx.send(()).ok();
            // Holds the write transaction open until the reader has finished.
            finish_rx.recv().ok();
            Ok::<_, StoreError>(())
        })
        .await
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    let (seen, pending) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.read(|c| {
            Ok::<_, StoreError>((clusters::get(c, "seen")?, clusters::get(c, "pending")?))
        }),
    )
    .await
    .expect("a read completes while the writer holds its transaction")
    .unwrap();
    assert!(seen.is_some(), "committed data is visible");
    assert!(pending.is_none(), "uncommitted data is not");
    finish_tx.send(()).unwrap();
    writer.await.unwrap().unwrap();
    assert!(store
        .read(|c| clusters::get(c, "pending"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revision_allocation_is_atomic_under_concurrent_writers() {
    let (_dir, store) = common::temp_store();
    let store = Arc::new(store);
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    let mut handles = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..EACH {
                let def = store
                    .write(|tx| {
                        task_definitions::register(tx, "web", |rev| {
                            common::task_definition("web", rev)
                        })
                    })
                    .await
                    .unwrap();
                mine.push(def.revision);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    let expected: Vec<u32> = (1..=(WRITERS * EACH) as u32).collect();
    assert_eq!(all, expected, "distinct and gapless");
}

#[tokio::test]
async fn store_errors_pass_through_caller_error_types() {
    let (_dir, store) = common::temp_store();
    let err: TestError = store
        .write(|tx| {
            clusters::mark_inactive(tx, "absent")?;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err, TestError("cluster absent not found".into()));
}

#[test]
fn store_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Store>();
}

#[test]
fn depends_on_no_higher_layer() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let hail_deps: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| k.starts_with("hail-"))
        .collect();
    assert_eq!(
        hail_deps,
        ["hail-model"],
        "hail-store sits directly above hail-model"
    );
}
