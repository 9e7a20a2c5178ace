//! Namespaces: the ones every process of a tree must share (migrate-agent's,
//! or a container's init's), and the PID namespace whose init a tree's root
//! may be.

use super::error::InspectError;
use super::pidns::PidNamespace;
use crate::proc;

/// The namespaces every process of a tree must share: (kind, /proc link
/// target) pairs, and whose they are, for messages.
pub struct Namespaces {
    kinds: Vec<(String, String)>,
    reference: String,
    /// The tree's root is the init of a PID namespace of its own, outside
    /// any container (`unshare --pid --fork`).
    pub own_pid: bool,
    /// Where the network namespace of a plain tree stands.
    pub netns: TreeNetns,
}

/// The network namespace of a plain tree (a container's is its
/// runtime's: [`TreeNetns::Shared`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeNetns {
    /// migrate-agent's (or a container's).
    Shared,
    /// One of the tree's own, holding only its loopback: carried.
    Own,
    /// One of the tree's own that the checkpoint leaves outside
    /// (`--external-netns`): locked whole until the restore joins it.
    External,
}

/// The namespaces of the tree rooted at `root`: migrate-agent's, or for a
/// container the root's (refusing a user namespace of its own: its IDs
/// would not be rebuilt in the destination's). A container's own network
/// namespace is the destination runtime's and network hook's to rebuild;
/// its sockets are examined and recreated in it.
///
/// A plain tree whose root is in a network namespace other than
/// migrate-agent's has it as its own, shared by all its processes:
/// carried when it holds only lo (refused otherwise, naming the other
/// interfaces), or left outside with `external_netns`.
pub fn expected_namespaces(
    root: i32,
    in_container: bool,
    external_netns: bool,
) -> Result<Namespaces, InspectError> {
    let mut ours = proc::namespaces("self")?;
    let mut netns = TreeNetns::Shared;
    if !in_container {
        let root_net = proc::namespaces(&root.to_string())
            .map_err(|_| InspectError::NoSuchProcess { pid: root })?
            .into_iter()
            .find(|(k, _)| k == "net");
        let agent_net = ours.iter_mut().find(|(k, _)| k == "net");
        match (root_net, agent_net) {
            (Some(theirs), Some(agent)) if theirs.1 != agent.1 => {
                if !external_netns {
                    super::netns::check_loopback_only(root, &theirs.1)?;
                }
                netns = if external_netns {
                    TreeNetns::External
                } else {
                    TreeNetns::Own
                };
                *agent = theirs;
            }
            (_, Some(agent)) if external_netns => {
                return Err(InspectError::NotExternalNetns {
                    pid: root,
                    target: agent.1.clone(),
                })
            }
            _ => {}
        }
        // The init of a PID namespace of its own brings its namespace:
        // its tree may live there (and only there).
        let own_pid = is_pid_namespace_init(root);
        let (kinds, reference) = match pid_namespace(&root.to_string()).filter(|_| own_pid) {
            Some(pid) => (
                ours.into_iter()
                    .map(|(k, t)| if k == "pid" { pid.clone() } else { (k, t) })
                    .collect(),
                format!("migrate-agent's (and the PID namespace of its init {root})"),
            ),
            None => (ours, "migrate-agent".into()),
        };
        let reference = match netns {
            TreeNetns::Shared => reference,
            _ => format!("{reference} (with the tree's own network namespace)"),
        };
        return Ok(Namespaces {
            kinds,
            reference,
            own_pid,
            netns,
        });
    }
    let theirs = proc::namespaces(&root.to_string())
        .map_err(|_| InspectError::NoSuchProcess { pid: root })?;
    for (kind, target) in &theirs {
        let same = ours.iter().any(|(k, t)| k == kind && t == target);
        if !same && kind == "user" {
            return Err(InspectError::ContainerNamespace {
                pid: root,
                kind: kind.clone(),
                target: target.clone(),
            });
        }
    }
    Ok(Namespaces {
        kinds: theirs,
        reference: format!("the container's init {root}"),
        own_pid: false,
        netns,
    })
}

/// The (kind, link target) of the PID namespace of process `pid`.
fn pid_namespace(pid: &str) -> Option<(String, String)> {
    proc::namespaces(pid)
        .ok()
        .and_then(|n| n.into_iter().find(|(k, _)| k == "pid"))
}

/// Whether process `pid` is the init (PID 1) of a PID namespace other
/// than migrate-agent's: its tree is checkpointed with that namespace.
pub fn is_pid_namespace_init(pid: i32) -> bool {
    let theirs = pid_namespace(&pid.to_string());
    theirs.is_some()
        && theirs != pid_namespace("self")
        && PidNamespace::of(pid).is_ok_and(|ns| ns.ns(pid) == 1)
}

/// Refuses a process that lives in other namespaces than `expected`
/// (except the cgroup namespace, which only changes how /proc shows
/// cgroups): paths, PIDs and sockets would be read and restored in the
/// wrong one. Returns the process's namespaces, for the image.
pub fn check_namespaces(
    pid: i32,
    expected: &Namespaces,
) -> Result<Vec<(String, String)>, InspectError> {
    let theirs = proc::namespaces(&pid.to_string())?;
    for (kind, target) in &theirs {
        let same = expected.kinds.iter().any(|(k, t)| k == kind && t == target);
        if !same && kind != "cgroup" {
            return Err(InspectError::OtherNamespace {
                pid,
                kind: kind.clone(),
                target: target.clone(),
                reference: expected.reference.clone(),
            });
        }
    }
    Ok(theirs)
}
