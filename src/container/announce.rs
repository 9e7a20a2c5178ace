//! The destination tells the link where a moved container's addresses are
//! now, as a migrated VM's host does: one gratuitous ARP (a request whose
//! sender and target are the address) per IPv4 address, so that peers on
//! the same link update their neighbour entry at once instead of sending
//! on to the old host until it expires (which, with traffic confirming it,
//! may be never).
//!
//! Two places may own the address on the link, and both are told:
//! - the container's own interface, when the site bridges it onto the
//!   link (its frames reach the peers directly);
//! - this host's interfaces that answer ARP for it (proxy ARP on an
//!   interface whose subnet holds the address: the host routes to the
//!   container, as the testbed's network hook sets it up).
//!
//! A raw frame (AF_PACKET, `kernel::packet`) rather than `arping -U`: it
//! needs no extra package on every host, and the frame is 42 fixed bytes.
//! IPv6 addresses (an unsolicited neighbour advertisement) are not
//! announced yet.

use super::net::NetworkConfig;
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// One interface that may announce, as `ip -j addr show up` lists it
/// (with `-4` it would leave the MAC address out).
#[derive(Debug, Deserialize)]
struct Link {
    ifindex: u32,
    ifname: String,
    /// Its MAC address (absent on interfaces without one).
    address: Option<String>,
    #[serde(default)]
    addr_info: Vec<LinkAddr>,
}

#[derive(Debug, Deserialize)]
struct LinkAddr {
    family: Option<String>,
    local: Option<String>,
    prefixlen: Option<u8>,
}

/// Announces the IPv4 addresses of `config` from the namespace of the
/// container whose init is `pid` and from this host's proxy-ARP interfaces
/// on their subnet; returns where each went ("10.0.0.5 on eth0"). Failures
/// are returned too: an announcement only speeds peers up, it never fails
/// a migration.
pub fn announce(pid: i32, config: &NetworkConfig) -> (Vec<String>, Vec<String>) {
    let addresses: Vec<Ipv4Addr> = config
        .interfaces
        .iter()
        .flat_map(|i| &i.addresses)
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    let (mut sent, mut failed) = (Vec::new(), Vec::new());
    if addresses.is_empty() {
        return (sent, failed);
    }
    match crate::kernel::in_net_namespace(pid, || announce_here(&addresses, false)) {
        Ok((s, f)) => {
            sent.extend(s.into_iter().map(|s| format!("{s} (in the container)")));
            failed.extend(f);
        }
        Err(e) => failed.push(format!(
            "cannot join the container's network namespace: {e}"
        )),
    }
    let (s, f) = announce_here(&addresses, true);
    sent.extend(s);
    failed.extend(f);
    (sent, failed)
}

/// Announces each address on the interfaces of this thread's namespace
/// that own it: those holding it (`proxied` false), or those answering
/// ARP for it in their subnet (`proxied` true).
fn announce_here(addresses: &[Ipv4Addr], proxied: bool) -> (Vec<String>, Vec<String>) {
    let (mut sent, mut failed) = (Vec::new(), Vec::new());
    let links = match links() {
        Ok(l) => l,
        Err(e) => {
            failed.push(e);
            return (sent, failed);
        }
    };
    for link in &links {
        let Some(mac) = link.address.as_deref().and_then(parse_mac) else {
            continue;
        };
        if link.ifname == "lo" || (proxied && !proxy_arp(&link.ifname)) {
            continue;
        }
        for &addr in addresses {
            let owns = link.addr_info.iter().any(|a| {
                let (Some("inet"), Some(local), Some(len)) =
                    (a.family.as_deref(), a.local.as_deref(), a.prefixlen)
                else {
                    return false;
                };
                let Ok(local) = local.parse::<Ipv4Addr>() else {
                    return false;
                };
                if proxied {
                    local != addr && same_subnet(local, addr, len)
                } else {
                    local == addr
                }
            });
            if !owns {
                continue;
            }
            let frame = gratuitous_arp(mac, addr);
            match crate::kernel::packet::send_broadcast(link.ifindex, ETH_P_ARP, &frame) {
                Ok(()) => sent.push(format!("{addr} on {}", link.ifname)),
                Err(e) => failed.push(format!("announcing {addr} on {}: {e}", link.ifname)),
            }
        }
    }
    (sent, failed)
}

/// The ARP EtherType.
const ETH_P_ARP: u16 = 0x0806;

/// The interfaces that are up, with their IPv4 addresses.
fn links() -> Result<Vec<Link>, String> {
    let out = Command::new("ip")
        .args(["-j", "addr", "show", "up"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip -j addr show up` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cannot read `ip -j addr`: {e}"))
}

/// Whether the kernel answers ARP for other addresses on `ifname` (its
/// own proxy_arp or the namespace-wide one).
fn proxy_arp(ifname: &str) -> bool {
    ["all", ifname].iter().any(|conf| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{conf}/proxy_arp"))
            .is_ok_and(|v| v.trim() == "1")
    })
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    (parts.next().is_none() && mac != [0; 6]).then_some(mac)
}

/// A gratuitous ARP request: broadcast, sender and target address both
/// `addr`, sender hardware address `mac` (RFC 5227's announcement, which
/// Linux peers take to override an existing entry at once).
fn gratuitous_arp(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&addr.octets());
    // Target hardware address left zero.
    f[38..42].copy_from_slice(&addr.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_names_the_address_twice() {
        let mac = parse_mac("02:00:00:00:00:2a").unwrap();
        let f = gratuitous_arp(mac, Ipv4Addr::new(10, 231, 0, 100));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 231, 0, 100]);
        assert_eq!(&f[38..42], &[10, 231, 0, 100]);
    }

    #[test]
    fn subnets_and_macs_are_read() {
        let a = Ipv4Addr::new(10, 231, 0, 2);
        assert!(same_subnet(a, Ipv4Addr::new(10, 231, 0, 100), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(10, 232, 0, 2), 24));
        assert!(same_subnet(a, Ipv4Addr::new(1, 2, 3, 4), 0));
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00"), None);
    }
}
