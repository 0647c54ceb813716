//! Resource ids.

use rand::RngExt as _;

/// A new task id: 32 lowercase hex digits, as ECS task ids are.
pub fn new_task_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
}
