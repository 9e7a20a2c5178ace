//! Checkpoint: reads a live process tree (every process, all their
//! threads) into the image model and writes the image directory. Every
//! process is inspected first and the tree refused, untouched, when one
//! holds something ferry cannot carry; the processes are then stopped with
//! ptrace (parents before their children, so no new child escapes), dumped,
//! and either all killed or all resumed exactly as they were.

mod anon;
pub mod files;
pub mod inspect;
pub mod memory;
pub mod notify;
pub mod pidns;
pub mod precopy;
pub mod sink;
pub mod sockets;
pub mod sysvshm;

use crate::image::{
    AltStack, BpfInstruction, Checkpoint, Credentials, HostInfo, ImageError, ImageWriter,
    IntervalTimer, MmFields, PendingSignal, PosixTimer, ProcessImage, Rlimit, RseqRegistration,
    SeccompFilter, SigAction, ThreadImage, ThreadPrivileges, Vma, VmaKind, ZombieImage,
};
use crate::kernel;
use crate::proc::{self, ProcError};
use crate::ptrace::{read_memory, resume_regs, PtraceError, Tracee};
use nix::sys::ptrace::Options;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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

/// Why a checkpoint failed. In every case every process of the tree is
/// left running, untouched and detached.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// There is no such process.
    #[error("process {pid} does not exist")]
    NoSuchProcess {
        /// The PID asked for.
        pid: i32,
    },
    /// The PID is a thread, not a process.
    #[error("{pid} is a thread of process {tgid}; checkpoint the process instead")]
    NotAProcess {
        /// The PID asked for.
        pid: i32,
        /// Its thread group.
        tgid: i32,
    },
    /// ferry would have to trace itself.
    #[error("process {pid} is this migrate-agent itself")]
    OwnProcess {
        /// Our PID.
        pid: i32,
    },
    /// Another tracer (a debugger, strace) holds the process.
    #[error("process {pid} is already traced by process {tracer}; detach the debugger first")]
    AlreadyTraced {
        /// The process.
        pid: i32,
        /// Its tracer.
        tracer: i32,
    },
    /// The process is a zombie or being torn down.
    #[error("process {pid} is not alive (state {state})")]
    NotAlive {
        /// The process.
        pid: i32,
        /// Its state letter.
        state: char,
    },
    /// The process lives in another namespace than migrate-agent.
    #[error("process {pid} is in another {kind} namespace ({target}) than {reference}; a process in namespaces of its own is carried only as part of a container (migrate --container)")]
    OtherNamespace {
        /// The process.
        pid: i32,
        /// The namespace kind (mnt, net, pid ...).
        kind: String,
        /// The /proc link target naming the namespace.
        target: String,
        /// Whose namespaces it should share (migrate-agent, or the
        /// container's init).
        reference: String,
    },
    /// The container's init has a namespace ferry cannot carry.
    #[error("container init {pid} has its own {kind} namespace ({target}); ferry carries a container's PID, mount, network, UTS, IPC and cgroup namespaces but not its {kind} namespace yet (remove it from linux.namespaces in config.json)")]
    ContainerNamespace {
        /// The container's init.
        pid: i32,
        /// The namespace kind (net, user ...).
        kind: String,
        /// The /proc link target naming the namespace.
        target: String,
    },
    /// An fd of a kind ferry cannot carry.
    #[error("process {pid} holds fd {fd}, a {kind} ({target}), which ferry cannot checkpoint yet")]
    UnsupportedFd {
        /// The process.
        pid: i32,
        /// The fd number.
        fd: i32,
        /// What kind of file it is.
        kind: String,
        /// Its /proc link target.
        target: String,
    },
    /// Live migration of a tree with a PID namespace of its own.
    #[error("process {pid} is the init of a PID namespace of its own: its tree can be checkpointed and restored (a new PID namespace is made), but not migrated yet")]
    PidNamespaceNotMigrated {
        /// The namespace's init.
        pid: i32,
    },
    /// A mapping ferry cannot carry.
    #[error("process {pid} has mapping {start:#x}-{end:#x} ({name}) that ferry cannot checkpoint: {why}")]
    UnsupportedMapping {
        /// The process.
        pid: i32,
        /// Start address.
        start: u64,
        /// End address.
        end: u64,
        /// Path or pseudo-name.
        name: String,
        /// Why it is refused.
        why: String,
    },
    /// Seccomp state ferry cannot carry.
    #[error("process {pid}: thread {tid} {why}; ferry cannot checkpoint it")]
    Seccomp {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// What is wrong.
        why: String,
    },
    /// A system call injected into the process failed.
    #[error("{call} injected into thread {tid} of process {pid} failed: {errno}")]
    Injected {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The call, with its arguments.
        call: String,
        /// The error it returned.
        errno: nix::errno::Errno,
    },
    /// The process has no [vdso], so ferry has no system call instruction
    /// to run its queries with.
    #[error("process {pid} has no [vdso] mapping with a syscall instruction")]
    NoVdso {
        /// The process.
        pid: i32,
    },
    /// Reading /proc failed.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// ptrace failed.
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    /// Writing the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Dirty-page tracking failed.
    #[error(transparent)]
    Tracking(#[from] crate::memory::DirtyTrackingError),
    /// The sink (the destination agent, in a migration) failed.
    #[error("cannot {what}: {why}")]
    Sink {
        /// What was being done, with the peer.
        what: String,
        /// Why it failed.
        why: String,
    },
    /// Some other I/O failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
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

/// Reads the seccomp filters of every frozen thread, oldest first, and
/// refuses threads whose filters differ.
fn dump_seccomp(
    pid: i32,
    frozen: &Frozen,
    count: u32,
) -> Result<Vec<SeccompFilter>, CheckpointError> {
    if count > 0 && !frozen.seccomp_suspended {
        return Err(CheckpointError::Seccomp {
            pid,
            tid: pid,
            why: "installed a seccomp filter while it was being checkpointed".into(),
        });
    }
    let mut first: Option<Vec<SeccompFilter>> = None;
    for ft in &frozen.threads {
        let tid = ft.tracee.tid;
        let req = |op| {
            move |errno| PtraceError::Request {
                op,
                tid: tid.as_raw(),
                errno,
            }
        };
        let mut filters = Vec::with_capacity(count as usize);
        // Index 0 is the most recent filter.
        for index in (0..u64::from(count)).rev() {
            let program = kernel::ptrace_seccomp_filter(tid, index)
                .map_err(req("PTRACE_SECCOMP_GET_FILTER"))?
                .into_iter()
                .map(|i| BpfInstruction {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect();
            let flags = kernel::ptrace_seccomp_flags(tid, index)
                .map_err(req("PTRACE_SECCOMP_GET_METADATA"))?;
            filters.push(SeccompFilter { flags, program });
        }
        match &first {
            None => first = Some(filters),
            Some(f) if *f != filters => {
                return Err(CheckpointError::Seccomp {
                    pid,
                    tid: tid.as_raw(),
                    why: format!("has other seccomp filters than thread {pid}"),
                })
            }
            Some(_) => {}
        }
    }
    Ok(first.unwrap_or_default())
}

/// The threads of a process held in ptrace-stops, with what is needed to
/// let them go exactly as they were.
struct Frozen {
    pid: i32,
    /// Whether the threads' seccomp filters are suspended while traced
    /// (PTRACE_O_SUSPEND_SECCOMP), so that injected queries pass them.
    seccomp_suspended: bool,
    /// Leader first.
    threads: Vec<FrozenThread>,
}

struct FrozenThread {
    tracee: Tracee,
    regs: crate::image::GeneralRegs,
    sigmask: u64,
}

/// Resource limits RLIMIT_CPU (0) to RLIMIT_RTTIME (15): every one Linux has.
const RLIMIT_COUNT: u32 = 16;

/// Every signal but SIGKILL and SIGSTOP (which cannot be blocked anyway).
const ALL_SIGNALS: u64 = !0;

impl Frozen {
    /// Seizes and stops every thread, re-reading the thread list until no
    /// new thread appears, and blocks all signals so that none is delivered
    /// while ferry works (they stay pending and are dumped as pending).
    fn freeze(pid: i32, suspend_seccomp: bool) -> Result<Self, CheckpointError> {
        let mut frozen = Frozen {
            pid,
            seccomp_suspended: suspend_seccomp,
            threads: Vec::new(),
        };
        if let Err(e) = frozen.seize_all() {
            let _ = frozen.thaw();
            return Err(e);
        }
        Ok(frozen)
    }

    fn seize_all(&mut self) -> Result<(), CheckpointError> {
        loop {
            let mut added = false;
            for tid in proc::task_ids(self.pid)? {
                if self.threads.iter().any(|t| t.tracee.tid.as_raw() == tid) {
                    continue;
                }
                let mut options = Options::PTRACE_O_TRACESYSGOOD;
                if self.seccomp_suspended {
                    options |= kernel::ptrace_suspend_seccomp();
                }
                let tracee = match Tracee::seize(Pid::from_raw(tid), options) {
                    Ok(t) => t,
                    // The thread exited between listing and seizing.
                    Err(PtraceError::Request {
                        errno: nix::errno::Errno::ESRCH,
                        ..
                    }) if tid != self.pid => continue,
                    Err(e) => return Err(e.into()),
                };
                let regs = tracee.regs()?;
                let sigmask = tracee.sigmask()?;
                tracee.set_sigmask(ALL_SIGNALS)?;
                let ft = FrozenThread {
                    tracee,
                    regs,
                    sigmask,
                };
                if tid == self.pid {
                    self.threads.insert(0, ft);
                } else {
                    self.threads.push(ft);
                }
                added = true;
            }
            if !added {
                return Ok(());
            }
        }
    }

    /// Lets every thread go as it was: registers (an interrupted system call
    /// restarts as the kernel would have restarted it), signal mask, and the
    /// signals that arrived meanwhile queued again.
    fn thaw(self) -> Result<(), CheckpointError> {
        let mut first_err = None;
        for ft in self.threads.into_iter().rev() {
            let tid = ft.tracee.tid;
            let res = (|| -> Result<(), CheckpointError> {
                ft.tracee.set_regs(&resume_regs(&ft.regs, true))?;
                ft.tracee.set_sigmask(ft.sigmask)?;
                for sig in &ft.tracee.caught_signals {
                    // Queue it again; it is delivered once the thread runs.
                    let _ = kernel::tgkill(Pid::from_raw(self.pid), tid, sig.signo);
                }
                ft.tracee.detach()?;
                Ok(())
            })();
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Kills the process and waits until its threads are gone, leaving the
    /// leader's zombie to its parent. Threads are reaped in whatever order
    /// they finish (non-leaders first, as the leader is reported last): no
    /// fixed order works for every tree, since the last thread of a PID
    /// namespace's init (a container's) waits in the kernel until every
    /// other task of the namespace, its traced sibling threads included,
    /// is reaped.
    fn kill(self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        let mut left: Vec<Pid> = self.threads.iter().rev().map(|ft| ft.tracee.tid).collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|&tid| loop {
                match waitpid(tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break false,
                    Ok(WaitStatus::StillAlive) => break true,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break false,
                }
            });
            if left.len() == before {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

/// The processes of a tree held in ptrace-stops (parents before
/// children) and its zombies.
struct FrozenTree {
    root: i32,
    /// The namespaces each process must be in.
    expected: Namespaces,
    procs: Vec<Frozen>,
    zombies: Vec<ZombieImage>,
}

impl FrozenTree {
    /// Freezes the tree rooted at `root` top-down: a process is frozen
    /// before its children are listed, so that no child created meanwhile
    /// is missed. A child that exits before it is frozen is taken as the
    /// zombie it became (or skipped if it is already gone). On failure
    /// every process frozen so far is resumed.
    fn freeze(root: i32, expected: Namespaces) -> Result<Self, CheckpointError> {
        let mut tree = FrozenTree {
            root,
            expected,
            procs: Vec::new(),
            zombies: Vec::new(),
        };
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            match tree.freeze_one(pid) {
                Ok(true) => {
                    let children = proc::children(pid);
                    match children {
                        Ok(c) => stack.extend(c.into_iter().rev()),
                        Err(e) => {
                            let _ = tree.thaw();
                            return Err(e.into());
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = tree.thaw();
                    return Err(e);
                }
            }
        }
        Ok(tree)
    }

    /// Freezes `pid`, or records it as a zombie; returns whether it was
    /// frozen (and its children are to be visited).
    fn freeze_one(&mut self, pid: i32) -> Result<bool, CheckpointError> {
        let frozen = (|| {
            if pid != self.root {
                preflight(pid, &self.expected)?;
            }
            Frozen::freeze(pid, check_seccomp(pid)? > 0)
        })();
        match frozen {
            Ok(f) => {
                self.procs.push(f);
                Ok(true)
            }
            Err(e) if pid != self.root => match proc::read_status(pid) {
                Err(_) => Ok(false),
                Ok(st) if st.state == 'Z' || st.state == 'X' => self.add_zombie(pid),
                Ok(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn add_zombie(&mut self, pid: i32) -> Result<bool, CheckpointError> {
        // One reaped meanwhile (its parent ignores SIGCHLD) left nothing.
        if let Ok(ids) = proc::read_stat_ids(pid) {
            self.zombies.push(ZombieImage {
                pid,
                ppid: ids.ppid,
                pgid: ids.pgid,
                sid: ids.sid,
                wait_status: ids.exit_code,
            });
        }
        Ok(false)
    }

    /// Resumes every process, children first.
    fn thaw(&mut self) -> Result<(), CheckpointError> {
        let mut first_err = None;
        while let Some(f) = self.procs.pop() {
            let pid = f.pid;
            if let Err(e) = f.thaw() {
                tracing::error!(pid, %e, "resuming a process of the tree failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Kills every process of the tree and waits until their threads are
    /// gone; the root's zombie is left to its parent, the others are
    /// reparented (to the nearest subreaper or init) and reaped there.
    fn kill(&mut self) {
        for f in &self.procs {
            let _ = kill(Pid::from_raw(f.pid), Signal::SIGKILL);
        }
        while let Some(f) = self.procs.pop() {
            f.kill();
        }
    }
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
            xstate_size: processes.first().map_or(0, process_xstate_size),
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
            .filter(|v| shared_object(v).map_or(true, |o| !shmem_dumped.contains(&o)))
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
        shmem_dumped.extend(p.vmas.iter().filter_map(shared_object));
    }
    let summary = sink.commit(&checkpoint)?;
    Ok((summary, mem, checkpoint.sysv_shm))
}

/// A memory object that several processes of the tree may map and whose
/// contents are dumped once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SharedObject {
    /// A shared anonymous object, by inode.
    Anonymous(u64),
    /// A SysV segment, by shmid.
    Sysv(i32),
}

/// The shared object `vma` maps, if any.
fn shared_object(vma: &Vma) -> Option<SharedObject> {
    match vma.kind {
        VmaKind::SharedAnonymous { inode, .. } => Some(SharedObject::Anonymous(inode)),
        VmaKind::SysvShm { shmid } => Some(SharedObject::Sysv(shmid)),
        _ => None,
    }
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
    let seccomp = dump_seccomp(pid, frozen, check_seccomp(pid)?)?;
    let (syscall_insn, vdso_bytes) = vdso_syscall(pid, &vmas)?;

    let mut queries = Injector::new(pid, syscall_insn);
    let answers = (|| {
        let per_thread = queries.query_threads(frozen)?;
        let process = queries.query_process(&mut frozen.threads[0].tracee)?;
        let timers = queries.query_timers(&mut frozen.threads[0].tracee)?;
        Ok::<_, CheckpointError>((per_thread, process, timers))
    })();
    // The scratch page goes away whether or not the queries succeeded.
    let unmapped = queries.finish(&mut frozen.threads[0].tracee);
    let (per_thread, (sigactions, brk), (timers, itimers)) = answers?;
    unmapped?;

    let mut threads = Vec::with_capacity(frozen.threads.len());
    for (ft, q) in frozen.threads.iter().zip(per_thread) {
        let tid = ft.tracee.tid;
        let mut pending: Vec<PendingSignal> = kernel::ptrace_peek_siginfo(tid, false)
            .map_err(|errno| PtraceError::Request {
                op: "PTRACE_PEEKSIGINFO",
                tid: tid.as_raw(),
                errno,
            })?
            .into_iter()
            .map(pending_signal)
            .collect();
        pending.extend(ft.tracee.caught_signals.iter().map(|c| PendingSignal {
            signo: c.signo,
            siginfo: c.siginfo.to_vec(),
        }));
        let status = proc::read_thread_status(pid, tid.as_raw())?;
        threads.push(ThreadImage {
            tid: tid.as_raw(),
            comm: proc::read_thread_comm(pid, tid.as_raw())?,
            regs: ft.regs,
            xstate: ft.tracee.xstate()?,
            sigmask: ft.sigmask,
            rseq: kernel::ptrace_get_rseq(tid)
                .map_err(|errno| PtraceError::Request {
                    op: "PTRACE_GET_RSEQ_CONFIGURATION",
                    tid: tid.as_raw(),
                    errno,
                })?
                .map(|(ptr, len, sig)| RseqRegistration { ptr, len, sig }),
            robust_list_head: q.robust.0,
            robust_list_len: q.robust.1,
            clear_child_tid: q.clear_child_tid,
            altstack: q.altstack,
            pending,
            privileges: ThreadPrivileges {
                effective: status.caps.effective,
                permitted: status.caps.permitted,
                inheritable: status.caps.inheritable,
                bounding: status.caps.bounding,
                ambient: status.caps.ambient,
                securebits: q.securebits,
                no_new_privs: status.no_new_privs,
            },
        });
    }
    let leader = &frozen.threads[0].tracee;
    let shared_pending = kernel::ptrace_peek_siginfo(leader.tid, true)
        .map_err(|errno| PtraceError::Request {
            op: "PTRACE_PEEKSIGINFO(shared)",
            tid: pid,
            errno,
        })?
        .into_iter()
        .map(pending_signal)
        .collect();

    let status = proc::read_status(pid)?;
    let stat = proc::read_stat_mm(pid)?;
    let mm = MmFields {
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
        auxv: proc::read_auxv(pid)?,
    };
    let fds = files::describe(pid, fd_kinds, files)?;
    let ids = proc::read_stat_ids(pid)?;
    let mut rlimits = Vec::new();
    for resource in 0..RLIMIT_COUNT {
        let (soft, hard) =
            kernel::prlimit_get(Pid::from_raw(pid), resource).map_err(|e| CheckpointError::Io {
                what: format!("read resource limit {resource} of process {pid}"),
                source: e.into(),
            })?;
        rlimits.push(Rlimit {
            resource,
            soft,
            hard,
        });
    }

    let process = ProcessImage {
        pid,
        ppid: ids.ppid,
        pgid: ids.pgid,
        sid: ids.sid,
        comm: status.name.clone(),
        exe: proc::read_link(format!("/proc/{pid}/exe"))?,
        cwd: proc::read_link(format!("/proc/{pid}/cwd"))?,
        umask: status.umask,
        creds: Credentials {
            uids: status.uids,
            gids: status.gids,
            groups: status.groups,
        },
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

fn process_xstate_size(p: &ProcessImage) -> u32 {
    p.threads.first().map_or(0, |t| t.xstate.len() as u32)
}

fn pending_signal(raw: [u8; kernel::SIGINFO_SIZE]) -> PendingSignal {
    PendingSignal {
        signo: i32::from_ne_bytes(raw[0..4].try_into().expect("4 bytes")),
        siginfo: raw.to_vec(),
    }
}

/// Reads the [vdso] of `pid` and finds a `syscall` instruction in it, the
/// one ferry runs its injected calls with: returns its address and the
/// vDSO's contents.
fn vdso_syscall(pid: i32, vmas: &[Vma]) -> Result<(u64, Vec<u8>), CheckpointError> {
    let vdso = vmas
        .iter()
        .find(|v| v.kind == VmaKind::Vdso)
        .ok_or(CheckpointError::NoVdso { pid })?;
    let mut bytes = vec![0u8; (vdso.end - vdso.start) as usize];
    read_memory(Pid::from_raw(pid), vdso.start, &mut bytes)?;
    let insn = crate::ptrace::find_syscall_insn(vdso.start, &bytes)
        .ok_or(CheckpointError::NoVdso { pid })?;
    Ok((insn, bytes))
}

/// Per-thread kernel state that only the thread itself can report.
struct ThreadQueries {
    clear_child_tid: u64,
    altstack: AltStack,
    robust: (u64, u64),
    securebits: u32,
}

/// Runs read-only queries inside the stopped process through injected
/// system calls, using a scratch page mapped for the purpose and unmapped
/// afterwards.
struct Injector {
    pid: i32,
    syscall_insn: u64,
    scratch: Option<u64>,
}

const SCRATCH_LEN: u64 = 4096;

impl Injector {
    fn new(pid: i32, syscall_insn: u64) -> Self {
        Injector {
            pid,
            syscall_insn,
            scratch: None,
        }
    }

    fn call(
        &self,
        t: &mut Tracee,
        nr: i64,
        args: [u64; 6],
        what: &str,
    ) -> Result<i64, CheckpointError> {
        let r = t.inject(self.syscall_insn, nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(CheckpointError::Injected {
                pid: self.pid,
                tid: t.tid.as_raw(),
                call: what.to_string(),
                errno: nix::errno::Errno::from_raw(-r as i32),
            });
        }
        Ok(r)
    }

    fn scratch(&mut self, leader: &mut Tracee) -> Result<u64, CheckpointError> {
        if let Some(s) = self.scratch {
            return Ok(s);
        }
        let addr = self.call(
            leader,
            libc::SYS_mmap,
            [
                0,
                SCRATCH_LEN,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
            "mmap(scratch page)",
        )? as u64;
        self.scratch = Some(addr);
        Ok(addr)
    }

    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, CheckpointError> {
        let mut buf = vec![0u8; len];
        read_memory(Pid::from_raw(self.pid), addr, &mut buf)?;
        Ok(buf)
    }

    fn query_threads(
        &mut self,
        frozen: &mut Frozen,
    ) -> Result<Vec<ThreadQueries>, CheckpointError> {
        let scratch = self.scratch(&mut frozen.threads[0].tracee)?;
        let mut out = Vec::with_capacity(frozen.threads.len());
        for ft in frozen.threads.iter_mut() {
            let t = &mut ft.tracee;
            self.call(
                t,
                libc::SYS_prctl,
                [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0],
                "prctl(PR_GET_TID_ADDRESS)",
            )?;
            let clear_child_tid =
                u64::from_ne_bytes(self.read(scratch, 8)?.try_into().expect("8 bytes"));
            self.call(
                t,
                libc::SYS_sigaltstack,
                [0, scratch, 0, 0, 0, 0],
                "sigaltstack(NULL, &old)",
            )?;
            let ss = self.read(scratch, 24)?;
            let word =
                |i: usize| u64::from_ne_bytes(ss[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let altstack = AltStack {
                sp: word(0),
                // SS_ONSTACK describes the moment, not a setting.
                flags: (word(1) as i32) & !libc::SS_ONSTACK,
                size: word(2),
            };
            let robust = kernel::get_robust_list(t.tid).map_err(|errno| PtraceError::Request {
                op: "get_robust_list",
                tid: t.tid.as_raw(),
                errno,
            })?;
            let securebits = self.call(
                t,
                libc::SYS_prctl,
                [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0],
                "prctl(PR_GET_SECUREBITS)",
            )? as u32;
            // Put the registers back for the next query and for the image.
            t.set_regs(&ft.regs)?;
            out.push(ThreadQueries {
                clear_child_tid,
                altstack,
                robust,
                securebits,
            });
        }
        Ok(out)
    }

    /// Reads every signal disposition and the program break.
    fn query_process(
        &mut self,
        leader: &mut Tracee,
    ) -> Result<(Vec<SigAction>, u64), CheckpointError> {
        let scratch = self.scratch(leader)?;
        let mut actions = Vec::new();
        for signo in 1..=64 {
            if signo == libc::SIGKILL || signo == libc::SIGSTOP {
                continue;
            }
            self.call(
                leader,
                libc::SYS_rt_sigaction,
                [signo as u64, 0, scratch, 8, 0, 0],
                &format!("rt_sigaction({signo}, NULL, &old)"),
            )?;
            let raw = self.read(scratch, 32)?;
            let word =
                |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            actions.push(SigAction {
                signo,
                handler: word(0),
                flags: word(1),
                restorer: word(2),
                mask: word(3),
            });
        }
        let brk = self.call(leader, libc::SYS_brk, [0; 6], "brk(0)")? as u64;
        Ok((actions, brk))
    }

    /// Reads every POSIX timer (/proc/PID/timers, and timer_gettime for the
    /// time left) and the armed interval timers (getitimer).
    fn query_timers(
        &mut self,
        leader: &mut Tracee,
    ) -> Result<(Vec<PosixTimer>, Vec<IntervalTimer>), CheckpointError> {
        let scratch = self.scratch(leader)?;
        let words = |raw: Vec<u8>| -> [u64; 4] {
            std::array::from_fn(|i| {
                u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
            })
        };
        let mut timers = Vec::new();
        for t in proc::read_timers(self.pid)? {
            self.call(
                leader,
                libc::SYS_timer_gettime,
                [t.id as u64, scratch, 0, 0, 0, 0],
                &format!("timer_gettime(timer {})", t.id),
            )?;
            // struct itimerspec: it_interval, then it_value.
            let [i_sec, i_nsec, v_sec, v_nsec] = words(self.read(scratch, 32)?);
            timers.push(PosixTimer {
                id: t.id,
                clock: t.clock,
                notify: t.notify,
                notify_tid: if t.notify & libc::SIGEV_THREAD_ID != 0 {
                    t.target
                } else {
                    0
                },
                signo: t.signo,
                sigval: t.sigval,
                value_ns: v_sec * 1_000_000_000 + v_nsec,
                interval_ns: i_sec * 1_000_000_000 + i_nsec,
            });
        }
        let mut itimers = Vec::new();
        for which in [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF] {
            self.call(
                leader,
                libc::SYS_getitimer,
                [which as u64, scratch, 0, 0, 0, 0],
                &format!("getitimer({which})"),
            )?;
            // struct itimerval: it_interval, then it_value.
            let [i_sec, i_usec, v_sec, v_usec] = words(self.read(scratch, 32)?);
            let (value_us, interval_us) = (v_sec * 1_000_000 + v_usec, i_sec * 1_000_000 + i_usec);
            // A periodic ITIMER_REAL that just fired reads as disarmed until
            // its SIGALRM is dequeued (the kernel re-arms it then), which
            // cannot happen while ferry holds signals blocked: it is still
            // armed, and comes back one interval out.
            if value_us != 0 || interval_us != 0 {
                itimers.push(IntervalTimer {
                    which,
                    value_us: if value_us == 0 { interval_us } else { value_us },
                    interval_us,
                });
            }
        }
        Ok((timers, itimers))
    }

    /// Unmaps the scratch page and puts the leader's registers back.
    fn finish(&mut self, leader: &mut Tracee) -> Result<(), CheckpointError> {
        if let Some(s) = self.scratch.take() {
            self.call(
                leader,
                libc::SYS_munmap,
                [s, SCRATCH_LEN, 0, 0, 0, 0],
                "munmap(scratch page)",
            )?;
        }
        Ok(())
    }
}
