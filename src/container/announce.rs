//! The destination tells the link where a moved container's addresses are
//! now, as a migrated VM's host does: one gratuitous ARP (a request whose
//! sender and target are the address) per IPv4 address, one unsolicited
//! neighbour advertisement (to all nodes, with the override flag, RFC 4861
//! 7.2.6) per IPv6 address, so that peers on the same link update their
//! neighbour entry at once instead of sending on to the old host until it
//! expires (which, with traffic confirming it, may be never).
//!
//! Two places may own the address on the link, and both are told:
//! - the container's own interface, when the site bridges it onto the
//!   link (its frames reach the peers directly);
//! - this host's interfaces that answer ARP for it (proxy ARP on an
//!   interface whose subnet holds the address: the host routes to the
//!   container, as the testbed's network hook sets it up), or neighbour
//!   solicitations (proxy NDP, for an IPv6 address).
//!
//! A raw frame (AF_PACKET, `kernel::packet`) rather than `arping -U` or
//! `ndisc6`: it needs no extra package on every host, and the frames are
//! 42 and 86 fixed bytes.

use super::net::NetworkConfig;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// Announces the addresses of `config` from the namespace of the
/// container whose init is `pid` and from this host's proxy-ARP (proxy-NDP)
/// interfaces on their subnet; returns where each went ("10.0.0.5 on
/// eth0"). Failures are returned too: an announcement only speeds peers
/// up, it never fails a migration.
pub fn announce(pid: i32, config: &NetworkConfig) -> (Vec<String>, Vec<String>) {
    let addresses: Vec<IpAddr> = config
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
/// ARP (or neighbour solicitations) for it in their subnet (`proxied`
/// true).
fn announce_here(addresses: &[IpAddr], proxied: bool) -> (Vec<String>, Vec<String>) {
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
        if link.ifname == "lo" {
            continue;
        }
        for &addr in addresses {
            if proxied && !proxies(&link.ifname, addr) {
                continue;
            }
            let owns = link.addr_info.iter().any(|a| {
                let (Some(family), Some(local), Some(len)) =
                    (a.family.as_deref(), a.local.as_deref(), a.prefixlen)
                else {
                    return false;
                };
                let Ok(local) = local.parse::<IpAddr>() else {
                    return false;
                };
                if family != if addr.is_ipv4() { "inet" } else { "inet6" } {
                    return false;
                }
                if proxied {
                    local != addr && same_subnet(local, addr, len)
                } else {
                    local == addr
                }
            });
            if !owns {
                continue;
            }
            let (ethertype, frame) = match addr {
                IpAddr::V4(a) => (ETH_P_ARP, gratuitous_arp(mac, a).to_vec()),
                IpAddr::V6(a) => (ETH_P_IPV6, unsolicited_na(mac, a).to_vec()),
            };
            match crate::kernel::packet::send_broadcast(link.ifindex, ethertype, &frame) {
                Ok(()) => sent.push(format!("{addr} on {}", link.ifname)),
                Err(e) => failed.push(format!("announcing {addr} on {}: {e}", link.ifname)),
            }
        }
    }
    (sent, failed)
}

/// The ARP EtherType.
const ETH_P_ARP: u16 = 0x0806;
/// The IPv6 EtherType.
const ETH_P_IPV6: u16 = 0x86dd;

/// The interfaces that are up, with their addresses.
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

/// Whether the kernel answers for other addresses of `addr`'s family on
/// `ifname` (its own proxy_arp or proxy_ndp, or the namespace-wide one).
fn proxies(ifname: &str, addr: IpAddr) -> bool {
    let (family, knob) = if addr.is_ipv4() {
        ("ipv4", "proxy_arp")
    } else {
        ("ipv6", "proxy_ndp")
    };
    ["all", ifname].iter().any(|conf| {
        std::fs::read_to_string(format!("/proc/sys/net/{family}/conf/{conf}/{knob}"))
            .is_ok_and(|v| v.trim() == "1")
    })
}

/// Whether `a` and `b` (of one family) share their first `len` bits.
fn same_subnet(a: IpAddr, b: IpAddr, len: u8) -> bool {
    let (a, b, bits) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let len = u32::from(len).min(bits);
    // The bits that differ, moved to the top: the first `len` must not.
    let differing = (a ^ b) << (128 - bits);
    len == 0 || differing >> (128 - len) == 0
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

/// An unsolicited neighbour advertisement of `addr` at `mac`: to all
/// nodes (ff02::1), from the address itself, hop limit 255, the override
/// flag set and the solicited flag clear, with the target link-layer
/// address option (RFC 4861 7.2.6: peers replace their entry at once).
fn unsolicited_na(mac: [u8; 6], addr: Ipv6Addr) -> [u8; 86] {
    const ICMP_LEN: u16 = 32;
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    f[14] = 0x60;
    f[18..20].copy_from_slice(&ICMP_LEN.to_be_bytes());
    f[20] = 58; // ICMPv6
    f[21] = 255;
    f[22..38].copy_from_slice(&addr.octets());
    f[38..54].copy_from_slice(&all_nodes.octets());
    let icmp = &mut f[54..86];
    icmp[0] = 136; // neighbour advertisement
    icmp[4] = 0x20; // override
    icmp[8..24].copy_from_slice(&addr.octets());
    icmp[24] = 2; // target link-layer address
    icmp[25] = 1; // 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    // The checksum covers the pseudo-header: addresses, length, protocol.
    let sum = crate::kernel::packet::internet_checksum(
        &[&addr.octets(), &all_nodes.octets(), icmp],
        u32::from(ICMP_LEN) + 58,
    );
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
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
    fn an_unsolicited_advertisement_overrides_for_all_nodes() {
        let mac = parse_mac("02:00:00:00:00:2a").unwrap();
        let addr: Ipv6Addr = "fd00:231::100".parse().unwrap();
        let f = unsolicited_na(mac, addr);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(
            (f[14] >> 4, f[18], f[19], f[20], f[21]),
            (6, 0, 32, 58, 255)
        );
        assert_eq!(&f[22..38], &addr.octets());
        assert_eq!(f[38..54], "ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        let icmp = &f[54..];
        assert_eq!((icmp[0], icmp[1]), (136, 0));
        // Override set; solicited and router clear.
        assert_eq!(&icmp[4..8], &[0x20, 0, 0, 0]);
        assert_eq!(&icmp[8..24], &addr.octets());
        assert_eq!(&icmp[24..32], &[2, 1, 2, 0, 0, 0, 0, 0x2a]);
        // With its checksum in place, the message sums to zero.
        let sum = crate::kernel::packet::internet_checksum(&[&f[22..54], icmp], 32 + 58);
        assert_eq!(sum, 0);
    }

    #[test]
    fn subnets_and_macs_are_read() {
        let a = IpAddr::from(Ipv4Addr::new(10, 231, 0, 2));
        assert!(same_subnet(a, Ipv4Addr::new(10, 231, 0, 100).into(), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(10, 232, 0, 2).into(), 24));
        assert!(same_subnet(a, Ipv4Addr::new(1, 2, 3, 4).into(), 0));
        let b: IpAddr = "fd00:231::2".parse().unwrap();
        assert!(same_subnet(b, "fd00:231::100".parse().unwrap(), 64));
        assert!(!same_subnet(b, "fd00:232::2".parse().unwrap(), 64));
        assert!(!same_subnet(a, b, 0));
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00"), None);
    }
}
