//! Application Auto Scaling: scalable targets (with the controller's
//! history of each), scaling policies, scheduled actions and scaling
//! activities. A target's policies and scheduled actions go with it.

use hail_model::autoscaling::{
    ScalableTarget, ScalingActivity, ScalingHistory, ScalingPolicy, ScheduledAction, TargetKey,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext};
use crate::page::{self, Page};

const TARGETS_PAGE: &str = "scalable-targets";
const POLICIES_PAGE: &str = "scaling-policies";
const SCHEDULED_PAGE: &str = "scheduled-actions";
const ACTIVITIES_PAGE: &str = "scaling-activities";

/// Filters of a Describe* listing; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub service_namespace: String,
    /// Resource ids to keep (DescribeScalableTargets takes several).
    pub resource_ids: Option<Vec<String>>,
    pub scalable_dimension: Option<String>,
    /// Policy or scheduled action names to keep.
    pub names: Option<Vec<String>>,
}

impl Filter {
    fn ids_json(&self) -> Option<String> {
        self.resource_ids
            .as_ref()
            .map(|ids| serde_json::Value::from(ids.clone()).to_string())
    }

    fn names_json(&self) -> Option<String> {
        self.names
            .as_ref()
            .map(|n| serde_json::Value::from(n.clone()).to_string())
    }
}

fn docs<T: serde::de::DeserializeOwned>(what: &str, rows: &[(String, String)]) -> Result<Vec<T>> {
    rows.iter()
        .map(|(name, doc)| parse_doc(&format!("{what} {name}"), doc))
        .collect()
}

// ---------------------------------------------------------------------------
// Scalable targets

/// Stores `target`, replacing the document of an existing one of the same
/// key; the controller's history is kept.
pub fn put_target(tx: &Transaction, target: &ScalableTarget) -> Result<()> {
    tx.execute(
        "INSERT INTO scalable_targets
             (service_namespace, resource_id, scalable_dimension, arn, doc)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (service_namespace, resource_id, scalable_dimension)
         DO UPDATE SET arn = excluded.arn, doc = excluded.doc",
        params![
            target.service_namespace,
            target.resource_id,
            target.scalable_dimension,
            target.scalable_target_arn,
            to_doc("scalable target", target)?
        ],
    )
    .ctx("put scalable target")?;
    Ok(())
}

pub fn get_target(conn: &Connection, key: &TargetKey) -> Result<Option<ScalableTarget>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM scalable_targets
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3",
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension
            ],
            |r| r.get(0),
        )
        .optional()
        .ctx("get scalable target")?;
    doc.map(|d| parse_doc(&format!("scalable target {}", key.resource_id), &d))
        .transpose()
}

pub fn get_target_by_arn(conn: &Connection, arn: &str) -> Result<Option<ScalableTarget>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM scalable_targets WHERE arn = ?1",
            [arn],
            |r| r.get(0),
        )
        .optional()
        .ctx("get scalable target by arn")?;
    doc.map(|d| parse_doc(&format!("scalable target {arn}"), &d))
        .transpose()
}

/// How many targets the namespace has.
pub fn count_targets(conn: &Connection, service_namespace: &str) -> Result<usize> {
    conn.query_row(
        "SELECT COUNT(*) FROM scalable_targets WHERE service_namespace = ?1",
        [service_namespace],
        |r| r.get(0),
    )
    .ctx("count scalable targets")
}

/// Deletes a target with its policies and scheduled actions; false when
/// there was none. Its activities stay until they age out, as on AWS.
pub fn delete_target(tx: &Transaction, key: &TargetKey) -> Result<bool> {
    let args = params![
        key.service_namespace,
        key.resource_id,
        key.scalable_dimension
    ];
    let n = tx
        .execute(
            "DELETE FROM scalable_targets
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3",
            args,
        )
        .ctx("delete scalable target")?;
    tx.execute(
        "DELETE FROM scaling_policies
         WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3",
        args,
    )
    .ctx("delete scaling policies")?;
    tx.execute(
        "DELETE FROM scheduled_actions
         WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3",
        args,
    )
    .ctx("delete scheduled actions")?;
    Ok(n > 0)
}

/// Targets matching `filter`, by resource id and dimension, `limit` at a time.
pub fn list_targets(
    conn: &Connection,
    filter: &Filter,
    limit: u32,
    next_token: Option<&str>,
) -> Result<Page<ScalableTarget>> {
    let after: (String, String) = match next_token {
        Some(t) => page::decode(TARGETS_PAGE, t)?,
        None => (String::new(), String::new()),
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT resource_id, scalable_dimension, doc FROM scalable_targets
             WHERE service_namespace = ?1
               AND (?2 IS NULL OR resource_id IN (SELECT value FROM json_each(?2)))
               AND (?3 IS NULL OR scalable_dimension = ?3)
               AND (resource_id, scalable_dimension) > (?4, ?5)
             ORDER BY resource_id, scalable_dimension LIMIT ?6",
        )
        .ctx("list scalable targets")?;
    let rows = stmt
        .query_map(
            params![
                filter.service_namespace,
                filter.ids_json(),
                filter.scalable_dimension,
                after.0,
                after.1,
                limit + 1
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .ctx("list scalable targets")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list scalable targets")?;
    page::paginate(
        rows,
        limit,
        TARGETS_PAGE,
        |r| (r.0.clone(), r.1.clone()),
        |r| parse_doc(&format!("scalable target {}", r.0), &r.2),
    )
}

/// Every target with the controller's history of it.
pub fn all_targets(conn: &Connection) -> Result<Vec<(ScalableTarget, ScalingHistory)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT resource_id, doc, state FROM scalable_targets
             ORDER BY service_namespace, resource_id, scalable_dimension",
        )
        .ctx("list scalable targets")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .ctx("list scalable targets")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list scalable targets")?;
    rows.iter()
        .map(|(id, doc, state)| {
            let what = format!("scalable target {id}");
            Ok((parse_doc(&what, doc)?, parse_doc(&what, state)?))
        })
        .collect()
}

/// The controller's history of a target; the default for a target it has
/// not scaled, `None` when the target does not exist.
pub fn get_history(conn: &Connection, key: &TargetKey) -> Result<Option<ScalingHistory>> {
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM scalable_targets
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3",
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension
            ],
            |r| r.get(0),
        )
        .optional()
        .ctx("get scaling history")?;
    state
        .map(|s| parse_doc(&format!("scalable target {}", key.resource_id), &s))
        .transpose()
}

/// Records the controller's history of a target; false when the target is gone.
pub fn set_history(tx: &Transaction, key: &TargetKey, history: &ScalingHistory) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE scalable_targets SET state = ?4
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3",
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension,
                to_doc("scaling history", history)?
            ],
        )
        .ctx("set scaling history")?;
    Ok(n > 0)
}

// ---------------------------------------------------------------------------
// Scaling policies

pub fn put_policy(tx: &Transaction, policy: &ScalingPolicy) -> Result<()> {
    tx.execute(
        "INSERT INTO scaling_policies
             (service_namespace, resource_id, scalable_dimension, policy_name, policy_arn, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (service_namespace, resource_id, scalable_dimension, policy_name)
         DO UPDATE SET policy_arn = excluded.policy_arn, doc = excluded.doc",
        params![
            policy.service_namespace,
            policy.resource_id,
            policy.scalable_dimension,
            policy.policy_name,
            policy.policy_arn,
            to_doc("scaling policy", policy)?
        ],
    )
    .ctx("put scaling policy")?;
    Ok(())
}

pub fn get_policy(conn: &Connection, key: &TargetKey, name: &str) -> Result<Option<ScalingPolicy>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM scaling_policies
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3
               AND policy_name = ?4",
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension,
                name
            ],
            |r| r.get(0),
        )
        .optional()
        .ctx("get scaling policy")?;
    doc.map(|d| parse_doc(&format!("scaling policy {name}"), &d))
        .transpose()
}

pub fn delete_policy(tx: &Transaction, key: &TargetKey, name: &str) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM scaling_policies
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3
               AND policy_name = ?4",
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension,
                name
            ],
        )
        .ctx("delete scaling policy")?;
    Ok(n > 0)
}

/// A target's policies, by name.
pub fn target_policies(conn: &Connection, key: &TargetKey) -> Result<Vec<ScalingPolicy>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT policy_name, doc FROM scaling_policies
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3
             ORDER BY policy_name",
        )
        .ctx("list scaling policies")?;
    let rows = stmt
        .query_map(
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx("list scaling policies")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list scaling policies")?;
    docs("scaling policy", &rows)
}

/// Policies matching `filter`, by resource id, dimension and name.
pub fn list_policies(
    conn: &Connection,
    filter: &Filter,
    limit: u32,
    next_token: Option<&str>,
) -> Result<Page<ScalingPolicy>> {
    list_named(
        conn,
        "scaling_policies",
        "policy_name",
        POLICIES_PAGE,
        filter,
        limit,
        next_token,
    )
}

/// One page of a table of named things belonging to targets.
fn list_named<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &str,
    name_column: &str,
    kind: &str,
    filter: &Filter,
    limit: u32,
    next_token: Option<&str>,
) -> Result<Page<T>> {
    let after: (String, String, String) = match next_token {
        Some(t) => page::decode(kind, t)?,
        None => Default::default(),
    };
    // Both names are constants of this module, never a caller's input.
    let sql = format!(
        "SELECT resource_id, scalable_dimension, {name_column}, doc FROM {table}
         WHERE service_namespace = ?1
           AND (?2 IS NULL OR resource_id IN (SELECT value FROM json_each(?2)))
           AND (?3 IS NULL OR scalable_dimension = ?3)
           AND (?4 IS NULL OR {name_column} IN (SELECT value FROM json_each(?4)))
           AND (resource_id, scalable_dimension, {name_column}) > (?5, ?6, ?7)
         ORDER BY resource_id, scalable_dimension, {name_column} LIMIT ?8"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx(kind)?;
    let rows = stmt
        .query_map(
            params![
                filter.service_namespace,
                filter.ids_json(),
                filter.scalable_dimension,
                filter.names_json(),
                after.0,
                after.1,
                after.2,
                limit + 1
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .ctx(kind)?
        .collect::<Result<Vec<_>, _>>()
        .ctx(kind)?;
    page::paginate(
        rows,
        limit,
        kind,
        |r| (r.0.clone(), r.1.clone(), r.2.clone()),
        |r| parse_doc(&format!("{kind} {}", r.2), &r.3),
    )
}

// ---------------------------------------------------------------------------
// Scheduled actions

pub fn put_scheduled_action(tx: &Transaction, action: &ScheduledAction) -> Result<()> {
    tx.execute(
        "INSERT INTO scheduled_actions
             (service_namespace, resource_id, scalable_dimension, scheduled_action_name, doc)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (service_namespace, resource_id, scalable_dimension, scheduled_action_name)
         DO UPDATE SET doc = excluded.doc",
        params![
            action.service_namespace,
            action.resource_id,
            action.scalable_dimension,
            action.scheduled_action_name,
            to_doc("scheduled action", action)?
        ],
    )
    .ctx("put scheduled action")?;
    Ok(())
}

pub fn get_scheduled_action(
    conn: &Connection,
    key: &TargetKey,
    name: &str,
) -> Result<Option<ScheduledAction>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM scheduled_actions
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3
               AND scheduled_action_name = ?4",
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension,
                name
            ],
            |r| r.get(0),
        )
        .optional()
        .ctx("get scheduled action")?;
    doc.map(|d| parse_doc(&format!("scheduled action {name}"), &d))
        .transpose()
}

pub fn delete_scheduled_action(tx: &Transaction, key: &TargetKey, name: &str) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM scheduled_actions
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3
               AND scheduled_action_name = ?4",
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension,
                name
            ],
        )
        .ctx("delete scheduled action")?;
    Ok(n > 0)
}

/// A target's scheduled actions, by name.
pub fn target_scheduled_actions(
    conn: &Connection,
    key: &TargetKey,
) -> Result<Vec<ScheduledAction>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT scheduled_action_name, doc FROM scheduled_actions
             WHERE service_namespace = ?1 AND resource_id = ?2 AND scalable_dimension = ?3
             ORDER BY scheduled_action_name",
        )
        .ctx("list scheduled actions")?;
    let rows = stmt
        .query_map(
            params![
                key.service_namespace,
                key.resource_id,
                key.scalable_dimension
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx("list scheduled actions")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list scheduled actions")?;
    docs("scheduled action", &rows)
}

/// Scheduled actions matching `filter`, by resource id, dimension and name.
pub fn list_scheduled_actions(
    conn: &Connection,
    filter: &Filter,
    limit: u32,
    next_token: Option<&str>,
) -> Result<Page<ScheduledAction>> {
    list_named(
        conn,
        "scheduled_actions",
        "scheduled_action_name",
        SCHEDULED_PAGE,
        filter,
        limit,
        next_token,
    )
}

// ---------------------------------------------------------------------------
// Scaling activities

/// Records a new activity.
pub fn insert_activity(tx: &Transaction, activity: &ScalingActivity) -> Result<()> {
    tx.execute(
        "INSERT INTO scaling_activities
             (activity_id, service_namespace, resource_id, scalable_dimension, start_time, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            activity.activity_id,
            activity.service_namespace,
            activity.resource_id,
            activity.scalable_dimension,
            activity.start_time.as_millis(),
            to_doc("scaling activity", activity)?
        ],
    )
    .ctx("insert scaling activity")?;
    Ok(())
}

/// Stores the new state of a recorded activity.
pub fn update_activity(tx: &Transaction, activity: &ScalingActivity) -> Result<()> {
    tx.execute(
        "UPDATE scaling_activities SET doc = ?2 WHERE activity_id = ?1",
        params![activity.activity_id, to_doc("scaling activity", activity)?],
    )
    .ctx("update scaling activity")?;
    Ok(())
}

/// Activities matching `filter` (names are ignored), newest first.
pub fn list_activities(
    conn: &Connection,
    filter: &Filter,
    limit: u32,
    next_token: Option<&str>,
) -> Result<Page<ScalingActivity>> {
    let before: i64 = match next_token {
        Some(t) => page::decode(ACTIVITIES_PAGE, t)?,
        None => i64::MAX,
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, doc FROM scaling_activities
             WHERE service_namespace = ?1
               AND (?2 IS NULL OR resource_id IN (SELECT value FROM json_each(?2)))
               AND (?3 IS NULL OR scalable_dimension = ?3)
               AND seq < ?4
             ORDER BY seq DESC LIMIT ?5",
        )
        .ctx("list scaling activities")?;
    let rows = stmt
        .query_map(
            params![
                filter.service_namespace,
                filter.ids_json(),
                filter.scalable_dimension,
                before,
                limit + 1
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .ctx("list scaling activities")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list scaling activities")?;
    page::paginate(
        rows,
        limit,
        ACTIVITIES_PAGE,
        |r| r.0,
        |r| parse_doc("scaling activity", &r.1),
    )
}

/// Forgets activities started before `before` (millis).
pub fn purge_activities(tx: &Transaction, before: i64) -> Result<usize> {
    tx.execute(
        "DELETE FROM scaling_activities WHERE start_time < ?1",
        [before],
    )
    .ctx("purge scaling activities")
}

#[cfg(test)]
mod tests {
    use hail_model::autoscaling::{
        ActivityStatus, CapacityChange, SuspendedState, ECS_DESIRED_COUNT,
    };
    use hail_model::ecs::Timestamp;

    use super::*;

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("s.db")).unwrap();
        crate::migrate::migrate(&mut conn, 0).unwrap();
        (dir, conn)
    }

    fn target(resource_id: &str, min: u32) -> ScalableTarget {
        ScalableTarget {
            service_namespace: "ecs".into(),
            resource_id: resource_id.into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            min_capacity: min,
            max_capacity: 10,
            role_arn: "arn:aws:iam::0:role/r".into(),
            creation_time: Timestamp::from_millis(1),
            suspended_state: SuspendedState::default(),
            scalable_target_arn: format!(
                "arn:aws:application-autoscaling:r:0:scalable-target/{}",
                resource_id.replace('/', "-")
            ),
        }
    }

    fn policy(resource_id: &str, name: &str) -> ScalingPolicy {
        ScalingPolicy {
            policy_arn: format!("arn:{resource_id}:{name}"),
            policy_name: name.into(),
            service_namespace: "ecs".into(),
            resource_id: resource_id.into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            policy_type: "TargetTrackingScaling".into(),
            step_scaling_policy_configuration: None,
            target_tracking_scaling_policy_configuration: None,
            alarms: vec![],
            creation_time: Timestamp::from_millis(2),
        }
    }

    fn filter() -> Filter {
        Filter {
            service_namespace: "ecs".into(),
            ..Filter::default()
        }
    }

    #[test]
    fn targets_keep_history_across_updates_and_take_policies_along() {
        let (_d, mut conn) = open();
        let a = target("service/c/a", 1);
        let key = a.key();
        let tx = conn.transaction().unwrap();
        put_target(&tx, &a).unwrap();
        put_target(&tx, &target("service/c/bb", 1)).unwrap();
        let history = ScalingHistory {
            last_scale_out: Some(CapacityChange {
                at: Timestamp::from_millis(5),
                from: 1,
                to: 3,
            }),
            ..ScalingHistory::default()
        };
        assert!(set_history(&tx, &key, &history).unwrap());
        put_target(&tx, &target("service/c/a", 2)).unwrap();
        put_policy(&tx, &policy("service/c/a", "cpu")).unwrap();
        put_policy(&tx, &policy("service/c/a", "mem")).unwrap();
        put_policy(&tx, &policy("service/c/bb", "cpu")).unwrap();
        tx.commit().unwrap();

        assert_eq!(get_target(&conn, &key).unwrap().unwrap().min_capacity, 2);
        assert_eq!(get_history(&conn, &key).unwrap(), Some(history));
        assert_eq!(
            get_target_by_arn(&conn, &a.scalable_target_arn)
                .unwrap()
                .unwrap()
                .resource_id,
            "service/c/a"
        );
        assert_eq!(count_targets(&conn, "ecs").unwrap(), 2);
        assert_eq!(all_targets(&conn).unwrap().len(), 2);
        assert_eq!(target_policies(&conn, &key).unwrap().len(), 2);

        let tx = conn.transaction().unwrap();
        assert!(delete_target(&tx, &key).unwrap());
        assert!(!delete_target(&tx, &key).unwrap());
        tx.commit().unwrap();
        assert!(target_policies(&conn, &key).unwrap().is_empty());
        assert_eq!(
            list_policies(&conn, &filter(), 10, None)
                .unwrap()
                .items
                .len(),
            1
        );
    }

    #[test]
    fn listings_filter_and_page_without_repeating() {
        let (_d, mut conn) = open();
        let tx = conn.transaction().unwrap();
        for i in 0..5 {
            let id = format!("service/c/s{i}");
            put_target(&tx, &target(&id, 1)).unwrap();
            put_policy(&tx, &policy(&id, "p1")).unwrap();
            put_policy(&tx, &policy(&id, "p2")).unwrap();
        }
        tx.commit().unwrap();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = list_targets(&conn, &filter(), 2, token.as_deref()).unwrap();
            seen.extend(page.items.into_iter().map(|t| t.resource_id));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 5);
        let mut f = filter();
        f.resource_ids = Some(vec!["service/c/s1".into(), "service/c/s3".into()]);
        assert_eq!(list_targets(&conn, &f, 50, None).unwrap().items.len(), 2);
        f.names = Some(vec!["p2".into()]);
        let page = list_policies(&conn, &f, 1, None).unwrap();
        assert_eq!(page.items[0].resource_id, "service/c/s1");
        let next = list_policies(&conn, &f, 1, page.next_token.as_deref()).unwrap();
        assert_eq!(next.items[0].resource_id, "service/c/s3");
        assert!(next.next_token.is_none());
        f.service_namespace = "dynamodb".into();
        assert!(list_targets(&conn, &f, 50, None).unwrap().items.is_empty());
        let token = list_targets(&conn, &filter(), 1, None)
            .unwrap()
            .next_token
            .unwrap();
        assert!(list_policies(&conn, &filter(), 1, Some(&token)).is_err());
    }

    #[test]
    fn activities_list_newest_first_and_age_out() {
        let (_d, mut conn) = open();
        let tx = conn.transaction().unwrap();
        for i in 0..3 {
            let mut a = ScalingActivity {
                activity_id: format!("a{i}"),
                service_namespace: "ecs".into(),
                resource_id: "service/c/s".into(),
                scalable_dimension: ECS_DESIRED_COUNT.into(),
                description: format!("Setting desired count to {i}."),
                cause: "test".into(),
                start_time: Timestamp::from_millis(100 * i),
                end_time: None,
                status_code: ActivityStatus::InProgress,
                status_message: None,
                details: None,
            };
            insert_activity(&tx, &a).unwrap();
            a.status_code = ActivityStatus::Successful;
            update_activity(&tx, &a).unwrap();
        }
        tx.commit().unwrap();
        let page = list_activities(&conn, &filter(), 2, None).unwrap();
        let ids: Vec<_> = page.items.iter().map(|a| a.activity_id.as_str()).collect();
        assert_eq!(ids, ["a2", "a1"]);
        assert_eq!(page.items[0].status_code, ActivityStatus::Successful);
        let rest = list_activities(&conn, &filter(), 2, page.next_token.as_deref()).unwrap();
        assert_eq!(rest.items[0].activity_id, "a0");
        let tx = conn.transaction().unwrap();
        assert_eq!(purge_activities(&tx, 150).unwrap(), 2);
        tx.commit().unwrap();
        assert_eq!(
            list_activities(&conn, &filter(), 50, None)
                .unwrap()
                .items
                .len(),
            1
        );
    }
}
