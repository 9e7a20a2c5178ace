//! A container with a network namespace of its own: the destination's
//! runtime creates an empty one (loopback only), and the container's
//! listening sockets must find their addresses there before they are
//! rebuilt. The source records the namespace's addresses and routes (by
//! running `ip -j` inside it) and the offer carries them; the destination
//! agent runs its configured network hook (`[container] network_hook`)
//! after `runtime create` and before the restore, which configures the
//! namespace as the site's network wants (a CNI plugin called with the same
//! address, a veth and routes in the testbed: scripts/container-net.sh),
//! in two phases ([`HookPhase`]): what can be done before the freeze, and
//! what makes the address reachable here, inside the downtime.

use super::error::ContainerError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the network hook may take.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// The addresses and routes of a container's network namespace, as the
/// source recorded them and the network hook gets them (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Interfaces with addresses (loopback left out).
    pub interfaces: Vec<Interface>,
    /// Routes set by hand or by the network's setup (the kernel's own
    /// routes for an address's subnet left out).
    pub routes: Vec<Route>,
}

/// One interface of the namespace and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name (eth0).
    pub name: String,
    /// Its global addresses in CIDR form (10.232.0.2/24, fd00::2/64).
    pub addresses: Vec<String>,
}

/// One route of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// "default" or a CIDR.
    pub dst: String,
    /// The next hop, if any.
    pub gateway: Option<String>,
    /// The interface, if named.
    pub dev: Option<String>,
}

/// What the destination must rebuild of the network of container `id`
/// whose init is `pid`: None when it shares migrate-agent's network
/// namespace, or has one of its own with nothing but loopback in it (the
/// runtime creates that much); else the addresses and routes recorded in
/// it (`ip -j addr`, `ip -j route` run inside it).
pub fn record(id: &str, pid: i32) -> Result<Option<NetworkConfig>, ContainerError> {
    let fail = |why: String| ContainerError::Network {
        id: id.to_string(),
        pid,
        why,
    };
    let link = |path: &str| std::fs::read_link(path).map_err(|e| fail(format!("{path}: {e}")));
    if link(&format!("/proc/{pid}/ns/net"))? == link("/proc/thread-self/ns/net")? {
        return Ok(None);
    }
    let ip = |args: &[&str]| -> Result<String, ContainerError> {
        let out = crate::kernel::in_net_namespace(pid, || {
            Command::new("ip").args(args).stdin(Stdio::null()).output()
        })
        .map_err(|e| fail(format!("cannot join its network namespace: {e}")))?
        .map_err(|e| fail(format!("cannot run ip: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let interfaces = parse_addresses(&ip(&["-j", "addr", "show"])?).map_err(&fail)?;
    let mut routes = parse_routes(&ip(&["-j", "-4", "route", "show"])?).map_err(&fail)?;
    routes.extend(parse_routes(&ip(&["-j", "-6", "route", "show"])?).map_err(&fail)?);
    Ok((!interfaces.is_empty() || !routes.is_empty())
        .then_some(NetworkConfig { interfaces, routes }))
}

/// The interfaces with global addresses in `ip -j addr` output.
fn parse_addresses(json: &str) -> Result<Vec<Interface>, String> {
    #[derive(Deserialize)]
    struct Link {
        ifname: String,
        #[serde(default)]
        addr_info: Vec<Addr>,
    }
    #[derive(Deserialize)]
    struct Addr {
        local: Option<String>,
        prefixlen: Option<u8>,
        scope: Option<String>,
    }
    let links: Vec<Link> =
        serde_json::from_str(json).map_err(|e| format!("cannot read `ip -j addr`: {e}"))?;
    Ok(links
        .into_iter()
        .filter(|l| l.ifname != "lo")
        .filter_map(|l| {
            let addresses: Vec<String> = l
                .addr_info
                .iter()
                .filter(|a| a.scope.as_deref() == Some("global"))
                .filter_map(|a| Some(format!("{}/{}", a.local.as_ref()?, a.prefixlen?)))
                .collect();
            (!addresses.is_empty()).then_some(Interface {
                name: l.ifname,
                addresses,
            })
        })
        .collect())
}

/// The routes in `ip -j route` output, less the kernel's own.
fn parse_routes(json: &str) -> Result<Vec<Route>, String> {
    #[derive(Deserialize)]
    struct Raw {
        dst: String,
        gateway: Option<String>,
        dev: Option<String>,
        protocol: Option<String>,
    }
    let raw: Vec<Raw> =
        serde_json::from_str(json).map_err(|e| format!("cannot read `ip -j route`: {e}"))?;
    Ok(raw
        .into_iter()
        .filter(|r| r.protocol.as_deref() != Some("kernel"))
        .map(|r| Route {
            dst: r.dst,
            gateway: r.gateway,
            dev: r.dev,
        })
        .collect())
}

/// Which half of a container's network setup the hook is asked for
/// (FERRY_NETWORK_PHASE): the source's copy owns the address until the
/// freeze, so only its activation may happen inside the downtime, where
/// every program the hook starts counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// At the offer, the container just created: configure its namespace
    /// (interfaces, addresses, routes) and anything else that reaches
    /// nothing outside it yet (`prepare`).
    Prepare,
    /// Inside the downtime, under the network lock: make the addresses
    /// reachable on this host's network (`activate`).
    Activate,
}

impl HookPhase {
    /// The phase as FERRY_NETWORK_PHASE names it.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::Prepare => "prepare",
            HookPhase::Activate => "activate",
        }
    }
}

/// Runs phase `phase` of the network hook `hook` for container `id` whose
/// init is `pid` (created, waiting; its network namespace empty before
/// `prepare`): `HOOK ID PID`, with FERRY_CONTAINER_ID, FERRY_CONTAINER_PID,
/// FERRY_NETNS (/proc/PID/ns/net), FERRY_NETWORK (`config` as JSON) and
/// FERRY_NETWORK_PHASE in its environment. It must do its phase's part
/// and exit 0 within 30 s.
pub fn run_hook(
    hook: &Path,
    (id, pid): (&str, i32),
    config: &NetworkConfig,
    phase: HookPhase,
) -> Result<(), ContainerError> {
    let fail = |why: String| ContainerError::Hook {
        hook: hook.display().to_string(),
        id: id.to_string(),
        why,
    };
    let json = serde_json::to_string(config).map_err(|e| fail(e.to_string()))?;
    let err_path = std::env::temp_dir().join(format!(
        "ferry-network-hook-{id}-{}.err",
        std::process::id()
    ));
    let err_file = std::fs::File::create(&err_path).map_err(|e| fail(e.to_string()))?;
    let mut child = Command::new(hook)
        .args([id, &pid.to_string()])
        .env("FERRY_CONTAINER_ID", id)
        .env("FERRY_CONTAINER_PID", pid.to_string())
        .env("FERRY_NETNS", format!("/proc/{pid}/ns/net"))
        .env("FERRY_NETWORK", &json)
        .env("FERRY_NETWORK_PHASE", phase.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(fail(format!(
                    "it did not finish within {} s",
                    HOOK_TIMEOUT.as_secs()
                )));
            }
            // Short: the activation is inside the downtime.
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => break Err(fail(e.to_string())),
        }
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    let status = status?;
    if !status.success() {
        return Err(fail(format!("it exited with {status}: {}", stderr.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::container::net::*;

    #[test]
    fn global_addresses_of_interfaces_are_read() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"10.232.0.2","prefixlen":24,"scope":"global"},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]},
            {"ifindex":3,"ifname":"dummy0","addr_info":[]}]"#;
        assert_eq!(
            parse_addresses(json).unwrap(),
            vec![Interface {
                name: "eth0".into(),
                addresses: vec!["10.232.0.2/24".into()]
            }]
        );
    }

    #[test]
    fn kernel_routes_are_left_out() {
        let json = r#"[{"dst":"default","gateway":"10.232.0.1","dev":"eth0","flags":[]},
            {"dst":"10.232.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.232.0.2","flags":[]}]"#;
        assert_eq!(
            parse_routes(json).unwrap(),
            vec![Route {
                dst: "default".into(),
                gateway: Some("10.232.0.1".into()),
                dev: Some("eth0".into())
            }]
        );
        assert!(parse_routes("not json").is_err());
    }
}
