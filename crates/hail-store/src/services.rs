//! ECS services, with optimistic concurrency as for tasks: an update names
//! the version it read and loses with [`StoreError::Conflict`] otherwise.
//!
//! A service row lives on after DeleteService as `INACTIVE`, describable
//! until purged, while a new service of the same name may be created: rows
//! are keyed by a sequence number, and at most one row per cluster and name
//! is not `INACTIVE`.

use hail_model::ecs::{Service, ServiceStatus, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};
use crate::page::{self, Page};

const PAGE_KIND: &str = "services";

/// A service as stored: its row, and the version an update must present.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredService {
    pub seq: i64,
    pub version: u64,
    pub service: Service,
}

fn from_row(seq: i64, version: i64, doc: &str) -> Result<StoredService> {
    let service: Service = parse_doc("service", doc)?;
    Ok(StoredService {
        seq,
        version: u64::try_from(version).unwrap_or(0),
        service,
    })
}

/// Creates `service`; a live service of the same name in the cluster is a conflict.
pub fn insert(tx: &Transaction, service: &Service) -> Result<StoredService> {
    let live = get_live(tx, &service.cluster_arn, &service.service_name)?;
    if live.is_some() {
        return Err(StoreError::Conflict {
            what: format!("service {}", service.service_name),
        });
    }
    let at = service.created_at.as_millis();
    tx.execute(
        "INSERT INTO services
             (service_arn, cluster_arn, service_name, status, created_at, updated_at, version, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, ?6)",
        params![
            service.service_arn,
            service.cluster_arn,
            service.service_name,
            service.status.as_str(),
            at,
            to_doc("service", service)?
        ],
    )
    .ctx("insert service")?;
    Ok(StoredService {
        seq: tx.last_insert_rowid(),
        version: 1,
        service: service.clone(),
    })
}

/// The service of that name in the cluster that is not INACTIVE.
pub fn get_live(conn: &Connection, cluster_arn: &str, name: &str) -> Result<Option<StoredService>> {
    let row: Option<(i64, i64, String)> = conn
        .query_row(
            "SELECT seq, version, doc FROM services
             WHERE cluster_arn = ?1 AND service_name = ?2 AND status != 'INACTIVE'",
            params![cluster_arn, name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .ctx("get service")?;
    row.map(|(seq, v, doc)| from_row(seq, v, &doc)).transpose()
}

/// The live service of that name, or else the most recently deleted one.
pub fn get_latest(
    conn: &Connection,
    cluster_arn: &str,
    name: &str,
) -> Result<Option<StoredService>> {
    let row: Option<(i64, i64, String)> = conn
        .query_row(
            "SELECT seq, version, doc FROM services
             WHERE cluster_arn = ?1 AND service_name = ?2
             ORDER BY status = 'INACTIVE', seq DESC LIMIT 1",
            params![cluster_arn, name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .ctx("get service")?;
    row.map(|(seq, v, doc)| from_row(seq, v, &doc)).transpose()
}

/// Replaces the row `seq` if it is still at `expected_version`.
pub fn update(
    tx: &Transaction,
    seq: i64,
    expected_version: u64,
    service: &Service,
    at: Timestamp,
) -> Result<StoredService> {
    let version = expected_version + 1;
    let n = tx
        .execute(
            "UPDATE services SET status = ?3, updated_at = ?4, version = ?5, doc = ?6
             WHERE seq = ?1 AND version = ?2",
            params![
                seq,
                expected_version,
                service.status.as_str(),
                at.as_millis(),
                version,
                to_doc("service", service)?
            ],
        )
        .ctx("update service")?;
    if n == 1 {
        return Ok(StoredService {
            seq,
            version,
            service: service.clone(),
        });
    }
    Err(StoreError::Conflict {
        what: format!("service {} changed meanwhile", service.service_name),
    })
}

/// ARNs of the cluster's live services, by name, `max_results` (1–100,
/// default 10) at a time.
pub fn list_arns(
    conn: &Connection,
    cluster_arn: &str,
    max_results: Option<u32>,
    next_token: Option<&str>,
) -> Result<Page<String>> {
    let limit = page::max_results(max_results, 100, 10)?;
    let after: String = match next_token {
        Some(t) => page::decode(PAGE_KIND, t)?,
        None => String::new(),
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT service_name, service_arn FROM services
             WHERE cluster_arn = ?1 AND status != 'INACTIVE' AND service_name > ?2
             ORDER BY service_name LIMIT ?3",
        )
        .ctx("list services")?;
    let rows = stmt
        .query_map(params![cluster_arn, after, i64::from(limit) + 1], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .ctx("list services")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list services")?;
    page::paginate(
        rows,
        limit,
        PAGE_KIND,
        |(name, _)| name.clone(),
        |(_, arn)| Ok(arn),
    )
}

/// Every service that is not INACTIVE, for the controller.
pub fn list_live(conn: &Connection) -> Result<Vec<StoredService>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, version, doc FROM services WHERE status != 'INACTIVE' ORDER BY seq",
        )
        .ctx("list live services")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .ctx("list live services")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list live services")?;
    rows.iter()
        .map(|(seq, v, doc)| from_row(*seq, *v, doc))
        .collect()
}

/// How many services of the cluster are ACTIVE (DescribeClusters'
/// `activeServicesCount`; DeleteCluster refuses while any exist).
pub fn count_live(conn: &Connection, cluster_arn: &str) -> Result<u64> {
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM services WHERE cluster_arn = ?1 AND status != 'INACTIVE'",
            [cluster_arn],
            |r| r.get(0),
        )
        .ctx("count services")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Forgets INACTIVE services last changed before `cutoff`.
pub fn purge_inactive_before(tx: &Transaction, cutoff: Timestamp) -> Result<usize> {
    tx.execute(
        "DELETE FROM services WHERE status = ?1 AND updated_at < ?2",
        params![ServiceStatus::Inactive.as_str(), cutoff.as_millis()],
    )
    .ctx("purge services")
}

#[cfg(test)]
mod tests {
    use hail_model::arn::Scope;
    use hail_model::ecs::service::{
        DeploymentConfiguration, DeploymentController, SchedulingStrategy,
    };
    use hail_model::ecs::task::PropagateTags;

    use super::*;
    use crate::Store;

    fn service(name: &str) -> Service {
        let scope = Scope::default();
        Service {
            service_arn: scope.service_arn("c", name),
            service_name: name.into(),
            cluster_arn: scope.cluster_arn("c"),
            load_balancers: vec![],
            service_registries: vec![],
            status: ServiceStatus::Active,
            desired_count: 1,
            running_count: 0,
            pending_count: 0,
            launch_type: None,
            capacity_provider_strategy: None,
            platform_version: None,
            platform_family: None,
            task_definition: scope.task_definition_arn("f", 1),
            deployment_configuration: DeploymentConfiguration::default(),
            deployments: vec![],
            role_arn: None,
            events: vec![],
            created_at: Timestamp::from_millis(1000),
            placement_constraints: vec![],
            placement_strategy: vec![],
            network_configuration: None,
            health_check_grace_period_seconds: None,
            scheduling_strategy: SchedulingStrategy::Replica,
            deployment_controller: DeploymentController {
                controller_type: "ECS".into(),
            },
            tags: None,
            created_by: "arn:aws:iam::000000000000:root".into(),
            enable_ecs_managed_tags: false,
            propagate_tags: PropagateTags::None,
            enable_execute_command: false,
            paused_desired_count: Some(3),
        }
    }

    #[tokio::test]
    async fn names_are_unique_among_live_services_and_updates_are_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        let cluster = Scope::default().cluster_arn("c");
        let first = store.write(|tx| insert(tx, &service("web"))).await.unwrap();
        let dup = store.write(|tx| insert(tx, &service("web"))).await;
        assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");
        store.write(|tx| insert(tx, &service("api"))).await.unwrap();

        let c = cluster.clone();
        let page = store
            .read(move |conn| list_arns(conn, &c, Some(1), None))
            .await
            .unwrap();
        assert_eq!(page.items, vec![Scope::default().service_arn("c", "api")]);
        let (c, token) = (cluster.clone(), page.next_token.unwrap());
        let page = store
            .read(move |conn| list_arns(conn, &c, Some(1), Some(&token)))
            .await
            .unwrap();
        assert_eq!(page.items, vec![Scope::default().service_arn("c", "web")]);
        assert_eq!(page.next_token, None);

        // Deleted: INACTIVE, still the latest of its name, and the name is free.
        let mut gone = first.service.clone();
        gone.status = ServiceStatus::Inactive;
        let stale = first.clone();
        store
            .write(move |tx| {
                update(
                    tx,
                    first.seq,
                    first.version,
                    &gone,
                    Timestamp::from_millis(2000),
                )
            })
            .await
            .unwrap();
        let lost = store
            .write(move |tx| {
                update(
                    tx,
                    stale.seq,
                    stale.version,
                    &stale.service,
                    Timestamp::from_millis(2000),
                )
            })
            .await;
        assert!(matches!(lost, Err(StoreError::Conflict { .. })));
        let c = cluster.clone();
        let latest = store
            .read(move |conn| get_latest(conn, &c, "web"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.service.status, ServiceStatus::Inactive);
        assert_eq!(latest.service.paused_desired_count, Some(3));
        store.write(|tx| insert(tx, &service("web"))).await.unwrap();
        let c = cluster.clone();
        assert_eq!(
            store.read(move |conn| count_live(conn, &c)).await.unwrap(),
            2
        );
        let purged = store
            .write(|tx| purge_inactive_before(tx, Timestamp::from_millis(3000)))
            .await
            .unwrap();
        assert_eq!(purged, 1);
    }
}
