//! Task networks against the real kernel: bridges, veths, namespaces,
//! iptables. Every test uses its own bridge, subnet and namespace prefix so
//! the tests can run in parallel, and tears its host state down.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hail_runtime::network::{netns, NetworkConfig, Networks, TaskNetwork};

const TIMEOUT: Duration = Duration::from_secs(5);

fn config(n: u8, state: &Path, pool_size: usize) -> NetworkConfig {
    NetworkConfig {
        bridge: format!("hnt{n}"),
        subnet: format!("10.218.{n}.0/24").parse().unwrap(),
        state_dir: state.to_owned(),
        netns_prefix: format!("hnt{n}-"),
        pool_size,
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    netns::list(prefix).unwrap()
}

fn lease_files(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("leases"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn bridge_ports(bridge: &str) -> Vec<String> {
    sh(&format!("ip -o link show master {bridge} 2>/dev/null"))
        .lines()
        .map(|l| l.to_owned())
        .collect()
}

fn link_names() -> HashSet<String> {
    sh("ip -o link")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP server inside the namespace at `netns`, answering each of `n`
/// connections with the peer address it sees.
fn serve_in(netns: PathBuf, bind: SocketAddr, n: usize) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netns::enter(&netns).unwrap();
        let listener = TcpListener::bind(bind).unwrap();
        tx.send(listener.local_addr().unwrap()).unwrap();
        for _ in 0..n {
            let (mut conn, peer) = listener.accept().unwrap();
            let _ = conn.write_all(peer.ip().to_string().as_bytes());
        }
    });
    rx.recv().unwrap()
}

fn read_peer(addr: SocketAddr) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    let mut seen = String::new();
    conn.read_to_string(&mut seen)?;
    Ok(seen)
}

/// Connects from inside `from` to `addr`, returning the peer address the
/// server reported.
async fn read_peer_from(from: &TaskNetwork, addr: SocketAddr) -> std::io::Result<String> {
    netns::run_in(&from.netns_path, move || read_peer(addr))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_reach_the_host_each_other_and_the_agent_address() {
    if !common::containers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nets = Networks::open(config(1, dir.path(), 1)).await.unwrap();
    let a = nets.attach("task-a").await.unwrap();
    let b = nets.attach("task-b").await.unwrap();
    let (a_ip, b_ip) = (a.ip.unwrap(), b.ip.unwrap());
    assert_ne!(a_ip, b_ip);
    assert_eq!(a.gateway, Some(Ipv4Addr::new(10, 218, 1, 1)));
    assert_eq!(a.prefix_len, 24);
    assert_eq!(nets.lookup("task-a"), Some(a.clone()));

    // Seen from inside with iproute2: lo and eth0 up, the address, the route.
    let name = a.netns_path.file_name().unwrap().to_str().unwrap();
    let addrs = sh(&format!("ip -n {name} -o -4 addr"));
    assert!(
        addrs.contains(&format!("eth0    inet {a_ip}/24")),
        "{addrs}"
    );
    assert!(addrs.contains("lo    inet 127.0.0.1/8"), "{addrs}");
    let routes = sh(&format!("ip -n {name} route"));
    assert!(
        routes.contains("default via 10.218.1.1 dev eth0"),
        "{routes}"
    );
    let host_veth = a.host_veth.clone().unwrap();
    assert!(bridge_ports("hnt1").iter().any(|l| l.contains(&host_veth)));

    // The host reaches a server in task A at A's address.
    let a_srv = serve_in(a.netns_path.clone(), (a_ip, 8080).into(), 2);
    assert_eq!(read_peer(a_srv).unwrap(), "10.218.1.1");
    // Task B reaches it across the bridge, and is seen with its own address.
    assert_eq!(read_peer_from(&b, a_srv).await.unwrap(), b_ip.to_string());

    // A listener on A's loopback is reachable neither at A's address nor at
    // B's own 127.0.0.1.
    let _a_lo = serve_in(a.netns_path.clone(), (Ipv4Addr::LOCALHOST, 9090).into(), 1);
    let refused = read_peer_from(&b, (a_ip, 9090).into()).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let refused = read_peer_from(&b, (Ipv4Addr::LOCALHOST, 9090).into())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    // A task reaches the host at the ECS agent address.
    let agent = TcpListener::bind((Ipv4Addr::new(169, 254, 170, 2), 0)).unwrap();
    let agent_addr = agent.local_addr().unwrap();
    let host_side = std::thread::spawn(move || {
        let (mut conn, peer) = agent.accept().unwrap();
        conn.write_all(b"agent").unwrap();
        peer.ip()
    });
    let reply = netns::run_in(&b.netns_path, move || {
        let mut reply = String::new();
        TcpStream::connect_timeout(&agent_addr, TIMEOUT)
            .and_then(|mut c| c.read_to_string(&mut reply))
            .map(|_| reply)
    })
    .await
    .unwrap();
    assert_eq!(reply.unwrap(), "agent");
    assert_eq!(host_side.join().unwrap(), std::net::IpAddr::V4(b_ip));

    // Network mode "none": a namespace of its own with only lo, up.
    let none = nets.attach_isolated("task-none").await.unwrap();
    assert_eq!(
        (none.ip, none.gateway, none.host_veth.clone()),
        (None, None, None)
    );
    let name = none.netns_path.file_name().unwrap().to_str().unwrap();
    let links = sh(&format!("ip -n {name} -o link"));
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo: <LOOPBACK,UP,LOWER_UP>"), "{links}");

    // Opening again (a restart of the server) converges: same bridge, one
    // jump and one rule per chain, and the tasks are still known.
    let again = Networks::open(config(1, dir.path(), 0)).await.unwrap();
    assert_eq!(again.lookup("task-a"), Some(a.clone()));
    let nat = sh("iptables -w -t nat -S");
    assert_eq!(nat.matches("-j HAIL-POST-hnt1").count(), 1, "{nat}");
    assert_eq!(nat.matches("-A HAIL-POST-hnt1 ").count(), 1, "{nat}");
    drop(again);

    nets.release("task-a").await.unwrap();
    nets.release("task-b").await.unwrap();
    nets.release("task-b").await.unwrap();
    nets.release("task-none").await.unwrap();
    assert_eq!(nets.lookup("task-a"), None);
    assert!(!a.netns_path.exists());
    nets.teardown_host().await.unwrap();
    assert!(netns_with_prefix("hnt1-").is_empty());
    assert!(lease_files(dir.path()).is_empty());
    assert!(!link_names().contains("hnt1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_reaches_a_remote_host_through_masquerade() {
    if !common::containers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nets = Networks::open(config(2, dir.path(), 0)).await.unwrap();

    // A "remote" host: its own namespace behind a veth, default route back.
    sh("ip link del hnt2r 2>/dev/null; ip netns del hnt2remote 2>/dev/null");
    let setup = [
        "ip netns add hnt2remote",
        "ip link add hnt2r type veth peer name hnt2rp",
        "ip link set hnt2rp netns hnt2remote",
        "ip addr add 203.0.113.1/30 dev hnt2r",
        "ip link set hnt2r up",
        "ip -n hnt2remote addr add 203.0.113.2/30 dev hnt2rp",
        "ip -n hnt2remote link set hnt2rp up",
        "ip -n hnt2remote link set lo up",
        "ip -n hnt2remote route add default via 203.0.113.1",
    ];
    for cmd in setup {
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .unwrap()
                .success(),
            "{cmd}"
        );
    }
    let remote = serve_in(
        PathBuf::from("/run/netns/hnt2remote"),
        (Ipv4Addr::new(203, 0, 113, 2), 7000).into(),
        1,
    );

    let task = nets.attach("task-nat").await.unwrap();
    let seen = read_peer_from(&task, remote).await;

    sh("ip link del hnt2r; ip netns del hnt2remote");
    nets.release("task-nat").await.unwrap();
    nets.teardown_host().await.unwrap();
    let post = sh("iptables -w -t nat -S");
    assert!(!post.contains("HAIL-POST-hnt2"), "{post}");

    // The remote saw the host's address on its link, not the task's.
    assert_eq!(seen.unwrap(), "203.0.113.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_release_cycles_leave_nothing_behind() {
    if !common::containers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let before = link_names();
    let nets = Networks::open(config(3, dir.path(), 2)).await.unwrap();
    let mut veths = HashSet::new();
    let mut pooled_attaches = 0;
    for i in 0..200 {
        if nets.pooled() > 0 {
            pooled_attaches += 1;
        }
        let task = format!("cycle-{i}");
        let net = if i % 10 == 9 {
            nets.attach_isolated(&task).await.unwrap()
        } else {
            nets.attach(&task).await.unwrap()
        };
        assert!(net.netns_path.exists());
        veths.extend(net.host_veth.clone());
        nets.release(&task).await.unwrap();
        assert!(!net.netns_path.exists());
    }
    println!("200 cycles, {pooled_attaches} attaches served from the pool");
    nets.teardown_host().await.unwrap();

    assert!(netns_with_prefix("hnt3-").is_empty());
    assert!(
        lease_files(dir.path()).is_empty(),
        "{:?}",
        lease_files(dir.path())
    );
    let after = link_names();
    let ours: Vec<_> = after
        .difference(&before)
        .filter(|n| veths.contains(*n) || n.as_str() == "hnt3")
        .collect();
    assert!(ours.is_empty(), "links left behind: {ours:?}");
    // The host's link count is back where it was, unless something outside
    // this test (another test running in parallel) changed it meanwhile.
    let foreign: Vec<_> = after.symmetric_difference(&before).collect();
    if foreign.is_empty() {
        assert_eq!(after.len(), before.len());
    } else {
        println!("links changed by others meanwhile: {foreign:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_after_a_crash_releases_everything_not_live() {
    if !common::containers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let crashed = Networks::open(config(4, dir.path(), 2)).await.unwrap();
    let kept = crashed.attach("live-task").await.unwrap();
    let dead = crashed.attach("dead-task").await.unwrap();
    let none = crashed.attach_isolated("dead-isolated").await.unwrap();
    wait_until("pool refilled", || crashed.pooled() == 2).await;
    assert_eq!(netns_with_prefix("hnt4-").len(), 5);
    let leases = lease_files(dir.path());
    assert_eq!(
        leases.iter().filter(|n| n.ends_with(".json")).count(),
        5,
        "{leases:?}"
    );
    // A namespace without a lease (as if a crash hit between the two).
    let stray = sh("ip netns add hnt4-stray && echo ok");
    assert_eq!(stray.trim(), "ok");
    drop(crashed);
    // A lease torn by a machine crash, and one from an earlier boot.
    let leases = dir.path().join("leases");
    std::fs::write(leases.join("10.218.4.200.json"), b"{\"version\":").unwrap();
    let old_boot = hail_runtime::network::ipam::Lease {
        version: 1,
        task_id: Some("live-task-before-reboot".to_owned()),
        pool_owner: None,
        netns: "hnt4-gone".to_owned(),
        ip: Some(Ipv4Addr::new(10, 218, 4, 201)),
        prefix_len: 24,
        gateway: Some(Ipv4Addr::new(10, 218, 4, 1)),
        mac: None,
        host_veth: Some("hvgone".to_owned()),
        boot_id: Some("an-earlier-boot".to_owned()),
    };
    std::fs::write(
        leases.join("10.218.4.201.json"),
        serde_json::to_vec(&old_boot).unwrap(),
    )
    .unwrap();

    let nets = Networks::open(config(4, dir.path(), 0)).await.unwrap();
    // Leases are durable: the new process knows the tasks' networks.
    assert_eq!(nets.lookup("live-task"), Some(kept.clone()));
    assert_eq!(nets.lookup("dead-task"), Some(dead.clone()));
    assert_eq!(nets.lookup("dead-isolated"), Some(none.clone()));

    // Namespaces of an earlier boot do not exist: no network to look up.
    assert_eq!(nets.lookup("live-task-before-reboot"), None);

    let live: HashSet<String> =
        ["live-task".to_owned(), "live-task-before-reboot".to_owned()].into();
    let removed = nets.gc(&live).await.unwrap();
    assert_eq!(
        removed, 7,
        "2 dead tasks, 2 stale pool entries, 1 stray netns, 1 torn lease, 1 lease of an earlier boot"
    );
    assert_eq!(nets.lookup("dead-task"), None);
    assert_eq!(nets.lookup("live-task"), Some(kept.clone()));
    assert_eq!(
        netns_with_prefix("hnt4-"),
        vec![kept
            .netns_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()]
    );
    assert_eq!(bridge_ports("hnt4").len(), 1);

    assert_eq!(nets.gc(&HashSet::new()).await.unwrap(), 1);
    assert!(netns_with_prefix("hnt4-").is_empty());
    assert!(lease_files(dir.path()).is_empty());
    assert!(bridge_ports("hnt4").is_empty());
    assert_eq!(nets.gc(&HashSet::new()).await.unwrap(), 0);
    nets.teardown_host().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_attaches_get_distinct_working_addresses() {
    if !common::containers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nets = Networks::open(config(5, dir.path(), 3)).await.unwrap();
    let attaches = (0..12).map(|i| {
        let nets = nets.clone();
        tokio::spawn(async move { nets.attach(&format!("par-{i}")).await.unwrap() })
    });
    let got: Vec<TaskNetwork> = futures::future::join_all(attaches)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ips: HashSet<Ipv4Addr> = got.iter().map(|n| n.ip.unwrap()).collect();
    assert_eq!(ips.len(), 12);
    // Attaching again returns the same network; the kind cannot change.
    assert_eq!(nets.attach("par-0").await.unwrap(), got[0]);
    assert!(nets.attach_isolated("par-0").await.is_err());
    // Every one answers pings of the host... through TCP: a server per task.
    for net in &got {
        let srv = serve_in(net.netns_path.clone(), (net.ip.unwrap(), 80).into(), 1);
        assert_eq!(read_peer(srv).unwrap(), "10.218.5.1");
    }
    for i in 0..12 {
        nets.release(&format!("par-{i}")).await.unwrap();
    }
    nets.teardown_host().await.unwrap();
    assert!(netns_with_prefix("hnt5-").is_empty());
    assert!(lease_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_latency_from_pool_and_without() {
    if !common::containers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pooled = Networks::open(config(6, &dir.path().join("p"), 5))
        .await
        .unwrap();
    wait_until("pool full", || pooled.pooled() == 5).await;
    let mut from_pool = Vec::new();
    for i in 0..5 {
        let start = Instant::now();
        pooled.attach(&format!("lat-{i}")).await.unwrap();
        from_pool.push(start.elapsed());
    }
    let unpooled = Networks::open(config(7, &dir.path().join("u"), 0))
        .await
        .unwrap();
    let mut created = Vec::new();
    for i in 0..10 {
        let start = Instant::now();
        unpooled.attach(&format!("lat-{i}")).await.unwrap();
        created.push(start.elapsed());
    }
    from_pool.sort();
    created.sort();
    println!(
        "attach from pool: median {:?} (min {:?}, max {:?}); without pool: median {:?} (min {:?}, max {:?})",
        from_pool[2], from_pool[0], from_pool[4], created[5], created[0], created[9]
    );
    for i in 0..5 {
        pooled.release(&format!("lat-{i}")).await.unwrap();
    }
    for i in 0..10 {
        unpooled.release(&format!("lat-{i}")).await.unwrap();
    }
    pooled.teardown_host().await.unwrap();
    unpooled.teardown_host().await.unwrap();
    assert!(netns_with_prefix("hnt6-").is_empty());
    assert!(netns_with_prefix("hnt7-").is_empty());

    cni_bridge_add_latency(dir.path());
}

/// For the record in network/mod.rs: one ADD of the CNI `bridge` plugin
/// with host-local IPAM, into a namespace that already exists.
fn cni_bridge_add_latency(dir: &Path) {
    let plugin = Path::new("/usr/lib/cni/bridge");
    if !plugin.exists() {
        println!("no CNI bridge plugin to compare with");
        return;
    }
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"hnt8","type":"bridge","bridge":"hnt8","isGateway":true,
            "ipam":{{"type":"host-local","subnet":"10.218.8.0/24","dataDir":"{}"}}}}"#,
        dir.join("cni").display()
    );
    let run = |command: &str, id: &str, ns: &str| {
        let mut child = Command::new(plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/run/netns/{ns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cni {command}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    let mut times = Vec::new();
    for i in 0..6 {
        let ns = format!("hnt8-cni{i}");
        sh(&format!("ip netns add {ns}"));
        let start = Instant::now();
        run("ADD", &format!("c{i}"), &ns);
        times.push(start.elapsed());
        run("DEL", &format!("c{i}"), &ns);
        sh(&format!("ip netns del {ns}"));
    }
    sh("ip link del hnt8");
    times.sort();
    println!(
        "CNI bridge plugin ADD: median {:?} (min {:?}, max {:?})",
        times[3], times[0], times[5]
    );
}
