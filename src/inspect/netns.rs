//! A plain tree's own network namespace (`unshare --net`): ferry carries
//! one that holds only its loopback (its state and addresses, and the
//! namespace's firewall, in `dump/netns.rs`); any other interface (a veth,
//! a tunnel, a dummy) is refused here, before anything is frozen, naming
//! it: its peer or configuration lives outside the tree.

use super::error::InspectError;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

/// The loopback interface of a network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loopback {
    /// Whether lo is up.
    pub up: bool,
    /// Its addresses, as ADDRESS/PREFIX.
    pub addresses: Vec<String>,
}

/// The interfaces of the network namespace of process `pid`: lo's state,
/// and the names of the others.
pub fn interfaces(pid: i32) -> Result<(Loopback, Vec<String>), InspectError> {
    let unreadable = |source: std::io::Error| InspectError::Io {
        what: format!("list the interfaces of the network namespace of process {pid}"),
        source,
    };
    let listed = crate::kernel::in_net_namespace(pid, || {
        getifaddrs().map(|addrs| addrs.collect::<Vec<_>>())
    })
    .map_err(|e| unreadable(e.into()))?
    .map_err(|e| unreadable(e.into()))?;
    let mut lo = Loopback::default();
    let mut others: Vec<String> = Vec::new();
    for entry in listed {
        if entry.interface_name != "lo" {
            if !others.contains(&entry.interface_name) {
                others.push(entry.interface_name);
            }
            continue;
        }
        lo.up |= entry.flags.contains(InterfaceFlags::IFF_UP);
        if let Some(address) = address_with_prefix(&entry) {
            if !lo.addresses.contains(&address) {
                lo.addresses.push(address);
            }
        }
    }
    Ok((lo, others))
}

/// An IPv4 or IPv6 address of `entry` as ADDRESS/PREFIX (None for the
/// link's own AF_PACKET entry).
fn address_with_prefix(entry: &nix::ifaddrs::InterfaceAddress) -> Option<String> {
    let (address, netmask) = (entry.address.as_ref()?, entry.netmask.as_ref());
    if let Some(v4) = address.as_sockaddr_in() {
        let prefix = netmask
            .and_then(|m| m.as_sockaddr_in())
            .map_or(32, |m| m.ip().to_bits().count_ones());
        return Some(format!("{}/{prefix}", v4.ip()));
    }
    let v6 = address.as_sockaddr_in6()?;
    let prefix = netmask
        .and_then(|m| m.as_sockaddr_in6())
        .map_or(128, |m| m.ip().to_bits().count_ones());
    Some(format!("{}/{prefix}", v6.ip()))
}

/// Refuses the own network namespace `target` of the tree rooted at
/// `pid` when it holds an interface other than lo.
pub fn check_loopback_only(pid: i32, target: &str) -> Result<(), InspectError> {
    let (_, others) = interfaces(pid)?;
    if others.is_empty() {
        return Ok(());
    }
    Err(InspectError::NetnsInterfaces {
        pid,
        target: target.to_string(),
        interfaces: others.join(", "),
    })
}
