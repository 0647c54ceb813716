//! RunTask client tokens: which tasks a request identified by its token
//! started, so a retried request is answered with them instead of starting
//! more.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{Result, SqlContext, StoreError};

/// What a token was first used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    /// Digest of the request the token came with.
    pub request: String,
    pub task_arns: Vec<String>,
}

/// The first use of `token`, if it was used.
pub fn get(conn: &Connection, token: &str) -> Result<Option<TokenUse>> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT request, task_arns FROM run_task_tokens WHERE token = ?1",
            [token],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx("get client token")?;
    row.map(|(request, arns)| {
        let task_arns = serde_json::from_str(&arns).map_err(|e| StoreError::Corrupt {
            what: format!("client token {token}"),
            reason: e.to_string(),
        })?;
        Ok(TokenUse { request, task_arns })
    })
    .transpose()
}

/// Records the first use of `token`; a token already recorded is a conflict.
pub fn insert(
    tx: &Transaction,
    token: &str,
    use_: &TokenUse,
    created_at_millis: i64,
) -> Result<()> {
    let arns = serde_json::to_string(&use_.task_arns).map_err(|e| StoreError::Corrupt {
        what: format!("client token {token}"),
        reason: e.to_string(),
    })?;
    match tx.execute(
        "INSERT INTO run_task_tokens (token, request, task_arns, created_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![token, use_.request, arns, created_at_millis],
    ) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict {
                what: format!("client token {token} was already used"),
            })
        }
        Err(e) => Err(e).ctx("insert client token"),
    }
}

/// Forgets tokens first used before `cutoff_millis`; returns how many.
pub fn delete_before(tx: &Transaction, cutoff_millis: i64) -> Result<usize> {
    tx.execute(
        "DELETE FROM run_task_tokens WHERE created_at < ?1",
        [cutoff_millis],
    )
    .ctx("delete old client tokens")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_token_remembers_its_request_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        let first = TokenUse {
            request: "r1".into(),
            task_arns: vec!["arn:a".into(), "arn:b".into()],
        };
        let recorded = first.clone();
        store
            .write(move |tx| insert(tx, "tok", &recorded, 1_000))
            .await
            .unwrap();
        let again = first.clone();
        let err = store
            .write(move |tx| insert(tx, "tok", &again, 2_000))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        let got = store.read(|conn| get(conn, "tok")).await.unwrap();
        assert_eq!(got, Some(first));
        let removed = store.write(|tx| delete_before(tx, 1_500)).await.unwrap();
        assert_eq!(removed, 1);
        assert_eq!(store.read(|conn| get(conn, "tok")).await.unwrap(), None);
    }
}
