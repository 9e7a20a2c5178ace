//! The nft commands of a lock, as text for `nft -f -`: one table holding
//! the flows in two sets (IPv4, IPv6) and a drop rule per direction. Pure
//! functions, so the text is unit-tested without a kernel.

use crate::image::TcpFlow;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// The priority of the lock's chains: raw (-300), before conntrack and
/// every ordinary filter, so that no other rule answers for the workload
/// and conntrack does not time its entries out meanwhile.
const PRIORITY: i32 = -300;

/// The whole table of a lock on `flows`, created in one transaction
/// (`nft -f -` applies a file atomically: all of it or nothing). Input
/// and output are enough: the lock lives in the workload's own network
/// namespace, where its packets are delivered or sent, never forwarded.
pub fn engage_commands(table: &str, comment: &str, flows: &[TcpFlow]) -> String {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for flow in flows {
        match (ipv4_of(flow.local), ipv4_of(flow.remote)) {
            (Some(local), Some(remote)) => v4.push(element(local, flow.local, remote, flow.remote)),
            _ => v6.push(element(
                flow.local.ip(),
                flow.local,
                flow.remote.ip(),
                flow.remote,
            )),
        }
    }
    let mut text = format!("table inet {table} {{\n  comment \"{comment}\"\n");
    let mut rules = (String::new(), String::new());
    for (name, addr, ip, elements) in [
        ("flows4", "ipv4_addr", "ip", &v4),
        ("flows6", "ipv6_addr", "ip6", &v6),
    ] {
        if elements.is_empty() {
            continue;
        }
        let _ = writeln!(
            text,
            "  set {name} {{\n    type {addr} . inet_service . {addr} . inet_service\n    elements = {{ {} }}\n  }}",
            elements.join(", ")
        );
        // The set's key is (local address, local port, remote address,
        // remote port): incoming packets have them as destination then
        // source, outgoing ones as source then destination.
        let _ = writeln!(
            rules.0,
            "    {ip} daddr . tcp dport . {ip} saddr . tcp sport @{name} drop"
        );
        let _ = writeln!(
            rules.1,
            "    {ip} saddr . tcp sport . {ip} daddr . tcp dport @{name} drop"
        );
    }
    for (chain, hook, rules) in [("input", "input", &rules.0), ("output", "output", &rules.1)] {
        let _ = write!(
            text,
            "  chain {chain} {{\n    type filter hook {hook} priority {PRIORITY}; policy accept;\n{rules}  }}\n"
        );
    }
    text.push_str("}\n");
    text
}

/// Commands that delete `tables` whether or not they exist: adding an
/// existing table changes nothing, so `add` then `delete` in one
/// transaction removes it if present and is a no-op otherwise (nft 1.0.6,
/// Debian 12's, has no `destroy`).
pub fn delete_commands(tables: &[String]) -> String {
    let mut text = String::new();
    for table in tables {
        let _ = writeln!(text, "add table inet {table}\ndelete table inet {table}");
    }
    text
}

/// The inet tables named in the output of `nft list tables`.
pub fn inet_tables(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("table inet "))
        .map(|name| name.trim().to_string())
        .collect()
}

/// The IPv4 address a socket address carries: its own, or the one
/// inside an IPv4-mapped IPv6 address (an IPv6 socket talking IPv4
/// sends IPv4 packets, which only an `ip` rule matches).
fn ipv4_of(addr: SocketAddr) -> Option<IpAddr> {
    match addr.ip() {
        IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
    }
}

/// One set element: local address . port . remote address . port.
fn element(local: IpAddr, l: SocketAddr, remote: IpAddr, r: SocketAddr) -> String {
    format!("{local} . {} . {remote} . {}", l.port(), r.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(local: &str, remote: &str) -> TcpFlow {
        TcpFlow {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn flows_go_to_the_set_of_their_family_and_mapped_ones_to_ipv4() {
        let text = engage_commands(
            "ferry_t",
            "c",
            &[
                flow("10.0.0.1:80", "10.0.0.2:5000"),
                flow("[::ffff:10.0.0.1]:81", "[::ffff:10.0.0.3]:5001"),
                flow("[fd00::1]:82", "[fd00::2]:5002"),
            ],
        );
        assert!(text.starts_with("table inet ferry_t {\n  comment \"c\"\n"));
        assert!(text.contains(
            "elements = { 10.0.0.1 . 80 . 10.0.0.2 . 5000, 10.0.0.1 . 81 . 10.0.0.3 . 5001 }"
        ));
        assert!(text.contains("elements = { fd00::1 . 82 . fd00::2 . 5002 }"));
        assert!(text.contains("ip daddr . tcp dport . ip saddr . tcp sport @flows4 drop"));
        assert!(text.contains("ip6 saddr . tcp sport . ip6 daddr . tcp dport @flows6 drop"));
        assert_eq!(text.matches("priority -300").count(), 2);
    }

    #[test]
    fn an_empty_family_has_no_set_and_no_rule() {
        let text = engage_commands("ferry_t", "c", &[flow("10.0.0.1:80", "10.0.0.2:5000")]);
        assert!(!text.contains("flows6"));
        assert!(!text.contains("ip6"));
    }

    #[test]
    fn listing_gives_only_inet_tables() {
        let listing = "table ip nat\ntable inet ferry_a_1\ntable inet filter\n";
        assert_eq!(inet_tables(listing), ["ferry_a_1", "filter"]);
        assert_eq!(
            delete_commands(&["x".into()]),
            "add table inet x\ndelete table inet x\n"
        );
    }
}
