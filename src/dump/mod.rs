//! Checkpoint: reads a live process tree (every process, all their
//! threads) into the image model and writes the image directory. Every
//! process is inspected first and the tree refused, untouched, when one
//! holds something ferry cannot carry; the processes are then stopped with
//! ptrace (parents before their children, so no new child escapes), dumped,
//! and either all killed or all resumed exactly as they were.

mod anon;
mod creds;
mod error;
pub mod files;
mod freeze;
mod inject;
pub mod inspect;
pub mod memory;
mod mm;
pub mod notify;
pub mod pidns;
pub mod precopy;
mod rlimits;
mod seccomp;
mod signals;
pub mod sink;
pub mod sockets;
pub mod sysvshm;
mod threads;
mod timers;
mod tree;

pub use error::CheckpointError;

use crate::image::{Checkpoint, HostInfo, ImageWriter, ProcessImage, Vma};
use crate::kernel;
use crate::proc;
use freeze::{Frozen, FrozenTree};
use inject::Injector;
use mm::SharedObject;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// What checkpoint does with the process once the image is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointOptions {
    /// Resume the process instead of killing it.
    pub leave_running: bool,
    /// The tree is a container's: its processes may share PID, mount, UTS,
    /// IPC and cgroup namespaces of their own (the root's), and the image
    /// names them by their PIDs in that PID namespace.
    pub in_container: bool,
}

/// Statistics of one checkpoint (the figures of CRIU's --print-stats).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CheckpointStats {
    /// The checkpointed PID (the root of the tree).
    pub pid: i32,
    /// Live processes checkpointed (the root and its descendants).
    pub processes: u32,
    /// Zombie children checkpointed.
    pub zombies: u32,
    /// Milliseconds from stopping the first thread to killing or resuming.
    pub frozen_ms: f64,
    /// Milliseconds from the start of the dump to the committed image.
    pub dump_ms: f64,
    /// Pages examined in the dumped mappings, over both passes.
    pub pages_scanned: u64,
    /// Pages written to the image (while running and while frozen).
    pub pages_written: u64,
    /// Pages copied while the process still ran (pre-copy).
    pub precopy_pages: u64,
    /// Pages copied while the process was frozen.
    pub frozen_pages: u64,
    /// Rounds of copying while the process ran (0: no pre-copy).
    pub precopy_rounds: u32,
    /// Present pages that were all-zero and not stored.
    pub zero_pages: u64,
    /// Bytes of the image directory.
    pub image_bytes: u64,
}

/// Checkpoints process `pid` into the image directory `dir`.
pub fn checkpoint(
    pid: i32,
    dir: &Path,
    opts: CheckpointOptions,
) -> Result<CheckpointStats, CheckpointError> {
    // The directory is checked before the process is touched.
    let mut sink = sink::ImageSink::new(ImageWriter::create(dir)?);
    let stats = checkpoint_into(pid, &mut sink, opts)?;
    crate::image::sync_image(dir)?;
    Ok(stats)
}

/// Checkpoints the process tree rooted at `pid` into `sink`: every
/// process is inspected and refused before any is touched, pre-copy rounds
/// run for each process while the tree runs (as many as the sink asks for),
/// then the rest is copied with the whole tree frozen. The processes are
/// killed (or resumed, with `leave_running`) only once the sink has
/// committed the checkpoint; on any error they are all resumed.
pub fn checkpoint_into(
    pid: i32,
    sink: &mut dyn sink::CheckpointSink,
    opts: CheckpointOptions,
) -> Result<CheckpointStats, CheckpointError> {
    let started = Instant::now();
    let expected = expected_namespaces(pid, opts.in_container)?;
    preflight(pid, &expected)?;
    let mut translating;
    let sink: &mut dyn sink::CheckpointSink = if opts.in_container || expected.own_pid {
        translating = pidns::Translating::new(pid, sink)?;
        &mut translating
    } else {
        sink
    };
    // Refuse what cannot be carried, in any process, before touching one.
    let inspection = inspect_tree_in(pid, &expected)?;
    if let Some(blocker) = inspection.blockers.into_iter().next() {
        return Err(blocker);
    }
    let layouts = inspection.layouts;

    let mut precopies = Precopies::default();
    let (mut precopy_pages, mut precopy_scanned, mut precopy_rounds) = (0, 0, 0);
    let precopy = sink.memory_mode() != sink::MemoryMode::Lazy { precopy: false };
    for (member, vmas) in layouts.iter().filter(|_| precopy) {
        let member = *member;
        let copied = precopy::start_tracking(member, vmas)
            .and_then(|tracker| precopy::copy_while_running(member, vmas, tracker, sink));
        match copied {
            Ok(p) => {
                precopy_pages += p.stats.pages_written;
                precopy_scanned += p.stats.pages_scanned;
                precopy_rounds = precopy_rounds.max(p.rounds);
                precopies.done.insert(member, p);
            }
            // A process may change under the copy (a shell's child
            // exec'ing): its memory is then copied while frozen, over
            // whatever part of a copy reached the sink.
            Err(err) => {
                tracing::info!(pid = member, %err, "no pre-copy: all memory is copied while the process is frozen");
                precopies.failed.push(member);
            }
        }
    }

    let frozen_at = Instant::now();
    let mut tree = FrozenTree::freeze(pid, expected)?;
    let (image, mem, segments) = match dump_frozen(&mut tree, sink, precopies) {
        Ok(v) => v,
        Err(err) => {
            if let Err(thaw_err) = tree.thaw() {
                tracing::error!(pid, %thaw_err, "resuming the tree after a failed checkpoint failed");
            }
            return Err(err);
        }
    };
    let (processes, zombies) = (tree.procs.len() as u32, tree.zombies.len() as u32);
    if opts.leave_running {
        tree.thaw()?;
    } else {
        // The segments went with the tree: marked for removal, they go
        // with the killed processes' attachments.
        sysvshm::remove_carried(tree.root, &segments);
        tree.kill();
    }
    let frozen_ms = ms(frozen_at.elapsed());
    Ok(CheckpointStats {
        pid,
        processes,
        zombies,
        frozen_ms,
        dump_ms: ms(started.elapsed()),
        pages_scanned: precopy_scanned + mem.pages_scanned,
        pages_written: image.pages_written,
        precopy_pages,
        frozen_pages: mem.pages_written,
        precopy_rounds,
        zero_pages: mem.zero_pages,
        image_bytes: image.image_bytes,
    })
}

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
    pub blockers: Vec<CheckpointError>,
}

/// Runs every check checkpoint makes before freezing on each process of
/// the tree rooted at `pid` and collects the refusals instead of stopping
/// at the first. Errors are returned only when the tree itself cannot be
/// read (the root is gone, /proc of the root fails).
pub fn inspect_tree(pid: i32) -> Result<TreeInspection, CheckpointError> {
    inspect_tree_in(pid, &expected_namespaces(pid, false)?)
}

/// [`inspect_tree`] for a tree whose processes must be in the `expected`
/// namespaces.
fn inspect_tree_in(pid: i32, expected: &Namespaces) -> Result<TreeInspection, CheckpointError> {
    let members = collect_tree(pid)?;
    let mut classified = Vec::with_capacity(members.len());
    let mut layouts = Vec::with_capacity(members.len());
    let mut blockers = Vec::new();
    for &member in &members {
        let mut found = Vec::new();
        let inspected = (|| {
            match preflight(member, expected) {
                Err(
                    e @ (CheckpointError::AlreadyTraced { .. }
                    | CheckpointError::OtherNamespace { .. }),
                ) => found.push(e),
                other => other?,
            }
            let (vmas, refused) = inspect::classify_each_mapping(member, &proc::read_maps(member)?);
            found.extend(refused);
            let (fds, refused) = classify_each_fd(member)?;
            found.extend(refused);
            if let Err(e) = inspect::check_memfd_mappings(member, &vmas, &fds) {
                found.push(e);
            }
            match check_seccomp(member) {
                Err(e @ CheckpointError::Seccomp { .. }) => found.push(e),
                other => drop(other?),
            }
            Ok::<_, CheckpointError>((vmas, fds))
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
            Err(CheckpointError::Proc(err)) if member != pid => {
                tracing::debug!(pid = member, %err, "early inspection incomplete");
                blockers.append(&mut found);
            }
            Err(e) => return Err(e),
        }
    }
    match tree_fd_blockers(&classified) {
        // A process changed under the check (ended, closed an fd): the
        // check done with the tree frozen decides.
        Err(CheckpointError::Proc(err)) => {
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
    })
}

/// What the pre-copy left for the frozen copy.
#[derive(Default)]
struct Precopies {
    /// Processes whose pre-copy completed.
    done: std::collections::HashMap<i32, precopy::Precopy>,
    /// Processes whose pre-copy failed part-way: pages of theirs may have
    /// reached the sink from an address space that is gone.
    failed: Vec<i32>,
}

/// Whether `pid` has ended (gone, or a zombie).
fn gone(pid: i32) -> bool {
    proc::read_status(pid).map_or(true, |st| matches!(st.state, 'Z' | 'X' | 'x'))
}

/// The live processes of the tree rooted at `root`, parents before
/// children (zombies are left out: they hold nothing to refuse). A child
/// that exits while the tree is listed is skipped.
pub fn collect_tree(root: i32) -> Result<Vec<i32>, CheckpointError> {
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

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Checks that `pid` is a live process that ferry may trace, in the
/// `expected` namespaces.
fn preflight(pid: i32, expected: &Namespaces) -> Result<(), CheckpointError> {
    if pid == std::process::id() as i32 {
        return Err(CheckpointError::OwnProcess { pid });
    }
    let status = proc::read_status(pid).map_err(|_| CheckpointError::NoSuchProcess { pid })?;
    if status.tgid != pid {
        return Err(CheckpointError::NotAProcess {
            pid,
            tgid: status.tgid,
        });
    }
    if matches!(status.state, 'Z' | 'X' | 'x') {
        return Err(CheckpointError::NotAlive {
            pid,
            state: status.state,
        });
    }
    if status.tracer_pid != 0 {
        return Err(CheckpointError::AlreadyTraced {
            pid,
            tracer: status.tracer_pid,
        });
    }
    check_namespaces(pid, expected)?;
    Ok(())
}

/// The namespaces every process of a tree must share: (kind, /proc link
/// target) pairs, and whose they are, for messages.
struct Namespaces {
    kinds: Vec<(String, String)>,
    reference: String,
    /// The tree's root is the init of a PID namespace of its own, outside
    /// any container (`unshare --pid --fork`).
    own_pid: bool,
}

/// The namespaces of the tree rooted at `root`: migrate-agent's, or for a
/// container the root's (refusing a user namespace of its own: its IDs
/// would not be rebuilt in the destination's). A container's own network
/// namespace is the destination runtime's and network hook's to rebuild;
/// its sockets are examined and recreated in it.
fn expected_namespaces(root: i32, in_container: bool) -> Result<Namespaces, CheckpointError> {
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
        .map_err(|_| CheckpointError::NoSuchProcess { pid: root })?;
    for (kind, target) in &theirs {
        let same = ours.iter().any(|(k, t)| k == kind && t == target);
        if !same && kind == "user" {
            return Err(CheckpointError::ContainerNamespace {
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
        && pidns::PidNamespace::of(pid).is_ok_and(|ns| ns.ns(pid) == 1)
}

/// Refuses a process that lives in other namespaces than `expected`
/// (except the cgroup namespace, which only changes how /proc shows
/// cgroups): paths, PIDs and sockets would be read and restored in the
/// wrong one. Returns the process's namespaces, for the image.
fn check_namespaces(
    pid: i32,
    expected: &Namespaces,
) -> Result<Vec<(String, String)>, CheckpointError> {
    let theirs = proc::namespaces(&pid.to_string())?;
    for (kind, target) in &theirs {
        let same = expected.kinds.iter().any(|(k, t)| k == kind && t == target);
        if !same && kind != "cgroup" {
            return Err(CheckpointError::OtherNamespace {
                pid,
                kind: kind.clone(),
                target: target.clone(),
                reference: expected.reference.clone(),
            });
        }
    }
    Ok(theirs)
}

/// Classifies every fd of `pid`, refusing the first unsupported one, and
/// epoll and inotify instances that could not be rebuilt exactly.
fn classify_fds(pid: i32) -> Result<Vec<files::ClassifiedFd>, CheckpointError> {
    let (fds, refused) = classify_each_fd(pid)?;
    match refused.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(fds),
    }
}

/// Classifies every fd of `pid`: the fds ferry can carry, and a refusal
/// for each other one (unsupported kinds, epoll and inotify instances that
/// could not be rebuilt exactly). Only reading /proc fails the call.
fn classify_each_fd(
    pid: i32,
) -> Result<(Vec<files::ClassifiedFd>, Vec<CheckpointError>), CheckpointError> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for (fd, target) in proc::fds(pid)? {
        match inspect::classify_fd(pid, fd, &target) {
            Ok(class) => out.push(files::ClassifiedFd { fd, target, class }),
            Err(e @ CheckpointError::Proc(_)) => return Err(e),
            Err(e) => refused.push(e),
        }
    }
    for c in &out {
        let checked = match c.class {
            inspect::FdClass::Epoll => notify::epoll_targets(pid, c, &out).map(drop),
            inspect::FdClass::Inotify => notify::inotify_watches(pid, c).map(drop),
            _ => Ok(()),
        };
        match checked {
            Err(e @ CheckpointError::Proc(_)) => return Err(e),
            Err(e) => refused.push(e),
            Ok(()) => {}
        }
    }
    Ok((out, refused))
}

/// Refuses a pipe whose other end a process outside the tree (`tree`:
/// every process with its classified fds) holds, a FIFO of which the tree
/// holds only one end, or a unix socket connected to a socket no process
/// of the tree holds: the other end belongs to a process outside the
/// checkpoint.
fn check_tree_fds(tree: &[(i32, Vec<files::ClassifiedFd>)]) -> Result<(), CheckpointError> {
    match tree_fd_blockers(tree)?.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every refusal of [`check_tree_fds`], each fd on its own; only reading
/// /proc fails the call.
fn tree_fd_blockers(
    tree: &[(i32, Vec<files::ClassifiedFd>)],
) -> Result<Vec<CheckpointError>, CheckpointError> {
    let mut refused = Vec::new();
    // A pipe or FIFO is carried only with both its ends: the data in it
    // would otherwise be shared with a process left behind.
    let all = || {
        tree.iter()
            .flat_map(|(pid, fds)| fds.iter().map(move |c| (*pid, c)))
    };
    for (pid, c) in all() {
        let (kind, inode) = match c.class {
            inspect::FdClass::Pipe { inode } => ("pipe", inode),
            inspect::FdClass::Fifo { inode } => ("FIFO", inode),
            _ => continue,
        };
        let (mut reads, mut writes) = (false, false);
        for (opid, o) in all().filter(|(_, o)| o.class == c.class) {
            let mode = proc::read_fdinfo(opid, o.fd)?.flags & libc::O_ACCMODE;
            reads |= mode != libc::O_WRONLY;
            writes |= mode != libc::O_RDONLY;
        }
        if reads && writes {
            continue;
        }
        // A pipe end that no process holds any more is simply closed after
        // restore too (the reader sees the data, then end of file).
        let tree_pids: Vec<i32> = tree.iter().map(|(p, _)| *p).collect();
        if kind == "pipe" && proc::pipe_holder_outside(inode, &tree_pids)?.is_none() {
            continue;
        }
        refused.push(CheckpointError::UnsupportedFd {
            pid,
            fd: c.fd,
            kind: format!(
                "{kind} whose {} end is held outside the checkpointed process tree",
                if reads { "write" } else { "read" }
            ),
            target: if kind == "pipe" {
                format!("pipe:[{inode}]")
            } else {
                c.target.clone()
            },
        });
    }
    match sockets::check_unix_peers(tree) {
        Err(e @ CheckpointError::Proc(_)) => Err(e),
        Err(e) => {
            refused.push(e);
            Ok(refused)
        }
        Ok(()) => Ok(refused),
    }
}

/// Refuses strict seccomp and threads with different numbers of filters
/// (ferry restores one filter stack shared by every thread); returns the
/// number of filters.
fn check_seccomp(pid: i32) -> Result<u32, CheckpointError> {
    let mut leader = None;
    for tid in proc::task_ids(pid)? {
        let st = proc::read_thread_status(pid, tid)?;
        let fail = |why: String| Err(CheckpointError::Seccomp { pid, tid, why });
        if st.seccomp == 1 {
            return fail("is in strict seccomp mode (SECCOMP_SET_MODE_STRICT)".into());
        }
        match leader {
            None => leader = Some((tid, st.seccomp_filters)),
            Some((ltid, n)) if n != st.seccomp_filters => {
                return fail(format!(
                    "has {} seccomp filters and thread {ltid} has {n}",
                    st.seccomp_filters
                ))
            }
            Some(_) => {}
        }
    }
    Ok(leader.map_or(0, |(_, n)| n))
}

/// Everything done while the tree is stopped, up to the committed image.
fn dump_frozen(
    tree: &mut FrozenTree,
    sink: &mut dyn sink::CheckpointSink,
    mut precopies: Precopies,
) -> Result<
    (
        crate::image::ImageSummary,
        memory::MemoryDumpStats,
        Vec<crate::image::SysvShmImage>,
    ),
    CheckpointError,
> {
    // The authoritative inspection: nothing can change any more (a child
    // forked while memory was copied is in the tree now and is checked
    // here too).
    let mut inspected = Vec::with_capacity(tree.procs.len());
    let mut classified = Vec::with_capacity(tree.procs.len());
    for frozen in &tree.procs {
        let pid = frozen.pid;
        let vmas = inspect::classify_mappings(pid, &proc::read_smaps(pid)?)?;
        let fds = classify_fds(pid)?;
        inspect::check_memfd_mappings(pid, &vmas, &fds)?;
        inspected.push(vmas);
        classified.push((pid, fds));
    }
    check_tree_fds(&classified)?;
    let layouts: Vec<(i32, &[Vma])> = tree
        .procs
        .iter()
        .zip(&inspected)
        .map(|(f, v)| (f.pid, v.as_slice()))
        .collect();
    let (sysv_shm, refused) = sysvshm::tree_segments(tree.root, &layouts)?;
    if let Some(e) = refused.into_iter().next() {
        return Err(e);
    }

    let mut files = files::TreeFiles::default();
    let mut processes = Vec::with_capacity(tree.procs.len());
    let mut vdso = Vec::new();
    for ((frozen, vmas), (_, fds)) in tree.procs.iter_mut().zip(inspected).zip(&classified) {
        let (process, vdso_bytes) = dump_process(frozen, vmas, fds, &mut files, &tree.expected)?;
        vdso = vdso_bytes;
        processes.push(process);
    }
    files.link_unix_peers();
    let checkpoint = Checkpoint {
        host: HostInfo {
            kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            xcr0: kernel::cpu::xcr0(),
            xstate_size: processes.first().map_or(0, threads::process_xstate_size),
            vdso_len: vdso.len() as u64,
            vdso_hash: xxhash_rust::xxh3::xxh3_64(&vdso),
        },
        processes,
        zombies: tree.zombies.clone(),
        files: files.files,
        pipes: files.pipes,
        sysv_shm,
        pid_namespace: tree.expected.own_pid,
    };
    let mut mem = memory::MemoryDumpStats::default();
    // A shared anonymous object or SysV segment is dumped once, from the
    // first process that maps it.
    let mut shmem_dumped: Vec<SharedObject> = Vec::new();
    for p in &checkpoint.processes {
        let pid = p.pid;
        let vmas: Vec<Vma> = p
            .vmas
            .iter()
            .filter(|v| mm::shared_object(v).map_or(true, |o| !shmem_dumped.contains(&o)))
            .cloned()
            .collect();
        if precopies.failed.contains(&pid) {
            // Zero over every private anonymous mapping first: the frozen
            // copy then supersedes what the failed pre-copy wrote, and a
            // page it wrote that holds nothing now reads as zero.
            for v in vmas.iter().filter(|v| v.is_private_anonymous()) {
                sink.write_zero_pages(pid, v.start, v.pages())?;
            }
        }
        let after = match precopies.done.remove(&pid) {
            Some(pre) => {
                let after = pre.finish(&vmas)?;
                tracing::debug!(
                    pid,
                    written = after.written_pages(),
                    "pages written during pre-copy"
                );
                Some(after)
            }
            None => None,
        };
        let policy: &dyn memory::PagePolicy = match &after {
            Some(after) => after,
            None => &memory::EveryPage,
        };
        let m = if sink.memory_mode() == sink::MemoryMode::Eager {
            memory::dump_memory(pid, &vmas, policy, sink)?.0
        } else {
            let lazy = memory::LazyAnonymous::new(policy);
            let (m, _) = memory::dump_memory(pid, &vmas, &lazy, sink)?;
            sink.lazy_pages(pid, lazy.into_runs())?;
            m
        };
        mem.pages_scanned += m.pages_scanned;
        mem.pages_written += m.pages_written;
        mem.zero_pages += m.zero_pages;
        shmem_dumped.extend(p.vmas.iter().filter_map(mm::shared_object));
    }
    let summary = sink.commit(&checkpoint)?;
    Ok((summary, mem, checkpoint.sysv_shm))
}

/// Reads the state of the frozen process (all but its memory) into its
/// image, adding its open file descriptions to `files`; returns it with
/// the contents of its vDSO.
fn dump_process(
    frozen: &mut Frozen,
    vmas: Vec<Vma>,
    fd_kinds: &[files::ClassifiedFd],
    files: &mut files::TreeFiles,
    expected: &Namespaces,
) -> Result<(ProcessImage, Vec<u8>), CheckpointError> {
    let pid = frozen.pid;
    let seccomp = seccomp::dump_seccomp(pid, frozen, check_seccomp(pid)?)?;
    let (syscall_insn, vdso_bytes) = mm::vdso_syscall(pid, &vmas)?;

    let mut queries = Injector::new(pid, syscall_insn);
    let answers = (|| {
        let per_thread = queries.query_threads(frozen)?;
        let leader = &mut frozen.threads[0].tracee;
        let sigactions = queries.query_sigactions(leader)?;
        let brk = queries.query_brk(leader)?;
        let timers = queries.query_timers(leader)?;
        Ok::<_, CheckpointError>((per_thread, sigactions, brk, timers))
    })();
    // The scratch page goes away whether or not the queries succeeded.
    let unmapped = queries.finish(&mut frozen.threads[0].tracee);
    let (per_thread, sigactions, brk, (timers, itimers)) = answers?;
    unmapped?;

    let threads = threads::dump_threads(frozen, per_thread)?;
    let shared_pending = signals::shared_pending(&frozen.threads[0].tracee, pid)?;
    let status = proc::read_status(pid)?;
    let mm = mm::mm_fields(pid, brk)?;
    let fds = files::describe(pid, fd_kinds, files)?;
    let ids = proc::read_stat_ids(pid)?;
    let rlimits = rlimits::dump_rlimits(pid)?;

    let process = ProcessImage {
        pid,
        ppid: ids.ppid,
        pgid: ids.pgid,
        sid: ids.sid,
        comm: status.name.clone(),
        exe: proc::read_link(format!("/proc/{pid}/exe"))?,
        cwd: proc::read_link(format!("/proc/{pid}/cwd"))?,
        umask: status.umask,
        creds: creds::credentials(status),
        rlimits,
        mm,
        vmas,
        threads,
        sigactions,
        shared_pending,
        namespaces: check_namespaces(pid, expected)?,
        fds,
        timers,
        itimers,
        seccomp,
    };
    Ok((process, vdso_bytes))
}
