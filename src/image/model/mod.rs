//! The checkpoint model: plain serde types that describe a checkpointed
//! process tree. The same model is written to disk (postcard, inside the manifest)
//! and will travel over the wire, so it holds values, never live handles.

mod files;
mod mm;
mod task;
mod tty;

pub use files::*;
pub use mm::*;
use serde::{Deserialize, Serialize};
pub use task::*;
pub use tty::*;

/// Everything needed to bring a process tree back: what the host looked
/// like (to refuse an incompatible destination), every process of the tree
/// and the open file descriptions they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The host the checkpoint was taken on.
    pub host: HostInfo,
    /// Every live process of the tree, parents before children; the first
    /// is the root (the PID the checkpoint was asked for).
    pub processes: Vec<ProcessImage>,
    /// Children that had exited and were not reaped yet (zombies): they
    /// come back as processes that exit with the same status.
    pub zombies: Vec<ZombieImage>,
    /// Every open file description held by the processes, once however many
    /// fds of however many processes refer to it (dup, or inherited across
    /// fork): [`FdImage::file`](crate::image::model::FdImage::file) indexes it.
    pub files: Vec<FileImage>,
    /// Pipes whose ends the files hold, with the data buffered in them.
    pub pipes: Vec<PipeImage>,
    /// SysV shared memory segments (shmget) that the tree's processes
    /// attach ([`VmaKind::SysvShm`](crate::image::model::VmaKind::SysvShm) names them by shmid). Their contents
    /// are pages of the first process of the tree that attaches each one,
    /// at its attachment address.
    pub sysv_shm: Vec<SysvShmImage>,
    /// The root was the init (PID 1) of a PID namespace of its own, outside
    /// any container: the processes are named by their PIDs in it, and a
    /// restore makes a new PID namespace for them.
    pub pid_namespace: bool,
    /// Deleted (unlinked) regular files that fds still refer to, with
    /// their contents: [`OpenFile::ghost`](crate::image::model::OpenFile::ghost) indexes them.
    pub ghost_files: Vec<GhostFile>,
    /// The TCP connections of the tree (every state ferry carries), as
    /// their packets carry them (an IPv4-mapped address as IPv4), that a
    /// network lock kept silent from the freeze on: the restoring side
    /// locks them too until the restored tree runs.
    pub tcp_flows: Vec<TcpFlow>,
    /// The network lock (an nftables table) a local checkpoint left
    /// engaged for its restore to release once the restored tree runs
    /// (None: none, as after a migration, whose source releases its own).
    pub network_lock: Option<String>,
    /// The cgroups the tree's tasks were in, and the directories below
    /// them, put back by a restore of a plain tree (a container's tasks
    /// stay in the cgroups its runtime made).
    pub cgroups: CgroupsImage,
    /// The pseudo-terminal pairs the files' [`PtyEnd`]s are ends of.
    pub ptys: Vec<PtyImage>,
    /// The network namespace the tree lived in: migrate-agent's (or a
    /// container's, which its runtime rebuilds), one of its own carried
    /// with it, or one left outside for the restore to join.
    pub network_namespace: NetworkNamespace,
}

/// A SysV shared memory segment, recreated at restore with the same shmid
/// in the restored tree's IPC namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvShmImage {
    /// Its key (0, IPC_PRIVATE, for a private segment and for one marked
    /// for removal).
    pub key: i32,
    /// Its identifier: processes hold it, so it must come back the same.
    pub shmid: i32,
    /// Its size in bytes, as given to shmget.
    pub size: u64,
    /// Its permission bits (the low 9 bits of shm_perm.mode).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Marked for removal (IPC_RMID) while still attached: it is removed
    /// again once the restored processes have attached it, so it goes away
    /// with the last detach, as it would have.
    pub removed: bool,
}

impl Checkpoint {
    /// The root process, the one checkpoint was asked for (None only for a
    /// checkpoint without processes, which the image reader refuses).
    pub fn root(&self) -> Option<&ProcessImage> {
        self.processes.first()
    }
}

/// A child that had exited but was not reaped by its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZombieImage {
    /// Its PID.
    pub pid: i32,
    /// Its parent, a process of the tree.
    pub ppid: i32,
    /// Its process group.
    pub pgid: i32,
    /// Its session.
    pub sid: i32,
    /// The wait status its parent will reap (as waitpid reports it: exit
    /// code << 8, or the killing signal).
    pub wait_status: i32,
}

/// Facts about the checkpointing host that the restoring host must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// `uname -r` of the checkpointing kernel, for messages.
    pub kernel_release: String,
    /// XCR0: the XSAVE feature set the saved xstate was produced with.
    pub xcr0: u64,
    /// The size in bytes of the NT_X86_XSTATE regset on that host.
    pub xstate_size: u32,
    /// Length in bytes of the [vdso] mapping.
    pub vdso_len: u64,
    /// xxh3 of the [vdso] contents: the restored code jumps into it, so it
    /// must be byte-identical on the restoring host.
    pub vdso_hash: u64,
}

/// One process: its threads, memory layout, signals, files and attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessImage {
    /// PID (thread group ID) in the root PID namespace.
    pub pid: i32,
    /// Its parent's PID (for the root: a process outside the tree).
    pub ppid: i32,
    /// Its process group.
    pub pgid: i32,
    /// Its session.
    pub sid: i32,
    /// The process's comm (the leader's thread name).
    pub comm: String,
    /// Target of /proc/PID/exe.
    pub exe: String,
    /// Target of /proc/PID/cwd.
    pub cwd: String,
    /// File mode creation mask.
    pub umask: u32,
    /// User and group IDs.
    pub creds: Credentials,
    /// Resource limits, one entry per resource that the kernel reports.
    pub rlimits: Vec<Rlimit>,
    /// The mm fields that PR_SET_MM_MAP restores.
    pub mm: MmFields,
    /// Every mapping of the address space, in address order.
    pub vmas: Vec<Vma>,
    /// Every thread; the thread group leader comes first.
    pub threads: Vec<ThreadImage>,
    /// Disposition of every signal 1..=64 except SIGKILL and SIGSTOP.
    pub sigactions: Vec<SigAction>,
    /// Signals pending for the whole process (shared pending queue).
    pub shared_pending: Vec<PendingSignal>,
    /// The namespaces the process was in, as (kind, /proc link target such
    /// as "net:[4026531833]"), for the record and for `image show`: they
    /// were migrate-agent's own (others are refused today).
    pub namespaces: Vec<(String, String)>,
    /// Open file descriptors, in fd order.
    pub fds: Vec<FdImage>,
    /// POSIX timers (timer_create), in ID order.
    pub timers: Vec<PosixTimer>,
    /// The armed interval timers (setitimer; alarm is ITIMER_REAL).
    pub itimers: Vec<IntervalTimer>,
    /// Seccomp filters, oldest first, shared by every thread (the longest
    /// chain all threads start with; a thread's own further filters are
    /// in its `ThreadImage::seccomp_filters`).
    pub seccomp: Vec<SeccompFilter>,
    /// The process was stopped by job control (SIGSTOP, SIGTSTP, SIGTTIN
    /// or SIGTTOU: state 'T'): it is restored stopped, so that its parent
    /// sees it stopped and SIGCONT resumes it.
    pub stopped: bool,
    /// The process adopts its orphaned descendants
    /// (PR_SET_CHILD_SUBREAPER).
    pub child_subreaper: bool,
    /// The file locks the process holds: its POSIX record locks, and the
    /// OFD and flock() locks of the descriptions it is the first process
    /// of the image to hold (each such lock is recorded once).
    pub file_locks: Vec<FileLock>,
    /// The process shares its fd table with its parent (cloned with
    /// CLONE_FILES): restored by a clone with CLONE_FILES, its fds are its
    /// parent's.
    pub shares_files_with_parent: bool,
    /// The process shares its working directory, root and umask with its
    /// parent (cloned with CLONE_FS): restored by a clone with CLONE_FS.
    pub shares_fs_with_parent: bool,
    /// The signal-driven I/O settings (owner, signal, O_ASYNC) of the
    /// descriptions the process is the first of the image to hold, when
    /// any is set.
    pub file_owners: Vec<FileOwner>,
    /// Target of /proc/PID/root: "/" unless the process is chrooted (its
    /// cwd, fds and mappings are recorded from the namespace's root, and
    /// it chroots here again once they are restored).
    pub root: String,
    /// The runs (start, end) of private pages the process still shared
    /// copy-on-write with its parent at checkpoint (the same
    /// physical page in both pagemaps), in mappings it
    /// [inherits](crate::image::Vma::inherits) from the parent: the
    /// restore clones it with the parent's mapping and its pages already
    /// in, and writes only its other pages, so that they stay shared.
    pub shared_with_parent: Vec<(u64, u64)>,
}

/// One TCP connection as its local socket sees it: what a network lock
/// drops the packets of, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TcpFlow {
    /// The socket's own address and port.
    pub local: std::net::SocketAddr,
    /// The peer's address and port.
    pub remote: std::net::SocketAddr,
}

/// The cgroups of a tree: its hierarchies, the directories of its cgroups
/// (with what a restore that has to make them again needs), and each
/// task's cgroup in each hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupsImage {
    /// Every hierarchy the tasks were in, as /proc/PID/cgroup lists them.
    pub hierarchies: Vec<CgroupHierarchy>,
    /// Each process (its leader's TID) and each thread whose cgroups
    /// differ from its leader's: one path per hierarchy, in the order of
    /// `hierarchies`.
    pub members: Vec<CgroupMember>,
}

/// One cgroup hierarchy and the directories of the tree's cgroups in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupHierarchy {
    /// How /proc/PID/cgroup names it: its controllers ("cpu,cpuacct"),
    /// its name ("name=zdtmtst"), or empty for the cgroup v2 hierarchy.
    /// A restore finds a mount of it by these, or mounts it.
    pub controllers: String,
    /// The cgroups the tasks were in and every directory below them,
    /// parents first (none for a cgroup that is the checkpointing
    /// program's own or one of its ancestors: those exist wherever the
    /// restoring program runs).
    pub dirs: Vec<CgroupDir>,
}

/// Where a task's cgroup is in its hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPath {
    /// The path is below the cgroup the checkpointing program itself was
    /// in (and restored below the restoring program's own, which may
    /// differ on another host); otherwise from the hierarchy's root.
    pub below_own: bool,
    /// "/a/b", or "" for the checkpointing program's own cgroup (with
    /// `below_own`).
    pub path: String,
}

/// A cgroup directory: owner, mode, the files whose owner or mode was
/// changed, and the controllers' settings that a restore that makes the
/// directory again writes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// The directory.
    pub path: CgroupPath,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its control files whose owner is not root or whose mode is not
    /// the kernel's default (0644, 0444 or 0200).
    pub files: Vec<CgroupFile>,
    /// The controllers' settings (cpuset.cpus, memory.limit_in_bytes,
    /// devices.list, ...), as read from their files, in the order they
    /// are written back.
    pub properties: Vec<(String, String)>,
}

/// A control file of a cgroup whose owner or mode was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupFile {
    /// Its name in the cgroup's directory.
    pub name: String,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

/// One task's cgroups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMember {
    /// Its process.
    pub pid: i32,
    /// The task (the process's leader: `pid`, or one of its threads).
    pub tid: i32,
    /// Its cgroup in each hierarchy of [`CgroupsImage::hierarchies`].
    pub paths: Vec<CgroupPath>,
}

/// Where a plain tree's network namespace comes from at restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkNamespace {
    /// The tree shared the checkpointing program's network namespace (or
    /// is a container's, whose runtime makes it): it is restored into the
    /// restoring program's.
    Shared,
    /// The tree had a namespace of its own (`unshare --net`), carried: a
    /// restore makes a new one with this loopback and firewall before the
    /// tree's sockets are created in it.
    Own(NetnsImage),
    /// The tree lived in a namespace that was not carried (`checkpoint
    /// --external-netns`, as CRIU's external namespaces): the namespace
    /// was locked whole until the restore, which must join one
    /// (`restore --join-netns PATH`).
    External,
}

/// A network namespace ferry carries: only its loopback (other
/// interfaces are refused before the freeze) and its firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsImage {
    /// Whether lo was up.
    pub loopback_up: bool,
    /// The addresses on lo other than those the kernel gives it when it
    /// comes up (127.0.0.1/8, ::1/128), as ADDRESS/PREFIX.
    pub loopback_addresses: Vec<String>,
    /// The iptables-legacy rules, as iptables-legacy-save prints them
    /// (empty: no table in use).
    pub iptables: String,
    /// The ip6tables-legacy rules, as ip6tables-legacy-save prints them.
    pub ip6tables: String,
    /// The nftables ruleset (every table but ferry's own locks), as nft
    /// lists it, for `nft -f`.
    pub nftables: String,
}
