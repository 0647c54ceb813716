//! Numbered schema migrations, embedded in the binary.
//!
//! Migration `N` lives in `migrations/NNNN_name.sql`. Each is applied in its
//! own transaction together with its row in `schema_migrations`, so a crash
//! mid-migration leaves the database at the previous version, never between.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Result, SqlContext, StoreError};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All migrations this binary knows, in order; versions are 1..=N without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "run_task_tokens",
        sql: include_str!("../migrations/0002_run_task_tokens.sql"),
    },
    Migration {
        version: 3,
        name: "log_cursors",
        sql: include_str!("../migrations/0003_log_cursors.sql"),
    },
    Migration {
        version: 4,
        name: "identity_triggers",
        sql: include_str!("../migrations/0004_identity_triggers.sql"),
    },
    Migration {
        version: 5,
        name: "objects",
        sql: include_str!("../migrations/0005_objects.sql"),
    },
    Migration {
        version: 6,
        name: "services",
        sql: include_str!("../migrations/0006_services.sql"),
    },
    Migration {
        version: 7,
        name: "load_balancing",
        sql: include_str!("../migrations/0007_load_balancing.sql"),
    },
    Migration {
        version: 8,
        name: "autoscaling",
        sql: include_str!("../migrations/0008_autoscaling.sql"),
    },
    Migration {
        version: 9,
        name: "stacks",
        sql: include_str!("../migrations/0009_stacks.sql"),
    },
];

/// The newest schema version this binary knows.
pub fn known_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The schema version recorded in `conn`, 0 for a new database.
pub fn current_version(conn: &Connection) -> Result<u32> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ctx("look for schema_migrations")?;
    if exists.is_none() {
        return Ok(0);
    }
    let v: Option<u32> = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .ctx("read schema version")?;
    Ok(v.unwrap_or(0))
}

/// Brings `conn` up to [`known_version`], refusing a newer schema.
pub fn migrate(conn: &mut Connection, now_millis: i64) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY NOT NULL,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .ctx("create schema_migrations")?;
    let found = current_version(conn)?;
    let known = known_version();
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let fail = |reason: String| StoreError::Migration {
            version: m.version,
            reason,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(format!("begin: {e}")))?;
        tx.execute_batch(m.sql)
            .map_err(|e| fail(format!("{}: {e}", m.name)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, now_millis],
        )
        .map_err(|e| fail(format!("record: {e}")))?;
        tx.commit().map_err(|e| fail(format!("commit: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_the_migrations_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, embedded);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are 1..=N without gaps");
        }
    }
}
