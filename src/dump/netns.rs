//! A plain tree's own network namespace, carried with it (inspection made
//! sure it holds only lo): lo's state and addresses and the namespace's
//! firewall, read with the tools that made it, inside the namespace:
//! iptables-legacy-save, ip6tables-legacy-save and nft (every table but
//! ferry's own locks), as CRIU does. The restore makes the namespace
//! again from this (`restore/husk/netns.rs`).
//!
//! Sysctls (net.ipv4.*, net.core.*, conntrack's) are not carried: the
//! restored namespace has the kernel's defaults. The workloads ferry
//! carries this way need none; in particular a firewall that accepts
//! only conntrack's NEW and ESTABLISHED packets keeps passing the
//! restored connections, since conntrack picks a connection up mid-stream
//! (net.netfilter.nf_conntrack_tcp_loose, 1 by default). Conntrack
//! entries are not carried either.

use super::error::CheckpointError;
use crate::image::NetnsImage;
use crate::inspect::netns::interfaces;
use crate::netlock::{run_tool, NetLockError, NetNs};

/// The addresses lo gets from the kernel when it comes up: not recorded.
pub const KERNEL_LOOPBACK_ADDRESSES: [&str; 2] = ["127.0.0.1/8", "::1/128"];

/// Reads the network namespace of process `root` (the tree's own).
pub fn dump_netns(root: i32) -> Result<NetnsImage, CheckpointError> {
    let (lo, _) = interfaces(root)?;
    let netns = NetNs::of_process(root)?;
    let iptables = saved_rules(&netns, "iptables-legacy-save")?;
    let ip6tables = saved_rules(&netns, "ip6tables-legacy-save")?;
    let listing = run_tool(&netns, "nft", &["list", "tables"], "", "listing tables")?;
    let mut nftables = String::new();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        let (Some("table"), Some(family), Some(name)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if name.starts_with(crate::netlock::TABLE_PREFIX) {
            continue;
        }
        nftables.push_str(&run_tool(
            &netns,
            "nft",
            &["list", "table", family, name],
            "",
            "listing a table",
        )?);
    }
    Ok(NetnsImage {
        loopback_up: lo.up,
        loopback_addresses: lo
            .addresses
            .into_iter()
            .filter(|a| !KERNEL_LOOPBACK_ADDRESSES.contains(&a.as_str()))
            .collect(),
        iptables,
        ip6tables,
        nftables,
    })
}

/// What `save` (iptables-legacy-save, ip6tables-legacy-save) prints in
/// `netns`, without its comment lines (a date); empty when the tool is
/// not installed (no legacy rule can have been made with it then).
fn saved_rules(netns: &NetNs, save: &str) -> Result<String, CheckpointError> {
    match run_tool(netns, save, &[], "", "saving the rules") {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()),
        Err(NetLockError::Spawn { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(String::new())
        }
        Err(e) => Err(e.into()),
    }
}
