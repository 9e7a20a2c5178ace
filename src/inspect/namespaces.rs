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
}

/// The namespaces of the tree rooted at `root`: migrate-agent's, or for a
/// container the root's (refusing a user namespace of its own: its IDs
/// would not be rebuilt in the destination's). A container's own network
/// namespace is the destination runtime's and network hook's to rebuild;
/// its sockets are examined and recreated in it.
pub fn expected_namespaces(root: i32, in_container: bool) -> Result<Namespaces, InspectError> {
    let ours = proc::namespaces("self")?;
    if !in_container {
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
        return Ok(Namespaces {
            kinds,
            reference,
            own_pid,
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
