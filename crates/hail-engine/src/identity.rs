//! Who may do what: the root credentials, roles, and the temporary
//! credentials tasks receive for their `taskRoleArn`.
//!
//! [`Identity`] is both the [`CredentialStore`] every signature is verified
//! against and the [`AccessPolicy`] every authenticated request is
//! authorised by:
//! - the root keys (from the data directory) may do everything;
//! - a task's temporary keys may do what its role's policy allows, and only
//!   when the request carries the session token issued with them; expired
//!   keys still verify (so the caller learns they expired) but are refused
//!   with `ExpiredToken`.
//!
//! Task credentials are minted on the first request of the task to the
//! credentials endpoint and rotated when less than a fifth of their life is
//! left (the old set stays valid until it expires, as STS credentials do);
//! all of a task's credentials are revoked when the task stops. A task
//! reaches the endpoint at `/v2/credentials/<task id>-<mac>`, where the MAC
//! is keyed by a server secret: an id cannot be guessed from a task id, and
//! the endpoint also checks that the caller's address is the task's own.
//!
//! The store is the truth; an in-memory copy of roles and live keys answers
//! the per-request lookups without a database read. The engine is the only
//! writer of both, and updates the copy after each commit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hail_api::{AccessError, AccessPolicy, Clock, CredentialStore};
use hail_model::iam::{role_name_of, Decision, Role};
use hail_store::identity::{self, TaskCredentials};
use hail_store::{Store, StoreError};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long task credentials live unless the server says otherwise: six
/// hours, as the ECS agent's.
pub const DEFAULT_CREDENTIALS_TTL: Duration = Duration::from_secs(6 * 3600);
/// Expired credentials are remembered this long, so that their use is
/// answered `ExpiredToken` rather than an unknown key.
const EXPIRED_MEMORY_MILLIS: i64 = 3600 * 1000;

/// The root keys of the data directory.
#[derive(Clone)]
pub struct RootKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for RootKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    root: RootKeys,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    /// Serialises minting, so two concurrent first requests of one task get
    /// one set of credentials.
    mint: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    roles: HashMap<String, Role>,
    keys: HashMap<String, TaskCredentials>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("root", &self.inner.root)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("role {0} does not exist")]
    NoSuchRole(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn millis(clock: &dyn Clock) -> i64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Identity {
    /// Loads roles and live task credentials from the store.
    pub async fn load(
        store: Store,
        root: RootKeys,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Identity, StoreError> {
        let since = millis(clock.as_ref()) - EXPIRED_MEMORY_MILLIS;
        let (roles, keys) = store
            .read(move |conn| {
                Ok::<_, StoreError>((
                    identity::list_roles(conn)?,
                    identity::all_credentials(conn, since)?,
                ))
            })
            .await?;
        let state = State {
            roles: roles
                .into_iter()
                .map(|r| (r.role_name.clone(), r))
                .collect(),
            keys: keys
                .into_iter()
                .map(|k| (k.access_key_id.clone(), k))
                .collect(),
        };
        Ok(Identity {
            inner: Arc::new(Inner {
                store,
                root,
                ttl,
                clock,
                state: RwLock::new(state),
                mint: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    fn now_millis(&self) -> i64 {
        millis(self.inner.clock.as_ref())
    }

    fn mac(&self, task_id: &str) -> String {
        // The root secret keys the MAC: whoever can compute an id could as
        // well use the root keys.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.inner.root.secret_access_key.as_bytes())
                .expect("HMAC takes keys of any length");
        mac.update(b"hail task credentials ");
        mac.update(task_id.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The id of task `task_id`'s credentials endpoint path.
    pub fn credentials_id(&self, task_id: &str) -> String {
        format!("{task_id}-{}", self.mac(task_id))
    }

    /// The task id a credentials id belongs to, when the id is genuine.
    pub fn task_of_credentials_id(&self, id: &str) -> Option<String> {
        let (task_id, mac) = id.rsplit_once('-')?;
        if !hail_model::ids::is_task_id(task_id) {
            return None;
        }
        let expected = self.mac(task_id);
        bool::from(expected.as_bytes().ct_eq(mac.as_bytes())).then(|| task_id.to_owned())
    }

    /// The role an ARN names (by its name, whatever its path), if it exists.
    pub fn role(&self, arn: &str) -> Option<Role> {
        let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        state.roles.get(role_name_of(arn)?).cloned()
    }

    /// Records a role created, changed (`Some`) or deleted (`None`) in the
    /// store, after the commit.
    pub fn role_changed(&self, name: &str, role: Option<Role>) {
        let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        match role {
            Some(role) => state.roles.insert(name.to_owned(), role),
            None => state.roles.remove(name),
        };
    }

    /// The credentials task `task_arn` should use now for `role_arn`: the
    /// newest set while more than a fifth of its life is left, else a new
    /// one.
    pub async fn credentials_for(
        &self,
        task_arn: &str,
        role_arn: &str,
    ) -> Result<TaskCredentials, CredentialsError> {
        if self.role(role_arn).is_none() {
            return Err(CredentialsError::NoSuchRole(role_arn.to_owned()));
        }
        let _minting = self.inner.mint.lock().await;
        let now = self.now_millis();
        let ttl = i64::try_from(self.inner.ttl.as_millis()).unwrap_or(i64::MAX);
        let fresh_enough =
            |c: &TaskCredentials| c.role_arn == role_arn && c.expires_at - now > ttl / 5;
        {
            let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
            let newest = state
                .keys
                .values()
                .filter(|c| c.task_arn == task_arn)
                .max_by_key(|c| c.expires_at);
            if let Some(c) = newest.filter(|c| fresh_enough(c)) {
                return Ok(c.clone());
            }
        }
        let creds = TaskCredentials {
            access_key_id: hail_model::ids::new_temporary_access_key_id(),
            secret_access_key: hail_model::ids::new_secret_access_key(),
            session_token: hail_model::ids::new_session_token(),
            task_arn: task_arn.to_owned(),
            role_arn: role_arn.to_owned(),
            issued_at: now,
            expires_at: now.saturating_add(ttl),
        };
        let stored = creds.clone();
        let purge_before = now - EXPIRED_MEMORY_MILLIS;
        self.inner
            .store
            .write(move |tx| {
                identity::insert_credentials(tx, &stored)?;
                identity::purge_expired(tx, purge_before)?;
                Ok::<_, StoreError>(())
            })
            .await?;
        let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        state.keys.retain(|_, c| c.expires_at >= purge_before);
        state
            .keys
            .insert(creds.access_key_id.clone(), creds.clone());
        Ok(creds)
    }

    /// Revokes every credential set of a task (it stopped).
    pub async fn revoke_task(&self, task_arn: &str) -> Result<(), StoreError> {
        let arn = task_arn.to_owned();
        let revoked = self
            .inner
            .store
            .write(move |tx| identity::revoke_task(tx, &arn))
            .await?;
        let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        for key in revoked {
            state.keys.remove(&key);
        }
        state.keys.retain(|_, c| c.task_arn != task_arn);
        Ok(())
    }

    /// The tasks holding credentials now.
    pub fn holders(&self) -> Vec<String> {
        let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        let mut arns: Vec<String> = state.keys.values().map(|c| c.task_arn.clone()).collect();
        arns.sort();
        arns.dedup();
        arns
    }

    /// Whether the task holds any credentials (for tests and `hail status`).
    pub fn holds_credentials(&self, task_arn: &str) -> bool {
        let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        state.keys.values().any(|c| c.task_arn == task_arn)
    }
}

impl CredentialStore for Identity {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        if access_key_id == self.inner.root.access_key_id {
            return Some(self.inner.root.secret_access_key.clone());
        }
        let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .keys
            .get(access_key_id)
            .map(|c| c.secret_access_key.clone())
    }
}

impl AccessPolicy for Identity {
    fn authorize(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        action: &str,
        resources: &[String],
    ) -> Result<(), AccessError> {
        if access_key_id == self.inner.root.access_key_id {
            return Ok(());
        }
        let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        let Some(creds) = state.keys.get(access_key_id) else {
            return Err(AccessError::InvalidToken);
        };
        let token_ok = session_token
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(creds.session_token.as_bytes())));
        if !token_ok {
            return Err(AccessError::InvalidToken);
        }
        if creds.expires_at <= self.now_millis() {
            return Err(AccessError::ExpiredToken);
        }
        let denied = || {
            AccessError::Denied(format!(
                "User: {} is not authorized to perform: {action} on resource: {}",
                assumed_role_arn(&creds.role_arn, &creds.task_arn),
                resources.join(", ")
            ))
        };
        let Some(role) = role_name_of(&creds.role_arn).and_then(|n| state.roles.get(n)) else {
            return Err(denied());
        };
        match role.policy.evaluate(action, resources) {
            Decision::Allowed => Ok(()),
            Decision::ImplicitDeny | Decision::ExplicitDeny => Err(denied()),
        }
    }
}

/// The principal a task acts as, as STS names an assumed role session.
fn assumed_role_arn(role_arn: &str, task_arn: &str) -> String {
    let session = task_arn.rsplit('/').next().unwrap_or(task_arn);
    match role_arn.split_once(":role/") {
        Some((prefix, name)) => {
            let prefix = prefix.replacen(":iam::", ":sts::", 1);
            format!("{prefix}:assumed-role/{name}/{session}")
        }
        None => role_arn.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use hail_model::ecs::Timestamp;
    use hail_model::iam::Policy;

    use super::*;

    struct FixedClock(AtomicI64);

    impl Clock for FixedClock {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst) as u64)
        }
    }

    const TASK: &str =
        "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef";
    const ROLE: &str = "arn:aws:iam::000000000000:role/thumbs";

    async fn identity(clock: Arc<FixedClock>) -> (tempfile::TempDir, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        let root = RootKeys {
            access_key_id: "ROOT".into(),
            secret_access_key: "root-secret".into(),
        };
        let id = Identity::load(store, root, Duration::from_secs(100), clock)
            .await
            .unwrap();
        let policy: Policy = serde_json::from_str(
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::media/thumbnail/*"}]}"#,
        )
        .unwrap();
        id.role_changed(
            "thumbs",
            Some(Role {
                role_name: "thumbs".into(),
                role_arn: ROLE.into(),
                description: None,
                policy,
                created_at: Timestamp::from_millis(0),
            }),
        );
        (dir, id)
    }

    #[tokio::test]
    async fn task_credentials_are_scoped_rotated_expired_and_revoked() {
        let clock = Arc::new(FixedClock(AtomicI64::new(1_000_000)));
        let (_dir, id) = identity(clock.clone()).await;
        let thumb = vec!["arn:aws:s3:::media/thumbnail/a.png".to_owned()];
        let video = vec!["arn:aws:s3:::media/video/a.mp4".to_owned()];

        assert!(id
            .authorize("ROOT", None, "s3:DeleteBucket", &video)
            .is_ok());
        let c = id.credentials_for(TASK, ROLE).await.unwrap();
        assert_eq!(
            id.secret_for(&c.access_key_id),
            Some(c.secret_access_key.clone())
        );
        let token = Some(c.session_token.as_str());
        id.authorize(&c.access_key_id, token, "s3:PutObject", &thumb)
            .unwrap();
        assert!(matches!(
            id.authorize(&c.access_key_id, token, "s3:GetObject", &video),
            Err(AccessError::Denied(m)) if m.contains("assumed-role/thumbs/0123456789abcdef")
        ));
        assert_eq!(
            id.authorize(&c.access_key_id, None, "s3:PutObject", &thumb),
            Err(AccessError::InvalidToken)
        );
        assert_eq!(
            id.authorize(&c.access_key_id, Some("forged"), "s3:PutObject", &thumb),
            Err(AccessError::InvalidToken)
        );
        assert_eq!(
            id.authorize("ASIAUNKNOWN", token, "s3:PutObject", &thumb),
            Err(AccessError::InvalidToken)
        );

        // Early in its life the same set is handed out again…
        clock.0.fetch_add(50_000, Ordering::SeqCst);
        assert_eq!(id.credentials_for(TASK, ROLE).await.unwrap(), c);
        // …late in its life a new one, while the old one still works.
        clock.0.fetch_add(35_000, Ordering::SeqCst);
        let rotated = id.credentials_for(TASK, ROLE).await.unwrap();
        assert_ne!(rotated.access_key_id, c.access_key_id);
        id.authorize(&c.access_key_id, token, "s3:PutObject", &thumb)
            .unwrap();
        // Past its expiry the old set is refused as expired.
        clock.0.fetch_add(20_000, Ordering::SeqCst);
        assert_eq!(
            id.authorize(&c.access_key_id, token, "s3:PutObject", &thumb),
            Err(AccessError::ExpiredToken)
        );
        id.authorize(
            &rotated.access_key_id,
            Some(&rotated.session_token),
            "s3:PutObject",
            &thumb,
        )
        .unwrap();

        id.revoke_task(TASK).await.unwrap();
        assert!(!id.holds_credentials(TASK));
        assert_eq!(id.secret_for(&rotated.access_key_id), None);
        assert!(matches!(
            id.credentials_for(TASK, "arn:aws:iam::000000000000:role/none")
                .await,
            Err(CredentialsError::NoSuchRole(_))
        ));
    }

    #[tokio::test]
    async fn credentials_ids_cannot_be_forged() {
        let clock = Arc::new(FixedClock(AtomicI64::new(0)));
        let (_dir, id) = identity(clock).await;
        let task = "0123456789abcdef0123456789abcdef";
        let cid = id.credentials_id(task);
        assert_eq!(id.task_of_credentials_id(&cid).as_deref(), Some(task));
        let mut forged = cid.clone();
        forged.pop();
        forged.push('0');
        assert!(forged == cid || id.task_of_credentials_id(&forged).is_none());
        assert_eq!(id.task_of_credentials_id("../etc-00"), None);
        assert_eq!(
            id.task_of_credentials_id(&format!("{task}-{}", "0".repeat(32))),
            None
        );
    }
}
