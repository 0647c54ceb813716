//! Targets and listeners over time: health checks and their thresholds,
//! draining, scale from zero, metrics, and applying configurations.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hail_gateway::{
    Activator, ActivatorConfig, Gateway, GatewayConfig, GatewayError, GatewayOptions,
    HealthChanged, ListenerConfig, ReasonCode, Target, TargetState,
};
use http::StatusCode;
use tokio::sync::broadcast;

/// The next change of `target`, skipping others.
async fn next_change(
    events: &mut broadcast::Receiver<HealthChanged>,
    target: &str,
) -> HealthChanged {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("a health change in time")
            .expect("the event channel");
        if event.target == target {
            return event;
        }
    }
}

#[tokio::test]
async fn health_checks_follow_thresholds_and_matcher() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut tg = target_group("tg");
    tg.health_check.healthy_threshold = 3;
    tg.health_check.unhealthy_threshold = 2;
    tg.health_check.matcher = "200,302".into();
    let (gateway, url) = simple_gateway(tg.clone()).await;
    let mut events = gateway.subscribe();
    gateway
        .set_targets(
            "tg",
            vec![Target::new("a", a.addr), Target::new("b", b.addr)],
        )
        .unwrap();
    let health = gateway.target_health("tg").unwrap();
    assert!(health
        .iter()
        .all(|t| t.state == TargetState::Initial
            && t.reason == Some(ReasonCode::RegistrationInProgress)));

    // The first passing check makes a new target healthy.
    let e = next_change(&mut events, "a").await;
    assert_eq!((e.from, e.to), (TargetState::Initial, TargetState::Healthy));
    wait_for_state(&gateway, "tg", TargetState::Healthy, 2).await;

    // A status outside the matcher, twice: unhealthy, with the code named.
    a.set_health(500);
    let e = next_change(&mut events, "a").await;
    assert_eq!(
        (e.from, e.to),
        (TargetState::Healthy, TargetState::Unhealthy)
    );
    let health = gateway.target_health("tg").unwrap();
    let ta = health.iter().find(|t| t.id == "a").unwrap();
    assert_eq!(ta.reason, Some(ReasonCode::ResponseCodeMismatch));
    assert_eq!(
        ta.description.as_deref(),
        Some("Health checks failed with these codes: [500]")
    );
    // Unhealthy targets get no traffic while another is healthy.
    let client = client();
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(get(&client, &format!("{url}/")).await.2, "b");
    }
    assert_eq!(a.hits(), before);

    // 302 is in the matcher; three passes in a row bring it back.
    a.set_health(302);
    let e = next_change(&mut events, "a").await;
    assert_eq!(
        (e.from, e.to),
        (TargetState::Unhealthy, TargetState::Healthy)
    );

    // A check slower than its timeout fails with Target.Timeout.
    let mut slow = tg.clone();
    slow.health_check.timeout = Duration::from_millis(200);
    gateway
        .apply(GatewayConfig {
            listeners: vec![ListenerConfig::new("listener", 0, forward("tg"))],
            target_groups: vec![slow],
        })
        .await
        .unwrap();
    b.state.health_delay_ms.store(2000, Ordering::SeqCst);
    let e = next_change(&mut events, "b").await;
    assert_eq!(
        (e.from, e.to),
        (TargetState::Healthy, TargetState::Unhealthy)
    );
    let health = gateway.target_health("tg").unwrap();
    let tb = health.iter().find(|t| t.id == "b").unwrap();
    assert_eq!(tb.reason, Some(ReasonCode::Timeout));
}

#[tokio::test]
async fn all_unhealthy_fails_open() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_health(503);
    b.set_health(503);
    let (gateway, url) = simple_gateway(target_group("tg")).await;
    gateway
        .set_targets(
            "tg",
            vec![Target::new("a", a.addr), Target::new("b", b.addr)],
        )
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Unhealthy, 2).await;
    let client = client();
    for _ in 0..10 {
        assert_eq!(get(&client, &format!("{url}/")).await.0, StatusCode::OK);
    }
    assert!(a.hits() > 0 && b.hits() > 0);
}

#[tokio::test]
async fn a_deregistered_target_drains() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let (gateway, url) = simple_gateway(target_group("tg")).await;
    let mut events = gateway.subscribe();
    gateway
        .set_targets("tg", vec![Target::new("old", old.addr)])
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 1).await;

    let client = client();
    let long = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { get(&client, &format!("{url}/block")).await }
    });
    eventually("the long request reaches the old target", || async {
        old.state.blocked.load(Ordering::SeqCst) == 1
    })
    .await;

    gateway
        .set_targets("tg", vec![Target::new("new", new.addr)])
        .unwrap();
    let health = gateway.target_health("tg").unwrap();
    let draining = health.iter().find(|t| t.id == "old").unwrap();
    assert_eq!(draining.state, TargetState::Draining);
    assert_eq!(draining.reason, Some(ReasonCode::DeregistrationInProgress));
    wait_for_state(&gateway, "tg", TargetState::Healthy, 1).await;
    for _ in 0..10 {
        assert_eq!(get(&client, &format!("{url}/")).await.2, "new");
    }
    assert_eq!(old.hits(), 1, "a draining target got a new request");

    // The in-flight request completes; then the idle target is forgotten,
    // long before the 60 s deregistration delay.
    old.release(1);
    let (status, _, body) = long.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "old"));
    loop {
        let e = next_change(&mut events, "old").await;
        if e.to == TargetState::Unused {
            assert_eq!(e.from, TargetState::Draining);
            break;
        }
    }
    let health = gateway.target_health("tg").unwrap();
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].id, "new");
}

#[tokio::test]
async fn the_deregistration_delay_bounds_draining() {
    let old = Backend::start("old").await;
    let mut tg = target_group("tg");
    tg.deregistration_delay = Duration::from_millis(300);
    let (gateway, url) = simple_gateway(tg).await;
    gateway
        .set_targets("tg", vec![Target::new("old", old.addr)])
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 1).await;
    let client = client();
    let long = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { get(&client, &format!("{url}/block")).await }
    });
    eventually("the long request reaches the target", || async {
        old.state.blocked.load(Ordering::SeqCst) == 1
    })
    .await;
    gateway.set_targets("tg", vec![]).unwrap();
    eventually("the target is forgotten after the delay", || async {
        gateway.target_health("tg").unwrap().is_empty()
    })
    .await;
    // Forgotten, but its request was not cut.
    old.release(1);
    assert_eq!(long.await.unwrap().0, StatusCode::OK);
    assert_eq!(
        get(&client, &format!("{url}/")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[derive(Default)]
struct CountingActivator {
    calls: AtomicUsize,
}

impl Activator for CountingActivator {
    fn activate(&self, _target_group: &str) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn scale_from_zero_holds_requests_until_a_target_is_healthy() {
    let activator = Arc::new(CountingActivator::default());
    let gateway = Gateway::new(GatewayOptions {
        activator: Some(activator.clone()),
        ..Default::default()
    })
    .unwrap();
    let mut tg = target_group("cold");
    tg.activator = Some(ActivatorConfig {
        queue_limit: 3,
        timeout: Duration::from_secs(60),
    });
    let report = gateway
        .apply(GatewayConfig {
            listeners: vec![ListenerConfig::new("l", 0, forward("cold"))],
            target_groups: vec![tg],
        })
        .await
        .unwrap();
    let url = format!("http://{}", report.listeners[0].local_addr);
    let client = client();
    let held: Vec<_> = (0..3)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { get(&client, &format!("{url}/held{i}")).await })
        })
        .collect();
    eventually("three requests held", || async {
        gateway.metrics("cold").unwrap().held == 3
    })
    .await;
    assert_eq!(
        activator.calls.load(Ordering::SeqCst),
        1,
        "one call per cold period"
    );

    // The queue is full: the next request is refused at once.
    let (status, _, _) = get(&client, &format!("{url}/overflow")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // A target appears and passes its first check: the held requests go.
    let backend = Backend::start("warm").await;
    gateway
        .set_targets("cold", vec![Target::new("warm", backend.addr)])
        .unwrap();
    for request in held {
        let (status, _, body) = request.await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "warm"));
    }
    assert_eq!(get(&client, &format!("{url}/")).await.0, StatusCode::OK);
    assert_eq!(activator.calls.load(Ordering::SeqCst), 1);
    let m = gateway.metrics("cold").unwrap();
    assert_eq!((m.held, m.elb_503, m.elb_504), (0, 1, 0));

    // Scaled back to zero: a new cold period calls the activator again.
    gateway.set_targets("cold", vec![]).unwrap();
    wait_for_state(&gateway, "cold", TargetState::Healthy, 0).await;
    let again = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { get(&client, &format!("{url}/again")).await }
    });
    eventually("the activator is called again", || async {
        activator.calls.load(Ordering::SeqCst) == 2
    })
    .await;
    gateway
        .set_targets("cold", vec![Target::new("warm", backend.addr)])
        .unwrap();
    assert_eq!(again.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_cold_start_that_never_comes_times_out() {
    let activator = Arc::new(CountingActivator::default());
    let gateway = Gateway::new(GatewayOptions {
        activator: Some(activator.clone()),
        ..Default::default()
    })
    .unwrap();
    let mut tg = target_group("cold");
    tg.activator = Some(ActivatorConfig {
        queue_limit: 10,
        timeout: Duration::from_millis(300),
    });
    let report = gateway
        .apply(GatewayConfig {
            listeners: vec![ListenerConfig::new("l", 0, forward("cold"))],
            target_groups: vec![tg],
        })
        .await
        .unwrap();
    let url = format!("http://{}", report.listeners[0].local_addr);
    let client = client();
    let (status, headers, _) = get(&client, &format!("{url}/")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["server"], "hail");
    // The queue emptied, so the next request starts a new cold period.
    assert_eq!(
        get(&client, &format!("{url}/")).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(activator.calls.load(Ordering::SeqCst), 2);
    let m = gateway.metrics("cold").unwrap();
    assert_eq!((m.elb_504, m.held, m.in_flight), (2, 0, 0));
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (gateway, url) = simple_gateway(target_group("tg")).await;
    gateway
        .set_targets(
            "tg",
            vec![Target::new("a", a.addr), Target::new("b", b.addr)],
        )
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 2).await;
    let client = client();
    for (path, n) in [
        ("/", 5),
        ("/status/302", 2),
        ("/status/404", 3),
        ("/status/500", 4),
    ] {
        for _ in 0..n {
            get(&client, &format!("{url}{path}")).await;
        }
    }
    let m = gateway.metrics("tg").unwrap();
    assert_eq!(m.requests_total, 14);
    assert_eq!(
        (
            m.target_responses.xx2,
            m.target_responses.xx3,
            m.target_responses.xx4,
            m.target_responses.xx5
        ),
        (5, 2, 3, 4)
    );
    assert_eq!((m.elb_502, m.elb_503, m.elb_504), (0, 0, 0));
    assert_eq!(m.in_flight, 0);
    assert_eq!(m.healthy_targets, 2);
    assert_eq!(m.latency.count, 14);
    assert!(m.latency.p50 <= m.latency.p99 && m.latency.p99 <= m.latency.max);
    assert_eq!(m.targets.iter().map(|t| t.requests).sum::<u64>(), 14);
    assert_eq!(
        m.targets.iter().map(|t| t.requests).sum::<u64>(),
        (a.hits() + b.hits()) as u64
    );

    // Concurrency: two requests held at the backend are in flight now.
    let blocked: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { get(&client, &format!("{url}/block")).await })
        })
        .collect();
    eventually("both requests at a backend", || async {
        a.state.blocked.load(Ordering::SeqCst) + b.state.blocked.load(Ordering::SeqCst) == 2
    })
    .await;
    let m = gateway.metrics("tg").unwrap();
    assert_eq!(m.in_flight, 2);
    assert_eq!(m.targets.iter().map(|t| t.in_flight).sum::<u64>(), 2);
    a.release(2);
    b.release(2);
    for r in blocked {
        assert_eq!(r.await.unwrap().0, StatusCode::OK);
    }

    // Per-second samples account for every request once the second closed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = gateway.metrics("tg").unwrap();
    assert_eq!(m.seconds.iter().map(|s| s.requests).sum::<u64>(), 16);
    assert!(m.seconds.iter().any(|s| s.peak_concurrency >= 2));
    assert_eq!(m.in_flight, 0);
}

#[tokio::test]
async fn apply_binds_all_or_nothing_and_keeps_sockets() {
    let backend = Backend::start("b").await;
    let gateway = Gateway::new(Default::default()).unwrap();
    let config = |listeners: Vec<ListenerConfig>| GatewayConfig {
        listeners,
        target_groups: vec![target_group("tg")],
    };
    let report = gateway
        .apply(config(vec![ListenerConfig::new("one", 0, forward("tg"))]))
        .await
        .unwrap();
    let first = report.listeners[0].local_addr;
    gateway
        .set_targets("tg", vec![Target::new("b", backend.addr)])
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 1).await;

    // Applying the same again keeps the same socket.
    let again = gateway
        .apply(config(vec![ListenerConfig::new("one", 0, forward("tg"))]))
        .await
        .unwrap();
    assert_eq!(again.listeners[0].local_addr, first);
    // Targets survive an apply that keeps their group.
    assert_eq!(gateway.target_health("tg").unwrap().len(), 1);

    // A busy port: the error names it, and nothing changes. Also when its
    // holder set SO_REUSEPORT, as the gateway's own sockets do: the gateway
    // does not join another program's socket group.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let shared = tokio::net::TcpSocket::new_v4().unwrap();
    shared.set_reuseport(true).unwrap();
    shared.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let shared = shared.listen(16).unwrap();
    for busy_port in [
        busy.local_addr().unwrap().port(),
        shared.local_addr().unwrap().port(),
    ] {
        let err = gateway
            .apply(config(vec![
                ListenerConfig::new("one", 0, forward("tg")),
                ListenerConfig::new("two", busy_port, forward("tg")),
            ]))
            .await
            .unwrap_err();
        assert!(matches!(&err, GatewayError::Bind { listener, .. } if listener == "two"));
        assert!(err.to_string().contains(&busy_port.to_string()), "{err}");
    }
    let client = client();
    assert_eq!(
        get(&client, &format!("http://{first}/")).await.0,
        StatusCode::OK
    );

    // Removing a listener lets its in-flight request finish, then refuses.
    let long = tokio::spawn({
        let client = client.clone();
        async move { get(&client, &format!("http://{first}/block")).await }
    });
    eventually("the long request reaches the backend", || async {
        backend.state.blocked.load(Ordering::SeqCst) == 1
    })
    .await;
    gateway.apply(config(vec![])).await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(first).await.is_err(),
        "still accepting"
    );
    backend.release(1);
    assert_eq!(long.await.unwrap().0, StatusCode::OK);

    // A fixed port moves between listener ids without a gap.
    let port = first.port();
    let report = gateway
        .apply(config(vec![ListenerConfig::new("a", port, forward("tg"))]))
        .await
        .unwrap();
    assert_eq!(report.listeners[0].local_addr.port(), port);
    let report = gateway
        .apply(config(vec![ListenerConfig::new("b", port, forward("tg"))]))
        .await
        .unwrap();
    assert_eq!(report.listeners[0].local_addr.port(), port);
    assert_eq!(
        get(&client, &format!("http://{first}/")).await.0,
        StatusCode::OK
    );

    gateway.shutdown(Duration::from_secs(5)).await;
    assert!(tokio::net::TcpStream::connect(first).await.is_err());
    assert!(matches!(
        gateway.apply(config(vec![])).await,
        Err(GatewayError::ShutDown)
    ));
}
