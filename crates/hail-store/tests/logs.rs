//! The CloudWatch Logs storage: groups, streams, events and their tokens.

mod common;

use std::collections::BTreeMap;

use common::{all_pages, temp_store};
use hail_store::logs::{
    self, DescribeStreams, EventsPage, FilterEvents, GetEvents, InputEvent, StreamOrder,
};
use hail_store::{Store, StoreError};

fn ev(timestamp: i64, message: &str) -> InputEvent {
    InputEvent {
        timestamp,
        message: message.to_owned(),
    }
}

async fn group_with_stream(store: &Store, events: Vec<InputEvent>) {
    store
        .write(move |tx| {
            logs::create_group(tx, "/ecs/web", 1, Some(7), &BTreeMap::new())?;
            logs::create_stream(tx, "/ecs/web", "app/1", 2)?;
            logs::put_events(tx, "/ecs/web", "app/1", &events, 500)
        })
        .await
        .unwrap();
}

fn get(conn: &rusqlite::Connection, q: &GetEvents) -> EventsPage {
    logs::get_events(conn, "/ecs/web", "app/1", q).unwrap()
}

fn messages(page: &EventsPage) -> Vec<String> {
    page.events.iter().map(|e| e.message.clone()).collect()
}

#[tokio::test]
async fn put_events_sorts_by_timestamp_and_updates_the_stream() {
    let (_dir, store) = temp_store();
    // Out of order, with a tie at 20 that must keep the batch's order.
    group_with_stream(
        &store,
        vec![ev(30, "c"), ev(10, "a"), ev(20, "b1"), ev(20, "b2")],
    )
    .await;
    store
        .write(|tx| logs::put_events(tx, "/ecs/web", "app/1", &[ev(5, "early")], 900))
        .await
        .unwrap();
    let s = store
        .read(|c| logs::get_stream(c, "/ecs/web", "app/1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.first_event_timestamp, Some(5));
    assert_eq!(s.last_event_timestamp, Some(30));
    assert_eq!(s.last_ingestion_time, Some(900));
    assert_eq!(s.stored_bytes, (1 + 1 + 2 + 2 + 5) + 5 * 26);
    let page = store
        .read(|c| {
            logs::get_events(
                c,
                "/ecs/web",
                "app/1",
                &GetEvents {
                    start_from_head: true,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(messages(&page), ["early", "a", "b1", "b2", "c"]);
    assert_eq!(page.events[1].ingestion_time, 500);

    let err = store
        .write(|tx| logs::put_events(tx, "/ecs/web", "nope", &[ev(1, "x")], 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn get_events_tokens_resume_exactly_in_both_directions() {
    let (_dir, store) = temp_store();
    // Ten events, several sharing timestamps.
    let events: Vec<InputEvent> = (0..10).map(|i| ev(100 + i / 3, &format!("m{i}"))).collect();
    group_with_stream(&store, events).await;
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let all: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();

    // Forward from the head, three at a time.
    let mut got = Vec::new();
    let mut q = GetEvents {
        start_from_head: true,
        limit: Some(3),
        ..Default::default()
    };
    let mut backward_tokens = Vec::new();
    loop {
        let page = get(&conn, &q);
        backward_tokens.push(page.next_backward_token.clone());
        if page.events.is_empty() {
            // At the end the forward token comes back unchanged.
            assert_eq!(Some(page.next_forward_token), q.next_token);
            break;
        }
        got.extend(messages(&page));
        q.next_token = Some(page.next_forward_token);
    }
    assert_eq!(got, all);

    // Tail: an event put after reaching the end is found with the same token.
    let end_token = q.next_token.clone();
    store
        .write(|tx| logs::put_events(tx, "/ecs/web", "app/1", &[ev(200, "late")], 600))
        .await
        .unwrap();
    let page = get(&conn, &q);
    assert_eq!(messages(&page), ["late"]);
    assert_ne!(Some(page.next_forward_token), end_token);

    // Backward from the end (the default), three at a time: each page is in
    // ascending order, pages go back in time.
    let mut q = GetEvents {
        limit: Some(3),
        ..Default::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = get(&conn, &q);
        if page.events.is_empty() {
            assert_eq!(Some(page.next_backward_token), q.next_token);
            break;
        }
        q.next_token = Some(page.next_backward_token.clone());
        pages.push(messages(&page));
    }
    assert_eq!(pages[0], ["m8", "m9", "late"]);
    let mut back: Vec<String> = pages.into_iter().rev().flatten().collect();
    assert_eq!(back.pop().as_deref(), Some("late"));
    assert_eq!(back, all);

    // A backward token from a forward page reads what came before that page.
    let page = get(
        &conn,
        &GetEvents {
            next_token: Some(backward_tokens[2].clone()),
            limit: Some(4),
            ..Default::default()
        },
    );
    assert_eq!(messages(&page), ["m2", "m3", "m4", "m5"]);

    // Time window: start inclusive, end exclusive.
    let page = get(
        &conn,
        &GetEvents {
            start_time: Some(101),
            end_time: Some(103),
            start_from_head: true,
            ..Default::default()
        },
    );
    assert_eq!(messages(&page), ["m3", "m4", "m5", "m6", "m7", "m8"]);

    for bad in ["x/1/2", "f/1", "f/a/b", ""] {
        let err = logs::get_events(
            &conn,
            "/ecs/web",
            "app/1",
            &GetEvents {
                next_token: Some(bad.into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidToken { .. }),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn filter_events_searches_streams_by_substring_and_paginates() {
    let (_dir, store) = temp_store();
    store
        .write(|tx| {
            logs::create_group(tx, "g", 1, None, &BTreeMap::new())?;
            for s in ["web/1", "web/2", "worker/1"] {
                logs::create_stream(tx, "g", s, 1)?;
            }
            let mut i = 0;
            for t in 0..20i64 {
                for s in ["web/1", "web/2", "worker/1"] {
                    let msg = if i % 4 == 0 {
                        format!("ERROR {s} {t}")
                    } else {
                        format!("ok {s} {t}")
                    };
                    logs::put_events(tx, "g", s, &[ev(t, &msg)], 100)?;
                    i += 1;
                }
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let run = |q: FilterEvents, size: u32| {
        all_pages(|t| {
            logs::filter_events(
                &conn,
                "g",
                &FilterEvents {
                    limit: Some(size),
                    next_token: t.map(str::to_owned),
                    ..q.clone()
                },
            )
            .unwrap()
        })
        .0
    };
    let errors = |q: FilterEvents, size: u32| -> Vec<String> {
        run(q, size).into_iter().map(|e| e.message).collect()
    };
    let all_errors: Vec<String> = (0..60)
        .filter(|i| i % 4 == 0)
        .map(|i| {
            let s = ["web/1", "web/2", "worker/1"][i % 3];
            format!("ERROR {s} {}", i / 3)
        })
        .collect();
    let pattern = FilterEvents {
        pattern: Some("ERROR".into()),
        ..Default::default()
    };
    for size in [1, 4, 15, 100] {
        assert_eq!(errors(pattern.clone(), size), all_errors, "size {size}");
    }
    assert_eq!(run(FilterEvents::default(), 7).len(), 60);
    assert!(
        errors(
            FilterEvents {
                pattern: Some("error".into()),
                ..Default::default()
            },
            10
        )
        .is_empty(),
        "matching is case-sensitive"
    );

    let web = errors(
        FilterEvents {
            stream_prefix: Some("web/".into()),
            start_time: Some(5),
            end_time: Some(15),
            ..pattern.clone()
        },
        2,
    );
    let want: Vec<String> = all_errors
        .iter()
        .filter(|m| m.contains("web/"))
        .filter(|m| {
            let t: i64 = m.rsplit(' ').next().unwrap().parse().unwrap();
            (5..15).contains(&t)
        })
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(web, want);

    let named = run(
        FilterEvents {
            stream_names: Some(vec!["worker/1".into()]),
            ..Default::default()
        },
        6,
    );
    assert_eq!(named.len(), 20);
    assert!(named.iter().all(|e| e.stream_name == "worker/1"));
    let mut ids: Vec<&str> = named.iter().map(|e| e.event_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn groups_and_streams_describe_paginate_and_delete_cascades() {
    let (_dir, store) = temp_store();
    store
        .write(|tx| {
            for name in ["/ecs/a", "/ecs/b", "/ecs/c", "/other", "/ecs/d"] {
                let tags = BTreeMap::from([("team".to_owned(), "x".to_owned())]);
                logs::create_group(tx, name, 10, None, &tags)?;
            }
            // Streams with last events at 30, 10, none, 20.
            for (s, t) in [
                ("s1", Some(30)),
                ("s2", Some(10)),
                ("s3", None),
                ("t1", Some(20)),
            ] {
                logs::create_stream(tx, "/ecs/a", s, 5)?;
                if let Some(t) = t {
                    logs::put_events(tx, "/ecs/a", s, &[ev(t, "x")], 40)?;
                }
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let dup = store
        .write(|tx| logs::create_group(tx, "/ecs/a", 1, None, &BTreeMap::new()))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }), "{dup}");

    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let groups = |prefix: Option<&str>, size| -> Vec<String> {
        all_pages(|t| logs::describe_groups(&conn, prefix, Some(size), t).unwrap())
            .0
            .into_iter()
            .map(|g| g.name)
            .collect()
    };
    assert_eq!(
        groups(None, 2),
        ["/ecs/a", "/ecs/b", "/ecs/c", "/ecs/d", "/other"]
    );
    assert_eq!(
        groups(Some("/ecs/"), 1),
        ["/ecs/a", "/ecs/b", "/ecs/c", "/ecs/d"]
    );
    assert!(logs::describe_groups(&conn, None, Some(51), None).is_err());
    let a = logs::get_group(&conn, "/ecs/a").unwrap().unwrap();
    assert_eq!(a.stored_bytes, 3 * 27);
    assert_eq!(a.tags["team"], "x");

    let streams = |q: DescribeStreams, size| -> Vec<String> {
        all_pages(|t| {
            logs::describe_streams(
                &conn,
                "/ecs/a",
                &DescribeStreams {
                    limit: Some(size),
                    next_token: t.map(str::to_owned),
                    ..q.clone()
                },
            )
            .unwrap()
        })
        .0
        .into_iter()
        .map(|s| s.name)
        .collect()
    };
    for size in [1, 3, 50] {
        assert_eq!(
            streams(DescribeStreams::default(), size),
            ["s1", "s2", "s3", "t1"]
        );
        let by_time_desc = DescribeStreams {
            order_by: StreamOrder::LastEventTime,
            descending: true,
            ..Default::default()
        };
        assert_eq!(streams(by_time_desc, size), ["s1", "t1", "s2", "s3"]);
        let by_time = DescribeStreams {
            order_by: StreamOrder::LastEventTime,
            ..Default::default()
        };
        assert_eq!(streams(by_time, size), ["s3", "s2", "t1", "s1"]);
        let prefixed_desc = DescribeStreams {
            prefix: Some("s".into()),
            descending: true,
            ..Default::default()
        };
        assert_eq!(streams(prefixed_desc, size), ["s3", "s2", "s1"]);
    }

    let tags = store
        .write(|tx| {
            logs::set_retention(tx, "/ecs/a", Some(30))?;
            logs::retag_group(
                tx,
                "/ecs/a",
                &BTreeMap::from([("env".to_owned(), "dev".to_owned())]),
                &["team".to_owned()],
            )
        })
        .await
        .unwrap();
    assert_eq!(tags, BTreeMap::from([("env".to_owned(), "dev".to_owned())]));
    assert_eq!(
        logs::get_group(&conn, "/ecs/a")
            .unwrap()
            .unwrap()
            .retention_in_days,
        Some(30)
    );

    store
        .write(|tx| logs::delete_group(tx, "/ecs/a"))
        .await
        .unwrap();
    let left: (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM log_streams), (SELECT COUNT(*) FROM log_events)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(left, (0, 0), "streams and events went with the group");
    assert!(matches!(
        logs::describe_streams(&conn, "/ecs/a", &DescribeStreams::default()),
        Err(StoreError::NotFound { .. })
    ));
    let again = store
        .write(|tx| logs::delete_group(tx, "/ecs/a"))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::NotFound { .. }));
}

#[tokio::test]
async fn retention_deletes_old_events_only() {
    let (_dir, store) = temp_store();
    group_with_stream(&store, (0..10).map(|t| ev(t, "x")).collect()).await;
    let gone = store
        .write(|tx| logs::delete_events_before(tx, "/ecs/web", 4))
        .await
        .unwrap();
    assert_eq!(gone, 4);
    let page = store
        .read(|c| {
            logs::get_events(
                c,
                "/ecs/web",
                "app/1",
                &GetEvents {
                    start_from_head: true,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.timestamp).collect::<Vec<_>>(),
        (4..10).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_first_read_of_an_empty_stream_still_sees_later_events_going_forward() {
    let (_dir, store) = temp_store();
    group_with_stream(&store, Vec::new()).await;
    let empty = store
        .read(|conn| Ok::<_, StoreError>(get(conn, &GetEvents::default())))
        .await
        .unwrap();
    assert!(empty.events.is_empty());
    store
        .write(|tx| logs::put_events(tx, "/ecs/web", "app/1", &[ev(1_000, "later")], 600))
        .await
        .unwrap();
    let token = empty.next_forward_token.clone();
    let next = store
        .read(move |conn| {
            Ok::<_, StoreError>(get(
                conn,
                &GetEvents {
                    next_token: Some(token),
                    ..GetEvents::default()
                },
            ))
        })
        .await
        .unwrap();
    assert_eq!(messages(&next), ["later"]);
}
