//! Which TCP connections a tree holds: the socket inodes of its fds
//! (/proc/PID/fd links `socket:[N]`) looked up in its network namespace's
//! TCP tables (/proc/PID/net/tcp and tcp6). Every connected state counts
//! (established, half-closed, connecting): each has a peer that must not
//! be answered while the tree is frozen. Listeners have no peer.

use super::error::NetLockError;
use crate::image::TcpFlow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP states (include/net/tcp_states.h) without a peer.
const TCP_CLOSE: u8 = 0x07;
const TCP_LISTEN: u8 = 0x0A;

/// The connections held by the fds of `pids`, sorted, each once (a
/// socket shared by several fds or processes is one connection).
pub fn tree_flows(pids: &[i32]) -> Result<Vec<TcpFlow>, NetLockError> {
    // Socket inodes per network namespace, with one process in it to read
    // that namespace's tables through.
    let mut by_netns: HashMap<String, (i32, HashSet<u64>)> = HashMap::new();
    for &pid in pids {
        // A process that exited since the tree was listed (it can only
        // be before the freeze) holds no connection any more.
        let (netns, inodes) = match read_link(&format!("/proc/{pid}/ns/net"))
            .and_then(|netns| Ok((netns, socket_inodes(pid)?)))
        {
            Ok(found) => found,
            Err(NetLockError::Proc { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue
            }
            Err(err) => return Err(err),
        };
        let entry = by_netns.entry(netns).or_insert((pid, HashSet::new()));
        entry.1.extend(inodes);
    }
    let mut flows = BTreeSet::new();
    for (pid, inodes) in by_netns.values() {
        if inodes.is_empty() {
            continue;
        }
        for table in ["tcp", "tcp6"] {
            let path = format!("/proc/{pid}/net/{table}");
            let text = std::fs::read_to_string(&path).map_err(|source| NetLockError::Proc {
                path: path.clone(),
                source,
            })?;
            for line in text.lines().skip(1) {
                let entry = parse_line(line).ok_or_else(|| NetLockError::Parse {
                    path: path.clone(),
                    line: line.to_string(),
                })?;
                if let Some((inode, flow)) = entry {
                    if inodes.contains(&inode) {
                        flows.insert(flow);
                    }
                }
            }
        }
    }
    Ok(flows.into_iter().collect())
}

/// The inodes of the sockets among the fds of `pid`.
fn socket_inodes(pid: i32) -> Result<Vec<u64>, NetLockError> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|source| NetLockError::Proc {
        path: dir.clone(),
        source,
    })?;
    let mut inodes = Vec::new();
    for entry in entries.flatten() {
        // An fd closed since the directory was read is simply not there.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(n) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            inodes.push(n);
        }
    }
    Ok(inodes)
}

fn read_link(path: &str) -> Result<String, NetLockError> {
    std::fs::read_link(path)
        .map(|t| t.to_string_lossy().into_owned())
        .map_err(|source| NetLockError::Proc {
            path: path.to_string(),
            source,
        })
}

/// One line of /proc/net/tcp or tcp6: None when it does not parse,
/// Some(None) for a socket without a peer, else its inode and flow.
fn parse_line(line: &str) -> Option<Option<(u64, TcpFlow)>> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, remote, state, inode) = (
        fields.get(1)?,
        fields.get(2)?,
        fields.get(3)?,
        fields.get(9)?,
    );
    let state = u8::from_str_radix(state, 16).ok()?;
    let (local, remote, inode) = (
        parse_addr(local)?,
        parse_addr(remote)?,
        inode.parse::<u64>().ok()?,
    );
    if state == TCP_LISTEN || state == TCP_CLOSE {
        return Some(None);
    }
    Some(Some((inode, TcpFlow { local, remote })))
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the kernel
/// prints each 32-bit word of the address as loaded in the host's byte
/// order, and the port in hex.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_ipv6_lines_parse() {
        let v4 = "   1: 0100007F:1F90 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1";
        let (inode, flow) = parse_line(v4).unwrap().unwrap();
        assert_eq!(inode, 12345);
        assert_eq!(flow.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(flow.remote, "127.0.0.2:54321".parse().unwrap());
        let v6 = "   0: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1";
        let (inode, flow) = parse_line(v6).unwrap().unwrap();
        assert_eq!(inode, 777);
        assert_eq!(flow.local, "[::1]:8080".parse().unwrap());
        assert_eq!(flow.remote, "[::ffff:127.0.0.1]:54321".parse().unwrap());
    }

    #[test]
    fn listeners_have_no_flow_and_garbage_does_not_parse() {
        let listen = "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_line(listen), Some(None));
        assert_eq!(parse_line("  0: nonsense"), None);
    }

    #[test]
    fn a_tree_with_a_connection_lists_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let flows = tree_flows(&[std::process::id() as i32]).unwrap();
        let ours = TcpFlow {
            local: client.local_addr().unwrap(),
            remote: client.peer_addr().unwrap(),
        };
        assert!(flows.contains(&ours), "{flows:?} lacks {ours:?}");
        // The accepted end is a connection too; the listener is not.
        assert_eq!(
            flows
                .iter()
                .filter(|f| f.local == listener.local_addr().unwrap())
                .count(),
            1
        );
    }
}
