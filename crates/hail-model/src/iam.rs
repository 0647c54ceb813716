//! Roles: what a task's credentials may do.
//!
//! A role is a name, its ARN (`arn:aws:iam::<account>:role/<name>`, the ARN a
//! task definition's `taskRoleArn` carries), and a policy in the shape of an
//! IAM identity policy: statements of `Effect`, `Action` and `Resource`, with
//! IAM's `*` and `?` wildcards. Evaluation is IAM's: an explicit `Deny` wins,
//! otherwise an `Allow` that matches grants, otherwise the request is denied.
//!
//! Resources are written as IAM writes them for S3 (`arn:aws:s3:::media` for
//! a bucket, `arn:aws:s3:::media/thumbnail/*` for objects under a prefix),
//! and `*` for every resource.

use serde::{Deserialize, Serialize};

use crate::ecs::Timestamp;

/// Longest role name IAM accepts.
pub const MAX_ROLE_NAME_LEN: usize = 64;
/// Most statements one role's policy may hold.
pub const MAX_STATEMENTS: usize = 100;

/// A role with its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub role_name: String,
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub policy: Policy,
    pub created_at: Timestamp,
}

/// An identity policy document (`{"Version": …, "Statement": [...]}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    #[serde(rename = "Version", default = "default_version")]
    pub version: String,
    #[serde(rename = "Statement")]
    pub statements: Vec<Statement>,
}

fn default_version() -> String {
    "2012-10-17".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement. `Action` and `Resource` take a string or a list, as IAM
/// accepts both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Action", with = "one_or_many")]
    pub actions: Vec<String>,
    #[serde(rename = "Resource", with = "one_or_many")]
    pub resources: Vec<String>,
}

mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
    }
}

/// What a policy says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No statement allows it.
    ImplicitDeny,
    /// A statement denies it.
    ExplicitDeny,
}

impl Policy {
    /// Whether `action` (`s3:GetObject`) on every one of `resources` is
    /// allowed. A request touching several resources (CopyObject reads one
    /// object and writes another) needs each of them allowed.
    pub fn evaluate(&self, action: &str, resources: &[String]) -> Decision {
        let mut allowed_all = true;
        for resource in resources {
            let mut allowed = false;
            for st in &self.statements {
                let hits = st.actions.iter().any(|a| action_matches(a, action))
                    && st.resources.iter().any(|r| wildcard_match(r, resource));
                if !hits {
                    continue;
                }
                match st.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
            allowed_all &= allowed;
        }
        if allowed_all && !resources.is_empty() {
            Decision::Allowed
        } else {
            Decision::ImplicitDeny
        }
    }

    /// Checks the document's shape; `Err` names the offending statement.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != "2012-10-17" && self.version != "2008-10-17" {
            return Err(format!(
                "Version {:?} is not a policy language version",
                self.version
            ));
        }
        if self.statements.is_empty() {
            return Err("Statement: a policy needs at least one statement".into());
        }
        if self.statements.len() > MAX_STATEMENTS {
            return Err(format!(
                "Statement: at most {MAX_STATEMENTS} statements are allowed"
            ));
        }
        for (i, st) in self.statements.iter().enumerate() {
            if st.actions.is_empty() {
                return Err(format!("Statement[{i}].Action: at least one action"));
            }
            if st.resources.is_empty() {
                return Err(format!("Statement[{i}].Resource: at least one resource"));
            }
            for a in &st.actions {
                let ok = a == "*"
                    || a.split_once(':').is_some_and(|(service, op)| {
                        !service.is_empty()
                            && !op.is_empty()
                            && service
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !ok {
                    return Err(format!(
                        "Statement[{i}].Action: {a:?} is not service:Action (e.g. s3:GetObject)"
                    ));
                }
            }
            for r in &st.resources {
                if r != "*" && !r.starts_with("arn:") {
                    return Err(format!(
                        "Statement[{i}].Resource: {r:?} is not an ARN (e.g. arn:aws:s3:::bucket/prefix/*)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Actions compare case-insensitively, as IAM compares them.
fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// IAM's wildcard match: `*` any run of characters (including `/`), `?` one
/// character, everything else literal.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last star: linear in
    // practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Checks a role name as IAM does: 1–64 of `[A-Za-z0-9+=,.@_-]`.
pub fn validate_role_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_ROLE_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "roleName {name:?} must be 1 to {MAX_ROLE_NAME_LEN} characters of letters, digits and +=,.@_-"
        ))
    }
}

/// The ARN of role `name` in `account`.
pub fn role_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

/// The role name an ARN (`arn:aws:iam::<account>:role/[path/]<name>`) names.
pub fn role_name_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (_account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// The IAM resource ARN of an S3 bucket or object.
pub fn s3_resource(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Policy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match(
            "arn:aws:s3:::media/*",
            "arn:aws:s3:::media/a/b.png"
        ));
        assert!(!wildcard_match(
            "arn:aws:s3:::media/*",
            "arn:aws:s3:::media"
        ));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*thumb*png", "x/thumbnail/y.png"));
        assert!(!wildcard_match("media/thumbnail/*", "media/video/x"));
        assert!(wildcard_match(
            "a*a*a*a*a*b",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"
        ));
        assert!(!wildcard_match(
            "a*a*a*a*a*b",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
    }

    #[test]
    fn prefix_role_reads_only_its_prefix() {
        let p = policy(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],
                 "Resource":"arn:aws:s3:::media/thumbnail/*"}]}"#,
        );
        p.validate().unwrap();
        let obj = |k: &str| vec![s3_resource("media", Some(k))];
        assert_eq!(
            p.evaluate("s3:PutObject", &obj("thumbnail/a.png")),
            Decision::Allowed
        );
        assert_eq!(
            p.evaluate("s3:getobject", &obj("thumbnail/a.png")),
            Decision::Allowed
        );
        assert_eq!(
            p.evaluate("s3:GetObject", &obj("video/a.mp4")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            p.evaluate("s3:DeleteObject", &obj("thumbnail/a.png")),
            Decision::ImplicitDeny
        );
        // Both objects of a copy must be allowed.
        assert_eq!(
            p.evaluate(
                "s3:GetObject",
                &[
                    s3_resource("media", Some("thumbnail/a")),
                    s3_resource("media", Some("video/b"))
                ]
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(p.evaluate("s3:GetObject", &[]), Decision::ImplicitDeny);
    }

    #[test]
    fn explicit_deny_wins() {
        let p = policy(
            r#"{"Statement":[
                {"Effect":"Allow","Action":"s3:*","Resource":"*"},
                {"Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::media/*"}]}"#,
        );
        p.validate().unwrap();
        let r = vec![s3_resource("media", Some("x"))];
        assert_eq!(p.evaluate("s3:GetObject", &r), Decision::Allowed);
        assert_eq!(p.evaluate("s3:DeleteObject", &r), Decision::ExplicitDeny);
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            r#"{"Statement":[]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"GetObject","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"media/*"}]}"#,
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        ] {
            assert!(policy(bad).validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Policy>(
            r#"{"Statement":[{"Effect":"Maybe","Action":"s3:*","Resource":"*"}]}"#
        )
        .is_err());
    }

    #[test]
    fn role_names_and_arns() {
        validate_role_name("tom-thumb_role.1@x").unwrap();
        assert!(validate_role_name("").is_err());
        assert!(validate_role_name("a b").is_err());
        assert!(validate_role_name(&"a".repeat(65)).is_err());
        let arn = role_arn("000000000000", "thumbs");
        assert_eq!(arn, "arn:aws:iam::000000000000:role/thumbs");
        assert_eq!(role_name_of(&arn), Some("thumbs"));
        assert_eq!(
            role_name_of("arn:aws:iam::000000000000:role/service/thumbs"),
            Some("thumbs")
        );
        assert_eq!(role_name_of("arn:aws:s3:::x"), None);
    }
}
