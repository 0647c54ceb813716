//! Clusters, task definitions, tasks, tags and the outbox against real
//! SQLite files.

mod common;

use common::{all_pages, cluster, scope, stopped, task, task_definition, temp_store};
use hail_model::ecs::task::LaunchType;
use hail_model::ecs::task_definition::TaskDefinitionStatus;
use hail_model::ecs::{ClusterStatus, Tag, TaskStatus, Timestamp};
use hail_store::task_definitions::{FamilyStatus, ListFilter as DefFilter, Sort};
use hail_store::tasks::ListFilter as TaskFilter;
use hail_store::{clusters, outbox, tags, task_definitions, tasks, Store, StoreError};

#[tokio::test]
async fn create_cluster_is_idempotent_and_delete_leaves_it_inactive() {
    let (_dir, store) = temp_store();
    let (c, created) = store
        .write(|tx| clusters::insert_or_get(tx, &cluster("web")))
        .await
        .unwrap();
    assert!(created);
    let mut tagged = cluster("web");
    tagged.tags = vec![Tag::new("team", "x")];
    let (again, created) = store
        .write(move |tx| clusters::insert_or_get(tx, &tagged))
        .await
        .unwrap();
    assert!(!created, "an ACTIVE cluster is returned, not replaced");
    assert_eq!(again, c);

    let gone = store
        .write(|tx| clusters::mark_inactive(tx, "web"))
        .await
        .unwrap();
    assert_eq!(gone.status, ClusterStatus::Inactive);
    let described = store
        .read(|c| clusters::get(c, "web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        described.status,
        ClusterStatus::Inactive,
        "still describable"
    );
    let names = store
        .read(|c| clusters::list_names(c, None, None))
        .await
        .unwrap();
    assert!(names.items.is_empty(), "INACTIVE clusters are not listed");

    let (back, created) = store
        .write(|tx| clusters::insert_or_get(tx, &cluster("web")))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(back.status, ClusterStatus::Active, "create reactivates");

    let mut counted = back.clone();
    counted.running_tasks_count = 3;
    store
        .write(move |tx| clusters::update(tx, &counted))
        .await
        .unwrap();
    let got = store
        .read(|c| clusters::get(c, "web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.running_tasks_count, 3);
    let err = store
        .write(|tx| clusters::mark_inactive(tx, "nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn cluster_names_paginate_in_order() {
    let (_dir, store) = temp_store();
    let mut names: Vec<String> = (0..23).map(|i| format!("c{:02}", (i * 7) % 23)).collect();
    let n = names.clone();
    store
        .write(move |tx| {
            for name in &n {
                clusters::insert_or_get(tx, &cluster(name))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    names.sort();
    let conn = raw(&store);
    for size in [1, 5, 23, 100] {
        let (got, pages) = all_pages(|t| clusters::list_names(&conn, Some(size), t).unwrap());
        assert_eq!(got, names, "page size {size}");
        assert_eq!(pages, 23usize.div_ceil(size as usize).max(1));
    }
    for bad in [0, 101] {
        assert!(matches!(
            clusters::list_names(&conn, Some(bad), None),
            Err(StoreError::InvalidArgument { .. })
        ));
    }
    assert!(matches!(
        clusters::list_names(&conn, None, Some("garbage")),
        Err(StoreError::InvalidToken { .. })
    ));
}

/// A read connection for synchronous list tests (the store's own reads are
/// exercised elsewhere).
fn raw(store: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

#[tokio::test]
async fn corrupt_documents_are_reported_not_panicked_on() {
    let (_dir, store) = temp_store();
    store
        .write(|tx| clusters::insert_or_get(tx, &cluster("bad")))
        .await
        .unwrap();
    raw(&store)
        .execute(
            "UPDATE clusters SET doc = '{not json' WHERE name = 'bad'",
            [],
        )
        .unwrap();
    let err = store.read(|c| clusters::get(c, "bad")).await.unwrap_err();
    match &err {
        StoreError::Corrupt { what, .. } => assert_eq!(what, "cluster bad"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn revisions_are_never_reused_and_latest_active_skips_deregistered() {
    let (_dir, store) = temp_store();
    for _ in 0..3 {
        store
            .write(|tx| task_definitions::register(tx, "api", |r| task_definition("api", r)))
            .await
            .unwrap();
    }
    let at = Timestamp::from_secs(1_800_000_000);
    let dereg = store
        .write(move |tx| {
            task_definitions::set_status(tx, "api", 3, TaskDefinitionStatus::Inactive, at)
        })
        .await
        .unwrap();
    assert_eq!(dereg.status, TaskDefinitionStatus::Inactive);
    assert_eq!(dereg.deregistered_at, Some(at));
    let stored = store
        .read(|c| task_definitions::get(c, "api", 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, dereg);
    let latest = store
        .read(|c| task_definitions::latest_active(c, "api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.revision, 2);

    // Deregistering twice is harmless; reactivating is not a thing.
    store
        .write(move |tx| {
            task_definitions::set_status(tx, "api", 3, TaskDefinitionStatus::Inactive, at)
        })
        .await
        .unwrap();
    let err = store
        .write(move |tx| {
            task_definitions::set_status(tx, "api", 3, TaskDefinitionStatus::Active, at)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    // Even with the newest revision gone from the table, 4 comes next.
    raw(&store)
        .execute(
            "DELETE FROM task_definitions WHERE family = 'api' AND revision = 3",
            [],
        )
        .unwrap();
    let next = store
        .write(|tx| task_definitions::register(tx, "api", |r| task_definition("api", r)))
        .await
        .unwrap();
    assert_eq!(next.revision, 4);

    // A registration whose build fails leaves no trace, not even the number.
    let err = store
        .write(|tx| {
            task_definitions::try_register(tx, "api", |_| {
                Err(StoreError::InvalidArgument {
                    what: "test".into(),
                    reason: "invalid".into(),
                })
            })
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument { .. }));
    let next = store
        .write(|tx| task_definitions::register(tx, "api", |r| task_definition("api", r)))
        .await
        .unwrap();
    assert_eq!(next.revision, 5);
}

#[tokio::test]
async fn task_definition_lists_filter_sort_and_paginate() {
    let (_dir, store) = temp_store();
    // a:1..4, a_b:1..2, b:1..3; a:2 and all of b deregistered.
    store
        .write(|tx| {
            for (family, n) in [("b", 3), ("a", 4), ("a_b", 2)] {
                for _ in 0..n {
                    task_definitions::register(tx, family, |r| task_definition(family, r))?;
                }
            }
            let at = Timestamp::from_secs(1);
            task_definitions::set_status(tx, "a", 2, TaskDefinitionStatus::Inactive, at)?;
            for rev in 1..=3 {
                task_definitions::set_status(tx, "b", rev, TaskDefinitionStatus::Inactive, at)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let conn = raw(&store);
    let arn = |f: &str, r: u32| scope().task_definition_arn(f, r);
    let list = |filter: &DefFilter, size: u32| {
        all_pages(|t| task_definitions::list_arns(&conn, filter, Some(size), t).unwrap()).0
    };

    let everything: Vec<String> = [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("a", 4),
        ("a_b", 1),
        ("a_b", 2),
    ]
    .into_iter()
    .chain([("b", 1), ("b", 2), ("b", 3)])
    .map(|(f, r)| arn(f, r))
    .collect();
    for size in [1, 2, 4, 9, 100] {
        assert_eq!(list(&DefFilter::default(), size), everything, "size {size}");
        let desc = DefFilter {
            sort: Sort::Desc,
            ..Default::default()
        };
        let mut reversed = everything.clone();
        reversed.reverse();
        assert_eq!(list(&desc, size), reversed, "desc size {size}");
    }
    let active_a = DefFilter {
        family: Some("a".into()),
        status: Some(TaskDefinitionStatus::Active),
        sort: Sort::Desc,
    };
    assert_eq!(
        list(&active_a, 1),
        vec![arn("a", 4), arn("a", 3), arn("a", 1)]
    );
    let inactive = DefFilter {
        status: Some(TaskDefinitionStatus::Inactive),
        ..Default::default()
    };
    assert_eq!(
        list(&inactive, 2),
        vec![arn("a", 2), arn("b", 1), arn("b", 2), arn("b", 3)]
    );

    let families = |prefix: Option<&str>, status: FamilyStatus, size: u32| {
        all_pages(|t| {
            task_definitions::list_families(&conn, prefix, status, Some(size), t).unwrap()
        })
        .0
    };
    assert_eq!(families(None, FamilyStatus::All, 1), ["a", "a_b", "b"]);
    assert_eq!(families(None, FamilyStatus::Active, 1), ["a", "a_b"]);
    assert_eq!(families(None, FamilyStatus::Inactive, 5), ["b"]);
    assert_eq!(families(Some("a"), FamilyStatus::All, 1), ["a", "a_b"]);
    assert_eq!(families(Some("a_"), FamilyStatus::All, 1), ["a_b"]);
    // '_' is literal, not LIKE's wildcard.
    assert!(families(Some("a%"), FamilyStatus::All, 1).is_empty());

    // A token from one list is refused by another.
    let t = task_definitions::list_arns(&conn, &DefFilter::default(), Some(1), None)
        .unwrap()
        .next_token
        .unwrap();
    assert!(matches!(
        task_definitions::list_families(&conn, None, FamilyStatus::All, None, Some(&t)),
        Err(StoreError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn task_updates_use_optimistic_concurrency() {
    let (_dir, store) = temp_store();
    let t = task("web", "t1", "app", 1_000);
    let inserted = store
        .write({
            let t = t.clone();
            move |tx| tasks::insert(tx, &t)
        })
        .await
        .unwrap();
    assert_eq!(inserted.version, 1);
    let dup = store
        .write({
            let t = t.clone();
            move |tx| tasks::insert(tx, &t)
        })
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }), "{dup}");

    // Two controllers read version 1; the first update wins.
    let mut running = t.clone();
    running.last_status = TaskStatus::Running;
    let won = store
        .write(move |tx| tasks::update(tx, "t1", 1, &running))
        .await
        .unwrap();
    assert_eq!((won.version, won.task.version), (2, 2));
    let mut stopping = t.clone();
    stopping.desired_status = TaskStatus::Stopped;
    let lost = store
        .write({
            let s = stopping.clone();
            move |tx| tasks::update(tx, "t1", 1, &s)
        })
        .await
        .unwrap_err();
    match &lost {
        StoreError::Conflict { what } => assert!(what.contains("version 2"), "{what}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let now = store.read(|c| tasks::get(c, "t1")).await.unwrap().unwrap();
    assert_eq!(now, won, "the losing update changed nothing");

    let missing = store
        .write(move |tx| {
            let mut other = stopping;
            other.task_arn = scope().task_arn("web", "t9");
            tasks::update(tx, "t9", 1, &other)
        })
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
}

/// Which tasks a filter should keep, by the test's own reckoning.
type Keep = Box<dyn Fn(&hail_model::ecs::Task) -> bool>;

#[tokio::test]
async fn task_lists_filter_and_paginate_newest_first() {
    let (_dir, store) = temp_store();
    // 30 tasks over two clusters and two families; every third stopped,
    // every fifth from a service, every seventh on EC2; a few share a
    // creation time so that ties are ordered by insertion.
    let mut all = Vec::new();
    for i in 0..30i64 {
        let cluster = if i % 2 == 0 { "even" } else { "odd" };
        let family = if i % 4 < 2 { "front" } else { "back" };
        let mut t = task(
            cluster,
            &format!("task{i:02}"),
            family,
            1_000 + (i / 3) * 10,
        );
        if i % 3 == 0 {
            t.desired_status = TaskStatus::Stopped;
        }
        if i % 5 == 0 {
            t.group = Some("service:api".into());
            t.started_by = Some("ecs-svc/123".into());
        }
        if i % 7 == 0 {
            t.launch_type = Some(LaunchType::Ec2);
        }
        all.push(t);
    }
    let docs = all.clone();
    store
        .write(move |tx| {
            for t in &docs {
                tasks::insert(tx, t)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let conn = raw(&store);
    // Newest first: higher creation time first, later insertion first on ties.
    let mut newest_first: Vec<(usize, &hail_model::ecs::Task)> = all.iter().enumerate().collect();
    newest_first.reverse();
    let expect = |keep: &dyn Fn(&hail_model::ecs::Task) -> bool| -> Vec<String> {
        newest_first
            .iter()
            .filter(|(_, t)| keep(t))
            .map(|(_, t)| t.task_arn.clone())
            .collect()
    };
    let filters: Vec<(TaskFilter, Keep)> = vec![
        (TaskFilter::default(), Box::new(|_| true)),
        (
            TaskFilter {
                cluster_arn: Some(scope().cluster_arn("even")),
                ..Default::default()
            },
            Box::new(|t| t.cluster_arn.ends_with("/even")),
        ),
        (
            TaskFilter {
                family: Some("back".into()),
                ..Default::default()
            },
            Box::new(|t| t.task_definition_arn.contains("/back:")),
        ),
        (
            TaskFilter {
                desired_status: Some(TaskStatus::Stopped),
                ..Default::default()
            },
            Box::new(|t| t.desired_status == TaskStatus::Stopped),
        ),
        (
            TaskFilter {
                desired_status: Some(TaskStatus::Running),
                cluster_arn: Some(scope().cluster_arn("odd")),
                ..Default::default()
            },
            Box::new(|t| {
                t.desired_status == TaskStatus::Running && t.cluster_arn.ends_with("/odd")
            }),
        ),
        (
            TaskFilter {
                desired_status: Some(TaskStatus::Pending),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
        (
            TaskFilter {
                started_by: Some("ecs-svc/123".into()),
                ..Default::default()
            },
            Box::new(|t| t.started_by.is_some()),
        ),
        (
            TaskFilter {
                service_name: Some("api".into()),
                ..Default::default()
            },
            Box::new(|t| t.group.is_some()),
        ),
        (
            TaskFilter {
                launch_type: Some(LaunchType::Fargate),
                ..Default::default()
            },
            Box::new(|t| t.launch_type == Some(LaunchType::Fargate)),
        ),
    ];
    for (i, (filter, keep)) in filters.iter().enumerate() {
        let want = expect(keep.as_ref());
        for size in [1, 3, 7, 100] {
            let (got, _) = all_pages(|t| tasks::list(&conn, filter, Some(size), t).unwrap());
            let arns: Vec<String> = got.iter().map(|k| k.arn.clone()).collect();
            assert_eq!(arns, want, "filter {i}, page size {size}");
            assert!(got.iter().all(|k| k.arn.ends_with(&format!("/{}", k.id))));
        }
    }

    // A task created while paging appears on no page (it is newer than the
    // resume point), and nothing is repeated or skipped.
    let f = TaskFilter::default();
    let first = tasks::list(&conn, &f, Some(10), None).unwrap();
    store
        .write(|tx| tasks::insert(tx, &task("even", "late", "front", 5_000)))
        .await
        .unwrap();
    let rest = all_pages(|t| {
        tasks::list(
            &conn,
            &f,
            Some(10),
            Some(t.unwrap_or(first.next_token.as_deref().unwrap())),
        )
        .unwrap()
    })
    .0;
    let mut seen: Vec<String> = first
        .items
        .iter()
        .chain(&rest)
        .map(|k| k.arn.clone())
        .collect();
    assert_eq!(seen, expect(&|_| true));
    seen.dedup();
    assert_eq!(seen.len(), 30);
}

#[tokio::test]
async fn counts_retention_and_unfinished_tasks() {
    let (_dir, store) = temp_store();
    let hour = 3_600_000;
    let now = 10 * hour;
    store
        .write(move |tx| {
            let mut running = task("web", "run1", "app", 1);
            running.last_status = TaskStatus::Running;
            tasks::insert(tx, &running)?;
            let mut pending = task("web", "pend1", "app", 2);
            pending.last_status = TaskStatus::Pending;
            tasks::insert(tx, &pending)?;
            tasks::insert(tx, &task("web", "prov1", "app", 3))?;
            tasks::insert(tx, &task("other", "prov2", "app", 4))?;
            // Stopped two hours ago, and thirty minutes ago.
            let old = stopped(task("web", "old1", "app", 5), now - 2 * hour);
            tasks::insert(tx, &old)?;
            tags::set(tx, &old.task_arn, &[Tag::new("k", "v")])?;
            tasks::insert(tx, &stopped(task("web", "new1", "app", 6), now - hour / 2))?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let counts = store
        .read(|c| tasks::count_by_last_status(c, &scope().cluster_arn("web")))
        .await
        .unwrap();
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![
            (TaskStatus::Provisioning, 1),
            (TaskStatus::Pending, 1),
            (TaskStatus::Running, 1),
            (TaskStatus::Stopped, 2)
        ]
    );

    let unfinished = store.read(tasks::list_unfinished).await.unwrap();
    let ids: Vec<String> = unfinished
        .iter()
        .map(|s| tasks::task_id(&s.task).unwrap())
        .collect();
    assert_eq!(ids, ["run1", "pend1", "prov1", "prov2"]);

    // ECS keeps stopped tasks for at least an hour.
    let cutoff = Timestamp::from_millis(now - hour);
    let deleted = store
        .write(move |tx| tasks::delete_stopped_before(tx, cutoff))
        .await
        .unwrap();
    assert_eq!(deleted, ["old1"]);
    assert!(store
        .read(|c| tasks::get(c, "old1"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .read(|c| tasks::get(c, "new1"))
        .await
        .unwrap()
        .is_some());
    assert!(store
        .read(|c| tasks::get(c, "run1"))
        .await
        .unwrap()
        .is_some());
    let old_arn = scope().task_arn("web", "old1");
    assert!(store
        .read(move |c| tags::list(c, &old_arn))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn tags_are_unique_per_resource() {
    let (_dir, store) = temp_store();
    let arn = scope().cluster_arn("web");
    let other = scope().cluster_arn("db");
    let (a, o) = (arn.clone(), other.clone());
    store
        .write(move |tx| {
            tags::set(tx, &a, &[Tag::new("team", "x"), Tag::new("env", "dev")])?;
            tags::set(tx, &a, &[Tag::new("team", "y")])?;
            tags::set(tx, &o, &[Tag::new("team", "z")])?;
            tags::remove(tx, &a, &["env".to_owned(), "absent".to_owned()])
        })
        .await
        .unwrap();
    let a = arn.clone();
    assert_eq!(
        store.read(move |c| tags::list(c, &a)).await.unwrap(),
        vec![Tag::new("team", "y")]
    );
    assert_eq!(
        store.read(move |c| tags::list(c, &other)).await.unwrap(),
        vec![Tag::new("team", "z")]
    );
}

#[tokio::test]
async fn outbox_events_share_the_fate_of_their_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).unwrap();
    let payload = serde_json::json!({"lastStatus": "RUNNING"});

    // Rolled back: neither the change nor its event exists.
    let p = payload.clone();
    store
        .write(move |tx| {
            tasks::insert(tx, &task("web", "t1", "app", 1))?;
            outbox::append(tx, "task-state", "t1", &p)?;
            Err::<(), _>(StoreError::Conflict {
                what: "abort".into(),
            })
        })
        .await
        .unwrap_err();
    assert!(store
        .read(|c| outbox::pending(c, "task-state", 10))
        .await
        .unwrap()
        .is_empty());
    assert!(store.read(|c| tasks::get(c, "t1")).await.unwrap().is_none());

    // Committed: both exist.
    let mut ids = Vec::new();
    for i in 0..3 {
        let p = payload.clone();
        ids.push(
            store
                .write(move |tx| {
                    let id = format!("t{i}");
                    tasks::insert(tx, &task("web", &id, "app", i))?;
                    outbox::append(tx, "task-state", &id, &p)
                })
                .await
                .unwrap(),
        );
    }
    store
        .write(move |tx| outbox::append(tx, "object-created", "bucket/key", &serde_json::json!({})))
        .await
        .unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let events = store
        .read(|c| outbox::pending(c, "task-state", 10))
        .await
        .unwrap();
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(events[1].key, "t1");
    assert_eq!(events[1].payload, payload);
    let mut uuids: Vec<&str> = events.iter().map(|e| e.uuid.as_str()).collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 3);

    // Ack the first; the consumer "crashes" before acking the rest.
    let first = ids[0];
    assert!(store.write(move |tx| outbox::ack(tx, first)).await.unwrap());
    assert!(!store.write(move |tx| outbox::ack(tx, first)).await.unwrap());
    drop(store);

    let store = Store::open(&path).unwrap();
    let redelivered = store
        .read(|c| outbox::pending(c, "task-state", 10))
        .await
        .unwrap();
    assert_eq!(
        redelivered.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[1..].to_vec(),
        "un-acked events come back after a restart"
    );
    assert_eq!(redelivered[0], events[1]);
    let limited = store
        .read(|c| outbox::pending(c, "task-state", 1))
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);

    // Ids keep increasing past acknowledged (deleted) events.
    let last = *ids.last().unwrap();
    let all_acked = ids.clone();
    store
        .write(move |tx| {
            for id in &all_acked {
                outbox::ack(tx, *id)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let next = store
        .write(|tx| outbox::append(tx, "task-state", "t9", &serde_json::json!(null)))
        .await
        .unwrap();
    assert!(next > last + 1, "{next} follows every id handed out before");
}
