//! A container's external stdio: the pipes its runtime gave its init as
//! fds 0, 1 and 2, whose other end a process outside the tree holds
//! (containerd's shim, conmon, the shell that ran `runc run`). Such a pipe
//! cannot be carried (its other end stays behind), but it need not be:
//! the restoring runtime gives the new init stdio of its own, and every
//! fd on the old pipe is restored on the new one, as runc's
//! descriptors.json lets CRIU do.

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use super::fds::ends_held;
use crate::proc;

/// What a checkpoint does with a container init's stdio pipes whose other
/// end is held outside the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdioPolicy {
    /// Not a container: such a pipe is refused as any pipe held outside.
    #[default]
    NotContainer,
    /// Recorded as the container's external stdio (a checkpoint whose
    /// restore runs `runc create` with the restorer's own stdio).
    Record,
    /// Refused as the container's stdio: a live migration between agents
    /// has nobody on the destination to hold the other end.
    Refuse,
}

impl StdioPolicy {
    /// How a live migration treats the stdio of a tree's root held
    /// outside it: a Docker container's init gets a shim's stdio again on
    /// the destination (ferry-runc's handoff), so it is recorded; a runc
    /// container's gets none there, so it is refused; a plain tree's is
    /// any pipe.
    pub fn migrating(container: bool, docker: bool) -> Self {
        match (container, docker) {
            (_, true) => StdioPolicy::Record,
            (true, false) => StdioPolicy::Refuse,
            (false, false) => StdioPolicy::NotContainer,
        }
    }
}

/// The names of the stdio slots, for messages.
const SLOT_NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];

/// Finds the stdio pipes of the tree's root (`tree[0]`, a container's
/// init) whose other end only a process outside the tree holds and, as
/// `policy` says, reclassifies every fd of the tree on such a pipe as
/// [`FdClass::ExternalStdio`] (`Record`), or returns a refusal for each
/// (`Refuse`; the fds are reclassified too, so that they are not refused
/// a second time as pipes). Every other pipe is left to the usual checks.
pub fn mark_external_stdio(
    tree: &mut [(i32, Vec<ClassifiedFd>)],
    policy: StdioPolicy,
) -> Result<Vec<InspectError>, InspectError> {
    let mut refused = Vec::new();
    if policy == StdioPolicy::NotContainer || tree.is_empty() {
        return Ok(refused);
    }
    let pids: Vec<i32> = tree.iter().map(|(p, _)| *p).collect();
    let root = pids[0];
    for slot in 0..3u8 {
        let Some(c) = tree[0].1.iter().find(|c| c.fd == i32::from(slot)) else {
            continue;
        };
        let FdClass::Pipe { inode } = c.class else {
            continue;
        };
        let (reads, writes) = ends_held(tree, c.class)?;
        if reads && writes || proc::pipe_holder_outside(inode, &pids)?.is_none() {
            continue;
        }
        if policy == StdioPolicy::Refuse {
            refused.push(InspectError::ContainerStdio {
                pid: root,
                fd: c.fd,
                end: if reads { "write" } else { "read" },
                target: c.target.clone(),
                stream: SLOT_NAMES[usize::from(slot)],
            });
        }
        for (_, fds) in tree.iter_mut() {
            for o in fds.iter_mut() {
                if o.class == (FdClass::Pipe { inode }) {
                    o.class = FdClass::ExternalStdio { slot, inode };
                }
            }
        }
    }
    Ok(refused)
}
