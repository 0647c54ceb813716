//! The task metadata endpoint end to end: the real router bound to
//! 169.254.170.2 (on the harness's bridge), the engine's service over a real
//! store and runtime, and busybox containers that read it with `wget` from
//! inside their task network, as Fargate containers do.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hail_api::metadata::{metadata_router, metadata_uri, METADATA_URI_ENV};
use hail_engine::metadata::TaskMetadataService;
use hail_model::arn::Scope;
use hail_model::ecs::task::{
    Attachment, Container, ContainerStatus, EniDetails, LaunchType, NetworkInterface,
};
use hail_model::ecs::task_definition::RegisterTaskDefinitionInput;
use hail_model::ecs::{Tag, Task, TaskDefinition, TaskStatus, Timestamp};
use hail_runtime::network::TaskNetwork;
use hail_runtime::runtime::Runtime;
use hail_runtime::spec::TaskSpec;
use hail_store::Store;
use serde_json::{json, Value};
use support::{containers_available, sh, Harness, BUSYBOX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ECS agent address, which the harness's bridge carries on the host side.
const AGENT: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

fn definition_input() -> RegisterTaskDefinitionInput {
    hail_model::ecs::decode(
        &json!({
            "family": "meta-test",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [
                {
                    "name": "app",
                    "image": BUSYBOX,
                    "dockerLabels": {"purpose": "metadata-test"},
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": "/ecs/meta-test",
                            "awslogs-region": "us-east-1",
                            "awslogs-stream-prefix": "meta"
                        }
                    }
                },
                {"name": "side", "image": BUSYBOX, "essential": false},
                {"name": "probe", "image": BUSYBOX}
            ]
        })
        .to_string(),
    )
    .unwrap()
}

/// The task document the control plane keeps for a running task with
/// `containers`, on the network the runtime leased to it.
fn task_document(
    task_id: &str,
    def: &TaskDefinition,
    network: &TaskNetwork,
    containers: &[&str],
) -> Task {
    let scope = Scope::default();
    let task_arn = scope.task_arn("default", task_id);
    let ip = network.ip.unwrap().to_string();
    let mac = network.mac.clone().unwrap();
    Task {
        task_arn: task_arn.clone(),
        cluster_arn: scope.cluster_arn("default"),
        task_definition_arn: def.task_definition_arn.clone(),
        containers: containers
            .iter()
            .enumerate()
            .map(|(i, name)| Container {
                container_arn: scope.container_arn(
                    "default",
                    task_id,
                    &format!("c0ffee00-0000-4000-8000-00000000000{i}"),
                ),
                task_arn: task_arn.clone(),
                name: (*name).to_owned(),
                image: Some(BUSYBOX.to_owned()),
                image_digest: None,
                runtime_id: None,
                last_status: ContainerStatus::Running,
                exit_code: None,
                reason: None,
                network_bindings: vec![],
                network_interfaces: vec![NetworkInterface {
                    attachment_id: Some(format!("att-{task_id}")),
                    private_ipv4_address: Some(ip.clone()),
                    ipv6_address: None,
                }],
                health_status: None,
                cpu: Some("0".to_owned()),
                memory: None,
                memory_reservation: None,
            })
            .collect(),
        last_status: TaskStatus::Running,
        desired_status: TaskStatus::Running,
        cpu: Some("256".to_owned()),
        memory: Some("512".to_owned()),
        launch_type: Some(LaunchType::Fargate),
        capacity_provider_name: None,
        platform_version: Some("1.4.0".to_owned()),
        platform_family: Some("Linux".to_owned()),
        connectivity: None,
        connectivity_at: None,
        pull_started_at: None,
        pull_stopped_at: None,
        created_at: Some(Timestamp::from_secs(1_732_797_623)),
        started_at: None,
        stopping_at: None,
        stopped_at: None,
        execution_stopped_at: None,
        stop_code: None,
        stopped_reason: None,
        group: Some("family:meta-test".to_owned()),
        started_by: None,
        tags: vec![],
        attachments: vec![Attachment::eni(
            format!("att-{task_id}"),
            "ATTACHED",
            &EniDetails {
                subnet_id: "subnet-hail".to_owned(),
                network_interface_id: format!("eni-{}", &task_id[..8]),
                mac_address: mac,
                private_ipv4_address: ip,
            },
        )],
        availability_zone: Some("us-east-1a".to_owned()),
        version: 1,
        overrides: None,
        ephemeral_storage: None,
        health_status: None,
        enable_execute_command: Some(false),
    }
}

/// Gives the task its network first, as the control plane attaches a task's
/// ENI before its containers start, records the task in the store, then
/// starts it.
async fn run_documented(
    runtime: &Runtime,
    store: &Store,
    def: &TaskDefinition,
    spec: &TaskSpec,
    tags: Vec<Tag>,
) -> TaskNetwork {
    let network = runtime.networks().attach(&spec.id).await.unwrap();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let task = task_document(&spec.id, def, &network, &names);
    store
        .write(move |tx| {
            hail_store::tasks::insert(tx, &task)?;
            hail_store::tags::set(tx, &task.task_arn, &tags)
        })
        .await
        .unwrap();
    runtime.start_task(spec).await.unwrap();
    network
}

/// The lines of a container's stdout that start with `marker:`, without it.
fn marked(output: &str, marker: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{marker}:")))
        .map(str::to_owned)
        .collect()
}

fn json_after(output: &str, marker: &str) -> Value {
    let lines = marked(output, marker);
    let line = lines
        .first()
        .unwrap_or_else(|| panic!("no {marker}: line in {output:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{marker}: {e}: {line}"))
}

async fn wait_for_output(h: &Harness, task: &str, container: &str, needle: &str) -> String {
    for _ in 0..200 {
        let out = h.stdout(task, container);
        if out.contains(needle) {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{container} never printed {needle:?}; stdout: {:?} stderr: {:?}",
        h.stdout(task, container),
        h.stderr(task, container)
    );
}

/// A GET from the host itself (its source address is not a task's).
async fn host_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect((AGENT, port)).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {AGENT}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_read_their_own_task_metadata_and_not_another_tasks() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("meta").await;
    // The server's runtime: a second instance on the harness's data dir,
    // shared with the metadata service, as after a restart of the server.
    // The harness's own instance starts nothing; its Drop cleans the host.
    let runtime = Arc::new(Runtime::open(h.config.clone()).await.unwrap());
    let store = Store::open(h.dir.path().join("state.db")).unwrap();
    let scope = Scope::default();
    let def = store
        .write(move |tx| {
            hail_store::task_definitions::register(tx, "meta-test", |revision| {
                TaskDefinition::register(
                    definition_input(),
                    &scope,
                    revision,
                    Timestamp::from_secs(1_732_797_000),
                    None,
                )
                .unwrap()
                .0
            })
        })
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind((AGENT, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let host_port = format!("{AGENT}:{port}");
    let service = Arc::new(TaskMetadataService::new(store.clone(), runtime.clone()));
    let app = metadata_router(service).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Task A reads every endpoint of its own, after writing 2 MiB to its
    // writable layer and once its other container is up too (the two start
    // side by side, so `side` may still be CREATED when `app` begins), then
    // stays up.
    let mut a = h.task(vec![]);
    let uri_a = metadata_uri(&host_port, &a.id, "app");
    let mut app = sh(
        "app",
        "dd if=/dev/zero of=/tmp/blob bs=1M count=2 2>/dev/null
         i=0
         while [ $i -lt 100 ] && wget -qO- \"$ECS_CONTAINER_METADATA_URI_V4/task\" \
             | grep -qE '\"KnownStatus\":\"(PENDING|CREATED)\"'; do
           i=$((i+1)); sleep 0.1
         done
         for p in task '' stats task/stats taskWithTags; do
           printf '%s:' \"${p:-container}\"
           wget -qO- \"$ECS_CONTAINER_METADATA_URI_V4${p:+/$p}\" 2>&1
           echo
         done
         echo done
         exec sleep 1000",
    );
    app.environment
        .push((METADATA_URI_ENV.into(), uri_a.clone()));
    let mut side = sh("side", "exec sleep 1000");
    side.essential = false;
    side.environment.push((
        METADATA_URI_ENV.into(),
        metadata_uri(&host_port, &a.id, "side"),
    ));
    a.containers = vec![app, side];
    a.cpu_units = Some(256);
    a.memory_mib = Some(512);
    let net_a = run_documented(
        &runtime,
        &store,
        &def,
        &a,
        vec![Tag::new("team", "metadata")],
    )
    .await;
    let out = wait_for_output(&h, &a.id, "app", "done").await;

    let ip_a = net_a.ip.unwrap().to_string();
    let subnet = h.config.network.subnet;
    let network = json!([{
        "NetworkMode": "awsvpc",
        "IPv4Addresses": [ip_a],
        "AttachmentIndex": 0,
        "MACAddress": net_a.mac.clone().unwrap(),
        "IPv4SubnetCIDRBlock": subnet.to_string(),
        "SubnetGatewayIpv4Address": format!("{}/{}", net_a.gateway.unwrap(), subnet.prefix_len()),
    }]);
    let image_id = runtime
        .images()
        .get(BUSYBOX)
        .unwrap()
        .unwrap()
        .config_digest
        .to_string();
    let task_arn = Scope::default().task_arn("default", &a.id);

    let task = json_after(&out, "task");
    assert_eq!(task["TaskARN"], task_arn.as_str(), "{task}");
    assert_eq!(
        task["Cluster"],
        Scope::default().cluster_arn("default").as_str()
    );
    assert_eq!(
        (task["Family"].as_str(), task["Revision"].as_str()),
        (Some("meta-test"), Some("1"))
    );
    assert_eq!(
        (task["DesiredStatus"].as_str(), task["KnownStatus"].as_str()),
        (Some("RUNNING"), Some("RUNNING"))
    );
    assert_eq!(task["Limits"], json!({"CPU": 0.25, "Memory": 512}));
    assert_eq!(task["LaunchType"], "FARGATE");
    assert_eq!(task["AvailabilityZone"], "us-east-1a");
    assert!(task.get("TaskTags").is_none());
    let storage = &task["EphemeralStorageMetrics"];
    assert_eq!(storage["Reserved"], 20 * 1024);
    let utilized = storage["Utilized"].as_u64().unwrap();
    assert!((2..64).contains(&utilized), "{storage}");
    let containers = task["Containers"].as_array().unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "side"]);
    for c in containers {
        let name = c["Name"].as_str().unwrap();
        assert_eq!(c["DockerId"], format!("{}.{name}", a.id));
        assert_eq!(c["Image"], BUSYBOX);
        assert_eq!(c["ImageID"], image_id.as_str());
        assert_eq!(c["KnownStatus"], "RUNNING");
        assert_eq!(c["Type"], "NORMAL");
        assert_eq!(c["Networks"], network);
        assert_eq!(c["CreatedAt"], c["StartedAt"]);
        let started = c["StartedAt"].as_str().unwrap();
        assert!(
            started.starts_with("20") && started.ends_with('Z'),
            "{started}"
        );
    }

    let container = json_after(&out, "container");
    assert_eq!(
        container, containers[0],
        "the container endpoint answers as the task lists it"
    );
    assert_eq!(
        container["Labels"],
        json!({
            "purpose": "metadata-test",
            "com.amazonaws.ecs.cluster": Scope::default().cluster_arn("default"),
            "com.amazonaws.ecs.container-name": "app",
            "com.amazonaws.ecs.task-arn": task_arn,
            "com.amazonaws.ecs.task-definition-family": "meta-test",
            "com.amazonaws.ecs.task-definition-version": "1",
        })
    );
    assert_eq!(container["LogDriver"], "awslogs");
    assert_eq!(
        container["LogOptions"]["awslogs-stream"],
        format!("meta/app/{}", a.id)
    );
    assert_eq!(container["Limits"], json!({"CPU": 0}));

    // Stats: the container's own cgroup, its task's memory limit (it has
    // none of its own), and the task interface the replies came in on.
    let stats = json_after(&out, "stats");
    assert_eq!(stats["id"], format!("{}.app", a.id));
    assert_eq!(stats["name"], "app");
    assert_eq!(
        stats["preread"], "0001-01-01T00:00:00Z",
        "the first reading"
    );
    let cpu = &stats["cpu_stats"];
    let total = cpu["cpu_usage"]["total_usage"].as_u64().unwrap();
    assert!(total > 0, "{cpu}");
    let modes = cpu["cpu_usage"]["usage_in_kernelmode"].as_u64().unwrap()
        + cpu["cpu_usage"]["usage_in_usermode"].as_u64().unwrap();
    assert!(modes > 0, "{cpu}");
    assert!(cpu["system_cpu_usage"].as_u64().unwrap() > total);
    assert!(cpu["online_cpus"].as_u64().unwrap() >= 1);
    let memory = &stats["memory_stats"];
    assert!(memory["usage"].as_u64().unwrap() > 0, "{memory}");
    assert_eq!(memory["limit"], 512u64 << 20);
    assert!(!memory["stats"].as_object().unwrap().is_empty());
    assert!(stats["pids_stats"]["current"].as_u64().unwrap() >= 1);
    let eth0 = &stats["networks"]["eth0"];
    assert!(eth0["rx_bytes"].as_u64().unwrap() > 1000, "{stats}");
    assert!(eth0["tx_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["networks"].get("lo").is_none());

    let task_stats = json_after(&out, "task/stats");
    let by_id = task_stats.as_object().unwrap();
    assert_eq!(by_id.len(), 2, "{task_stats}");
    let app_stats = &by_id[&format!("{}.app", a.id)];
    let side_stats = &by_id[&format!("{}.side", a.id)];
    assert_eq!(side_stats["name"], "side");
    // The second reading of app has the first as its previous one.
    assert_eq!(app_stats["preread"], stats["read"]);
    assert_eq!(app_stats["precpu_stats"], stats["cpu_stats"]);
    assert!(
        app_stats["network_rate_stats"]["rx_bytes_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    let with_tags = json_after(&out, "taskWithTags");
    assert_eq!(with_tags["TaskTags"], json!({"team": "metadata"}));

    // Task B reads its own metadata, and is refused A's as if it did not
    // exist. Reading its own first shows it reaches the endpoint at all.
    let mut b = h.task(vec![]);
    let mut probe = sh(
        "probe",
        "printf 'own:'; wget -qO- \"$ECS_CONTAINER_METADATA_URI_V4/task\"; echo
         for p in '' /task /taskWithTags /stats /task/stats; do
           if r=$(wget -qO- \"$OTHER$p\" 2>&1); then echo \"read:$p:$r\"; else echo \"refused:$p:$r\"; fi
         done",
    );
    probe.environment.push((
        METADATA_URI_ENV.into(),
        metadata_uri(&host_port, &b.id, "probe"),
    ));
    probe.environment.push(("OTHER".into(), uri_a.clone()));
    b.containers = vec![probe];
    let net_b = run_documented(&runtime, &store, &def, &b, vec![]).await;
    let status = runtime.wait(&b.id).await.unwrap();
    assert_eq!(status.exit_code(), Some(0), "{status:?}");
    let out = h.stdout(&b.id, "probe");
    let own = json_after(&out, "own");
    assert_eq!(
        own["TaskARN"],
        Scope::default().task_arn("default", &b.id).as_str()
    );
    assert_eq!(
        own["Containers"][0]["Networks"][0]["IPv4Addresses"],
        json!([net_b.ip.unwrap().to_string()])
    );
    assert!(marked(&out, "read").is_empty(), "{out}");
    let refused = marked(&out, "refused");
    assert_eq!(refused.len(), 5, "{out}");
    for line in refused {
        assert!(line.ends_with("404 Not Found"), "{line}");
    }

    // The host is no task either.
    let reply = host_get(port, &format!("/v4/{}-app/task", a.id)).await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(
        reply.ends_with(&format!(
            "\"V4 task metadata handler: no task metadata for endpoint id {}-app\"",
            a.id
        )),
        "{reply}"
    );

    for id in [&a.id, &b.id] {
        runtime.stop(id, "test over").await.unwrap();
        runtime.wait(id).await.unwrap();
        runtime.remove(id).await.unwrap();
    }
    h.teardown().await;
}
