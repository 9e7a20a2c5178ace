//! The nft commands of a lock, as text for `nft -f -`: one table holding
//! the flows in two sets (IPv4, IPv6) and a drop rule per direction. Pure
//! functions, so the text is unit-tested without a kernel.

use crate::image::TcpFlow;
use std::fmt::Write;

/// The packet mark (SO_MARK) of the segments a restore sends its own
/// restored sockets (a peer's FIN given back, `restore/husk/tcp_fin.rs`):
/// the lock lets them through ("frry").
pub const REPAIR_MARK: u32 = 0x6672_7279;
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
    table_commands(table, comment, flows, true)
}

/// The table of a lock prepared while the tree still runs: its sets hold
/// `flows` but its chains have no rule yet, so nothing is dropped until
/// [`arm_commands`] adds them (a short transaction, however many flows).
pub fn prepare_commands(table: &str, comment: &str, flows: &[TcpFlow]) -> String {
    table_commands(table, comment, flows, false)
}

/// Commands that add `flows` to the sets of lock `table` and, with
/// `rules`, the drop rules that make the lock effective; one transaction.
pub fn arm_commands(table: &str, flows: &[TcpFlow], rules: bool) -> String {
    let mut text = String::new();
    for family in FAMILIES {
        let elements = family.elements(flows);
        if !elements.is_empty() {
            let _ = writeln!(
                text,
                "add element inet {table} {} {{ {} }}",
                family.set,
                elements.join(", ")
            );
        }
    }
    for chain in CHAINS.iter().filter(|_| rules) {
        for family in &FAMILIES {
            let _ = writeln!(text, "add rule inet {table} {chain} {}", family.rule(chain));
        }
    }
    text
}

/// The table of a lock: both sets (even empty: a flow of the other family
/// may be added later), both chains, their rules with `rules`.
fn table_commands(table: &str, comment: &str, flows: &[TcpFlow], rules: bool) -> String {
    let mut text = format!("table inet {table} {{\n  comment \"{comment}\"\n");
    for family in FAMILIES {
        let elements = family.elements(flows);
        let elements = if elements.is_empty() {
            String::new()
        } else {
            format!("\n    elements = {{ {} }}", elements.join(", "))
        };
        let _ = writeln!(
            text,
            "  set {} {{\n    type {addr} . inet_service . {addr} . inet_service{elements}\n  }}",
            family.set,
            addr = family.addr,
        );
    }
    for chain in CHAINS {
        let mut rules_text = String::new();
        for family in FAMILIES.iter().filter(|_| rules) {
            let _ = writeln!(rules_text, "    {}", family.rule(chain));
        }
        let _ = write!(
            text,
            "  chain {chain} {{\n    type filter hook {chain} priority {PRIORITY}; policy accept;\n{rules_text}  }}\n"
        );
    }
    text.push_str("}\n");
    text
}

/// The lock's chains, each hooked where its name says.
const CHAINS: [&str; 2] = ["input", "output"];

/// One address family of a lock: its set and how its rules match.
struct Family {
    /// The set's name.
    set: &'static str,
    /// nft's address type.
    addr: &'static str,
    /// nft's protocol keyword for the addresses.
    ip: &'static str,
    /// Whether a flow belongs to this family's set.
    ipv4: bool,
}

/// IPv4 (with IPv4-mapped IPv6 sockets) and IPv6.
const FAMILIES: [Family; 2] = [
    Family {
        set: "flows4",
        addr: "ipv4_addr",
        ip: "ip",
        ipv4: true,
    },
    Family {
        set: "flows6",
        addr: "ipv6_addr",
        ip: "ip6",
        ipv4: false,
    },
];

impl Family {
    /// The set elements of those of `flows` in this family.
    fn elements(&self, flows: &[TcpFlow]) -> Vec<String> {
        flows
            .iter()
            .filter_map(|flow| match (ipv4_of(flow.local), ipv4_of(flow.remote)) {
                (Some(local), Some(remote)) if self.ipv4 => {
                    Some(element(local, flow.local, remote, flow.remote))
                }
                (Some(_), Some(_)) => None,
                _ if self.ipv4 => None,
                _ => Some(element(
                    flow.local.ip(),
                    flow.local,
                    flow.remote.ip(),
                    flow.remote,
                )),
            })
            .collect()
    }

    /// The rule of `chain` (input or output) dropping the packets of the
    /// set's flows, but for those marked [`REPAIR_MARK`]. The set's key is (local address, local port, remote
    /// address, remote port): incoming packets have them as destination
    /// then source, outgoing ones as source then destination.
    fn rule(&self, chain: &str) -> String {
        let (ip, set) = (self.ip, self.set);
        let (local, remote) = if chain == "input" {
            ("daddr . tcp dport", "saddr . tcp sport")
        } else {
            ("saddr . tcp sport", "daddr . tcp dport")
        };
        format!("meta mark != {REPAIR_MARK:#x} {ip} {local} . {ip} {remote} @{set} drop")
    }
}

/// The packet mark CRIU's own repair packets carry (SOCCR_MARK, "C114"),
/// also let through a whole-namespace lock: tools written for CRIU's lock
/// (zdtm's netns_lock hooks) mark their packets with it. Only a process
/// with CAP_NET_ADMIN can set a mark, and the locked tree is frozen or
/// killed, so letting it through opens the lock to no unprivileged
/// process.
pub const CRIU_MARK: u32 = 0xC114;

/// The whole table of a lock on a whole network namespace (one the tree
/// shares with others and leaves where it is, `checkpoint
/// --external-netns`): every packet in and out is dropped but those
/// marked [`REPAIR_MARK`] or [`CRIU_MARK`], as CRIU's network lock of a
/// namespace does. Made in one transaction, effective at once.
pub fn namespace_commands(table: &str, comment: &str) -> String {
    let mut text = format!("table inet {table} {{\n  comment \"{comment}\"\n");
    for chain in CHAINS {
        let _ = write!(
            text,
            "  chain {chain} {{\n    type filter hook {chain} priority {PRIORITY}; policy accept;\n    meta mark {{ {REPAIR_MARK:#x}, {CRIU_MARK:#x} }} accept\n    drop\n  }}\n"
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
    fn an_empty_family_has_an_empty_set_for_flows_added_later() {
        let text = engage_commands("ferry_t", "c", &[flow("10.0.0.1:80", "10.0.0.2:5000")]);
        assert!(text.contains(
            "set flows6 {\n    type ipv6_addr . inet_service . ipv6_addr . inet_service\n  }"
        ));
        assert!(text.contains("ip6 daddr . tcp dport . ip6 saddr . tcp sport @flows6 drop"));
    }

    #[test]
    fn a_prepared_lock_drops_nothing_until_armed() {
        let flows = [flow("10.0.0.1:80", "10.0.0.2:5000")];
        let text = prepare_commands("ferry_t", "c", &flows);
        assert!(text.contains("elements = { 10.0.0.1 . 80 . 10.0.0.2 . 5000 }"));
        assert!(!text.contains("drop"));
        assert_eq!(text.matches("priority -300").count(), 2);
        let armed = arm_commands("ferry_t", &[flow("[fd00::1]:82", "[fd00::2]:5002")], true);
        assert_eq!(
            armed,
            "add element inet ferry_t flows6 { fd00::1 . 82 . fd00::2 . 5002 }\n\
             add rule inet ferry_t input meta mark != 0x66727279 ip daddr . tcp dport . ip saddr . tcp sport @flows4 drop\n\
             add rule inet ferry_t input meta mark != 0x66727279 ip6 daddr . tcp dport . ip6 saddr . tcp sport @flows6 drop\n\
             add rule inet ferry_t output meta mark != 0x66727279 ip saddr . tcp sport . ip daddr . tcp dport @flows4 drop\n\
             add rule inet ferry_t output meta mark != 0x66727279 ip6 saddr . tcp sport . ip6 daddr . tcp dport @flows6 drop\n"
        );
        assert_eq!(arm_commands("ferry_t", &[], false), "");
    }

    #[test]
    fn a_namespace_lock_drops_all_but_marked_packets() {
        let text = namespace_commands("ferry_n", "c");
        assert!(text.starts_with("table inet ferry_n {\n  comment \"c\"\n"));
        assert_eq!(
            text.matches("meta mark { 0x66727279, 0xc114 } accept\n    drop\n")
                .count(),
            2
        );
        assert!(text.contains("type filter hook input priority -300;"));
        assert!(text.contains("type filter hook output priority -300;"));
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
