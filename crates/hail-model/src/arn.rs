//! ECS ARNs: formatting them for a region and account, parsing them back, and
//! resolving the "name or ARN" references ECS accepts in its operations.
//!
//! Shapes (new, long format):
//! `arn:aws:ecs:{region}:{account}:cluster/{name}`,
//! `…:task-definition/{family}:{revision}`, `…:task/{cluster}/{id}`,
//! `…:container/{cluster}/{task}/{id}`. The old short formats
//! `task/{id}` and `container/{id}` still parse, as ECS still accepts them.

use std::fmt;

use crate::ecs::validate::is_valid_name;

/// The account id Hail uses when none is configured.
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";
/// The region Hail uses when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The partition Hail writes in the ARNs it makes.
pub const PARTITION: &str = "aws";

/// The region and account an endpoint's resources live in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

impl Default for Scope {
    fn default() -> Self {
        Self::new(DEFAULT_REGION, DEFAULT_ACCOUNT_ID)
    }
}

impl Scope {
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account: account.into(),
        }
    }

    fn prefix(&self) -> String {
        format!("arn:{PARTITION}:ecs:{}:{}", self.region, self.account)
    }

    pub fn cluster_arn(&self, name: &str) -> String {
        format!("{}:cluster/{name}", self.prefix())
    }

    pub fn task_definition_arn(&self, family: &str, revision: u32) -> String {
        format!("{}:task-definition/{family}:{revision}", self.prefix())
    }

    pub fn service_arn(&self, cluster: &str, service: &str) -> String {
        format!("{}:service/{cluster}/{service}", self.prefix())
    }

    pub fn task_arn(&self, cluster: &str, task_id: &str) -> String {
        format!("{}:task/{cluster}/{task_id}", self.prefix())
    }

    pub fn container_arn(&self, cluster: &str, task_id: &str, container_id: &str) -> String {
        format!(
            "{}:container/{cluster}/{task_id}/{container_id}",
            self.prefix()
        )
    }

    /// Whether `arn` names a resource of this region and account.
    pub fn owns(&self, arn: &EcsArn) -> bool {
        arn.region == self.region && arn.account == self.account
    }

    fn check(&self, arn: EcsArn, input: &str) -> Result<EcsArn, ArnError> {
        if self.owns(&arn) {
            Ok(arn)
        } else {
            Err(ArnError::new(
                input,
                format!(
                    "it belongs to region {} account {}, not region {} account {}",
                    arn.region, arn.account, self.region, self.account
                ),
            ))
        }
    }
}

/// A string that is neither a valid ECS ARN nor a valid name where one is
/// accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not valid: {reason}")]
pub struct ArnError {
    pub value: String,
    pub reason: String,
}

impl ArnError {
    fn new(value: &str, reason: impl Into<String>) -> Self {
        Self {
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A parsed ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcsArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub resource: EcsResource,
}

/// The resource part of an ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EcsResource {
    Cluster {
        name: String,
    },
    TaskDefinition {
        family: String,
        revision: Option<u32>,
    },
    /// `cluster` is `None` for an old-format ARN.
    Task {
        cluster: Option<String>,
        id: String,
    },
    /// A service, in the new ARN format (`service/<cluster>/<name>`).
    Service {
        cluster: String,
        name: String,
    },
    /// `cluster` and `task` are `None` for an old-format ARN.
    Container {
        cluster: Option<String>,
        task: Option<String>,
        id: String,
    },
}

impl EcsArn {
    /// Parses an ECS ARN of any of the resource kinds above.
    pub fn parse(s: &str) -> Result<Self, ArnError> {
        let err = |reason: &str| ArnError::new(s, reason);
        let mut parts = s.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(err(
                "an ARN has the form arn:PARTITION:ecs:REGION:ACCOUNT:RESOURCE",
            ));
        };
        if service != "ecs" {
            return Err(err("not an ECS ARN"));
        }
        if partition.is_empty() || region.is_empty() {
            return Err(err("the ARN has no partition or region"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the account id must be 12 digits"));
        }
        let (kind, path) = rest
            .split_once('/')
            .ok_or_else(|| err("the resource part has no \"/\""))?;
        let segments: Vec<&str> = path.split('/').collect();
        if segments.iter().any(|p| p.is_empty()) {
            return Err(err("the resource path has an empty segment"));
        }
        let resource = match (kind, segments.as_slice()) {
            ("cluster", [name]) => {
                if !is_valid_name(name) {
                    return Err(err("the cluster name is not valid"));
                }
                EcsResource::Cluster {
                    name: (*name).to_owned(),
                }
            }
            ("task-definition", [family_rev]) => {
                let r = parse_family_revision(family_rev).map_err(|reason| err(&reason))?;
                EcsResource::TaskDefinition {
                    family: r.family,
                    revision: r.revision,
                }
            }
            ("task", [id]) => EcsResource::Task {
                cluster: None,
                id: check_id(id).map_err(|r| err(&r))?,
            },
            ("task", [cluster, id]) => EcsResource::Task {
                cluster: Some(check_cluster(cluster).map_err(|r| err(&r))?),
                id: check_id(id).map_err(|r| err(&r))?,
            },
            ("service", [cluster, name]) => EcsResource::Service {
                cluster: check_cluster(cluster).map_err(|r| err(&r))?,
                name: check_cluster(name).map_err(|_| err("the service name is not valid"))?,
            },
            ("container", [id]) => EcsResource::Container {
                cluster: None,
                task: None,
                id: check_id(id).map_err(|r| err(&r))?,
            },
            ("container", [cluster, task, id]) => EcsResource::Container {
                cluster: Some(check_cluster(cluster).map_err(|r| err(&r))?),
                task: Some(check_id(task).map_err(|r| err(&r))?),
                id: check_id(id).map_err(|r| err(&r))?,
            },
            ("cluster" | "task-definition" | "task" | "service" | "container", _) => {
                return Err(err("the resource path has the wrong number of segments"))
            }
            _ => {
                return Err(err(
                    "the resource type is not cluster, task-definition, task, service or \
                     container",
                ))
            }
        };
        Ok(Self {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            resource,
        })
    }
}

impl fmt::Display for EcsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:ecs:{}:{}:",
            self.partition, self.region, self.account
        )?;
        match &self.resource {
            EcsResource::Cluster { name } => write!(f, "cluster/{name}"),
            EcsResource::TaskDefinition { family, revision } => match revision {
                Some(r) => write!(f, "task-definition/{family}:{r}"),
                None => write!(f, "task-definition/{family}"),
            },
            EcsResource::Task { cluster, id } => match cluster {
                Some(c) => write!(f, "task/{c}/{id}"),
                None => write!(f, "task/{id}"),
            },
            EcsResource::Service { cluster, name } => write!(f, "service/{cluster}/{name}"),
            EcsResource::Container { cluster, task, id } => match (cluster, task) {
                (Some(c), Some(t)) => write!(f, "container/{c}/{t}/{id}"),
                _ => write!(f, "container/{id}"),
            },
        }
    }
}

fn check_cluster(name: &str) -> Result<String, String> {
    if is_valid_name(name) {
        Ok(name.to_owned())
    } else {
        Err(format!("cluster name {name:?} is not valid"))
    }
}

fn check_id(id: &str) -> Result<String, String> {
    if crate::ids::is_task_id(id) {
        Ok(id.to_owned())
    } else {
        Err(format!("id {id:?} is not valid"))
    }
}

/// A reference to a task definition: a family (latest ACTIVE revision) or a
/// family and revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskDefinitionRef {
    pub family: String,
    pub revision: Option<u32>,
}

impl TaskDefinitionRef {
    /// Parses `family`, `family:revision` or a task definition ARN of `scope`.
    pub fn parse(s: &str, scope: &Scope) -> Result<Self, ArnError> {
        if s.starts_with("arn:") {
            let arn = scope.check(EcsArn::parse(s)?, s)?;
            match arn.resource {
                EcsResource::TaskDefinition { family, revision } => Ok(Self { family, revision }),
                _ => Err(ArnError::new(s, "not a task definition ARN")),
            }
        } else {
            parse_family_revision(s).map_err(|reason| ArnError::new(s, reason))
        }
    }
}

impl fmt::Display for TaskDefinitionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.revision {
            Some(r) => write!(f, "{}:{r}", self.family),
            None => f.write_str(&self.family),
        }
    }
}

fn parse_family_revision(s: &str) -> Result<TaskDefinitionRef, String> {
    let (family, revision) = match s.split_once(':') {
        Some((f, r)) => {
            let rev = r
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1 && r.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("revision {r:?} is not a positive integer"))?;
            (f, Some(rev))
        }
        None => (s, None),
    };
    if !is_valid_name(family) {
        return Err(format!(
            "family {family:?} must be 1 to 255 letters, numbers, hyphens and underscores"
        ));
    }
    Ok(TaskDefinitionRef {
        family: family.to_owned(),
        revision,
    })
}

/// The cluster named by `s`, a cluster name or a cluster ARN of `scope`.
pub fn cluster_name(s: &str, scope: &Scope) -> Result<String, ArnError> {
    if s.starts_with("arn:") {
        let arn = scope.check(EcsArn::parse(s)?, s)?;
        match arn.resource {
            EcsResource::Cluster { name } => Ok(name),
            _ => Err(ArnError::new(s, "not a cluster ARN")),
        }
    } else {
        check_cluster(s).map_err(|reason| ArnError::new(s, reason))
    }
}

/// A reference to a task: its id, with the cluster when an ARN named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskRef {
    pub cluster: Option<String>,
    pub id: String,
}

impl TaskRef {
    /// Parses a task id or a task ARN of `scope`.
    pub fn parse(s: &str, scope: &Scope) -> Result<Self, ArnError> {
        if s.starts_with("arn:") {
            let arn = scope.check(EcsArn::parse(s)?, s)?;
            match arn.resource {
                EcsResource::Task { cluster, id } => Ok(Self { cluster, id }),
                _ => Err(ArnError::new(s, "not a task ARN")),
            }
        } else {
            Ok(Self {
                cluster: None,
                id: check_id(s).map_err(|reason| ArnError::new(s, reason))?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn scope() -> Scope {
        Scope::default()
    }

    #[test]
    fn formats_each_kind() {
        let s = scope();
        assert_eq!(
            s.cluster_arn("default"),
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
        assert_eq!(
            s.task_definition_arn("tom-thumb-task", 3),
            "arn:aws:ecs:us-east-1:000000000000:task-definition/tom-thumb-task:3"
        );
        assert_eq!(
            s.task_arn("default", ID),
            format!("arn:aws:ecs:us-east-1:000000000000:task/default/{ID}")
        );
        assert_eq!(
            Scope::new("eu-west-1", "123456789012").container_arn("c1", ID, "uuid-1"),
            format!("arn:aws:ecs:eu-west-1:123456789012:container/c1/{ID}/uuid-1")
        );
    }

    #[test]
    fn parses_what_it_formats() {
        let s = scope();
        let arns = [
            s.cluster_arn("default"),
            s.task_definition_arn("tom-thumb-task", 3),
            s.task_arn("default", ID),
            s.container_arn("default", ID, "9f8e7d6c-aaaa-bbbb-cccc-000011112222"),
        ];
        for a in arns {
            let parsed = EcsArn::parse(&a).unwrap();
            assert_eq!(parsed.to_string(), a);
            assert!(s.owns(&parsed));
        }
        let parsed = EcsArn::parse(&s.task_arn("prod", ID)).unwrap();
        assert_eq!(
            parsed.resource,
            EcsResource::Task {
                cluster: Some("prod".into()),
                id: ID.into()
            }
        );
    }

    #[test]
    fn parses_old_formats() {
        let a = format!("arn:aws:ecs:us-east-1:000000000000:task/{ID}");
        let parsed = EcsArn::parse(&a).unwrap();
        assert_eq!(
            parsed.resource,
            EcsResource::Task {
                cluster: None,
                id: ID.into()
            }
        );
        assert_eq!(parsed.to_string(), a);
        let c = EcsArn::parse("arn:aws:ecs:us-east-1:000000000000:container/abc-1").unwrap();
        assert!(matches!(
            c.resource,
            EcsResource::Container { cluster: None, .. }
        ));
    }

    #[test]
    fn rejects_malformed_arns() {
        for bad in [
            "arn:aws:s3:::bucket/key",
            "arn:aws:ecs:us-east-1:000000000000",
            "arn:aws:ecs:us-east-1:12:cluster/x",
            "arn:aws:ecs:us-east-1:000000000000:cluster/",
            "arn:aws:ecs:us-east-1:000000000000:cluster/a/b",
            "arn:aws:ecs:us-east-1:000000000000:service/x/y/z",
            "arn:aws:ecs:us-east-1:000000000000:capacity-provider/x",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/fam:zero",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/fam:0",
            "arn:aws:ecs:us-east-1:000000000000:task/default/../x",
            "arn:aws:ecs::000000000000:cluster/x",
            "not-an-arn",
        ] {
            assert!(EcsArn::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn task_definition_refs() {
        let s = scope();
        let r = TaskDefinitionRef::parse("tom-thumb-task", &s).unwrap();
        assert_eq!((r.family.as_str(), r.revision), ("tom-thumb-task", None));
        let r = TaskDefinitionRef::parse("tom-thumb-task:7", &s).unwrap();
        assert_eq!(r.revision, Some(7));
        assert_eq!(r.to_string(), "tom-thumb-task:7");
        let r = TaskDefinitionRef::parse(&s.task_definition_arn("tom-thumb-task", 2), &s).unwrap();
        assert_eq!((r.family.as_str(), r.revision), ("tom-thumb-task", Some(2)));
        assert!(TaskDefinitionRef::parse("tom thumb", &s).is_err());
        assert!(TaskDefinitionRef::parse("fam:", &s).is_err());
        assert!(TaskDefinitionRef::parse("fam:-1", &s).is_err());
        assert!(TaskDefinitionRef::parse(&s.cluster_arn("default"), &s).is_err());
        let other = Scope::new("eu-west-1", "123456789012").task_definition_arn("f", 1);
        let e = TaskDefinitionRef::parse(&other, &s).unwrap_err();
        assert!(e.reason.contains("eu-west-1"), "{e}");
    }

    #[test]
    fn cluster_and_task_refs() {
        let s = scope();
        assert_eq!(cluster_name("default", &s).unwrap(), "default");
        assert_eq!(
            cluster_name(&s.cluster_arn("prod-1"), &s).unwrap(),
            "prod-1"
        );
        assert!(cluster_name("bad name", &s).is_err());
        assert!(cluster_name(&s.task_arn("default", ID), &s).is_err());
        let t = TaskRef::parse(&s.task_arn("prod-1", ID), &s).unwrap();
        assert_eq!(
            t,
            TaskRef {
                cluster: Some("prod-1".into()),
                id: ID.into()
            }
        );
        let t = TaskRef::parse(ID, &s).unwrap();
        assert_eq!(t.cluster, None);
        assert!(TaskRef::parse("../etc", &s).is_err());
    }
}
