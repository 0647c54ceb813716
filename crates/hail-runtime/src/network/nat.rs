//! Outbound NAT and forwarding for a task subnet, in chains of Hail's own.
//!
//! Every rule lives in two chains named after the bridge
//! (`HAIL-POST-<bridge>` in `nat`, `HAIL-FWD-<bridge>` in `filter`), reached
//! by one jump each from the built-in chains. Setup flushes and refills the
//! chains, so running it again converges instead of piling up duplicates,
//! and removal is: delete the jumps, flush, delete the chains. The chains are
//! per bridge so that two Hail networks (tests, say) never touch each
//! other's rules.

use ipnet::Ipv4Net;
use tokio::process::Command;

use super::NetworkError;

pub fn post_chain(bridge: &str) -> String {
    format!("HAIL-POST-{bridge}")
}

pub fn forward_chain(bridge: &str) -> String {
    format!("HAIL-FWD-{bridge}")
}

async fn iptables(args: &[&str]) -> Result<(), NetworkError> {
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| NetworkError::Iptables {
            args: args.join(" "),
            stderr: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Iptables {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Creates `chain` in `table` if needed and empties it.
async fn fresh_chain(table: &str, chain: &str) -> Result<(), NetworkError> {
    if iptables(&["-t", table, "-N", chain]).await.is_err() {
        // Most likely it exists already; if the failure was anything else,
        // the flush fails too and reports it.
        iptables(&["-t", table, "-F", chain]).await
    } else {
        Ok(())
    }
}

async fn ensure_jump(table: &str, from: &str, chain: &str) -> Result<(), NetworkError> {
    if iptables(&["-t", table, "-C", from, "-j", chain])
        .await
        .is_err()
    {
        iptables(&["-t", table, "-I", from, "1", "-j", chain]).await?;
    }
    Ok(())
}

/// Installs masquerading for traffic from `subnet` that leaves through any
/// interface but `bridge`, and accepts forwarding to and from the bridge.
pub async fn install(bridge: &str, subnet: Ipv4Net) -> Result<(), NetworkError> {
    let post = post_chain(bridge);
    let fwd = forward_chain(bridge);
    let subnet = subnet.to_string();

    fresh_chain("nat", &post).await?;
    iptables(&[
        "-t",
        "nat",
        "-A",
        &post,
        "-s",
        &subnet,
        "!",
        "-o",
        bridge,
        "-j",
        "MASQUERADE",
    ])
    .await?;
    ensure_jump("nat", "POSTROUTING", &post).await?;

    fresh_chain("filter", &fwd).await?;
    iptables(&["-t", "filter", "-A", &fwd, "-i", bridge, "-j", "ACCEPT"]).await?;
    iptables(&[
        "-t",
        "filter",
        "-A",
        &fwd,
        "-o",
        bridge,
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
    ])
    .await?;
    ensure_jump("filter", "FORWARD", &fwd).await
}

/// Removes what [`install`] added; absent chains are fine.
pub async fn uninstall(bridge: &str) -> Result<(), NetworkError> {
    for (table, from, chain) in [
        ("nat", "POSTROUTING", post_chain(bridge)),
        ("filter", "FORWARD", forward_chain(bridge)),
    ] {
        // Delete every jump (a crash between -C and -I elsewhere could have
        // left two); the loop ends when none is left.
        while iptables(&["-t", table, "-D", from, "-j", &chain])
            .await
            .is_ok()
        {}
        if iptables(&["-t", table, "-F", &chain]).await.is_ok() {
            iptables(&["-t", table, "-X", &chain]).await?;
        }
    }
    Ok(())
}

/// Turns on IPv4 forwarding, without which nothing leaves the bridge.
pub fn enable_forwarding() -> Result<(), NetworkError> {
    let path = std::path::Path::new("/proc/sys/net/ipv4/ip_forward");
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, b"1").map_err(|source| NetworkError::Io {
        path: path.to_owned(),
        source,
    })
}
