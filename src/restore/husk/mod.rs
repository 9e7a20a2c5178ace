//! Rebuilding a process tree inside husks by injected system calls. The
//! root husk is spawned by migrate-agent; every other process is cloned
//! (clone3 with set_tid) from its parent's husk, so that the restored
//! parent is the real parent of its restored children.
//!
//! This file holds only the order of the steps (as CRIU's cr-restore.c
//! does): [`rebuild`] and [`rebuild_into`] build the tree, then
//! `Husk::finish` restores the rest of each process. The [`process::Husk`]
//! itself and its injected-call helpers live in process.rs; each kernel
//! resource has its own file here, an `impl Husk` block named as its twin
//! in src/dump/: tree, mm, memory, files, anon, notify, sockets, sysvshm,
//! signals, threads, timers, creds, seccomp, rlimits, sched.

mod anon;
mod cgroups;
mod creds;
mod files;
mod locks;
mod memory;
mod mm;
mod netlink;
mod netns;
mod notify;
mod packet;
mod pidfd;
mod process;
mod reopen;
mod rlimits;
mod sched;
mod seccomp;
mod signals;
mod sockets;
mod sysvshm;
mod tcp;
mod tcp_peer;
mod threads;
mod timers;
mod tree;
mod tty;
mod udp;
mod unix;
mod warm;

pub use cgroups::{CgroupMode, Placement};
pub use netns::NetnsTarget;

use crate::image::{Checkpoint, ImageReader, PageData, ProcessImage, ZombieImage};
use crate::kernel;
use crate::restore::channel::FdChannel;
use crate::restore::error::RestoreError;
use crate::restore::hold::HeldTree;
use crate::restore::lazy::{LazyPages, LazyProcess};
use crate::restore::warm::WarmHusk;
use files::TreeFds;
use memory::NOTHING_REMOTE;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use process::Husk;
use tree::same_mount_namespace;

/// The pages of a restore: every page of the image delivered (written,
/// left missing as zero, or already in place), and of those the pages of
/// the mappings a warm restore moved in from its staging.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageCounts {
    /// Pages of the image.
    pub restored: u64,
    /// Pages of mappings moved in from the staging, not installed.
    pub moved: u64,
}

/// Restores every process of the image's tree, each in a husk, into the
/// cgroups `placement` prepared and the network namespace `netns` says,
/// and lets them run, or holds them frozen in the transient freezer cgroup
/// `hold` names. The root's husk is cloned from `warm`'s staging husk when
/// given (spawned in this network namespace, which `netns` must then be),
/// its staged pages moved in; else it is spawned now. Returns the number
/// of pages written and the held tree. On failure every husk is killed.
pub fn rebuild(
    reader: &ImageReader,
    lazy: Option<&LazyPages>,
    placement: &Placement,
    netns: &NetnsTarget<'_>,
    (hold, warm): (Option<&str>, Option<WarmHusk>),
) -> Result<(PageCounts, Option<HeldTree>), RestoreError> {
    let ck = reader.checkpoint();
    let root = ck.root().ok_or_else(|| RestoreError::Unsupported {
        pid: 0,
        why: "the image holds no process".into(),
    })?;
    if let Some(warm) = warm {
        let root_husk = from_staging(root, ck, warm)?;
        return run(reader, root_husk, lazy, placement, hold);
    }
    let spawned = netns.spawn(|flags| kernel::spawn_detached_husk(root.pid, flags));
    let spawned = spawned.map_err(|errno| match errno {
        Errno::EEXIST => RestoreError::PidTaken {
            pid: root.pid,
            holder: "another process".into(),
        },
        errno => RestoreError::Spawn {
            pid: root.pid,
            errno,
        },
    })?;
    let husk_pid = spawned.pid;
    // Before any socket of the tree is created in it.
    if let Err(e) = netns.configure(root.pid, husk_pid) {
        let _ = kill(husk_pid, Signal::SIGKILL);
        return Err(e);
    }
    let root_husk = match Husk::seize(root, ck, spawned) {
        Ok(h) => h,
        Err(e) => {
            let _ = kill(husk_pid, Signal::SIGKILL);
            return Err(e);
        }
    };
    run(reader, root_husk, lazy, placement, hold)
}

/// The root's husk, cloned with the root's PID from the staging husk of
/// `warm` with CLONE_VM (it takes over the address space and the pages
/// staged in it; the staging husk is ended).
fn from_staging<'a>(
    root: &'a ProcessImage,
    ck: &'a Checkpoint,
    warm: WarmHusk,
) -> Result<Husk<'a>, RestoreError> {
    let (spawned, staging) = warm.into_parts();
    let staging_pid = spawned.pid;
    let mut stager = match Husk::seize(root, ck, spawned) {
        Ok(h) => h,
        Err(e) => {
            let _ = kill(staging_pid, Signal::SIGKILL);
            return Err(e);
        }
    };
    let cloned = stager
        .map_helper()
        .and_then(|()| stager.clone_child(root.pid, libc::CLONE_VM as u64));
    let helper = stager.helper;
    stager.abort();
    let husk = Husk::adopt(root, ck, cloned?, helper, None);
    Ok(Husk { staging, ..husk })
}

/// Restores the image's tree into the existing process `husk` (a created
/// container's init, waiting in its namespaces and cgroup): its extra
/// threads are ended and the root is rebuilt in it; files are handed in
/// over `channel`; `lazy` as for [`rebuild`]. The tasks stay in the
/// husk's cgroups (a container's, which its runtime made), but in the v1
/// freezer hierarchy, where `hold` moves them into that transient cgroup,
/// frozen. On failure the husk is killed.
pub fn rebuild_into(
    reader: &ImageReader,
    husk: Pid,
    channel: &FdChannel,
    lazy: Option<&LazyPages>,
    hold: Option<&str>,
) -> Result<(PageCounts, Option<HeldTree>), RestoreError> {
    let ck = reader.checkpoint();
    let root = ck.root().ok_or_else(|| RestoreError::Unsupported {
        pid: 0,
        why: "the image holds no process".into(),
    })?;
    let root_husk = match Husk::take(root, ck, husk, channel) {
        Ok(h) => h,
        Err(e) => {
            let _ = kill(husk, Signal::SIGKILL);
            return Err(e);
        }
    };
    run(reader, root_husk, lazy, &Placement::default(), hold)
}

/// Builds the tree from its root's husk and lets it run (or, with
/// `hold`, freezes it in that transient freezer cgroup before ptrace lets
/// it go); kills every husk on failure.
fn run<'a>(
    reader: &'a ImageReader,
    root_husk: Husk<'a>,
    lazy: Option<&LazyPages>,
    placement: &Placement,
    hold: Option<&str>,
) -> Result<(PageCounts, Option<HeldTree>), RestoreError> {
    // SysV segments live in the root husk's IPC namespace, before any
    // husk attaches them.
    let segments =
        match sysvshm::Segments::create(root_husk.pid.as_raw(), &reader.checkpoint().sysv_shm) {
            Ok(s) => s,
            Err(e) => {
                root_husk.abort();
                return Err(e);
            }
        };
    let mut husks = vec![root_husk];
    let built = build_tree(reader, &mut husks, lazy, placement).and_then(|(pages, connections)| {
        segments.mark_removed()?;
        // The whole tree exists: no peer of its connections is answered
        // by a reset from a missing socket any more. Released before the
        // connections leave repair mode (CRIU does the same), so that
        // their window probes, and the resets that answer the probes of
        // an end whose peer had been reset, are not dropped by the lock.
        release_network_lock(reader.checkpoint(), husks[0].pid.as_raw());
        connections.go_live(reader.checkpoint())?;
        // Frozen while still traced: a tracer that dies from here on
        // leaves the tree frozen, not running.
        let held = match hold {
            Some(name) => {
                let pids: Vec<i32> = husks.iter().map(|h| h.pid.as_raw()).collect();
                let held = HeldTree::freeze(name, &pids).map_err(|source| RestoreError::Hold {
                    name: name.to_string(),
                    source,
                })?;
                Some(held)
            }
            None => None,
        };
        tracing::trace!("the connections are live and the tree is held");
        // Children first, so that a parent finds its children running.
        while let Some(h) = husks.pop() {
            if let Err(e) = h.release() {
                if let Some(held) = &held {
                    held.kill();
                }
                return Err(e);
            }
        }
        Ok((pages, held))
    });
    match built {
        Ok(done) => Ok(done),
        Err(e) => {
            for h in husks.into_iter().rev() {
                h.abort();
            }
            segments.remove_all();
            Err(e)
        }
    }
}

/// Releases the network lock a local checkpoint left engaged
/// ([`Checkpoint::network_lock`](crate::image::Checkpoint::network_lock))
/// now that the restored tree (root `root`) exists: its connections answer
/// again, from the restored sockets. The lock is in the tree's network
/// namespace (the host's, for a tree that shares it; the one a restore
/// joined, for a tree whose namespace was left outside; a container's
/// own went with the checkpointed container). A failure is logged: the
/// restore goes on.
fn release_network_lock(ck: &crate::image::Checkpoint, root: i32) {
    let Some(table) = &ck.network_lock else {
        return;
    };
    let released = crate::netlock::NetNs::of_process(root)
        .and_then(|netns| crate::netlock::release_table(&netns, table));
    if let Err(err) = released {
        tracing::error!(table, %err, "releasing the checkpoint's network lock failed");
    }
}

/// Builds every process of the tree in `husks` (which holds the root's
/// husk; the others are added as they are cloned): first each address
/// space and the children (parents before children), then all the pages
/// in one pass over the pages file, then the rest of each process.
/// Returns the pages restored and the TCP connections, still in repair
/// mode.
fn build_tree<'a>(
    reader: &'a ImageReader,
    husks: &mut Vec<Husk<'a>>,
    lazy: Option<&'a LazyPages>,
    placement: &Placement,
) -> Result<(PageCounts, tcp::Pending), RestoreError> {
    let ck = reader.checkpoint();
    let index_of = |husks: &[Husk<'_>], pid: i32| {
        husks
            .iter()
            .position(|h| h.image.pid == pid)
            .ok_or_else(|| RestoreError::Unsupported {
                pid,
                why: format!(
                    "the image's process {pid} comes before its parent or its parent is not in the image"
                ),
            })
    };
    // Before the root husk's own fds are closed: the container's new
    // stdio, which its external stdio is restored on.
    let stdio = files::husk_stdio(ck, husks[0].pid)?;
    let mut fillers = Vec::with_capacity(ck.processes.len());
    for p in &ck.processes {
        let i = index_of(husks, p.pid)?;
        // Before it clones its children: they start in its cgroups.
        placement.join_process(p.pid)?;
        if lazy.is_none() {
            husks[i].plan_inheritance();
        }
        husks[i].map_helper()?;
        husks[i].clear_staging()?;
        husks[i].drop_husk_state()?;
        if i == 0 {
            // Every other process did as soon as it was cloned.
            husks[i].join_session()?;
        }
        // Before the premapped mappings, which may lie where the vDSO is.
        husks[i].move_vdso()?;
        // The children are cloned with them, their pages in.
        husks[i].premap(reader)?;
        for c in ck
            .processes
            .iter()
            .filter(|c| c.ppid == p.pid && c.pid != p.pid)
        {
            // Its fd table and fs information are empty in the husk now
            // (drop_husk_state) and filled when the parent is finished.
            let shared = [
                (c.shares_files_with_parent, libc::CLONE_FILES),
                (c.shares_fs_with_parent, libc::CLONE_FS),
            ];
            let flags = shared
                .iter()
                .filter(|(yes, _)| *yes)
                .fold(0, |f, (_, flag)| f | *flag as u64);
            let child = husks[i].clone_child(c.pid, flags)?;
            let helper = husks[i].helper;
            let channel = husks[i].channel;
            let mut child = Husk::adopt(c, ck, child, helper, channel);
            // At once, so that a zombie sibling finds the child's group.
            child.join_session()?;
            husks.push(child);
        }
        let zombies: Vec<&ZombieImage> = ck.zombies.iter().filter(|z| z.ppid == p.pid).collect();
        for z in &zombies {
            husks[i].create_zombie(z)?;
        }
        if !zombies.is_empty() {
            husks[i].drain_sigchld()?;
        }
        let remote = lazy.map(|l| l.remote.get(&p.pid).unwrap_or(&NOTHING_REMOTE));
        let filled = husks[i].map_vmas(reader, remote)?;
        // The /proc a husk opens map_files in: ours (when it shares our
        // mount namespace) names processes by our PIDs, a container's by
        // the image's.
        let our_proc = same_mount_namespace(husks[i].pid)?;
        let proc_pids: Vec<(i32, i32)> = husks
            .iter()
            .map(|h| {
                let shown = if our_proc {
                    h.pid.as_raw()
                } else {
                    h.image.pid
                };
                (h.image.pid, shown)
            })
            .collect();
        husks[i].map_shared_anonymous(&proc_pids, &filled)?;
        fillers.push(husks[i].prepare_fill(&filled, remote)?);
        husks[i].filled = filled;
        tracing::trace!(
            pid = p.pid,
            "laid out the address space and cloned the children"
        );
    }
    if let Some(z) = ck
        .zombies
        .iter()
        .find(|z| !ck.processes.iter().any(|p| p.pid == z.ppid))
    {
        return Err(RestoreError::Unsupported {
            pid: z.pid,
            why: format!("its parent {} is not a process of the image", z.ppid),
        });
    }
    let put = |pid: i32, vaddr: u64, data: PageData<'_>| -> Result<(), RestoreError> {
        let filler = fillers.iter().find(|f| f.image_pid == pid).ok_or_else(|| {
            RestoreError::Unsupported {
                pid,
                why: format!(
                    "the image holds pages at {vaddr:#x} of a process it does not describe"
                ),
            }
        })?;
        filler.put(vaddr, data)
    };
    // Warm: the image is a migration's, just written by this agent, and
    // most of its pages were moved in from the staging instead.
    let pages = if husks.iter().any(|h| h.warm.contains(&true)) {
        reader.read_pages_unverified(put)?
    } else {
        reader.read_pages(put)?
    };
    tracing::trace!(pages, "filled the pages");
    // Closing the userfaultfds (the husks hold no copy) ends every
    // registration; a lazy restore hands them to the fault server instead,
    // which must run while the rest is restored.
    for filler in fillers {
        if let Some(lazy) = lazy {
            let process = LazyProcess {
                pid: filler.image_pid,
                uffd: filler.uffd,
            };
            lazy.ready
                .send(process)
                .map_err(|_| RestoreError::Unsupported {
                    pid: filler.image_pid,
                    why: "the fault server of the lazy restore stopped".into(),
                })?;
        }
    }
    // Sockets belong to the namespace they are created in: the root
    // husk's (a container's own network namespace, when it has one).
    let root = husks[0].pid;
    let mut tree_fds =
        kernel::in_net_namespace(root.as_raw(), || TreeFds::create(ck, root, &stdio)).map_err(
            |errno| RestoreError::Injected {
                pid: husks[0].image.pid,
                call: format!("joining the network namespace of process {root}"),
                errno,
            },
        )??;
    tracing::trace!("made the tree's files");
    for p in &ck.processes {
        let i = index_of(husks, p.pid)?;
        husks[i].finish(&mut tree_fds)?;
        tracing::trace!(pid = p.pid, "finished the process");
    }
    placement.join_threads()?;
    let pages = PageCounts {
        restored: pages,
        moved: husks.iter().map(|h| h.moved_pages()).sum(),
    };
    Ok((pages, std::mem::take(&mut tree_fds.connections)))
}

impl<'a> Husk<'a> {
    /// Everything after the pages: the rest of the process's state, up to
    /// its final registers.
    pub(super) fn finish(&mut self, tree_fds: &mut TreeFds) -> Result<(), RestoreError> {
        let filled = std::mem::take(&mut self.filled);
        self.finish_vmas(&filled)?;
        self.restore_mm()?;
        self.restore_membarrier()?;
        self.restore_fs_state()?;
        // A table shared with the parent was filled when it was finished.
        if !self.image.shares_files_with_parent {
            self.restore_fds(tree_fds)?;
        }
        self.restore_file_locks()?;
        self.map_fd_vmas()?;
        self.restore_root()?;
        self.lock_vmas()?;
        self.restore_sigactions()?;
        self.restore_threads()?;
        self.open_thread_pidfds()?;
        self.queue_pending_signals()?;
        self.restore_timers()?;
        self.join_group()?;
        self.restore_child_subreaper()?;
        self.restore_rlimits()?;
        self.restore_sched()?;
        self.restore_credentials()?;
        self.restore_file_owners()?;
        self.restore_pdeath_signals()?;
        self.restore_seccomp()?;
        self.restore_capabilities()?;
        self.restore_dumpable()?;
        self.restore_seccomp_strict()?;
        self.load_final_state()?;
        Ok(())
    }
}
