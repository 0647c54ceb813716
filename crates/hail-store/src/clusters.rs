//! Clusters, keyed by name. Deleted clusters stay as INACTIVE so that
//! `DescribeClusters` can still report them, as ECS does.

use hail_model::ecs::{Cluster, ClusterStatus};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};
use crate::page::{self, Page};

const PAGE_KIND: &str = "clusters";

fn status_word(status: ClusterStatus) -> String {
    // The enum serialises to its ECS word; the fallback is never reached.
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Stores `cluster` unless an ACTIVE cluster of that name exists, in which
/// case that one is returned unchanged (`CreateCluster` is idempotent). An
/// INACTIVE cluster of that name is replaced: creating it again reactivates
/// it. The flag says whether `cluster` was stored.
pub fn insert_or_get(tx: &Transaction, cluster: &Cluster) -> Result<(Cluster, bool)> {
    if let Some(existing) = get(tx, &cluster.cluster_name)? {
        if existing.status == ClusterStatus::Active {
            return Ok((existing, false));
        }
    }
    tx.execute(
        "INSERT INTO clusters (name, arn, status, doc) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET arn = ?2, status = ?3, doc = ?4",
        params![
            cluster.cluster_name,
            cluster.cluster_arn,
            status_word(cluster.status),
            to_doc("cluster", cluster)?
        ],
    )
    .ctx("insert cluster")?;
    Ok((cluster.clone(), true))
}

/// The cluster named `name`, ACTIVE or INACTIVE.
pub fn get(conn: &Connection, name: &str) -> Result<Option<Cluster>> {
    let doc: Option<String> = conn
        .query_row("SELECT doc FROM clusters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .ctx("get cluster")?;
    doc.map(|d| parse_doc(&format!("cluster {name}"), &d))
        .transpose()
}

/// Names of ACTIVE clusters in name order, `max_results` (1–100, default
/// 100) at a time.
pub fn list_names(
    conn: &Connection,
    max_results: Option<u32>,
    next_token: Option<&str>,
) -> Result<Page<String>> {
    let limit = page::max_results(max_results, 100, 100)?;
    let after: String = match next_token {
        Some(t) => page::decode(PAGE_KIND, t)?,
        None => String::new(),
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT name FROM clusters WHERE status = 'ACTIVE' AND name > ?1
             ORDER BY name LIMIT ?2",
        )
        .ctx("list clusters")?;
    let rows = stmt
        .query_map(params![after, limit + 1], |r| r.get::<_, String>(0))
        .ctx("list clusters")?
        .collect::<Result<Vec<String>, _>>()
        .ctx("list clusters")?;
    page::paginate(rows, limit, PAGE_KIND, |n| n.clone(), Ok)
}

/// Marks the cluster INACTIVE and returns it as it now stands.
pub fn mark_inactive(tx: &Transaction, name: &str) -> Result<Cluster> {
    let mut cluster = get(tx, name)?.ok_or_else(|| StoreError::NotFound {
        what: format!("cluster {name}"),
    })?;
    cluster.status = ClusterStatus::Inactive;
    update(tx, &cluster)?;
    Ok(cluster)
}

/// Replaces the stored document of an existing cluster.
pub fn update(tx: &Transaction, cluster: &Cluster) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE clusters SET arn = ?2, status = ?3, doc = ?4 WHERE name = ?1",
            params![
                cluster.cluster_name,
                cluster.cluster_arn,
                status_word(cluster.status),
                to_doc("cluster", cluster)?
            ],
        )
        .ctx("update cluster")?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: format!("cluster {}", cluster.cluster_name),
        });
    }
    Ok(())
}
