//! Checkpoint: reads a live process tree (every process, all their
//! threads) into the image model and writes the image directory. Every
//! process is inspected first and the tree refused, untouched, when one
//! holds something ferry cannot carry; the processes are then stopped with
//! ptrace (parents before their children, so no new child escapes), dumped,
//! and either all killed or all resumed exactly as they were.

mod anon;
pub mod cgroups;
mod creds;
mod error;
pub mod files;
mod freeze;
mod inject;
mod lock;
mod locks;
pub mod memory;
mod mm;
mod netlink;
mod netns;
pub mod notify;
mod packet;
mod pidfd;
pub mod pidns;
pub mod precopy;
mod rlimits;
mod sched;
pub(crate) mod seccomp;
mod signals;
pub mod sink;
pub mod sockets;
pub mod sysvshm;
pub mod tcp;
mod threads;
mod timers;
mod tree;
mod tty;
mod udp;
mod unix;

pub use error::CheckpointError;

use crate::image::{ms, Checkpoint, HostInfo, ImageSink, ImageWriter, ProcessImage, Vma};
use crate::inspect::fds::{check_tree_fds, classify_fds};
use crate::inspect::mappings::{check_memfd_mappings, classify_mappings};
use crate::inspect::namespaces::{check_namespaces, expected_namespaces};
use crate::inspect::stdio::mark_external_stdio;
use crate::inspect::sysvshm::tree_segments;
use crate::inspect::{inspect_tree_in, preflight, ClassifiedFd, Namespaces, TreeNetns};
use crate::kernel;
use crate::proc;
use freeze::{Frozen, FrozenTree};
use inject::Injector;
use lock::{LockPlan, TreeLock};
use mm::SharedObject;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// What checkpoint does with the process once the image is written.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// Resume the process instead of killing it.
    pub leave_running: bool,
    /// The tree is a container's: its processes may share PID, mount, UTS,
    /// IPC and cgroup namespaces of their own (the root's), and the image
    /// names them by their PIDs in that PID namespace.
    pub in_container: bool,
    /// The owner of the network lock that keeps the tree's TCP
    /// connections silent while it is frozen (a migration's source: its
    /// agent, which releases the lock once the tree is killed or resumed).
    /// None: [`checkpoint`] gives it to the image directory and, when the
    /// tree is killed, leaves it engaged for the restore (as CRIU's
    /// --tcp-established); [`checkpoint_into`] to the running program.
    pub lock_owner: Option<crate::netlock::Owner>,
    /// What becomes of a container init's stdio pipes held outside the
    /// tree (its runtime's shim holds their other end): recorded for a
    /// restore that gives the new init the restorer's stdio, or refused.
    pub external_stdio: crate::inspect::StdioPolicy,
    /// The cgroup roots the tree's cgroup paths are recorded relative to
    /// (CRIU's --cgroup-root; every cgroup below one is recorded, empty
    /// ones included); a hierarchy none names is relative to the
    /// checkpointing program's own cgroup.
    pub cgroup_roots: Vec<crate::proc::cgroups::CgroupRoot>,
    /// The tree's own network namespace stays where it is (the restore
    /// joins it, `restore --join-netns`): it is not carried but locked
    /// whole, every packet in it dropped but marked ones, from the freeze
    /// until the restore (or until the tree runs again, with
    /// `leave_running`). Without it, a plain tree's own namespace is
    /// carried (only lo, its addresses and the firewall).
    pub external_netns: bool,
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
    /// Milliseconds of the freeze spent on the network lock (adding the
    /// connections of the frozen tree the lock did not hold yet, usually
    /// none): part of `frozen_ms`.
    pub lock_ms: f64,
}

/// Checkpoints process `pid` into the image directory `dir`.
pub fn checkpoint(
    pid: i32,
    dir: &Path,
    opts: CheckpointOptions,
) -> Result<CheckpointStats, CheckpointError> {
    // The directory is checked before the process is touched.
    let existed = dir.exists();
    let mut sink = ImageSink::new(ImageWriter::create(dir)?);
    let plan = LockPlan {
        owner: opts
            .lock_owner
            .unwrap_or_else(|| crate::netlock::Owner::of_dir(dir)),
        keep_for_restore: true,
        whole_namespace: false,
    };
    // A failure before the commit resumed the tree: the partial image
    // goes. A committed image may be the workload's only copy: it stays.
    let stats = checkpoint_tree(pid, &mut sink, opts, plan).inspect_err(|_| {
        if !crate::image::format::is_committed(dir) {
            discard_partial_image(dir, existed);
        }
    })?;
    crate::image::sync_image(dir)?;
    Ok(stats)
}

/// Removes what a refused or failed checkpoint wrote: the directory if
/// it made it, else everything in it (it was empty, or
/// [`ImageWriter::create`] would have refused it), so that no partial
/// image is left to be mistaken for one.
fn discard_partial_image(dir: &Path, existed: bool) {
    let removed = if existed {
        std::fs::read_dir(dir).and_then(|entries| {
            entries.into_iter().try_for_each(|entry| {
                let path = entry?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
            })
        })
    } else {
        std::fs::remove_dir_all(dir)
    };
    if let Err(e) = removed {
        tracing::warn!(dir = %dir.display(), %e, "cannot remove the partial image of a failed checkpoint");
    }
}

/// Checkpoints the process tree rooted at `pid` into `sink`: every
/// process is inspected and refused before any is touched, pre-copy rounds
/// run for each process while the tree runs (as many as the sink asks for),
/// then the rest is copied with the whole tree frozen. The processes are
/// killed (or resumed, with `leave_running`) only once the sink has
/// committed the checkpoint; on any error they are all resumed. Their
/// TCP connections are locked from the freeze until they are killed or
/// resumed.
pub fn checkpoint_into(
    pid: i32,
    sink: &mut dyn sink::CheckpointSink,
    opts: CheckpointOptions,
) -> Result<CheckpointStats, CheckpointError> {
    let owner = opts.lock_owner.unwrap_or_else(|| {
        crate::netlock::Owner::of_dir(&std::env::current_exe().unwrap_or_default())
    });
    let plan = LockPlan {
        owner,
        keep_for_restore: false,
        whole_namespace: false,
    };
    checkpoint_tree(pid, sink, opts, plan)
}

/// [`checkpoint_into`] with the network lock as `plan` says.
fn checkpoint_tree(
    pid: i32,
    sink: &mut dyn sink::CheckpointSink,
    opts: CheckpointOptions,
    plan: LockPlan,
) -> Result<CheckpointStats, CheckpointError> {
    let started = Instant::now();
    let expected = expected_namespaces(pid, opts.in_container, opts.external_netns)?;
    preflight(pid, &expected)?;
    // A carried namespace goes with the killed tree (nothing to keep for
    // the restore); an external one stays, locked whole.
    let plan = LockPlan {
        keep_for_restore: plan.keep_for_restore && expected.netns != TreeNetns::Own,
        whole_namespace: expected.netns == TreeNetns::External,
        ..plan
    };
    let mut translating;
    let sink: &mut dyn sink::CheckpointSink = if opts.in_container || expected.own_pid {
        translating = pidns::Translating::new(pid, sink)?;
        &mut translating
    } else {
        sink
    };
    // Refuse what cannot be carried, in any process, before touching one.
    let inspection = inspect_tree_in(pid, &expected, opts.external_stdio)?;
    if let Some(blocker) = inspection.blockers.into_iter().next() {
        return Err(blocker.into());
    }
    let layouts = inspection.layouts;
    let members: Vec<i32> = layouts.iter().map(|(p, _)| *p).collect();
    let mut lock = TreeLock::prepare(plan, pid, &inspection.connections)?;

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

    // The connections are silent from here on; the nft run this takes
    // stays out of the freeze.
    lock.arm_running(plan, pid, &members)?;
    sink.stopping();
    let frozen_at = Instant::now();
    let mut tree = FrozenTree::freeze(pid, expected)?;
    tracing::trace!(pid, "froze the tree");
    let dumped = dump_frozen(
        &mut tree,
        sink,
        precopies,
        (&mut lock, plan, opts.leave_running),
        &opts,
    );
    let (image, mem, segments, repaired) = match dumped {
        Ok(v) => v,
        // The connections read so far left repair mode when the dump's
        // files were dropped: they work again once the tree resumes.
        Err(err) => {
            if let Err(thaw_err) = tree.thaw() {
                tracing::error!(pid, %thaw_err, "resuming the tree after a failed checkpoint failed");
            }
            // Released once the tree runs again.
            lock.finish(false);
            return Err(err);
        }
    };
    let (processes, zombies) = (tree.procs.len() as u32, tree.zombies.len() as u32);
    let ended = if opts.leave_running {
        // Released first, as CRIU does: the window probe each connection
        // sends as it leaves repair mode, and the reset that answers it
        // when its peer is gone (a peer in the tree reset meanwhile), are
        // not dropped. Left behind, the lock is a no-op below.
        std::mem::take(&mut lock).finish(false);
        // The connections leave repair mode before the tree runs again.
        drop(repaired);
        tree.thaw()
    } else {
        // The segments went with the tree: marked for removal, they go
        // with the killed processes' attachments.
        sysvshm::remove_carried(tree.root, &segments);
        tree.kill();
        // Still in repair mode, the killed tree's connections close
        // without a FIN or RST: the restored sockets take them over.
        repaired.close_in_repair();
        Ok(())
    };
    let frozen_ms = ms(frozen_at.elapsed());
    let lock_ms = lock.frozen_ms;
    // After the kill: the sockets closed while their packets were still
    // dropped, so no reset reached a peer.
    lock.finish(plan.keep_for_restore && !opts.leave_running);
    ended?;
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
        lock_ms,
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

/// Everything done while the tree is stopped, up to the committed image.
fn dump_frozen(
    tree: &mut FrozenTree,
    sink: &mut dyn sink::CheckpointSink,
    mut precopies: Precopies,
    (lock, plan, leave_running): (&mut TreeLock, LockPlan, bool),
    opts: &CheckpointOptions,
) -> Result<
    (
        crate::image::ImageSummary,
        memory::MemoryDumpStats,
        Vec<crate::image::SysvShmImage>,
        tcp::RepairedSockets,
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
        let vmas = classify_mappings(pid, &proc::read_smaps(pid)?)?;
        let fds = classify_fds(pid)?;
        check_memfd_mappings(pid, &vmas, &fds)?;
        inspected.push(vmas);
        classified.push((pid, fds));
    }
    if let Some(e) = mark_external_stdio(&mut classified, opts.external_stdio)?
        .into_iter()
        .next()
    {
        return Err(e.into());
    }
    check_tree_fds(&classified)?;
    tracing::trace!("inspected the frozen tree");
    // Before any TCP state is read: the connections the tree opened since
    // the lock took effect are silent too.
    lock.arm_frozen(
        plan,
        tree.root,
        crate::inspect::sockets::tcp_connections(&classified),
    )?;
    let layouts: Vec<(i32, &[Vma])> = tree
        .procs
        .iter()
        .zip(&inspected)
        .map(|(f, v)| (f.pid, v.as_slice()))
        .collect();
    let (sysv_shm, refused) = tree_segments(tree.root, &layouts)?;
    if let Some(e) = refused.into_iter().next() {
        return Err(e.into());
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
    tracing::trace!("dumped every process");
    // A container's tasks go back into the cgroups its new runtime makes,
    // a PID namespace's into its new init's.
    let cgroups = if opts.in_container || tree.expected.own_pid {
        Default::default()
    } else {
        let tasks = processes
            .iter()
            .flat_map(|p| p.threads.iter().map(move |t| (p.pid, t.tid)));
        cgroups::dump_cgroups(&cgroups::Membership::read(tasks)?, &opts.cgroup_roots)?
    };
    let network_namespace = match tree.expected.netns {
        TreeNetns::Shared => crate::image::NetworkNamespace::Shared,
        TreeNetns::Own => crate::image::NetworkNamespace::Own(netns::dump_netns(tree.root)?),
        TreeNetns::External => crate::image::NetworkNamespace::External,
    };
    let mut checkpoint = Checkpoint {
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
        ghost_files: files.ghosts,
        tcp_flows: lock.flows.clone(),
        network_lock: lock.name_for_image(plan, leave_running),
        cgroups,
        ptys: files.ptys,
        network_namespace,
    };
    tracing::trace!(processes = checkpoint.processes.len(), "read the state");
    let mut mem = memory::MemoryDumpStats::default();
    // A shared anonymous object or SysV segment is dumped once, from the
    // first process that maps it; a later process's mapping of a part of
    // it no earlier mapping covered is dumped too.
    let mut shmem_dumped: Vec<(SharedObject, u64, u64)> = Vec::new();
    let mut shared_with_parents = Vec::with_capacity(checkpoint.processes.len());
    for p in &checkpoint.processes {
        let pid = p.pid;
        let vmas: Vec<Vma> = p
            .vmas
            .iter()
            .filter(|v| {
                mm::shared_object(v).map_or(true, |(o, start, end)| {
                    !shmem_dumped
                        .iter()
                        .any(|&(d, s, e)| d == o && s <= start && end <= e)
                })
            })
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
        // The parent is frozen too: the pages the two still share.
        let parent = checkpoint
            .processes
            .iter()
            .find(|q| q.pid == p.ppid && q.pid != pid)
            .map(|q| memory::ForkParent {
                pid: q.pid,
                vmas: &q.vmas,
            });
        let dumped = if sink.memory_mode() == sink::MemoryMode::Eager {
            memory::dump_memory(pid, &vmas, policy, sink, parent.as_ref())?
        } else {
            let lazy = memory::LazyAnonymous::new(policy);
            let dumped = memory::dump_memory(pid, &vmas, &lazy, sink, parent.as_ref())?;
            sink.lazy_pages(pid, lazy.into_runs())?;
            dumped
        };
        shared_with_parents.push(dumped.shared_with_parent);
        let m = dumped.stats;
        mem.pages_scanned += m.pages_scanned;
        mem.pages_written += m.pages_written;
        mem.zero_pages += m.zero_pages;
        shmem_dumped.extend(p.vmas.iter().filter_map(mm::shared_object));
    }
    for (p, shared) in checkpoint.processes.iter_mut().zip(shared_with_parents) {
        p.shared_with_parent = shared;
    }
    let summary = sink.commit(&checkpoint)?;
    Ok((summary, mem, checkpoint.sysv_shm, files.repaired))
}

/// Reads the state of the frozen process (all but its memory) into its
/// image, adding its open file descriptions to `files`; returns it with
/// the contents of its vDSO.
fn dump_process(
    frozen: &mut Frozen,
    vmas: Vec<Vma>,
    fd_kinds: &[ClassifiedFd],
    files: &mut files::TreeFiles,
    expected: &Namespaces,
) -> Result<(ProcessImage, Vec<u8>), CheckpointError> {
    let pid = frozen.pid;
    let (seccomp, thread_seccomp) = seccomp::dump_seccomp(pid, frozen)?;
    let (syscall_insn, vdso_bytes) = mm::vdso_syscall(pid, &vmas)?;

    let mut queries = Injector::new(pid, syscall_insn);
    let answers = (|| {
        let per_thread = queries.query_threads(frozen)?;
        let leader = &mut frozen.threads[0].tracee;
        let sigactions = queries.query_sigactions(leader)?;
        let brk = queries.query_brk(leader)?;
        let membarrier = queries.query_membarrier(leader)?;
        let timers = queries.query_timers(leader)?;
        let child_subreaper = queries.query_child_subreaper(leader)?;
        let dumpable = queries.query_dumpable(leader)?;
        Ok::<_, CheckpointError>((
            per_thread,
            sigactions,
            (brk, membarrier),
            timers,
            (child_subreaper, dumpable),
        ))
    })();
    // The scratch page goes away whether or not the queries succeeded.
    let unmapped = queries.finish(&mut frozen.threads[0].tracee);
    let (per_thread, sigactions, (brk, membarrier), (timers, itimers), (child_subreaper, dumpable)) =
        answers?;
    unmapped?;

    let threads = threads::dump_threads(frozen, per_thread, thread_seccomp)?;
    let shared_pending = signals::shared_pending(&frozen.threads[0].tracee, pid)?;
    let status = proc::read_status(pid)?;
    let mm = mm::mm_fields(pid, brk, membarrier)?;
    let fds = files::describe(pid, fd_kinds, files)?;
    let file_locks = locks::describe(pid, &fds, files)?;
    let file_owners = std::mem::take(&mut files.owners);
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
        creds: creds::credentials(status, dumpable),
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
        stopped: frozen.stopped(),
        child_subreaper,
        file_locks,
        // A parent outside the tree may not be comparable; what it shares
        // with the root does not matter, as the root is not cloned.
        shares_files_with_parent: kernel::shares_with(ids.ppid, pid, kernel::Shared::Files)
            .unwrap_or(false),
        shares_fs_with_parent: kernel::shares_with(ids.ppid, pid, kernel::Shared::Fs)
            .unwrap_or(false),
        file_owners,
        root: proc::read_link(format!("/proc/{pid}/root"))?,
        // Found while the memory is dumped, the parent frozen too.
        shared_with_parent: Vec::new(),
    };
    Ok((process, vdso_bytes))
}
