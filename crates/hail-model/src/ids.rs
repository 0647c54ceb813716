//! Resource ids.

use rand::RngExt as _;

/// A new task id: 32 lowercase hex digits, as ECS task ids are.
pub fn new_task_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new service deployment id: `ecs-svc/` and 19 digits, as ECS names
/// deployments (and its tasks' `startedBy`).
pub fn new_deployment_id() -> String {
    format!("ecs-svc/{}", random_string(b"0123456789", 19))
}

/// A new id for a service event: a UUID-shaped random string.
pub fn new_event_id() -> String {
    let hex = new_task_id();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A new access key id of temporary credentials: `ASIA` and 16 characters,
/// as STS issues them.
pub fn new_temporary_access_key_id() -> String {
    format!("ASIA{}", random_string(KEY_ALPHABET, 16))
}

/// A new secret access key: 40 characters, as AWS issues them.
pub fn new_secret_access_key() -> String {
    random_string(SECRET_ALPHABET, 40)
}

/// A new session token: 256 random bits, base64-style.
pub fn new_session_token() -> String {
    random_string(SECRET_ALPHABET, 64)
}

/// Whether `s` has the shape of a task id (safe as a file and cgroup name).
pub fn is_task_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_unique_hex() {
        let a = new_task_id();
        let b = new_task_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(is_task_id(&a));
        assert!(!is_task_id("../x"));
        assert!(!is_task_id(""));
    }

    #[test]
    fn temporary_credentials_look_like_sts_ones() {
        let key = new_temporary_access_key_id();
        assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
        assert_ne!(new_secret_access_key(), new_secret_access_key());
        assert_eq!(new_secret_access_key().len(), 40);
        assert_eq!(new_session_token().len(), 64);
    }
}
