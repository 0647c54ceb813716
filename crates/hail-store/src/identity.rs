//! Roles and the temporary credentials tasks receive for them.

use hail_model::iam::Role;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};

/// Creates `role`; an existing name is a conflict.
pub fn insert_role(tx: &Transaction, role: &Role) -> Result<()> {
    let doc = to_doc("role", role)?;
    let inserted = tx
        .execute(
            "INSERT INTO roles (role_name, role_arn, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![role.role_name, role.role_arn, doc],
        )
        .ctx("insert role")?;
    if inserted == 0 {
        return Err(StoreError::Conflict {
            what: format!("role {}", role.role_name),
        });
    }
    Ok(())
}

/// Replaces the stored document of an existing role; false when it is gone.
pub fn update_role(tx: &Transaction, role: &Role) -> Result<bool> {
    let doc = to_doc("role", role)?;
    let n = tx
        .execute(
            "UPDATE roles SET doc = ?2 WHERE role_name = ?1",
            params![role.role_name, doc],
        )
        .ctx("update role")?;
    Ok(n > 0)
}

pub fn get_role(conn: &Connection, name: &str) -> Result<Option<Role>> {
    let doc: Option<String> = conn
        .query_row("SELECT doc FROM roles WHERE role_name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .ctx("get role")?;
    doc.map(|d| parse_doc(&format!("role {name}"), &d))
        .transpose()
}

/// Every role, by name.
pub fn list_roles(conn: &Connection) -> Result<Vec<Role>> {
    let mut stmt = conn
        .prepare_cached("SELECT role_name, doc FROM roles ORDER BY role_name")
        .ctx("list roles")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .ctx("list roles")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list roles")?;
    rows.iter()
        .map(|(name, doc)| parse_doc(&format!("role {name}"), doc))
        .collect()
}

/// Deletes a role; false when there was none.
pub fn delete_role(tx: &Transaction, name: &str) -> Result<bool> {
    let n = tx
        .execute("DELETE FROM roles WHERE role_name = ?1", [name])
        .ctx("delete role")?;
    Ok(n > 0)
}

/// One set of temporary credentials of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub task_arn: String,
    pub role_arn: String,
    /// Milliseconds since the epoch.
    pub issued_at: i64,
    pub expires_at: i64,
}

fn credentials_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskCredentials> {
    Ok(TaskCredentials {
        access_key_id: r.get(0)?,
        secret_access_key: r.get(1)?,
        session_token: r.get(2)?,
        task_arn: r.get(3)?,
        role_arn: r.get(4)?,
        issued_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

const CREDENTIAL_COLUMNS: &str =
    "access_key_id, secret_access_key, session_token, task_arn, role_arn, issued_at, expires_at";

pub fn insert_credentials(tx: &Transaction, c: &TaskCredentials) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO task_credentials ({CREDENTIAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            c.access_key_id,
            c.secret_access_key,
            c.session_token,
            c.task_arn,
            c.role_arn,
            c.issued_at,
            c.expires_at
        ],
    )
    .ctx("insert task credentials")?;
    Ok(())
}

/// The credentials of `task_arn`, newest first.
pub fn credentials_of_task(conn: &Connection, task_arn: &str) -> Result<Vec<TaskCredentials>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM task_credentials WHERE task_arn = ?1
             ORDER BY expires_at DESC"
        ))
        .ctx("read task credentials")?;
    let rows = stmt
        .query_map([task_arn], credentials_row)
        .ctx("read task credentials")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("read task credentials")?;
    Ok(rows)
}

/// Every credential set that has not expired before `since` (millis).
pub fn all_credentials(conn: &Connection, since: i64) -> Result<Vec<TaskCredentials>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM task_credentials WHERE expires_at >= ?1"
        ))
        .ctx("read task credentials")?;
    let rows = stmt
        .query_map([since], credentials_row)
        .ctx("read task credentials")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("read task credentials")?;
    Ok(rows)
}

/// Revokes every credential set of a task; returns their access key ids.
pub fn revoke_task(tx: &Transaction, task_arn: &str) -> Result<Vec<String>> {
    let mut stmt = tx
        .prepare_cached("DELETE FROM task_credentials WHERE task_arn = ?1 RETURNING access_key_id")
        .ctx("revoke task credentials")?;
    let ids = stmt
        .query_map([task_arn], |r| r.get(0))
        .ctx("revoke task credentials")?
        .collect::<Result<Vec<String>, _>>()
        .ctx("revoke task credentials")?;
    Ok(ids)
}

/// Forgets credentials that expired before `before` (millis).
pub fn purge_expired(tx: &Transaction, before: i64) -> Result<usize> {
    tx.execute(
        "DELETE FROM task_credentials WHERE expires_at < ?1",
        [before],
    )
    .ctx("purge expired credentials")
}

#[cfg(test)]
mod tests {
    use hail_model::ecs::Timestamp;
    use hail_model::iam::Policy;

    use super::*;

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("s.db")).unwrap();
        crate::migrate::migrate(&mut conn, 0).unwrap();
        (dir, conn)
    }

    #[test]
    fn roles_round_trip_and_conflict() {
        let (_d, mut conn) = open();
        let policy: Policy = serde_json::from_str(
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        )
        .unwrap();
        let role = Role {
            role_name: "r".into(),
            role_arn: "arn:aws:iam::0:role/r".into(),
            description: None,
            policy,
            created_at: Timestamp::from_millis(5),
        };
        let tx = conn.transaction().unwrap();
        insert_role(&tx, &role).unwrap();
        assert!(matches!(
            insert_role(&tx, &role),
            Err(StoreError::Conflict { .. })
        ));
        tx.commit().unwrap();
        assert_eq!(get_role(&conn, "r").unwrap(), Some(role.clone()));
        assert_eq!(list_roles(&conn).unwrap(), vec![role]);
        let tx = conn.transaction().unwrap();
        assert!(delete_role(&tx, "r").unwrap());
        assert!(!delete_role(&tx, "r").unwrap());
    }

    #[test]
    fn credentials_are_revoked_with_their_task_and_purged_when_expired() {
        let (_d, mut conn) = open();
        let creds = |id: &str, task: &str, expires_at| TaskCredentials {
            access_key_id: id.into(),
            secret_access_key: "s".into(),
            session_token: "t".into(),
            task_arn: task.into(),
            role_arn: "arn:aws:iam::0:role/r".into(),
            issued_at: 0,
            expires_at,
        };
        let tx = conn.transaction().unwrap();
        insert_credentials(&tx, &creds("A1", "t1", 100)).unwrap();
        insert_credentials(&tx, &creds("A2", "t1", 200)).unwrap();
        insert_credentials(&tx, &creds("B1", "t2", 50)).unwrap();
        tx.commit().unwrap();
        let of_t1 = credentials_of_task(&conn, "t1").unwrap();
        assert_eq!(of_t1[0].access_key_id, "A2");
        assert_eq!(all_credentials(&conn, 60).unwrap().len(), 2);
        let tx = conn.transaction().unwrap();
        let mut revoked = revoke_task(&tx, "t1").unwrap();
        revoked.sort();
        assert_eq!(revoked, ["A1", "A2"]);
        assert_eq!(purge_expired(&tx, 60).unwrap(), 1);
        tx.commit().unwrap();
        assert!(all_credentials(&conn, 0).unwrap().is_empty());
    }
}
