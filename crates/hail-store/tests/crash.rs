//! Durability across a crash: a child process (this test binary, re-executed
//! in writer mode) performs writes in a loop and prints each id once
//! `Store::write` has returned; the parent SIGKILLs it mid-stream, reopens
//! the database and requires every printed id to be there.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hail_store::{outbox, tasks, Store, StoreError};

const CHILD_ENV: &str = "HAIL_STORE_CRASH_WRITER_DB";
const TEST_NAME: &str = "acknowledged_writes_survive_sigkill";
/// Concurrent writers in the child, so commits queue at the writer thread.
const CHILD_WRITERS: usize = 4;

fn main() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        child_writer(&db);
        return;
    }
    // Honour a libtest-style name filter so `cargo test -p hail-store foo`
    // does not run this slow test.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("test {TEST_NAME} ... filtered out");
        return;
    }
    acknowledged_writes_survive_sigkill();
    println!("test {TEST_NAME} ... ok");
}

/// Writes tasks (each with an outbox event, in one transaction) until
/// killed, printing each id after its write is acknowledged. Gives up after a
/// minute in case the parent died without killing it.
fn child_writer(db: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = Store::open(db).expect("open store");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut writers = Vec::new();
        for w in 0..CHILD_WRITERS {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    if Instant::now() > deadline {
                        return;
                    }
                    let id = format!("w{w}-{i:06}");
                    let t = common::task("crash", &id, "app", i);
                    let key = id.clone();
                    store
                        .write(move |tx| {
                            tasks::insert(tx, &t)?;
                            outbox::append(tx, "task-state", &key, &serde_json::json!({"i": i}))?;
                            Ok::<_, StoreError>(())
                        })
                        .await
                        .expect("write");
                    println!("{id}");
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
    });
}

fn acknowledged_writes_survive_sigkill() {
    let exe = std::env::current_exe().expect("own path");
    // Kill after different numbers of acknowledgements, so the kill lands at
    // different points of the commit cycle.
    for kill_after in [1usize, 57, 311] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        while acked.len() < kill_after {
            match lines.next() {
                Some(line) => acked.push(line.expect("read child output")),
                None => panic!("writer exited after {} writes", acked.len()),
            }
        }
        child.kill().expect("SIGKILL writer");
        // Ids printed before the kill are still in the pipe; they count too.
        acked.extend(lines.map_while(Result::ok));
        let status = child.wait().expect("reap writer");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the writer died by SIGKILL, not by finishing"
        );

        let rt = tokio::runtime::Runtime::new().unwrap();
        let (missing, events, integrity) = rt.block_on(async {
            let store = Store::open(&db).expect("reopen after crash");
            let ids = acked.clone();
            store
                .read(move |c| {
                    let mut missing = Vec::new();
                    for id in &ids {
                        if tasks::get(c, id)?.is_none() {
                            missing.push(id.clone());
                        }
                    }
                    let events = outbox::pending(c, "task-state", u32::MAX)?;
                    let integrity: String = c
                        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                        .map_err(|source| StoreError::Sqlite {
                            op: "integrity_check".into(),
                            source,
                        })?;
                    Ok::<_, StoreError>((missing, events, integrity))
                })
                .await
                .unwrap()
        });
        assert!(
            missing.is_empty(),
            "kill after {kill_after}: {} acknowledged writes lost: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert_eq!(integrity, "ok");
        // Each task came with its event, atomically: at least the acked ones.
        let keys: std::collections::HashSet<&str> = events.iter().map(|e| e.key.as_str()).collect();
        assert!(acked.iter().all(|id| keys.contains(id.as_str())));
        eprintln!(
            "kill after {kill_after}: {} acknowledged, all present, {} events",
            acked.len(),
            events.len()
        );
    }
}
