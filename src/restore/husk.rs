//! Rebuilding a process tree inside husks by injected system calls. The
//! root husk is spawned by migrate-agent; every other process is cloned
//! (clone3 with set_tid) from its parent's husk, so that the restored
//! parent is the real parent of its restored children.

use super::anon;
use super::{LazyPages, LazyProcess, RestoreError};
use crate::image::{
    Checkpoint, FifoEnd, FileImage, HostInfo, ImageReader, PageData, PathFileType, ProcessImage,
    ThreadImage, Vma, VmaKind, ZombieImage, PAGE_SIZE,
};
use crate::kernel;
use crate::memory::PageRuns;
use crate::proc;
use crate::ptrace::remote::{Remote, RemoteError, Scratch};
use crate::ptrace::{read_memory, resume_regs, write_memory, Tracee};
use nix::errno::Errno;
use nix::sys::ptrace::Options;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};

mod notify;

/// Size of the helper area mapped in the husk: a `syscall` instruction, a
/// scratch area for arguments and a small stack.
const HELPER_LEN: u64 = 16 * PAGE_SIZE;
/// Offset of the scratch area for strings (paths, names).
const STR_OFF: u64 = PAGE_SIZE;
/// Offset of the scratch area for structs (sigaction, clone_args, ...).
const STRUCT_OFF: u64 = 2 * PAGE_SIZE;
/// Offset of the auxiliary vector copy for PR_SET_MM_MAP.
const AUXV_OFF: u64 = 3 * PAGE_SIZE;
/// Offset of the seccomp filter program being installed.
const FILTER_OFF: u64 = 4 * PAGE_SIZE;
/// Room for it: BPF_MAXINSNS (4096) instructions of 8 bytes.
const FILTER_ROOM: u64 = 8 * PAGE_SIZE;
/// Room needed around the helper: the helper itself, and a spot to park the
/// vDSO group while it moves.
const HELPER_RESERVE: u64 = 32 << 20;
/// Where the vDSO group is parked, relative to the helper.
const PARK_OFF: u64 = 16 << 20;
/// The kernel's `sizeof(struct robust_list_head)`.
const ROBUST_LIST_HEAD_LEN: u64 = 24;
/// SECBIT_NO_SETUID_FIXUP: UID changes leave the capability sets alone.
const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
/// SECBIT_KEEP_CAPS: capabilities survive a switch from UID 0 (execve
/// clears it).
const SECBIT_KEEP_CAPS: i64 = 1 << 4;
/// `sizeof(struct prctl_mm_map)`.
const PRCTL_MM_MAP_LEN: u64 = 104;

/// Restores every process of the image's tree, each in a husk, and lets
/// them run. Returns the number of pages written. On failure every husk is
/// killed.
pub fn rebuild(reader: &ImageReader, lazy: Option<&LazyPages>) -> Result<u64, RestoreError> {
    let ck = reader.checkpoint();
    let root = ck.root().ok_or_else(|| RestoreError::Unsupported {
        pid: 0,
        why: "the image holds no process".into(),
    })?;
    let spawned = kernel::spawn_detached_husk(root.pid).map_err(|errno| match errno {
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
    let root_husk = match Husk::seize(root, ck, spawned) {
        Ok(h) => h,
        Err(e) => {
            let _ = kill(husk_pid, Signal::SIGKILL);
            return Err(e);
        }
    };
    run(reader, root_husk, lazy)
}

/// Restores the image's tree into the existing process `husk` (a created
/// container's init, waiting in its namespaces and cgroup): its extra
/// threads are ended and the root is rebuilt in it; files are handed in
/// over `channel`; `lazy` as for [`rebuild`]. On failure the husk is
/// killed.
pub fn rebuild_into(
    reader: &ImageReader,
    husk: Pid,
    channel: &super::channel::FdChannel,
    lazy: Option<&LazyPages>,
) -> Result<u64, RestoreError> {
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
    run(reader, root_husk, lazy)
}

/// Builds the tree from its root's husk and lets it run; kills every husk
/// on failure.
fn run<'a>(
    reader: &'a ImageReader,
    root_husk: Husk<'a>,
    lazy: Option<&LazyPages>,
) -> Result<u64, RestoreError> {
    // SysV segments live in the root husk's IPC namespace, before any
    // husk attaches them.
    let segments = match super::sysvshm::Segments::create(
        root_husk.pid.as_raw(),
        &reader.checkpoint().sysv_shm,
    ) {
        Ok(s) => s,
        Err(e) => {
            root_husk.abort();
            return Err(e);
        }
    };
    let mut husks = vec![root_husk];
    let built = build_tree(reader, &mut husks, lazy).and_then(|pages| {
        segments.mark_removed()?;
        // Children first, so that a parent finds its children running.
        while let Some(h) = husks.pop() {
            h.release()?;
        }
        Ok(pages)
    });
    match built {
        Ok(pages) => Ok(pages),
        Err(e) => {
            for h in husks.into_iter().rev() {
                h.abort();
            }
            segments.remove_all();
            Err(e)
        }
    }
}

/// Builds every process of the tree in `husks` (which holds the root's
/// husk; the others are added as they are cloned): first each address
/// space and the children (parents before children), then all the pages
/// in one pass over the pages file, then the rest of each process.
fn build_tree<'a>(
    reader: &'a ImageReader,
    husks: &mut Vec<Husk<'a>>,
    lazy: Option<&'a LazyPages>,
) -> Result<u64, RestoreError> {
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
    let mut fillers = Vec::with_capacity(ck.processes.len());
    for p in &ck.processes {
        let i = index_of(husks, p.pid)?;
        husks[i].map_helper()?;
        husks[i].drop_husk_state()?;
        husks[i].join_session()?;
        for c in ck
            .processes
            .iter()
            .filter(|c| c.ppid == p.pid && c.pid != p.pid)
        {
            let child = husks[i].clone_child(c.pid)?;
            let helper = husks[i].helper;
            let channel = husks[i].channel;
            husks.push(Husk::adopt(c, ck, child, helper, channel));
        }
        let zombies: Vec<&ZombieImage> = ck.zombies.iter().filter(|z| z.ppid == p.pid).collect();
        for z in &zombies {
            husks[i].create_zombie(z)?;
        }
        if !zombies.is_empty() {
            husks[i].drain_sigchld()?;
        }
        husks[i].move_vdso()?;
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
        husks[i].map_shared_anonymous(&proc_pids)?;
        fillers.push(husks[i].prepare_fill(&filled, remote)?);
        husks[i].filled = filled;
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
    let pages = reader.read_pages(|pid, vaddr, data| -> Result<(), RestoreError> {
        let filler = fillers.iter().find(|f| f.image_pid == pid).ok_or_else(|| {
            RestoreError::Unsupported {
                pid,
                why: format!(
                    "the image holds pages at {vaddr:#x} of a process it does not describe"
                ),
            }
        })?;
        filler.put(vaddr, data)
    })?;
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
        kernel::in_net_namespace(root.as_raw(), || TreeFds::create(ck)).map_err(|errno| {
            RestoreError::Injected {
                pid: husks[0].image.pid,
                call: format!("joining the network namespace of process {root}"),
                errno,
            }
        })??;
    for p in &ck.processes {
        let i = index_of(husks, p.pid)?;
        husks[i].finish(&mut tree_fds)?;
    }
    Ok(pages)
}

/// Whether process `pid` shares our mount namespace (and so our /proc).
fn same_mount_namespace(pid: Pid) -> Result<bool, RestoreError> {
    let link = |p: String| {
        std::fs::read_link(&p).map_err(|source| {
            RestoreError::Proc(proc::ProcError::Read {
                path: p.into(),
                source,
            })
        })
    };
    Ok(link(format!("/proc/{pid}/ns/mnt"))? == link("/proc/self/ns/mnt".into())?)
}

/// The open file descriptions of the tree while it is restored: the ones
/// migrate-agent creates (pipes, sockets, eventfds ...) are kept here
/// until every husk has pulled them in; one created inside a husk (a file
/// opened by path, an epoll or inotify instance, a FIFO end) is taken from
/// that husk by the other processes that share it.
struct TreeFds {
    /// Our copy of each description created here, by file index.
    ours: Vec<Option<OwnedFd>>,
    /// For a description created inside a husk: that process and an fd
    /// number it holds it at.
    installed: Vec<Option<(i32, i32)>>,
}

impl TreeFds {
    /// Creates the tree's pipes (with their data) and sockets (with their
    /// queues) here.
    fn create(ck: &Checkpoint) -> Result<Self, RestoreError> {
        let pid = ck.root().map_or(0, |p| p.pid);
        let pipes = create_pipes(pid, &ck.pipes)?;
        let mut ours = super::sockets::create(ck)?;
        for (i, file) in ck.files.iter().enumerate() {
            if let FileImage::Pipe(end) = file {
                let (rd, wr) =
                    pipes
                        .get(end.pipe as usize)
                        .ok_or_else(|| RestoreError::Unsupported {
                            pid,
                            why: format!(
                                "file #{i} is an end of pipe #{}, which the image lacks",
                                end.pipe
                            ),
                        })?;
                let end_fd = if end.write_end { wr } else { rd };
                ours[i] = Some(end_fd.try_clone().map_err(|e| RestoreError::Injected {
                    pid,
                    call: format!("dup of pipe #{}", end.pipe),
                    errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                })?);
            }
        }
        Ok(TreeFds {
            ours,
            installed: vec![None; ck.files.len()],
        })
    }
}

/// Where a husk's pages go: its userfaultfd for private anonymous memory,
/// process_vm_writev elsewhere.
struct Filler<'a> {
    /// The process as the image names it.
    image_pid: i32,
    pid: Pid,
    uffd: OwnedFd,
    /// The anonymous mappings registered for UFFDIO_COPY, in address order.
    by_copy: Vec<(u64, u64)>,
    /// Lazy restore: pages the source still holds (the image's copy of
    /// them is stale and is not installed).
    remote: Option<&'a PageRuns>,
}

/// The remote set of a process the source named no pages for.
static NOTHING_REMOTE: PageRuns = PageRuns::empty();

impl Filler<'_> {
    /// Writes pages delivered by the image reader into place.
    fn put(&self, vaddr: u64, data: PageData<'_>) -> Result<(), RestoreError> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let pid = self.pid;
        // Which way a range of a chunk goes: (end of the piece, by copy).
        let piece = |addr: u64, end: u64| {
            let i = self.by_copy.partition_point(|r: &(u64, u64)| r.1 <= addr);
            match self.by_copy.get(i) {
                Some(&(s, e)) if s <= addr => (end.min(e), true),
                Some(&(s, _)) => (end.min(s), false),
                None => (end, false),
            }
        };
        match data {
            PageData::Bytes(bytes) => {
                let mut addr = vaddr;
                let end = vaddr + bytes.len() as u64;
                while addr < end {
                    let (piece_end, copy) = piece(addr, end);
                    let src = &bytes[(addr - vaddr) as usize..(piece_end - vaddr) as usize];
                    if copy {
                        self.copy_local(addr, src)?;
                    } else {
                        write_memory(pid, addr, src)?;
                    }
                    addr = piece_end;
                }
            }
            PageData::Zero { npages } => {
                let mut addr = vaddr;
                let end = vaddr + npages * PAGE_SIZE;
                while addr < end {
                    let (piece_end, copy) = piece(addr, end);
                    // A missing anonymous page reads as zero already.
                    let mut at = addr;
                    while !copy && at < piece_end {
                        let n = (piece_end - at).min(ZEROS.len() as u64);
                        write_memory(pid, at, &ZEROS[..n as usize])?;
                        at += n;
                    }
                    addr = piece_end;
                }
            }
        }
        Ok(())
    }

    /// UFFDIO_COPY of `src` to `addr`, leaving out the pages the source
    /// still holds in a lazy restore.
    fn copy_local(&self, addr: u64, src: &[u8]) -> Result<(), RestoreError> {
        let end = addr + src.len() as u64;
        let mut at = addr;
        while at < end {
            if self.remote.is_some_and(|r| r.contains(at)) {
                at += PAGE_SIZE;
                continue;
            }
            let mut run_end = at + PAGE_SIZE;
            while run_end < end && !self.remote.is_some_and(|r| r.contains(run_end)) {
                run_end += PAGE_SIZE;
            }
            let piece = &src[(at - addr) as usize..(run_end - addr) as usize];
            let mut done = 0;
            while done < piece.len() {
                done += kernel::uffd::uffd_copy(&self.uffd, at + done as u64, &piece[done..])
                    .map_err(|errno| RestoreError::Injected {
                        pid: self.image_pid,
                        call: format!("UFFDIO_COPY of {} bytes at {at:#x}", piece.len()),
                        errno,
                    })?;
            }
            at = run_end;
        }
        Ok(())
    }
}

/// Creates the image's pipes here, each with its capacity and the data
/// that was buffered in it (`pid`, the root, names the restore in errors).
fn create_pipes(
    pid: i32,
    pipes: &[crate::image::PipeImage],
) -> Result<Vec<(OwnedFd, OwnedFd)>, RestoreError> {
    let fail = |what: String| {
        move |errno| RestoreError::Injected {
            pid,
            call: what,
            errno,
        }
    };
    let mut out = Vec::with_capacity(pipes.len());
    for p in pipes {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fail("pipe2".into()))?;
        nix::fcntl::fcntl(&wr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(p.capacity as i32)).map_err(
            fail(format!(
                "setting the size of pipe {} to {}",
                p.inode, p.capacity
            )),
        )?;
        let mut written = 0;
        while written < p.data.len() {
            written += nix::unistd::write(&wr, &p.data[written..]).map_err(fail(format!(
                "refilling pipe {} with {} bytes",
                p.inode,
                p.data.len()
            )))?;
        }
        out.push((rd, wr));
    }
    Ok(out)
}

/// A husk under construction.
struct Husk<'a> {
    image: &'a ProcessImage,
    /// The open file descriptions of the whole tree.
    files: &'a [FileImage],
    /// Every process of the tree (for process groups).
    tree: &'a Checkpoint,
    /// The checkpointing host, whose vDSO must match this one.
    host: &'a HostInfo,
    /// Which mappings receive pages (mapped writable until they are in).
    filled: Vec<bool>,
    pid: Pid,
    /// Leader first, then the threads as they are created.
    threads: Vec<Tracee>,
    /// The address of the `syscall` instruction used for injection.
    syscall_insn: u64,
    /// The helper area, once mapped.
    helper: u64,
    /// Keeps the husk alive until it is seized; closed afterwards.
    lifeline: Option<OwnedFd>,
    /// Where files are handed in when pidfd_getfd from migrate-agent is
    /// impossible (a container's husk).
    channel: Option<&'a super::channel::FdChannel>,
    /// This husk's connection on the channel, while its fds are restored.
    channel_end: Option<std::os::unix::net::UnixStream>,
    /// The husk is a process that existed before (a container's init):
    /// its pending signals are its own, not the image's.
    taken: bool,
}

/// Where and how [`Husk::map_file`] maps a file: at the mapping's range,
/// with protection `prot`, mmap flags `flags`, from file offset `offset`.
struct FileMapping<'v> {
    vma: &'v Vma,
    prot: i32,
    flags: i32,
    offset: u64,
}

/// How the husk's threads are traced.
fn trace_options() -> Options {
    Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_EXITKILL
}

fn all_signals_blocked() -> u64 {
    !0
}

impl<'a> Husk<'a> {
    fn seize(
        image: &'a ProcessImage,
        tree: &'a Checkpoint,
        spawned: kernel::SpawnedHusk,
    ) -> Result<Self, RestoreError> {
        let leader = Tracee::seize(spawned.pid, trace_options())?;
        leader.set_sigmask(all_signals_blocked())?;
        // The husk is a fork of this process, so our libc's syscall
        // instruction is at the same address in it, wherever it stopped.
        let syscall_insn =
            kernel::own_syscall_instruction().map_err(|e| RestoreError::Unsupported {
                pid: image.pid,
                why: format!("cannot find a syscall instruction to start the restore with: {e}"),
            })?;
        Ok(Husk {
            image,
            files: &tree.files,
            tree,
            host: &tree.host,
            filled: Vec::new(),
            pid: spawned.pid,
            threads: vec![leader],
            syscall_insn,
            helper: 0,
            lifeline: Some(spawned.lifeline),
            channel: None,
            channel_end: None,
            taken: false,
        })
    }

    /// Takes the existing process `pid` as the husk: seizes it, ends every
    /// thread but the leader by an injected exit, and finds a `syscall`
    /// instruction in its vDSO to start injecting with.
    fn take(
        image: &'a ProcessImage,
        tree: &'a Checkpoint,
        pid: Pid,
        channel: &'a super::channel::FdChannel,
    ) -> Result<Self, RestoreError> {
        let mut leader = Tracee::seize(pid, trace_options())?;
        leader.set_sigmask(all_signals_blocked())?;
        let vdso = proc::read_maps(pid.as_raw())?
            .into_iter()
            .find(|m| m.path == "[vdso]")
            .ok_or_else(|| RestoreError::Unsupported {
                pid: image.pid,
                why: format!("process {pid} has no [vDSO] to find a syscall instruction in"),
            })?;
        let mut bytes = vec![0u8; (vdso.end - vdso.start) as usize];
        read_memory(pid, vdso.start, &mut bytes)?;
        let syscall_insn =
            crate::ptrace::find_syscall_insn(vdso.start, &bytes).ok_or_else(|| {
                RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!("the vDSO of process {pid} holds no syscall instruction"),
                }
            })?;
        loop {
            let others: Vec<i32> = proc::task_ids(pid.as_raw())?
                .into_iter()
                .filter(|&t| t != pid.as_raw())
                .collect();
            if others.is_empty() {
                break;
            }
            for tid in others {
                end_thread(Pid::from_raw(tid), syscall_insn)?;
            }
        }
        // Signals the husk caught while seized are its own.
        leader.caught_signals.clear();
        Ok(Husk {
            image,
            files: &tree.files,
            tree,
            host: &tree.host,
            filled: Vec::new(),
            pid,
            threads: vec![leader],
            syscall_insn,
            helper: 0,
            lifeline: None,
            channel: Some(channel),
            channel_end: None,
            taken: true,
        })
    }

    /// The husk of a child cloned from its parent's husk (a copy of it,
    /// already traced): its injected calls start on the parent's helper,
    /// at `parent_helper`, until it maps its own.
    fn adopt(
        image: &'a ProcessImage,
        tree: &'a Checkpoint,
        leader: Tracee,
        parent_helper: u64,
        channel: Option<&'a super::channel::FdChannel>,
    ) -> Self {
        Husk {
            image,
            files: &tree.files,
            tree,
            host: &tree.host,
            filled: Vec::new(),
            pid: leader.tid,
            threads: vec![leader],
            syscall_insn: parent_helper,
            helper: 0,
            lifeline: None,
            channel,
            channel_end: None,
            taken: false,
        }
    }

    /// Makes the process a session leader or a process group leader, as it
    /// was, before its children are cloned so that they inherit it. Group
    /// members join their group once every process exists
    /// ([`Husk::join_group`]). A session or group outside the tree is not
    /// recreated: the process stays in the one it inherited (the root: the
    /// restorer's).
    fn join_session(&mut self) -> Result<(), RestoreError> {
        let p = self.image;
        if p.sid == p.pid && self.taken {
            // A container's init leads its session already.
            let sid = self.sys(
                0,
                |r| r.syscall(libc::SYS_getsid, &[]),
                || "getsid(0)".into(),
            )?;
            let me = self.sys(
                0,
                |r| r.syscall(libc::SYS_getpid, &[]),
                || "getpid()".into(),
            )?;
            if sid == me {
                return Ok(());
            }
        }
        if p.sid == p.pid {
            self.sys(
                0,
                |r| r.syscall(libc::SYS_setsid, &[]),
                || format!("setsid (process {} led session {})", p.pid, p.sid),
            )?;
        } else if p.pgid == p.pid {
            self.sys(
                0,
                |r| r.syscall(libc::SYS_setpgid, &[]),
                || format!("setpgid(0, 0) (process {} led its process group)", p.pid),
            )?;
        }
        Ok(())
    }

    /// Joins the process group the process was in, when its leader is
    /// another process of the tree.
    fn join_group(&mut self) -> Result<(), RestoreError> {
        let p = self.image;
        if p.pgid == p.pid || !self.tree.processes.iter().any(|q| q.pid == p.pgid) {
            return Ok(());
        }
        let pgid = p.pgid as u64;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_setpgid, &[0, pgid]),
            || format!("setpgid(0, {}) (joining its process group)", p.pgid),
        )?;
        Ok(())
    }

    /// Clones a child with PID `pid` from this husk (clone3 with set_tid,
    /// exit signal SIGCHLD): the kernel attaches it to ferry
    /// (PTRACE_O_TRACEFORK) and it waits in its first stop.
    fn clone_child(&mut self, pid: i32) -> Result<Tracee, RestoreError> {
        let tid_addr = self.put(STRUCT_OFF + 512, &pid.to_ne_bytes())?;
        let args = kernel::encode_clone_args(0, 0, 0, tid_addr, libc::SIGCHLD as u64);
        let args_addr = self.put(STRUCT_OFF, &args)?;
        let size = kernel::CLONE_ARGS_SIZE as u64;
        let r = self.sys(
            0,
            |r| r.clone3(args_addr, size),
            || format!("clone3 of child process {pid}"),
        );
        if let Err(RestoreError::Injected {
            errno: Errno::EEXIST,
            ..
        }) = r
        {
            return Err(RestoreError::PidTaken {
                pid,
                holder: "another process".into(),
            });
        }
        let new = r?.ok_or_else(|| RestoreError::Unsupported {
            pid: self.image.pid,
            why: format!("no fork event was reported for child process {pid}"),
        })?;
        Ok(Tracee::adopt_new_thread(new)?)
    }

    /// Creates the zombie child `z`: a clone of this husk that ends at once
    /// with the saved exit code or signal, and stays unreaped for the
    /// restored parent to wait for.
    fn create_zombie(&mut self, z: &ZombieImage) -> Result<(), RestoreError> {
        let mut child = self.clone_child(z.pid)?;
        let (code, signal) = (z.wait_status >> 8 & 0xff, z.wait_status & 0x7f);
        let ended = (|| -> Result<(), RestoreError> {
            if signal != 0 {
                // The default action, whatever the husk inherited.
                let act = [0u8; 32];
                write_memory(child.tid, self.helper + STRUCT_OFF + 1024, &act)?;
                let act_addr = self.helper + STRUCT_OFF + 1024;
                let set = Remote::new(&mut child, self.helper).rt_sigaction(signal, act_addr, 0);
                // Only tracing errors count: the call's own result never did.
                if let Err(RemoteError::Trace(e)) = set {
                    return Err(e.into());
                }
                child.set_sigmask(0)?;
            }
            let mut regs = child.regs()?;
            regs.rip = self.helper;
            regs.orig_rax = u64::MAX;
            if signal != 0 {
                regs.rax = libc::SYS_tgkill as u64;
                regs.rdi = z.pid as u64;
                regs.rsi = z.pid as u64;
                regs.rdx = signal as u64;
            } else {
                regs.rax = libc::SYS_exit_group as u64;
                regs.rdi = code as u64;
            }
            child.set_regs(&regs)?;
            // Run it to its end, letting its own signal through.
            let mut deliver = None;
            loop {
                nix::sys::ptrace::cont(child.tid, deliver).map_err(|errno| {
                    crate::ptrace::PtraceError::Request {
                        op: "PTRACE_CONT",
                        tid: z.pid,
                        errno,
                    }
                })?;
                match nix::sys::wait::waitpid(child.tid, Some(nix::sys::wait::WaitPidFlag::__WALL))
                {
                    Ok(nix::sys::wait::WaitStatus::Exited(..))
                    | Ok(nix::sys::wait::WaitStatus::Signaled(..)) => return Ok(()),
                    Ok(nix::sys::wait::WaitStatus::Stopped(_, sig)) => deliver = Some(sig),
                    Ok(_) | Err(Errno::EINTR) => deliver = None,
                    Err(errno) => {
                        return Err(RestoreError::Injected {
                            pid: z.pid,
                            call: "waiting for the zombie to end".into(),
                            errno,
                        })
                    }
                }
            }
        })();
        if ended.is_err() {
            let _ = kill(child.tid, Signal::SIGKILL);
        }
        ended
    }

    /// Takes away the SIGCHLD that the zombies just created queued for this
    /// process (it saw its own at the time); SIGCHLDs it had pending at
    /// checkpoint are queued again later with the other pending signals.
    fn drain_sigchld(&mut self) -> Result<(), RestoreError> {
        self.drain_signals(1u64 << (libc::SIGCHLD - 1))
    }

    /// Takes away every pending signal of `set` (until none is left).
    fn drain_signals(&mut self, set: u64) -> Result<(), RestoreError> {
        let set_addr = self.put(STRUCT_OFF, &set.to_ne_bytes())?;
        let timeout = self.put(STRUCT_OFF + 64, &[0u8; 16])?;
        loop {
            let taken = self.sys(
                0,
                |r| r.syscall(libc::SYS_rt_sigtimedwait, &[set_addr, 0, timeout, 8]),
                || format!("rt_sigtimedwait({set:#x})"),
            );
            match taken {
                Err(RestoreError::Injected {
                    errno: Errno::EAGAIN,
                    ..
                }) => return Ok(()),
                taken => taken?,
            };
        }
    }

    /// Maps the MAP_SHARED anonymous mappings whose object an earlier
    /// process of the tree already mapped (its address space is built
    /// first): the same object, opened through that process's
    /// /proc/PID/map_files, so that the processes share it again.
    ///
    /// `proc_pids` maps each image PID to the PID the husk's /proc shows
    /// that process's husk under.
    fn map_shared_anonymous(&mut self, proc_pids: &[(i32, i32)]) -> Result<(), RestoreError> {
        let image = self.image;
        for vma in &image.vmas {
            let VmaKind::SharedAnonymous { offset, .. } = vma.kind else {
                continue;
            };
            let Some((owner, first)) = self.earlier_shared_mapping(vma) else {
                continue;
            };
            let VmaKind::SharedAnonymous {
                offset: first_offset,
                ..
            } = first.kind
            else {
                continue;
            };
            let rel = offset
                .checked_sub(first_offset)
                .filter(|rel| rel + (vma.end - vma.start) <= first.end - first.start)
                .ok_or_else(|| RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!(
                        "shared memory at {:#x}-{:#x} (offset {offset:#x}) lies outside the part of the object that process {owner} maps at {:#x}-{:#x} (offset {first_offset:#x})",
                        vma.start, vma.end, first.start, first.end
                    ),
                })?;
            let shown = proc_pids
                .iter()
                .find(|(image_pid, _)| *image_pid == owner)
                .map_or(owner, |&(_, shown)| shown);
            let path = format!("/proc/{shown}/map_files/{:x}-{:x}", first.start, first.end);
            let access = if vma.prot & libc::PROT_WRITE as u32 != 0 {
                libc::O_RDWR
            } else {
                libc::O_RDONLY
            };
            let mapping = FileMapping {
                vma,
                prot: vma.prot as i32,
                flags: libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                offset: rel,
            };
            self.map_file(&path, &path, access, mapping, || {
                format!(
                    "mmap of the shared memory of process {owner} at {:#x}-{:#x}",
                    vma.start, vma.end
                )
            })?;
        }
        Ok(())
    }

    /// Runs `call` (system calls of the remote layer) in thread `idx`;
    /// a call's error fails the restore as `what`.
    fn sys<T>(
        &mut self,
        idx: usize,
        call: impl FnOnce(&mut Remote<'_>) -> Result<T, RemoteError>,
        what: impl FnOnce() -> String,
    ) -> Result<T, RestoreError> {
        let mut remote = Remote::new(&mut self.threads[idx], self.syscall_insn);
        call(&mut remote).map_err(|e| match e {
            RemoteError::Trace(e) => e.into(),
            RemoteError::Failed(errno) => RestoreError::Injected {
                pid: self.image.pid,
                call: what(),
                errno,
            },
        })
    }

    /// The helper area as the remote layer's scratch area.
    fn scratch(&self) -> Scratch {
        Scratch {
            pid: self.pid,
            addr: self.helper,
            len: HELPER_LEN,
        }
    }

    /// Writes `bytes` into the helper's scratch area at `off`; returns the
    /// address in the husk.
    fn put(&self, off: u64, bytes: &[u8]) -> Result<u64, RestoreError> {
        Ok(self.scratch().put(off, bytes)?)
    }

    /// Maps `path` (opened with `access`, named `name` in the errors of
    /// the open and close) as `mapping` says; `what` names the mmap.
    fn map_file(
        &mut self,
        path: &str,
        name: &str,
        access: i32,
        mapping: FileMapping<'_>,
        what: impl FnOnce() -> String,
    ) -> Result<(), RestoreError> {
        let path_addr = self.put_str(path)?;
        let flags = access | libc::O_CLOEXEC;
        let fd = self.sys(
            0,
            |r| r.open(path_addr, flags),
            || format!("open of {name}"),
        )?;
        let FileMapping {
            vma,
            prot,
            flags,
            offset,
        } = mapping;
        let len = vma.end - vma.start;
        let mapped = self.sys(0, |r| r.mmap(vma.start, len, prot, flags, fd, offset), what);
        self.sys(0, |r| r.close(fd), || format!("close of {name}"))?;
        mapped.map(drop)
    }

    /// Writes a NUL-terminated string into the string scratch area.
    fn put_str(&self, s: &str) -> Result<u64, RestoreError> {
        if s.len() >= PAGE_SIZE as usize {
            return Err(RestoreError::Unsupported {
                pid: self.image.pid,
                why: format!("path of {} bytes is too long", s.len()),
            });
        }
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.put(STR_OFF, &bytes)
    }

    /// Everything after the pages: the rest of the process's state, up to
    /// its final registers.
    fn finish(&mut self, tree_fds: &mut TreeFds) -> Result<(), RestoreError> {
        let filled = std::mem::take(&mut self.filled);
        self.finish_vmas(&filled)?;
        self.restore_mm()?;
        self.restore_fs_state()?;
        self.restore_rlimits()?;
        self.restore_fds(tree_fds)?;
        self.map_memfd_vmas()?;
        self.restore_sigactions()?;
        self.restore_threads()?;
        self.queue_pending_signals()?;
        self.restore_timers()?;
        self.join_group()?;
        self.restore_credentials()?;
        self.restore_seccomp()?;
        self.restore_capabilities()?;
        self.load_final_state()?;
        Ok(())
    }

    /// Maps the helper area at an address free both in the husk and in the
    /// image, and places a `syscall` instruction at its start.
    fn map_helper(&mut self) -> Result<(), RestoreError> {
        let husk_maps = proc::read_maps(self.pid.as_raw())?;
        let busy = |s: u64, e: u64| {
            husk_maps.iter().any(|m| s < m.end && m.start < e)
                || self.image.vmas.iter().any(|v| s < v.end && v.start < e)
        };
        let mut cand: u64 = 0x1_0000_0000;
        while busy(cand, cand + HELPER_RESERVE) {
            cand += HELPER_RESERVE;
            if cand >= 0x7f00_0000_0000 {
                return Err(RestoreError::Unsupported {
                    pid: self.image.pid,
                    why: "no free address range for the restore helper".into(),
                });
            }
        }
        let pid = self.pid;
        let helper = self.sys(
            0,
            |r| Scratch::map(r, pid, cand, HELPER_LEN, true),
            || format!("mmap of the helper area at {cand:#x}"),
        )?;
        let r = helper.addr;
        if r != cand {
            return Err(RestoreError::Unsupported {
                pid: self.image.pid,
                why: format!("the helper area landed at {r:#x}, not {cand:#x}"),
            });
        }
        self.helper = cand;
        write_memory(self.pid, cand, &[0x0f, 0x05, 0xcc, 0xcc])?;
        self.syscall_insn = cand;
        // From now on the tracer's PTRACE_O_EXITKILL guards the husk.
        self.lifeline = None;
        // Run injected calls on the helper's own stack.
        let mut regs = self.threads[0].regs()?;
        regs.rsp = self.helper + HELPER_LEN - 64;
        self.threads[0].set_regs(&regs)?;
        Ok(())
    }

    /// Undoes what the husk inherited from migrate-agent: its rseq
    /// registration (before its TLS disappears), its fds and its mappings.
    fn drop_husk_state(&mut self) -> Result<(), RestoreError> {
        if let Some((ptr, len, sig)) = kernel::ptrace_get_rseq(self.pid).map_err(|errno| {
            crate::ptrace::PtraceError::Request {
                op: "PTRACE_GET_RSEQ_CONFIGURATION",
                tid: self.pid.as_raw(),
                errno,
            }
        })? {
            const RSEQ_FLAG_UNREGISTER: u64 = 1;
            self.sys(
                0,
                |r| {
                    r.syscall(
                        libc::SYS_rseq,
                        &[ptr, len as u64, RSEQ_FLAG_UNREGISTER, sig as u64],
                    )
                },
                || "rseq unregistration of the husk".into(),
            )?;
        }
        self.sys(
            0,
            |r| r.close_range(0, u32::MAX),
            || "close_range of the husk's fds".into(),
        )?;
        if self.taken {
            // What was pending for the process the husk was (a container
            // init's runtime signals) is not the image's.
            self.drain_signals(all_signals_blocked())?;
        }
        for m in proc::read_maps(self.pid.as_raw())? {
            let keep = m.start == self.helper
                || matches!(
                    m.path.as_str(),
                    "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]"
                );
            if !keep {
                self.sys(
                    0,
                    |r| r.munmap(m.start, m.end - m.start),
                    || {
                        format!(
                            "munmap of the husk's {:#x}-{:#x} {}",
                            m.start, m.end, m.path
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Moves [vvar], [vvar_vclock] and [vdso] to the image's addresses,
    /// after checking that this kernel's vDSO is the image's.
    fn move_vdso(&mut self) -> Result<(), RestoreError> {
        let husk_maps = proc::read_maps(self.pid.as_raw())?;
        let kinds = [
            ("[vvar]", VmaKind::Vvar),
            ("[vvar_vclock]", VmaKind::VvarVclock),
            ("[vdso]", VmaKind::Vdso),
        ];
        // (current start, length, target start)
        let mut moves = Vec::new();
        for (name, kind) in kinds {
            let here = husk_maps.iter().find(|m| m.path == name);
            let there = self.image.vmas.iter().find(|v| v.kind == kind);
            match (here, there) {
                (Some(h), Some(t)) if h.end - h.start == t.end - t.start => moves.push((h.start, h.end - h.start, t.start)),
                (None, None) => {}
                _ => {
                    return Err(RestoreError::Unsupported {
                        pid: self.image.pid,
                        why: format!("this kernel's {name} mapping differs in size or presence from the checkpointing kernel's"),
                    })
                }
            }
        }
        let host = self.host;
        if let Some(&(start, len, _)) = moves.last() {
            let mut bytes = vec![0u8; len as usize];
            read_memory(self.pid, start, &mut bytes)?;
            let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
            if hash != host.vdso_hash || len != host.vdso_len {
                return Err(RestoreError::VdsoMismatch {
                    kernel: host.kernel_release.clone(),
                    image_len: host.vdso_len,
                    image_hash: host.vdso_hash,
                    host_len: len,
                    host_hash: hash,
                });
            }
        }
        let overlaps = moves.iter().any(|&(_, len, target)| {
            moves.iter().any(|&(start, l2, _)| {
                target < start + l2 && start < target + len && target != start
            })
        });
        let mut current: Vec<u64> = moves.iter().map(|m| m.0).collect();
        if overlaps {
            let park = self.helper + PARK_OFF;
            let base = moves.iter().map(|m| m.0).min().unwrap_or(0);
            for (i, &(_, len, _)) in moves.iter().enumerate() {
                let dst = park + (current[i] - base);
                self.mremap(current[i], len, dst)?;
                current[i] = dst;
            }
        }
        for (i, &(_, len, target)) in moves.iter().enumerate() {
            if current[i] != target {
                self.mremap(current[i], len, target)?;
            }
        }
        Ok(())
    }

    /// Moves the special mapping at `from` (`len` bytes) to `to`.
    fn mremap(&mut self, from: u64, len: u64, to: u64) -> Result<(), RestoreError> {
        self.sys(
            0,
            |r| r.move_mapping(from, len, to),
            || format!("mremap of a special mapping {from:#x} -> {to:#x}"),
        )
    }

    /// Maps every mapping of the image; those that receive pages (from the
    /// image, or in a lazy restore from the source: `remote`) are mapped
    /// writable for now. Returns which mappings need their protection put
    /// back.
    fn map_vmas(
        &mut self,
        reader: &ImageReader,
        remote: Option<&PageRuns>,
    ) -> Result<Vec<bool>, RestoreError> {
        let vmas = &self.image.vmas;
        let mut filled: Vec<bool> = vmas
            .iter()
            .map(|v| {
                v.is_private_anonymous() && remote.is_some_and(|r| r.intersects(v.start, v.end))
            })
            .collect();
        // A run may span adjacent mappings (the writer merges adjacent
        // pages); every page of it must lie in a restorable mapping.
        for run in reader.runs().iter().filter(|r| r.pid == self.image.pid) {
            let end = run.vaddr + run.npages * PAGE_SIZE;
            let mut addr = run.vaddr;
            let mut idx = vmas.partition_point(|v| v.end <= addr);
            while addr < end {
                match vmas.get(idx) {
                    Some(v) if v.start <= addr && !v.is_special() => {
                        filled[idx] = true;
                        addr = v.end;
                        idx += 1;
                    }
                    _ => {
                        return Err(RestoreError::Unsupported {
                            pid: self.image.pid,
                            why: format!(
                                "the image holds pages at {addr:#x} (in a run of {} pages at {:#x}) outside any restorable mapping",
                                run.npages, run.vaddr
                            ),
                        })
                    }
                }
            }
        }
        for (i, vma) in self.image.vmas.iter().enumerate() {
            if vma.is_special()
                || matches!(vma.kind, VmaKind::SharedMemfd { .. })
                || self.earlier_shared_mapping(vma).is_some()
            {
                continue;
            }
            self.map_vma(vma, filled[i])?;
        }
        Ok(filled)
    }

    /// Maps one mapping of the image (writable for now when `writable`).
    fn map_vma(&mut self, vma: &Vma, writable: bool) -> Result<(), RestoreError> {
        let mut prot = vma.prot as u64;
        if writable {
            prot |= libc::PROT_WRITE as u64;
        }
        if let VmaKind::SysvShm { shmid } = vma.kind {
            return self.attach_sysv(vma, shmid, prot, !writable && !vma.has_vm_flag("mw"));
        }
        let sharing = match vma.kind {
            VmaKind::SharedAnonymous { .. } | VmaKind::SharedFile { .. } => libc::MAP_SHARED,
            _ => libc::MAP_PRIVATE,
        };
        let mut flags = sharing | libc::MAP_FIXED_NOREPLACE;
        if vma.has_vm_flag("gd") {
            flags |= libc::MAP_GROWSDOWN;
        }
        if vma.has_vm_flag("nr") {
            flags |= libc::MAP_NORESERVE;
        }
        let prot = prot as i32;
        let len = vma.end - vma.start;
        match &vma.kind {
            VmaKind::File { path, offset, .. } | VmaKind::SharedFile { path, offset } => {
                // A shared writable mapping needs the file open for writing.
                let access =
                    if sharing == libc::MAP_SHARED && vma.prot & libc::PROT_WRITE as u32 != 0 {
                        libc::O_RDWR
                    } else {
                        libc::O_RDONLY
                    };
                let mapping = FileMapping {
                    vma,
                    prot,
                    flags,
                    offset: *offset,
                };
                self.map_file(
                    path,
                    &format!("mapped file {path}"),
                    access,
                    mapping,
                    || format!("mmap of {path} at {:#x}-{:#x}", vma.start, vma.end),
                )?;
            }
            _ => {
                flags |= libc::MAP_ANONYMOUS;
                self.sys(
                    0,
                    |r| r.mmap(vma.start, len, prot, flags, -1, 0),
                    || {
                        format!(
                            "mmap of anonymous memory at {:#x}-{:#x}",
                            vma.start, vma.end
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Attaches SysV segment `shmid` at the mapping's address (read-only
    /// when `rdonly`, as SHM_RDONLY made it: the mapping may never become
    /// writable), then gives it protection `prot` if shmat's differs.
    fn attach_sysv(
        &mut self,
        vma: &Vma,
        shmid: i32,
        prot: u64,
        rdonly: bool,
    ) -> Result<(), RestoreError> {
        let exec = vma.has_vm_flag("me");
        let flags =
            (if rdonly { libc::SHM_RDONLY } else { 0 }) | (if exec { libc::SHM_EXEC } else { 0 });
        self.sys(
            0,
            |r| r.shmat(shmid, vma.start, flags),
            || format!("shmat of SysV segment {shmid} at {:#x}", vma.start),
        )?;
        let attached = (libc::PROT_READ
            | if rdonly { 0 } else { libc::PROT_WRITE }
            | if exec { libc::PROT_EXEC } else { 0 }) as u64;
        if prot != attached {
            self.sys(
                0,
                |r| r.mprotect(vma.start, vma.end - vma.start, prot),
                || format!("mprotect of SysV segment {shmid} at {:#x}", vma.start),
            )?;
        }
        Ok(())
    }

    /// For a mapping of a shared anonymous object that a process before
    /// this one in the image maps too: that process's PID and mapping.
    /// [`Husk::map_shared_anonymous`] maps that object instead of a new one.
    fn earlier_shared_mapping(&self, vma: &Vma) -> Option<(i32, &'a Vma)> {
        let VmaKind::SharedAnonymous { inode, .. } = vma.kind else {
            return None;
        };
        self.tree
            .processes
            .iter()
            .take_while(|p| p.pid != self.image.pid)
            .find_map(|p| {
                p.vmas
                    .iter()
                    .find(|v| matches!(v.kind, VmaKind::SharedAnonymous { inode: i, .. } if i == inode))
                    .map(|v| (p.pid, v))
            })
    }

    /// Prepares the page fill of this husk: anonymous memory is filled
    /// through a userfaultfd taken from the husk (UFFDIO_COPY allocates
    /// each page already filled instead of zeroing it first, and a page the
    /// image says is zero is simply left missing); file mappings get their
    /// copied-on-write pages by process_vm_writev.
    ///
    /// A lazy restore (`remote` given) registers every private anonymous
    /// mapping, catches faults in system calls too, asks for the events a
    /// fault server must see (fork, mremap, madvise, munmap) and keeps the
    /// userfaultfd.
    fn prepare_fill<'r>(
        &mut self,
        filled: &[bool],
        remote: Option<&'r PageRuns>,
    ) -> Result<Filler<'r>, RestoreError> {
        use kernel::uffd::{
            UFFD_FEATURE_EVENT_FORK, UFFD_FEATURE_EVENT_REMAP, UFFD_FEATURE_EVENT_REMOVE,
            UFFD_FEATURE_EVENT_UNMAP,
        };
        let image = self.image;
        let lazy = remote.is_some();
        let uffd = self.threads[0].take_userfaultfd(self.syscall_insn, self.pid, lazy)?;
        let features = if lazy {
            UFFD_FEATURE_EVENT_FORK
                | UFFD_FEATURE_EVENT_REMAP
                | UFFD_FEATURE_EVENT_REMOVE
                | UFFD_FEATURE_EVENT_UNMAP
        } else {
            0
        };
        let injected = |call: String| {
            move |errno| RestoreError::Injected {
                pid: image.pid,
                call,
                errno,
            }
        };
        kernel::uffd::uffd_api(&uffd, features)
            .map_err(injected("UFFDIO_API on the husk's userfaultfd".into()))?;
        // Anonymous mappings that receive pages, registered for UFFDIO_COPY.
        let mut by_copy = Vec::new();
        for (vma, _) in image
            .vmas
            .iter()
            .zip(filled)
            .filter(|(v, &f)| (f || lazy) && v.is_private_anonymous() && !v.is_special())
        {
            kernel::uffd::uffd_register_missing(&uffd, vma.start, vma.end - vma.start).map_err(
                injected(format!(
                    "UFFDIO_REGISTER of {:#x}-{:#x}",
                    vma.start, vma.end
                )),
            )?;
            by_copy.push((vma.start, vma.end));
        }
        Ok(Filler {
            image_pid: image.pid,
            pid: self.pid,
            uffd,
            by_copy,
            remote,
        })
    }

    /// Puts back the protection of mappings that were mapped writable to
    /// receive pages, and the madvise flags that /proc shows.
    fn finish_vmas(&mut self, filled: &[bool]) -> Result<(), RestoreError> {
        let image = self.image;
        for (vma, &was_filled) in image.vmas.iter().zip(filled) {
            if vma.is_special() || matches!(vma.kind, VmaKind::SharedMemfd { .. }) {
                continue;
            }
            match vma.kind {
                VmaKind::SysvShm { shmid } if was_filled && !vma.has_vm_flag("mw") => {
                    // Attached writable to receive its contents: attached
                    // again read-only, as SHM_RDONLY had it.
                    self.sys(
                        0,
                        |r| r.shmdt(vma.start),
                        || format!("shmdt of SysV segment {shmid} at {:#x}", vma.start),
                    )?;
                    self.attach_sysv(vma, shmid, vma.prot as u64, true)?;
                }
                _ if was_filled && vma.prot & libc::PROT_WRITE as u32 == 0 => {
                    self.sys(
                        0,
                        |r| r.mprotect(vma.start, vma.end - vma.start, vma.prot as u64),
                        || format!("mprotect of {:#x}-{:#x}", vma.start, vma.end),
                    )?;
                }
                _ => {}
            }
            for (flag, advice) in [
                ("dd", libc::MADV_DONTDUMP),
                ("dc", libc::MADV_DONTFORK),
                ("wf", libc::MADV_WIPEONFORK),
                ("hg", libc::MADV_HUGEPAGE),
                ("nh", libc::MADV_NOHUGEPAGE),
            ] {
                if vma.has_vm_flag(flag) {
                    self.sys(
                        0,
                        |r| r.madvise(vma.start, vma.end - vma.start, advice),
                        || format!("madvise({flag}) of {:#x}-{:#x}", vma.start, vma.end),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Sets the mm fields, auxiliary vector and exe link (PR_SET_MM_MAP).
    fn restore_mm(&mut self) -> Result<(), RestoreError> {
        let mm = &self.image.mm;
        if mm.auxv.len() * 8 > PAGE_SIZE as usize {
            return Err(RestoreError::Unsupported {
                pid: self.image.pid,
                why: format!("the auxiliary vector has {} words", mm.auxv.len()),
            });
        }
        let auxv: Vec<u8> = mm.auxv.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let auxv_addr = self.put(AUXV_OFF, &auxv)?;
        let exe = self.image.exe.clone();
        let exe_addr = self.put_str(&exe)?;
        let exe_fd = self.sys(
            0,
            |r| r.open(exe_addr, libc::O_RDONLY | libc::O_CLOEXEC),
            || format!("open of the executable {exe}"),
        )?;
        let mut map = Vec::with_capacity(PRCTL_MM_MAP_LEN as usize);
        for w in [
            mm.start_code,
            mm.end_code,
            mm.start_data,
            mm.end_data,
            mm.start_brk,
            mm.brk,
            mm.start_stack,
            mm.arg_start,
            mm.arg_end,
            mm.env_start,
            mm.env_end,
            auxv_addr,
        ] {
            map.extend_from_slice(&w.to_ne_bytes());
        }
        map.extend_from_slice(&(auxv.len() as u32).to_ne_bytes());
        map.extend_from_slice(&(exe_fd as u32).to_ne_bytes());
        let map_addr = self.put(STRUCT_OFF, &map)?;
        let r = self.sys(
            0,
            |r| {
                let args = [libc::PR_SET_MM_MAP as u64, map_addr, PRCTL_MM_MAP_LEN];
                r.prctl(libc::PR_SET_MM, &args)
            },
            || format!("prctl(PR_SET_MM_MAP) with brk {:#x} and exe {exe}", mm.brk),
        );
        self.sys(0, |r| r.close(exe_fd), || "close of the executable".into())?;
        r.map(drop)
    }

    /// Sets the working directory and the umask.
    fn restore_fs_state(&mut self) -> Result<(), RestoreError> {
        let cwd = self.image.cwd.clone();
        let addr = self.put_str(&cwd)?;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_chdir, &[addr]),
            || format!("chdir to {cwd}"),
        )?;
        let umask = self.image.umask as u64;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_umask, &[umask]),
            || "umask".into(),
        )?;
        Ok(())
    }

    /// Brings in every open file description the process holds, each once:
    /// one another process of the tree already has is taken from there
    /// (our copy of a pipe, socket or anonymous file, or, for one created
    /// inside another husk, that husk's fd), pulled in by an injected
    /// pidfd_getfd; a new one is created (a file by path inside the husk; an
    /// eventfd, timerfd, signalfd or memfd here in migrate-agent, then
    /// pulled in; an epoll or inotify instance inside the husk). Each is
    /// parked above the image's fd numbers, then installed at each fd that
    /// shares it. epoll registrations come last, when every fd they name is
    /// in place.
    fn restore_fds(&mut self, tree: &mut TreeFds) -> Result<(), RestoreError> {
        let image = self.image;
        let files = self.files;
        let park_at = image.fds.iter().map(|f| f.fd).max().map_or(3, |m| m + 1);
        // The descriptions of this process, in fd order, each once.
        let mut mine: Vec<u32> = Vec::new();
        for f in &image.fds {
            if !mine.contains(&f.file) {
                mine.push(f.file);
            }
        }
        let missing = |i: u32| RestoreError::Unsupported {
            pid: image.pid,
            why: format!("an fd refers to file #{i}, which the image lacks"),
        };
        let needs_pidfd = mine.iter().any(|&i| {
            tree.installed.get(i as usize).is_some_and(Option::is_some)
                || !matches!(
                    files.get(i as usize),
                    Some(
                        FileImage::Path(_)
                            | FileImage::Epoll(_)
                            | FileImage::Inotify(_)
                            | FileImage::Fifo(_)
                    )
                )
        });
        let our_pidfd = if needs_pidfd {
            let fd = match self.channel {
                Some(channel) => self.connect_channel(channel)?,
                None => self.sys(
                    0,
                    |r| r.pidfd_open(std::process::id()),
                    || "pidfd_open of migrate-agent".into(),
                )?,
            };
            // Parked above the image's fds like the files: at a low number
            // it would be replaced by an installed fd, and closing it would
            // then close that fd.
            Some(self.park(fd, park_at, || {
                format!("parking the pidfd of migrate-agent above fd {park_at}")
            })?)
        } else {
            None
        };
        // (file index, parked fd in the husk).
        let mut parked: Vec<(u32, i32)> = Vec::with_capacity(mine.len());
        // The descriptions created in this husk.
        let mut created: Vec<u32> = Vec::new();
        // (path, parked fd in the husk) of a read-write open of each FIFO
        // that keeps it open while its ends are opened.
        let mut fifo_keepalives: Vec<(&str, i32)> = Vec::new();
        for &i in &mine {
            let file = files.get(i as usize).ok_or_else(|| missing(i))?;
            let from_husk = tree.installed.get(i as usize).copied().flatten();
            let fd = if let Some(ours) = tree.ours.get(i as usize).and_then(Option::as_ref) {
                let status = match file {
                    FileImage::Pipe(end) => Some(end.flags),
                    _ => None,
                };
                self.pull_in(our_pidfd, ours, status, &format!("file #{i}"))?
            } else if let Some((owner, fd)) = from_husk {
                let fail = |call: String| {
                    move |errno| RestoreError::Injected {
                        pid: image.pid,
                        call,
                        errno,
                    }
                };
                let ours = kernel::pidfd_open(Pid::from_raw(owner))
                    .and_then(|pidfd| kernel::pidfd_getfd(&pidfd, fd))
                    .map_err(fail(format!(
                        "taking fd {fd} of restored process {owner}, which shares file #{i}"
                    )))?;
                self.pull_in(our_pidfd, &ours, None, &format!("file #{i}"))?
            } else {
                created.push(i);
                match file {
                    FileImage::Path(f) => {
                        let mut flags = f.flags
                            & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
                        flags |= libc::O_CLOEXEC;
                        let addr = self.put_str(&f.path)?;
                        self.sys(
                            0,
                            |r| r.open(addr, flags),
                            || format!("reopening {} (flags {:#o})", f.path, flags),
                        )?
                    }
                    FileImage::Pipe(_) | FileImage::UnixSocket(_) | FileImage::InetSocket(_) => {
                        return Err(RestoreError::Unsupported {
                            pid: image.pid,
                            why: format!("file #{i} (a pipe or socket) was not created"),
                        })
                    }
                    FileImage::Eventfd(e) => {
                        let ours = anon::create_eventfd(image.pid, e)?;
                        let fd = self.pull_in(our_pidfd, &ours, Some(e.flags), "an eventfd")?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Timerfd(t) => {
                        let ours = anon::create_timerfd(image.pid, t)?;
                        let fd = self.pull_in(our_pidfd, &ours, Some(t.flags), "a timerfd")?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Signalfd(sfd) => {
                        let ours = anon::create_signalfd(image.pid, sfd)?;
                        let fd = self.pull_in(our_pidfd, &ours, Some(sfd.flags), "a signalfd")?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Epoll(e) => self.create_epoll(e)?,
                    FileImage::Inotify(ino) => self.create_inotify(ino)?,
                    FileImage::Fifo(f) => self.open_fifo(f, park_at, &mut fifo_keepalives)?,
                    FileImage::Memfd(m) => {
                        let ours = anon::create_memfd(image.pid, m)?;
                        let what = format!("memfd {}", m.name);
                        let fd = self.pull_in(our_pidfd, &ours, Some(m.flags), &what)?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                }
            };
            let park = self.park(fd, park_at, || {
                format!("parking file {i} above fd {park_at}")
            })?;
            if let (FileImage::Path(f), true) = (file, created.contains(&i)) {
                if f.file_type == PathFileType::Regular {
                    self.sys(
                        0,
                        |r| r.seek_to(park, f.pos),
                        || format!("lseek of {} to {}", f.path, f.pos),
                    )?;
                }
            }
            parked.push((i, park));
        }
        for f in &image.fds {
            let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
            let park = parked
                .iter()
                .find(|(i, _)| *i == f.file)
                .map(|&(_, p)| p)
                .ok_or_else(|| missing(f.file))?;
            self.sys(
                0,
                |r| r.dup3(park, f.fd, flags),
                || format!("installing fd {}", f.fd),
            )?;
        }
        self.register_epoll_targets(&created)?;
        // Later processes that share a description created here take it
        // from this process.
        for &i in &created {
            if tree.ours.get(i as usize).is_some_and(Option::is_none) {
                if let Some(f) = image.fds.iter().find(|f| f.file == i) {
                    tree.installed[i as usize] = Some((self.pid.as_raw(), f.fd));
                }
            }
        }
        let keepalives = fifo_keepalives.into_iter().map(|(_, fd)| fd);
        let parked = parked.into_iter().map(|(_, fd)| fd);
        for fd in parked.chain(keepalives).chain(our_pidfd) {
            self.sys(0, |r| r.close(fd), || format!("close of fd {fd}"))?;
        }
        self.channel_end = None;
        Ok(())
    }

    /// Moves `fd` to the lowest free number from `park_at` on (closing
    /// `fd`); `what` names the move. Returns the new number.
    fn park(
        &mut self,
        fd: i32,
        park_at: i32,
        what: impl FnOnce() -> String,
    ) -> Result<i32, RestoreError> {
        let parked = self.sys(0, |r| r.dup_above(fd, park_at), what)?;
        self.sys(0, |r| r.close(fd), || format!("close of fd {fd}"))?;
        Ok(parked)
    }

    /// Connects the husk to the fd channel (an injected unix socket,
    /// connected to migrate-agent's abstract name); returns the husk's fd.
    fn connect_channel(
        &mut self,
        channel: &super::channel::FdChannel,
    ) -> Result<i32, RestoreError> {
        let fd = self.sys(
            0,
            |r| r.socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC),
            || "socket(AF_UNIX) for the fd channel".into(),
        )?;
        let (addr, len) = channel.sockaddr();
        let addr_at = self.put(STRUCT_OFF, &addr)?;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_connect, &[fd as u64, addr_at, len]),
            || "connect to migrate-agent's fd channel".into(),
        )?;
        self.channel_end = Some(channel.accept(self.image.pid)?);
        Ok(fd)
    }

    /// Maps the MAP_SHARED memfd mappings from the memfds restore_fds
    /// installed (their contents came with them), at their fd numbers.
    fn map_memfd_vmas(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        for vma in &image.vmas {
            let VmaKind::SharedMemfd { inode, offset } = vma.kind else {
                continue;
            };
            let fd = image
                .fds
                .iter()
                .find(|f| {
                    matches!(self.files.get(f.file as usize),
                        Some(FileImage::Memfd(m)) if m.inode == inode)
                })
                .ok_or_else(|| RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!("no fd holds memfd inode {inode} mapped at {:#x}", vma.start),
                })?;
            let flags = libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE;
            let (len, prot) = (vma.end - vma.start, vma.prot as i32);
            self.sys(
                0,
                |r| r.mmap(vma.start, len, prot, flags, fd.fd, offset),
                || {
                    format!(
                        "mmap of memfd fd {} at {:#x}-{:#x}",
                        fd.fd, vma.start, vma.end
                    )
                },
            )?;
        }
        Ok(())
    }

    /// Opens FIFO end `f` by path in the husk; returns its fd there. The
    /// first time a FIFO is seen it is opened read-write and non-blocking
    /// (parked above `park_at`, kept in `keepalives`) so that opening the
    /// ends does not block, recreated first if it is gone; the buffered
    /// data is written back through that keep-alive.
    fn open_fifo<'f>(
        &mut self,
        f: &'f FifoEnd,
        park_at: i32,
        keepalives: &mut Vec<(&'f str, i32)>,
    ) -> Result<i32, RestoreError> {
        let pid = self.image.pid;
        let path = self.put_str(&f.path)?;
        let keepalive = match keepalives.iter().find(|(p, _)| *p == f.path) {
            Some(&(_, fd)) => fd,
            None => {
                let open = |r: &mut Remote<'_>| {
                    r.open(path, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)
                };
                let what = || format!("opening FIFO {} to keep it open", f.path);
                let fd = match self.sys(0, open, what) {
                    Err(RestoreError::Injected {
                        errno: Errno::ENOENT,
                        ..
                    }) => {
                        let mode = (libc::S_IFIFO | f.mode) as u64;
                        let at = libc::AT_FDCWD as u64;
                        self.sys(
                            0,
                            |r| r.syscall(libc::SYS_mknodat, &[at, path, mode]),
                            || format!("recreating the FIFO {} (mode {:#o})", f.path, f.mode),
                        )?;
                        self.sys(0, open, what)?
                    }
                    other => other?,
                };
                let parked = self.park(fd, park_at, || {
                    format!("parking the keep-alive of FIFO {}", f.path)
                })?;
                keepalives.push((&f.path, parked));
                parked
            }
        };
        if !f.data.is_empty() {
            let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
            let husk =
                kernel::pidfd_open(self.pid).map_err(fail("pidfd_open of the husk".into()))?;
            let writer = kernel::pidfd_getfd(&husk, keepalive)
                .map_err(fail(format!("taking the keep-alive of FIFO {}", f.path)))?;
            let mut written = 0;
            while written < f.data.len() {
                written += nix::unistd::write(&writer, &f.data[written..]).map_err(fail(
                    format!("refilling FIFO {} with {} bytes", f.path, f.data.len()),
                ))?;
            }
        }
        let flags = (f.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY))
            | libc::O_CLOEXEC;
        self.sys(
            0,
            |r| r.open(path, flags),
            || format!("reopening FIFO {} (flags {:#o})", f.path, flags),
        )
    }

    /// Gives our description `ours` the status flags `status` and takes it
    /// into the husk (pidfd_getfd through `our_pidfd`, our own pidfd opened
    /// in the husk); returns its fd there.
    fn pull_in(
        &mut self,
        our_pidfd: Option<i32>,
        ours: &OwnedFd,
        status: Option<i32>,
        what: &str,
    ) -> Result<i32, RestoreError> {
        if let Some(status) = status {
            let flags = nix::fcntl::OFlag::from_bits_truncate(status);
            nix::fcntl::fcntl(ours, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(|errno| {
                RestoreError::Injected {
                    pid: self.image.pid,
                    call: format!("F_SETFL {status:#o} on {what}"),
                    errno,
                }
            })?;
        }
        let pidfd = our_pidfd.expect("opened when files are created here");
        if let Some(end) = &self.channel_end {
            super::channel::send_fd(end, ours, self.image.pid)?;
            let iov_at = self.helper + STRUCT_OFF + 256;
            let control_at = self.helper + STRUCT_OFF + 512;
            let byte_at = self.helper + STRUCT_OFF + 1024;
            self.put(
                STRUCT_OFF + 256,
                &[byte_at.to_ne_bytes(), 1u64.to_ne_bytes()].concat(),
            )?;
            self.put(
                STRUCT_OFF + 512,
                &[0u8; super::channel::CONTROL_LEN as usize],
            )?;
            let msg = self.put(STRUCT_OFF, &super::channel::msghdr(iov_at, control_at))?;
            let flags = libc::MSG_CMSG_CLOEXEC as u64;
            self.sys(
                0,
                |r| r.syscall(libc::SYS_recvmsg, &[pidfd as u64, msg, flags]),
                || format!("recvmsg of {what} from the fd channel"),
            )?;
            let mut control = [0u8; super::channel::CONTROL_LEN as usize];
            read_memory(self.pid, control_at, &mut control)?;
            return super::channel::received_fd(&control).ok_or_else(|| {
                RestoreError::Unsupported {
                    pid: self.image.pid,
                    why: format!("{what} did not arrive over the fd channel"),
                }
            });
        }
        let fd = ours.as_raw_fd();
        self.sys(
            0,
            |r| r.pidfd_getfd(pidfd, fd),
            || format!("pidfd_getfd of {what} from migrate-agent"),
        )
    }

    fn restore_rlimits(&mut self) -> Result<(), RestoreError> {
        for l in &self.image.rlimits {
            kernel::prlimit_set(self.pid, l.resource, l.soft, l.hard).map_err(|errno| {
                RestoreError::Injected {
                    pid: self.image.pid,
                    call: format!(
                        "prlimit of resource {} to {}/{}",
                        l.resource, l.soft, l.hard
                    ),
                    errno,
                }
            })?;
        }
        Ok(())
    }

    fn restore_sigactions(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        for a in &image.sigactions {
            let mut raw = Vec::with_capacity(32);
            for w in [a.handler, a.flags, a.restorer, a.mask] {
                raw.extend_from_slice(&w.to_ne_bytes());
            }
            let addr = self.put(STRUCT_OFF, &raw)?;
            self.sys(
                0,
                |r| r.rt_sigaction(a.signo, addr, 0),
                || format!("rt_sigaction of signal {}", a.signo),
            )?;
        }
        Ok(())
    }

    /// Sets up the leader's per-thread state and creates every other thread
    /// with its TID (clone3 with set_tid) and set up its state.
    fn restore_threads(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        let leader = &image.threads[0];
        self.sys(
            0,
            |r| r.syscall(libc::SYS_set_tid_address, &[leader.clear_child_tid]),
            || "set_tid_address".into(),
        )?;
        self.restore_thread_state(0, leader)?;
        for t in &image.threads[1..] {
            let mut flags = (libc::CLONE_VM
                | libc::CLONE_FS
                | libc::CLONE_FILES
                | libc::CLONE_SIGHAND
                | libc::CLONE_THREAD
                | libc::CLONE_SYSVSEM
                | libc::CLONE_SETTLS) as u64;
            if t.clear_child_tid != 0 {
                flags |= libc::CLONE_CHILD_CLEARTID as u64;
            }
            let tid_addr = self.put(STRUCT_OFF + 512, &t.tid.to_ne_bytes())?;
            let args =
                kernel::encode_clone_args(flags, t.clear_child_tid, t.regs.fs_base, tid_addr, 0);
            let args_addr = self.put(STRUCT_OFF, &args)?;
            let size = kernel::CLONE_ARGS_SIZE as u64;
            let r = self.sys(
                0,
                |r| r.clone3(args_addr, size),
                || format!("clone3 of thread {}", t.tid),
            );
            if let Err(RestoreError::Injected {
                errno: Errno::EEXIST,
                ..
            }) = r
            {
                return Err(RestoreError::PidTaken {
                    pid: t.tid,
                    holder: "another process".into(),
                });
            }
            let new_tid = r?.ok_or_else(|| RestoreError::Unsupported {
                pid: image.pid,
                why: format!("no clone event was reported for thread {}", t.tid),
            })?;
            let tracee = Tracee::adopt_new_thread(new_tid)?;
            let mut regs = tracee.regs()?;
            regs.rsp = self.helper + HELPER_LEN - 64;
            tracee.set_regs(&regs)?;
            self.threads.push(tracee);
            let idx = self.threads.len() - 1;
            self.restore_thread_state(idx, t)?;
        }
        Ok(())
    }

    fn restore_thread_state(&mut self, idx: usize, t: &ThreadImage) -> Result<(), RestoreError> {
        // Always set it: the husk's leader inherited migrate-agent's own
        // alternate stack (Rust installs one), which must not survive when
        // the image's thread had none (SS_DISABLE).
        let mut ss = Vec::with_capacity(24);
        let disabled = t.altstack.flags & libc::SS_DISABLE != 0;
        let (sp, size) = if disabled {
            (0, 0)
        } else {
            (t.altstack.sp, t.altstack.size)
        };
        ss.extend_from_slice(&sp.to_ne_bytes());
        ss.extend_from_slice(&(t.altstack.flags as i64).to_ne_bytes());
        ss.extend_from_slice(&size.to_ne_bytes());
        let addr = self.put(STRUCT_OFF, &ss)?;
        self.sys(
            idx,
            |r| r.sigaltstack(addr, 0),
            || format!("sigaltstack of thread {} at {sp:#x}", t.tid),
        )?;
        let robust_len = if t.robust_list_len == 0 {
            ROBUST_LIST_HEAD_LEN
        } else {
            t.robust_list_len
        };
        self.sys(
            idx,
            |r| r.syscall(libc::SYS_set_robust_list, &[t.robust_list_head, robust_len]),
            || format!("set_robust_list of thread {}", t.tid),
        )?;
        if let Some(rseq) = t.rseq {
            let args = [rseq.ptr, rseq.len as u64, 0, rseq.sig as u64];
            self.sys(
                idx,
                |r| r.syscall(libc::SYS_rseq, &args),
                || format!("rseq registration of thread {} at {:#x}", t.tid, rseq.ptr),
            )?;
        }
        let name = self.put_str(&t.comm)?;
        self.sys(
            idx,
            |r| r.prctl(libc::PR_SET_NAME, &[name]),
            || format!("prctl(PR_SET_NAME, {:?}) of thread {}", t.comm, t.tid),
        )?;
        Ok(())
    }

    /// Queues the signals that were pending at checkpoint, with their
    /// siginfo, from inside the process (where the kernel allows any
    /// si_code). All signals are still blocked, so none is delivered yet.
    fn queue_pending_signals(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        let pid = image.pid as u64;
        for s in &image.shared_pending {
            let addr = self.put(STRUCT_OFF, &siginfo_bytes(&s.siginfo))?;
            let args = [pid, s.signo as u64, addr];
            self.sys(
                0,
                |r| r.syscall(libc::SYS_rt_sigqueueinfo, &args),
                || format!("queueing pending signal {}", s.signo),
            )?;
        }
        for t in &image.threads {
            for s in &t.pending {
                let addr = self.put(STRUCT_OFF, &siginfo_bytes(&s.siginfo))?;
                let args = [pid, t.tid as u64, s.signo as u64, addr];
                self.sys(
                    0,
                    |r| r.syscall(libc::SYS_rt_tgsigqueueinfo, &args),
                    || format!("queueing pending signal {} of thread {}", s.signo, t.tid),
                )?;
            }
        }
        Ok(())
    }

    /// Recreates the POSIX timers with their IDs and arms them and the
    /// interval timers with the time they had left. Signals are still
    /// blocked: an expiry from now on stays pending until the process runs.
    fn restore_timers(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        const PR_TIMER_CREATE_RESTORE_IDS: i32 = 77;
        // Linux 6.17+: timer_create takes the ID from the timer_t it is
        // given. Without it, IDs are handed out in order from 0.
        let restore_ids = !image.timers.is_empty()
            && self
                .sys(
                    0,
                    |r| r.prctl(PR_TIMER_CREATE_RESTORE_IDS, &[1]),
                    || "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)".into(),
                )
                .is_ok();
        for t in &image.timers {
            // struct sigevent: sigev_value, sigev_signo, sigev_notify, then
            // the thread ID in a 48-byte union.
            let mut ev = [0u8; 64];
            ev[0..8].copy_from_slice(&t.sigval.to_ne_bytes());
            ev[8..12].copy_from_slice(&t.signo.to_ne_bytes());
            ev[12..16].copy_from_slice(&t.notify.to_ne_bytes());
            ev[16..20].copy_from_slice(&t.notify_tid.to_ne_bytes());
            let ev_addr = self.put(STRUCT_OFF, &ev)?;
            let id_addr = self.put(STRUCT_OFF + 64, &t.id.to_ne_bytes())?;
            let args = [t.clock as u64, ev_addr, id_addr];
            self.sys(
                0,
                |r| r.syscall(libc::SYS_timer_create, &args),
                || format!("timer_create of timer {} (clock {})", t.id, t.clock),
            )?;
            let mut got = [0u8; 4];
            read_memory(self.pid, id_addr, &mut got)?;
            let got = i32::from_ne_bytes(got);
            if got != t.id {
                return Err(RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!("timer {} was recreated as timer {got}: this kernel cannot choose timer IDs (PR_TIMER_CREATE_RESTORE_IDS needs Linux 6.17)", t.id),
                });
            }
            if t.value_ns != 0 {
                let ns = |v: u64| [v / 1_000_000_000, v % 1_000_000_000];
                let spec: Vec<u8> = [ns(t.interval_ns), ns(t.value_ns)]
                    .concat()
                    .iter()
                    .flat_map(|w| w.to_ne_bytes())
                    .collect();
                let spec_addr = self.put(STRUCT_OFF + 128, &spec)?;
                let args = [t.id as u64, 0, spec_addr];
                self.sys(
                    0,
                    |r| r.syscall(libc::SYS_timer_settime, &args),
                    || format!("timer_settime of timer {}", t.id),
                )?;
            }
        }
        if restore_ids {
            self.sys(
                0,
                |r| r.prctl(PR_TIMER_CREATE_RESTORE_IDS, &[0]),
                || "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)".into(),
            )?;
        }
        for it in &image.itimers {
            let us = |v: u64| [v / 1_000_000, v % 1_000_000];
            let val: Vec<u8> = [us(it.interval_us), us(it.value_us)]
                .concat()
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect();
            let addr = self.put(STRUCT_OFF, &val)?;
            let which = it.which as u64;
            self.sys(
                0,
                |r| r.syscall(libc::SYS_setitimer, &[which, addr]),
                || format!("setitimer({}) to {} us", it.which, it.value_us),
            )?;
        }
        Ok(())
    }

    /// Sets user and group IDs, the bounding and ambient capability sets,
    /// no_new_privs and securebits in every thread (the raw system calls act
    /// on the calling thread only); done late, since dropping privileges
    /// would forbid what came before. The thread keeps the husk's permitted
    /// and effective capabilities until [`Self::restore_capabilities`].
    fn restore_credentials(&mut self) -> Result<(), RestoreError> {
        let c = &self.image.creds;
        let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        if groups.len() > PAGE_SIZE as usize {
            return Err(RestoreError::Unsupported {
                pid: self.image.pid,
                why: format!("{} supplementary groups", c.groups.len()),
            });
        }
        let last_cap = proc::cap_last_cap()?;
        for idx in 0..self.threads.len() {
            let tid = self.image.threads[idx].tid;
            let want = self.image.threads[idx].privileges;
            let had = proc::read_thread_status(self.pid.as_raw(), self.threads[idx].tid.as_raw())?;
            if self.credentials_match(idx, &had)? {
                // Nothing to change (a container's init and its clones
                // have the container's credentials already, and lack the
                // capabilities to set them).
                continue;
            }
            // UID changes then leave the capability sets alone: they are
            // set explicitly below.
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_SECUREBITS, &[SECBIT_NO_SETUID_FIXUP]),
                || format!("prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) of thread {tid}"),
            )?;
            let addr = self.put(STR_OFF, &groups)?;
            let count = c.groups.len() as u64;
            self.sys(
                idx,
                |r| r.syscall(libc::SYS_setgroups, &[count, addr]),
                || "setgroups".into(),
            )?;
            // Group IDs first: setting them needs the capability that
            // dropping the user IDs may take away.
            for (kind, setres, setfs, ids) in [
                ("gid", libc::SYS_setresgid, libc::SYS_setfsgid, c.gids),
                ("uid", libc::SYS_setresuid, libc::SYS_setfsuid, c.uids),
            ] {
                let [real, effective, saved, fs] = ids.map(u64::from);
                self.sys(
                    idx,
                    |r| r.syscall(setres, &[real, effective, saved]),
                    || format!("setres{kind}({:?}) of thread {tid}", &ids[..3]),
                )?;
                self.sys(
                    idx,
                    |r| r.syscall(setfs, &[fs]),
                    || format!("setfs{kind}({fs}) of thread {tid}"),
                )?;
            }
            // The inheritable set first: it may hold capabilities that the
            // bounding set no longer does.
            self.capset(
                idx,
                had.caps.permitted,
                had.caps.permitted,
                want.inheritable,
            )?;
            for cap in 0..=last_cap {
                let bit = 1u64 << cap;
                if want.bounding & bit == 0 && had.caps.bounding & bit != 0 {
                    self.sys(
                        idx,
                        |r| r.prctl(libc::PR_CAPBSET_DROP, &[cap as u64]),
                        || format!("prctl(PR_CAPBSET_DROP, {cap}) of thread {tid}"),
                    )?;
                }
                if want.ambient & bit != 0 {
                    let raise = libc::PR_CAP_AMBIENT_RAISE as u64;
                    self.sys(
                        idx,
                        |r| r.prctl(libc::PR_CAP_AMBIENT, &[raise, cap as u64]),
                        || format!("prctl(PR_CAP_AMBIENT_RAISE, {cap}) of thread {tid}"),
                    )?;
                }
            }
            if want.no_new_privs {
                self.sys(
                    idx,
                    |r| r.prctl(libc::PR_SET_NO_NEW_PRIVS, &[1]),
                    || format!("prctl(PR_SET_NO_NEW_PRIVS) of thread {tid}"),
                )?;
            }
            // Needs CAP_SETPCAP, which the thread still has.
            let securebits = want.securebits as u64;
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_SECUREBITS, &[securebits]),
                || {
                    format!(
                        "prctl(PR_SET_SECUREBITS, {:#x}) of thread {tid}",
                        want.securebits
                    )
                },
            )?;
        }
        Ok(())
    }

    /// Whether thread `idx` (whose status is `had`) already has the image's
    /// IDs, groups, capability sets, securebits and no_new_privs.
    fn credentials_match(&mut self, idx: usize, had: &proc::Status) -> Result<bool, RestoreError> {
        let c = &self.image.creds;
        let want = self.image.threads[idx].privileges;
        let caps = had.caps;
        let same = had.uids == c.uids
            && had.gids == c.gids
            && had.groups == c.groups
            && caps.effective == want.effective
            && caps.permitted == want.permitted
            && caps.inheritable == want.inheritable
            && caps.bounding == want.bounding
            && caps.ambient == want.ambient
            && had.no_new_privs == want.no_new_privs;
        if !same {
            return Ok(false);
        }
        let bits = self.sys(
            idx,
            |r| r.prctl(libc::PR_GET_SECUREBITS, &[]),
            || "prctl(PR_GET_SECUREBITS)".into(),
        )?;
        let want_bits = i64::from(want.securebits);
        // An OCI runtime's init waiting for its start (crun's) may still
        // have keep_caps, which its execve would have cleared; clearing it
        // needs no privilege.
        if bits != want_bits && bits & !SECBIT_KEEP_CAPS == want_bits {
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_KEEPCAPS, &[0]),
                || "prctl(PR_SET_KEEPCAPS, 0)".into(),
            )?;
            return Ok(true);
        }
        Ok(bits == want_bits)
    }

    /// Installs the seccomp filters, oldest first, from the leader for
    /// every thread (SECCOMP_FILTER_FLAG_TSYNC: they share them). The
    /// threads' filters are suspended while ferry traces them, so the calls
    /// still injected afterwards are not subject to them; CAP_SYS_ADMIN is
    /// still effective here, as a process without no_new_privs needs.
    fn restore_seccomp(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        if image.seccomp.is_empty() {
            return Ok(());
        }
        for t in &self.threads {
            nix::sys::ptrace::setoptions(t.tid, trace_options() | kernel::ptrace_suspend_seccomp())
                .map_err(|errno| crate::ptrace::PtraceError::Request {
                    op: "PTRACE_SETOPTIONS(PTRACE_O_SUSPEND_SECCOMP)",
                    tid: t.tid.as_raw(),
                    errno,
                })?;
        }
        for (i, f) in image.seccomp.iter().enumerate() {
            let prog: Vec<u8> = f
                .program
                .iter()
                .flat_map(|insn| {
                    let mut raw = insn.code.to_ne_bytes().to_vec();
                    raw.extend_from_slice(&[insn.jt, insn.jf]);
                    raw.extend_from_slice(&insn.k.to_ne_bytes());
                    raw
                })
                .collect();
            if prog.len() as u64 > FILTER_ROOM {
                return Err(RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!(
                        "seccomp filter {i} has {} instructions, more than the kernel accepts",
                        f.program.len()
                    ),
                });
            }
            let prog_addr = self.put(FILTER_OFF, &prog)?;
            // struct sock_fprog: unsigned short len, then the pointer.
            let mut fprog = (f.program.len() as u64).to_ne_bytes().to_vec();
            fprog.extend_from_slice(&prog_addr.to_ne_bytes());
            let fprog_addr = self.put(STRUCT_OFF, &fprog)?;
            let flags = libc::SECCOMP_FILTER_FLAG_TSYNC | f.flags;
            let args = [libc::SECCOMP_SET_MODE_FILTER as u64, flags, fprog_addr];
            let r = self.sys(
                0,
                |r| r.syscall(libc::SYS_seccomp, &args),
                || format!("seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x}) of filter {i}"),
            )?;
            if r != 0 {
                return Err(RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!("seccomp filter {i} could not be shared with thread {r}"),
                });
            }
        }
        Ok(())
    }

    /// Lowers every thread's effective, permitted and inheritable
    /// capabilities to the image's: the last change of privileges.
    fn restore_capabilities(&mut self) -> Result<(), RestoreError> {
        for (idx, t) in self.image.threads.iter().enumerate() {
            let p = t.privileges;
            self.capset(idx, p.effective, p.permitted, p.inheritable)?;
        }
        Ok(())
    }

    /// capset (version 3, 64-bit sets) of thread `idx`.
    fn capset(
        &mut self,
        idx: usize,
        effective: u64,
        permitted: u64,
        inheritable: u64,
    ) -> Result<(), RestoreError> {
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let mut hdr = LINUX_CAPABILITY_VERSION_3.to_ne_bytes().to_vec();
        hdr.extend_from_slice(&0i32.to_ne_bytes());
        let hdr_addr = self.put(STRUCT_OFF, &hdr)?;
        // Two struct __user_cap_data_struct: the low 32 bits, then the high.
        let mut data = Vec::with_capacity(24);
        for half in [0, 32] {
            for set in [effective, permitted, inheritable] {
                data.extend_from_slice(&((set >> half) as u32).to_ne_bytes());
            }
        }
        let data_addr = self.put(STRUCT_OFF + 64, &data)?;
        let tid = self.image.threads[idx].tid;
        self.sys(
            idx,
            |r| r.syscall(libc::SYS_capset, &[hdr_addr, data_addr]),
            || format!("capset of thread {tid} to effective {effective:#x}, permitted {permitted:#x}, inheritable {inheritable:#x}"),
        )?;
        Ok(())
    }

    /// Removes the helper (the last injected call) and loads every thread's
    /// saved registers, extended state and signal mask.
    fn load_final_state(&mut self) -> Result<(), RestoreError> {
        let helper = self.scratch();
        self.sys(
            0,
            |r| helper.unmap(r),
            || "munmap of the helper area".into(),
        )?;
        for (tracee, t) in self.threads.iter().zip(&self.image.threads) {
            tracee.set_xstate(&t.xstate)?;
            tracee.set_regs(&resume_regs(&t.regs, false))?;
            tracee.set_sigmask(t.sigmask)?;
        }
        Ok(())
    }

    /// Lets the restored process run: threads first, the leader last.
    fn release(self) -> Result<(), RestoreError> {
        let pid = self.pid;
        let caught: Vec<(Pid, i32)> = self
            .threads
            .iter()
            .flat_map(|t| t.caught_signals.iter().map(move |s| (t.tid, s.signo)))
            .collect();
        for t in self.threads.into_iter().rev() {
            t.detach()?;
        }
        // Signals sent to the husk while it was being built.
        for (tid, signo) in caught {
            let _ = kernel::tgkill(pid, tid, signo);
        }
        Ok(())
    }

    /// Kills the half-built process and waits until it is gone.
    fn abort(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        for t in self.threads.iter().rev() {
            loop {
                match nix::sys::wait::waitpid(t.tid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
                    Ok(
                        nix::sys::wait::WaitStatus::Exited(..)
                        | nix::sys::wait::WaitStatus::Signaled(..),
                    ) => break,
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
        }
    }
}

/// Ends thread `tid` of a taken husk (seizing it) by an injected exit,
/// and waits until it is gone.
fn end_thread(tid: Pid, syscall_insn: u64) -> Result<(), RestoreError> {
    let t = match Tracee::seize(tid, trace_options()) {
        Ok(t) => t,
        // It ended on its own meanwhile.
        Err(_) if !std::path::Path::new(&format!("/proc/{tid}")).exists() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut regs = t.regs()?;
    regs.rax = libc::SYS_exit as u64;
    regs.orig_rax = u64::MAX;
    regs.rdi = 0;
    regs.rip = syscall_insn;
    t.set_regs(&regs)?;
    let fail = |errno| crate::ptrace::PtraceError::Request {
        op: "PTRACE_CONT",
        tid: tid.as_raw(),
        errno,
    };
    nix::sys::ptrace::cont(tid, None).map_err(fail)?;
    loop {
        match nix::sys::wait::waitpid(tid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
            Ok(
                nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
            )
            | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) => nix::sys::ptrace::cont(tid, None).map_err(fail)?,
            Err(Errno::EINTR) => {}
            Err(errno) => {
                return Err(RestoreError::Injected {
                    pid: tid.as_raw(),
                    call: "waiting for an ended thread of the husk".into(),
                    errno,
                })
            }
        }
    }
}

/// A siginfo_t as the kernel wants it (exactly 128 bytes).
fn siginfo_bytes(raw: &[u8]) -> [u8; kernel::SIGINFO_SIZE] {
    let mut out = [0u8; kernel::SIGINFO_SIZE];
    let n = raw.len().min(out.len());
    out[..n].copy_from_slice(&raw[..n]);
    out
}
