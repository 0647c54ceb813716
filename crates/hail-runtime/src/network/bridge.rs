//! The host bridge and the veth pairs that plug task namespaces into it,
//! all over rtnetlink.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::NetworkError;

/// The ECS link-local address tasks reach the host (the agent) at.
pub const ECS_AGENT_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

/// Index of the loopback device in every fresh network namespace.
const LO_INDEX: u32 = 1;
/// Index asked for the task's `eth0`: the first free one in a fresh
/// namespace, so the address and route requests need no lookup.
const ETH0_INDEX: u32 = 2;

pub fn netlink_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let op = op.into();
    move |e| NetworkError::Netlink {
        op,
        message: match &e {
            rtnetlink::Error::NetlinkError(m) => match m.code {
                Some(code) => std::io::Error::from_raw_os_error(-code.get()).to_string(),
                None => e.to_string(),
            },
            other => other.to_string(),
        },
    }
}

/// The errno of a netlink error reply, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Opens an rtnetlink connection in the calling thread's namespace; its
/// driver runs on the current tokio runtime.
pub fn connect(op: &str) -> Result<Handle, NetworkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetworkError::Netlink {
        op: format!("{op}: open netlink socket"),
        message: e.to_string(),
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A locally administered MAC derived from an IPv4 address, as Docker does
/// (02:42:a:b:c:d): stable across restarts and unique within a subnet.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The index of link `name`, or `None` when there is no such link.
pub async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(netlink_err(format!("get link {name}"))(e)),
    }
}

fn libc_enodev() -> i32 {
    nix::Error::ENODEV as i32
}

/// Creates (if missing) and brings up the bridge with the gateway address
/// and the ECS agent address; returns its index. Idempotent.
pub async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix_len: u8,
) -> Result<u32, NetworkError> {
    let index = match index_of(handle, name).await? {
        Some(index) => index,
        None => {
            // A fixed MAC: otherwise the bridge takes the lowest MAC of its
            // ports and the gateway's MAC changes as tasks come and go,
            // leaving stale ARP entries in every task.
            let msg = LinkBridge::new(name)
                .address(mac_for(gateway).to_vec())
                .build();
            match handle.link().add(msg).execute().await {
                Ok(()) => {}
                // Created concurrently by another opener: fine.
                Err(e) if errno(&e) == Some(nix::Error::EEXIST as i32) => {}
                Err(e) => return Err(netlink_err(format!("create bridge {name}"))(e)),
            }
            index_of(handle, name)
                .await?
                .ok_or_else(|| NetworkError::Netlink {
                    op: format!("create bridge {name}"),
                    message: "bridge vanished after creation".to_owned(),
                })?
        }
    };
    for (addr, len) in [(gateway, prefix_len), (ECS_AGENT_ADDR, 32)] {
        handle
            .address()
            .add(index, IpAddr::V4(addr), len)
            .replace()
            .execute()
            .await
            .map_err(netlink_err(format!("add address {addr}/{len} to {name}")))?;
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink_err(format!("set {name} up")))?;
    Ok(index)
}

/// Deletes link `name`; absent is fine (deleting either end of a veth pair
/// removes both).
pub async fn delete_link(handle: &Handle, name: &str) -> Result<(), NetworkError> {
    let msg = LinkUnspec::new_with_name(name).build();
    match handle.link().del_with_message(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(()),
        Err(e) => Err(netlink_err(format!("delete link {name}"))(e)),
    }
}

/// Names of the links enslaved to the bridge with index `bridge`.
pub async fn ports_of(handle: &Handle, bridge: u32) -> Result<Vec<String>, NetworkError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink_err("list links"))?;
    Ok(links
        .iter()
        .filter(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == bridge))
        })
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        })
        .collect())
}

/// What a task's `eth0` gets.
pub struct Eth0 {
    pub host_veth: String,
    pub bridge_index: u32,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// Brings `lo` up in the namespace the calling thread is in.
pub async fn loopback_up(ns: &Handle) -> Result<(), NetworkError> {
    ns.link()
        .set(LinkUnspec::new_with_index(LO_INDEX).up().build())
        .execute()
        .await
        .map_err(netlink_err("set lo up"))
}

/// Plugs the namespace the calling thread is in into the bridge: `host`
/// must be a connection opened in the host namespace, `ns` one opened in
/// the task namespace. One request creates the pair with the host end on
/// the bridge and up, and `eth0` inside the task namespace; three more give
/// `eth0` its address, bring it up and add the default route.
pub async fn plug(host: &Handle, ns: &Handle, eth0: &Eth0) -> Result<(), NetworkError> {
    let own_ns = File::open("/proc/thread-self/ns/net").map_err(|source| NetworkError::Io {
        path: "/proc/thread-self/ns/net".into(),
        source,
    })?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name("eth0")
        .index(ETH0_INDEX)
        .address(mac_for(eth0.ip).to_vec())
        .setns_by_fd(own_ns.as_raw_fd())
        .build();
    let pair = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(eth0.host_veth.clone())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(eth0.bridge_index)
        .up()
        .build();
    host.link()
        .add(pair)
        .execute()
        .await
        .map_err(netlink_err(format!("create veth {}", eth0.host_veth)))?;
    drop(own_ns);

    ns.address()
        .add(ETH0_INDEX, IpAddr::V4(eth0.ip), eth0.prefix_len)
        .execute()
        .await
        .map_err(netlink_err(format!(
            "add address {}/{} to eth0",
            eth0.ip, eth0.prefix_len
        )))?;
    ns.link()
        .set(LinkUnspec::new_with_index(ETH0_INDEX).up().build())
        .execute()
        .await
        .map_err(netlink_err("set eth0 up"))?;
    ns.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(eth0.gateway)
                .output_interface(ETH0_INDEX)
                .build(),
        )
        .execute()
        .await
        .map_err(netlink_err(format!(
            "add default route via {}",
            eth0.gateway
        )))
}
