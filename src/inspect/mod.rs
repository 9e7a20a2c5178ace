//! Inspection: everything ferry refuses to move, found before anything is
//! frozen (the process is ours to trace and shares the expected
//! namespaces; its mappings, fds, seccomp state and SysV segments can be
//! carried). The dry run lists every refusal; checkpoint stops at the
//! first, and inspects again once the tree is frozen. Nothing here
//! changes the inspected processes.

mod error;
pub mod fd_class;
pub mod fds;
pub mod locks;
pub mod mappings;
pub mod namespaces;
pub mod netns;
pub mod notify;
pub mod pidfd;
pub mod pidns;
pub mod sched;
pub mod seccomp;
pub mod sockets;
pub mod stdio;
pub mod sysvshm;
mod tty;

pub use error::InspectError;
pub use fd_class::{ClassifiedFd, FdClass};
pub use namespaces::{is_pid_namespace_init, Namespaces, TreeNetns};
pub use stdio::StdioPolicy;

use crate::image::Vma;
use crate::proc;

/// What inspecting a live tree found, before anything is frozen.
#[derive(Debug)]
pub struct TreeInspection {
    /// The live processes of the tree, parents before children.
    pub members: Vec<i32>,
    /// The mappings of every process that could be read, those ferry
    /// refuses left out.
    pub layouts: Vec<(i32, Vec<Vma>)>,
    /// Every resource of the tree ferry cannot carry (process, fd or
    /// mapping, and why), in the order checkpoint meets them: checkpoint
    /// refuses with the first, the dry run lists them all.
    pub blockers: Vec<InspectError>,
    /// Every TCP connection the tree holds: carried with TCP_REPAIR, and
    /// the flows a network lock holds still from the freeze until the
    /// restored sockets are live.
    pub connections: Vec<crate::image::TcpFlow>,
}

/// Runs every check checkpoint makes before freezing on each process of
/// the tree rooted at `pid` and collects the refusals instead of stopping
/// at the first. Errors are returned only when the tree itself cannot be
/// read (the root is gone, /proc of the root fails).
pub fn inspect_tree(pid: i32) -> Result<TreeInspection, InspectError> {
    let expected = namespaces::expected_namespaces(pid, false, false)?;
    inspect_tree_in(pid, &expected, StdioPolicy::NotContainer)
}

/// [`inspect_tree`] for the tree of a container's init `pid`, in the
/// container's namespaces, its stdio held outside treated as `stdio` says
/// (as a container's checkpoint inspects it).
pub fn inspect_container_tree(
    pid: i32,
    stdio: StdioPolicy,
) -> Result<TreeInspection, InspectError> {
    let expected = namespaces::expected_namespaces(pid, true, false)?;
    inspect_tree_in(pid, &expected, stdio)
}

/// [`inspect_tree`] for a tree whose processes must be in the `expected`
/// namespaces, a container's stdio held outside it treated as `stdio`
/// says.
pub fn inspect_tree_in(
    pid: i32,
    expected: &Namespaces,
    stdio: StdioPolicy,
) -> Result<TreeInspection, InspectError> {
    let members = collect_tree(pid)?;
    let mut classified = Vec::with_capacity(members.len());
    let mut layouts = Vec::with_capacity(members.len());
    let mut blockers = Vec::new();
    for &member in &members {
        let mut found = Vec::new();
        let inspected = (|| {
            match preflight(member, expected) {
                Err(
                    e @ (InspectError::AlreadyTraced { .. } | InspectError::OtherNamespace { .. }),
                ) => found.push(e),
                other => other?,
            }
            let (vmas, refused) =
                mappings::classify_each_mapping(member, &proc::read_maps(member)?);
            found.extend(refused);
            let (fds, refused) = fds::classify_each_fd(member)?;
            found.extend(refused);
            if let Err(e) = mappings::check_memfd_mappings(member, &vmas, &fds) {
                found.push(e);
            }
            match sched::check_sched(member) {
                Err(e @ InspectError::Scheduling { .. }) => found.push(e),
                other => other?,
            }
            Ok::<_, InspectError>((vmas, fds))
        })();
        match inspected {
            Ok((vmas, fds)) => {
                blockers.append(&mut found);
                classified.push((member, fds));
                layouts.push((member, vmas));
            }
            // A child that ended meanwhile (a shell's short-lived command)
            // has nothing left to refuse; one that changed under the
            // reading of /proc is inspected again once frozen.
            Err(_) if member != pid && gone(member) => {}
            Err(InspectError::Proc(err)) if member != pid => {
                tracing::debug!(pid = member, %err, "early inspection incomplete");
                blockers.append(&mut found);
            }
            Err(e) => return Err(e),
        }
    }
    // A container's stdio pipes are set apart before the pipes are
    // checked: their other end is meant to be held outside.
    let checked = stdio::mark_external_stdio(&mut classified, stdio).and_then(|found| {
        blockers.extend(found);
        fds::tree_fd_blockers(&classified)
    });
    match checked {
        // A process changed under the check (ended, closed an fd): the
        // check done with the tree frozen decides.
        Err(InspectError::Proc(err)) => {
            tracing::debug!(pid, %err, "early fd check incomplete");
        }
        Err(e) => return Err(e),
        Ok(found) => blockers.extend(found),
    }
    let shm_layouts: Vec<(i32, &[Vma])> = layouts.iter().map(|(p, v)| (*p, v.as_slice())).collect();
    blockers.extend(sysvshm::tree_segments(pid, &shm_layouts)?.1);
    Ok(TreeInspection {
        members,
        layouts,
        blockers,
        connections: sockets::tcp_connections(&classified),
    })
}

/// The TCP connections the fds of processes `pids` hold now, as
/// [`sockets::tcp_connections`] lists them: for a network lock of a
/// running tree (what a refused fd holds does not matter here: the
/// checkpoint refuses it). A process that ended meanwhile holds none.
pub fn tree_flows(pids: &[i32]) -> Result<Vec<crate::image::TcpFlow>, InspectError> {
    let mut classified = Vec::with_capacity(pids.len());
    for &pid in pids {
        match fds::classify_each_fd(pid) {
            Ok((fds, _refused)) => classified.push((pid, fds)),
            Err(_) if gone(pid) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sockets::tcp_connections(&classified))
}

/// Whether `pid` has ended (gone, or a zombie).
pub fn gone(pid: i32) -> bool {
    proc::read_status(pid).map_or(true, |st| matches!(st.state, 'Z' | 'X' | 'x'))
}

/// The live processes of the tree rooted at `root`, parents before
/// children (zombies are left out: they hold nothing to refuse). A child
/// that exits while the tree is listed is skipped.
pub fn collect_tree(root: i32) -> Result<Vec<i32>, InspectError> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if pid != root {
            match proc::read_status(pid) {
                Ok(st) if st.state != 'Z' && st.state != 'X' => {}
                _ => continue,
            }
        }
        out.push(pid);
        let children = match proc::children(pid) {
            Ok(c) => c,
            Err(_) if pid != root => continue,
            Err(e) => return Err(e.into()),
        };
        // Reversed so that children come out of the stack in order.
        stack.extend(children.into_iter().rev());
    }
    Ok(out)
}

/// Checks that `pid` is a live process that ferry may trace, in the
/// `expected` namespaces.
pub fn preflight(pid: i32, expected: &Namespaces) -> Result<(), InspectError> {
    if pid == std::process::id() as i32 {
        return Err(InspectError::OwnProcess { pid });
    }
    let status = proc::read_status(pid).map_err(|_| InspectError::NoSuchProcess { pid })?;
    if status.tgid != pid {
        return Err(InspectError::NotAProcess {
            pid,
            tgid: status.tgid,
        });
    }
    if matches!(status.state, 'Z' | 'X' | 'x') {
        return Err(InspectError::NotAlive {
            pid,
            state: status.state,
        });
    }
    if status.tracer_pid != 0 {
        return Err(InspectError::AlreadyTraced {
            pid,
            tracer: status.tracer_pid,
        });
    }
    namespaces::check_namespaces(pid, expected)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tree_with_a_connection_lists_it_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let _shared = client.try_clone().unwrap();
        let flows = super::tree_flows(&[std::process::id() as i32]).unwrap();
        let ours = crate::image::TcpFlow {
            local: client.local_addr().unwrap(),
            remote: client.peer_addr().unwrap(),
        };
        // Held by two fds, listed once.
        assert_eq!(flows.iter().filter(|f| **f == ours).count(), 1, "{flows:?}");
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
