//! Clusters: the `CreateCluster` input and the `Cluster` shape.

use serde::{Deserialize, Serialize};

use super::tags::{validate_tags, Tag};
use super::task_definition::KeyValuePair;
use super::validate::{is_valid_name, ValidationError};
use crate::arn::Scope;

/// The cluster ECS uses when a request names none.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

/// Lifecycle of a cluster as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterStatus {
    Active,
    Provisioning,
    Deprovisioning,
    Failed,
    Inactive,
}

/// The body of `CreateCluster`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateClusterInput {
    /// Defaults to "default", as in ECS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Vec<ClusterSetting>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ClusterConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_providers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<ClusterServiceConnectDefaultsRequest>,
}

impl CreateClusterInput {
    /// The cluster name the request asks for, "default" when it names none.
    pub fn name(&self) -> &str {
        self.cluster_name.as_deref().unwrap_or(DEFAULT_CLUSTER_NAME)
    }

    /// Checks the name, tags and settings as ECS does.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_cluster_name(self.name())?;
        if let Some(tags) = &self.tags {
            validate_tags(tags, "tags")?;
        }
        for (i, s) in self.settings.iter().flatten().enumerate() {
            if s.name.as_deref() != Some("containerInsights") {
                return Err(ValidationError::invalid_parameter(
                    format!("settings[{i}].name"),
                    format!("cluster setting {:?} is not containerInsights", s.name),
                ));
            }
            if !matches!(
                s.value.as_deref(),
                Some("enabled" | "disabled" | "enhanced")
            ) {
                return Err(ValidationError::invalid_parameter(
                    format!("settings[{i}].value"),
                    "containerInsights must be enabled, disabled or enhanced",
                ));
            }
        }
        for (i, item) in self
            .default_capacity_provider_strategy
            .iter()
            .flatten()
            .enumerate()
        {
            item.validate(&format!("defaultCapacityProviderStrategy[{i}]"))?;
        }
        Ok(())
    }

    /// The new ACTIVE cluster this request creates, with no tasks yet.
    pub fn into_cluster(self, scope: &Scope) -> Cluster {
        let name = self.name().to_owned();
        Cluster {
            cluster_arn: scope.cluster_arn(&name),
            cluster_name: name,
            configuration: self.configuration,
            status: ClusterStatus::Active,
            registered_container_instances_count: 0,
            running_tasks_count: 0,
            pending_tasks_count: 0,
            active_services_count: 0,
            statistics: Vec::new(),
            tags: self.tags.unwrap_or_default(),
            settings: self.settings.unwrap_or_default(),
            capacity_providers: self.capacity_providers.unwrap_or_default(),
            default_capacity_provider_strategy: self
                .default_capacity_provider_strategy
                .unwrap_or_default(),
        }
    }
}

/// Checks a cluster name: 1–255 letters, digits, hyphens and underscores.
pub fn validate_cluster_name(name: &str) -> Result<(), ValidationError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ValidationError::invalid_parameter(
            "clusterName",
            format!(
                "cluster name {name:?} is not valid: up to 255 letters (uppercase and lowercase), \
                 numbers, underscores, and hyphens are allowed"
            ),
        ))
    }
}

/// A cluster as `DescribeClusters` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub cluster_arn: String,
    pub cluster_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ClusterConfiguration>,
    pub status: ClusterStatus,
    pub registered_container_instances_count: u32,
    pub running_tasks_count: u32,
    pub pending_tasks_count: u32,
    pub active_services_count: u32,
    #[serde(default)]
    pub statistics: Vec<KeyValuePair>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub settings: Vec<ClusterSetting>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSetting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_command_configuration: Option<ExecuteCommandConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_storage_configuration: Option<ManagedStorageConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCommandConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<ExecuteCommandLogConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCommandLogConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_log_group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_encryption_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_encryption_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_key_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedStorageConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate_ephemeral_storage_kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterServiceConnectDefaultsRequest {
    pub namespace: String,
}

/// One capacity provider of a strategy; `weight` 0–1000, `base` 0–100000.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u32>,
}

impl CapacityProviderStrategyItem {
    /// Checks the ranges ECS enforces; `field` names the item in errors.
    pub fn validate(&self, field: &str) -> Result<(), ValidationError> {
        if self.capacity_provider.is_empty() {
            return Err(ValidationError::invalid_parameter(
                format!("{field}.capacityProvider"),
                "capacityProvider is required",
            ));
        }
        if self.weight.is_some_and(|w| w > 1000) {
            return Err(ValidationError::invalid_parameter(
                format!("{field}.weight"),
                "weight must be between 0 and 1000",
            ));
        }
        if self.base.is_some_and(|b| b > 100_000) {
            return Err(ValidationError::invalid_parameter(
                format!("{field}.base"),
                "base must be between 0 and 100000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::decode;

    #[test]
    fn empty_input_creates_default_cluster() {
        let input: CreateClusterInput = decode("{}").unwrap();
        input.validate().unwrap();
        let c = input.into_cluster(&Scope::default());
        assert_eq!(c.cluster_name, "default");
        assert_eq!(
            c.cluster_arn,
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["status"], "ACTIVE");
        assert_eq!(json["runningTasksCount"], 0);
        assert_eq!(json["registeredContainerInstancesCount"], 0);
        assert!(json.get("configuration").is_none());
    }

    #[test]
    fn named_cluster_with_tags_and_settings() {
        let input: CreateClusterInput = decode(
            r#"{"clusterName":"video_jobs-1","tags":[{"key":"team","value":"video"}],
                "settings":[{"name":"containerInsights","value":"enabled"}]}"#,
        )
        .unwrap();
        input.validate().unwrap();
        let c = input.into_cluster(&Scope::new("eu-west-1", "123456789012"));
        assert_eq!(
            c.cluster_arn,
            "arn:aws:ecs:eu-west-1:123456789012:cluster/video_jobs-1"
        );
        assert_eq!(c.tags, vec![Tag::new("team", "video")]);
        let back: Cluster = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_bad_names_settings_and_unknown_fields() {
        for name in ["", "has space", "dot.ted", &"x".repeat(256)] {
            let input = CreateClusterInput {
                cluster_name: Some(name.to_owned()),
                ..Default::default()
            };
            let e = input.validate().unwrap_err();
            assert_eq!(e.field, "clusterName", "{name}");
        }
        let input: CreateClusterInput =
            decode(r#"{"settings":[{"name":"containerInsights","value":"maybe"}]}"#).unwrap();
        assert_eq!(input.validate().unwrap_err().field, "settings[0].value");
        let input: CreateClusterInput = decode(
            r#"{"defaultCapacityProviderStrategy":[{"capacityProvider":"FARGATE","weight":1001}]}"#,
        )
        .unwrap();
        assert_eq!(
            input.validate().unwrap_err().field,
            "defaultCapacityProviderStrategy[0].weight"
        );
        let e = decode::<CreateClusterInput>(r#"{"clusterNam":"x"}"#).unwrap_err();
        assert_eq!(e.unknown_field.as_deref(), Some("clusterNam"));
        assert!(
            e.to_string().contains("did you mean \"clusterName\""),
            "{e}"
        );
    }
}
