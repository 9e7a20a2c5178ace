//! The checkpoint model: plain serde types that describe a checkpointed
//! process tree. The same model is written to disk (postcard, inside the manifest)
//! and will travel over the wire, so it holds values, never live handles.

use serde::{Deserialize, Serialize};

/// Size of a page on every architecture ferry supports (x86_64).
pub const PAGE_SIZE: u64 = 4096;

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
    /// fork): [`FdImage::file`] indexes it.
    pub files: Vec<FileImage>,
    /// Pipes whose ends the files hold, with the data buffered in them.
    pub pipes: Vec<PipeImage>,
    /// SysV shared memory segments (shmget) that the tree's processes
    /// attach ([`VmaKind::SysvShm`] names them by shmid). Their contents
    /// are pages of the first process of the tree that attaches each one,
    /// at its attachment address.
    pub sysv_shm: Vec<SysvShmImage>,
    /// The root was the init (PID 1) of a PID namespace of its own, outside
    /// any container: the processes are named by their PIDs in it, and a
    /// restore makes a new PID namespace for them.
    pub pid_namespace: bool,
    /// Deleted (unlinked) regular files that fds still refer to, with
    /// their contents: [`OpenFile::ghost`] indexes them.
    pub ghost_files: Vec<GhostFile>,
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
    /// Seccomp filters, oldest first, shared by every thread (empty: no
    /// seccomp).
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
}

/// One seccomp filter (SECCOMP_SET_MODE_FILTER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    /// SECCOMP_FILTER_FLAG_* it was installed with, as the kernel reports
    /// them (only SECCOMP_FILTER_FLAG_LOG is kept by the kernel).
    pub flags: u64,
    /// The classic BPF program.
    pub program: Vec<BpfInstruction>,
}

/// One classic BPF instruction (struct sock_filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BpfInstruction {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// A POSIX timer: recreated with the same ID (the process holds it as a
/// timer_t) and armed with the time it had left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    /// The timer ID.
    pub id: i32,
    /// The clock it counts (CLOCK_REALTIME, CLOCK_MONOTONIC ...).
    pub clock: i32,
    /// sigev_notify: SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD, with
    /// SIGEV_THREAD_ID (4) or'ed in when it signals one thread.
    pub notify: i32,
    /// The thread signalled when SIGEV_THREAD_ID is set.
    pub notify_tid: i32,
    /// Signal delivered on expiry.
    pub signo: i32,
    /// sigev_value delivered with the signal.
    pub sigval: u64,
    /// Time left until the next expiry, in nanoseconds (0: disarmed).
    pub value_ns: u64,
    /// Period in nanoseconds (0: one-shot).
    pub interval_ns: u64,
}

/// An armed interval timer (getitimer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalTimer {
    /// ITIMER_REAL (0), ITIMER_VIRTUAL (1) or ITIMER_PROF (2).
    pub which: i32,
    /// Time left until the next expiry, in microseconds.
    pub value_us: u64,
    /// Period in microseconds (0: one-shot).
    pub interval_us: u64,
}

/// User and group IDs as /proc/PID/status reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Real, effective, saved and filesystem user IDs.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group IDs.
    pub gids: [u32; 4],
    /// Supplementary group IDs.
    pub groups: Vec<u32>,
}

/// One resource limit (RLIMIT_*), as /proc/PID/limits shows it (the
/// values prlimit64 reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The RLIMIT_* resource number.
    pub resource: u32,
    /// Soft limit (u64::MAX is RLIM_INFINITY).
    pub soft: u64,
    /// Hard limit (u64::MAX is RLIM_INFINITY).
    pub hard: u64,
}

/// The memory-descriptor fields that /proc/PID/stat exposes and
/// prctl(PR_SET_MM_MAP) sets, plus brk and the auxiliary vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmFields {
    /// Start of the code segment.
    pub start_code: u64,
    /// End of the code segment.
    pub end_code: u64,
    /// Start of the data segment.
    pub start_data: u64,
    /// End of the data segment.
    pub end_data: u64,
    /// Start of the heap (program break at exec).
    pub start_brk: u64,
    /// Current program break (from an injected brk(0)).
    pub brk: u64,
    /// Start of the main stack.
    pub start_stack: u64,
    /// Start of the argv area.
    pub arg_start: u64,
    /// End of the argv area.
    pub arg_end: u64,
    /// Start of the environment area.
    pub env_start: u64,
    /// End of the environment area.
    pub env_end: u64,
    /// The auxiliary vector as raw words (pairs of type and value).
    pub auxv: Vec<u64>,
}

/// What kind of object backs a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Private anonymous memory (including thread stacks and guard pages).
    Anonymous,
    /// The brk heap ([heap]).
    Heap,
    /// The main thread's stack ([stack]).
    Stack,
    /// A private mapping of a file.
    File {
        /// Path of the mapped file.
        path: String,
        /// Offset into the file, in bytes.
        offset: u64,
        /// The file as it was at checkpoint, to detect a changed file.
        identity: FileIdentity,
    },
    /// Anonymous memory mapped MAP_SHARED (a shmem object): its contents
    /// are in the image, read from the object by the first process of the
    /// tree that maps it; processes that share it (forked with it) map the
    /// same object again after restore.
    SharedAnonymous {
        /// The shmem object's inode at checkpoint: mappings with the same
        /// inode are one object.
        inode: u64,
        /// Offset into the object, in bytes.
        offset: u64,
    },
    /// A file mapped MAP_SHARED: the file itself holds the data (writes go
    /// to it), so it is mapped again by path and nothing is dumped.
    SharedFile {
        /// Path of the mapped file.
        path: String,
        /// Offset into the file, in bytes.
        offset: u64,
    },
    /// A memfd mapped MAP_SHARED: the memfd, held as an fd by the process,
    /// carries the data, and the mapping is made again from it once the
    /// fds are restored.
    SharedMemfd {
        /// The memfd's inode at checkpoint ([`MemfdImage::inode`]).
        inode: u64,
        /// Offset into the memfd, in bytes.
        offset: u64,
    },
    /// An attachment of a SysV shared memory segment (shmat): the segment
    /// ([`Checkpoint::sysv_shm`]) is recreated once and attached again at
    /// the same address. SHM_RDONLY shows as a mapping that may not become
    /// writable (no "mw" in its VmFlags).
    SysvShm {
        /// The segment's shmid (the inode number /proc/PID/maps shows).
        shmid: i32,
    },
    /// The [vdso] code pages.
    Vdso,
    /// The [vvar] data pages.
    Vvar,
    /// The [vvar_vclock] pages.
    VvarVclock,
    /// The legacy [vsyscall] page (fixed address, never moved).
    Vsyscall,
}

/// Identifies a file's contents well enough to notice that it changed
/// between checkpoint and restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// File size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// One mapping of the address space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// PROT_READ | PROT_WRITE | PROT_EXEC bits.
    pub prot: u32,
    /// What backs the mapping.
    pub kind: VmaKind,
    /// The VmFlags line of /proc/PID/smaps, two-letter codes separated by
    /// spaces ("gd" = grows down, "dd" = don't dump, ...).
    pub vm_flags: String,
}

impl Vma {
    /// Number of pages the mapping spans.
    pub fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }

    /// Whether the VmFlags line holds the two-letter code `flag`.
    pub fn has_vm_flag(&self, flag: &str) -> bool {
        self.vm_flags.split_whitespace().any(|f| f == flag)
    }

    /// Whether this is private anonymous memory (heap, stacks, malloc
    /// arenas): what userfaultfd can register (write-protect tracking,
    /// filling missing pages).
    pub fn is_private_anonymous(&self) -> bool {
        matches!(
            self.kind,
            VmaKind::Anonymous | VmaKind::Heap | VmaKind::Stack
        )
    }

    /// Whether this is one of the kernel's special mappings that are not
    /// restored by mmap (vdso, vvar, vvar_vclock, vsyscall).
    pub fn is_special(&self) -> bool {
        matches!(
            self.kind,
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall
        )
    }
}

/// The x86_64 general registers, field for field as `user_regs_struct`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct GeneralRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// A thread's rseq registration (PTRACE_GET_RSEQ_CONFIGURATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RseqRegistration {
    /// Address of the thread's `struct rseq`.
    pub ptr: u64,
    /// Registered length of that struct.
    pub len: u32,
    /// The abort signature.
    pub sig: u32,
}

/// A thread's alternate signal stack (sigaltstack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AltStack {
    /// Base address.
    pub sp: u64,
    /// SS_DISABLE, SS_AUTODISARM (SS_ONSTACK is a state, not a setting).
    pub flags: i32,
    /// Size in bytes.
    pub size: u64,
}

/// One queued signal with its full siginfo, so that it is delivered with
/// the same information after restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    /// Signal number.
    pub signo: i32,
    /// The raw 128-byte siginfo_t.
    pub siginfo: Vec<u8>,
}

/// One thread: CPU state and per-thread kernel state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadImage {
    /// Thread ID in the root PID namespace.
    pub tid: i32,
    /// Thread name (/proc/PID/task/TID/comm).
    pub comm: String,
    /// General registers, as stopped (rax/orig_rax may carry an interrupted
    /// system call; restore translates it).
    pub regs: GeneralRegs,
    /// The raw NT_X86_XSTATE regset (x87, SSE, AVX, AVX-512 ...).
    pub xstate: Vec<u8>,
    /// Blocked signal mask.
    pub sigmask: u64,
    /// rseq registration, if any.
    pub rseq: Option<RseqRegistration>,
    /// Robust futex list head.
    pub robust_list_head: u64,
    /// Robust futex list head length.
    pub robust_list_len: u64,
    /// clear_child_tid (set_tid_address).
    pub clear_child_tid: u64,
    /// Alternate signal stack.
    pub altstack: AltStack,
    /// Signals pending for this thread only.
    pub pending: Vec<PendingSignal>,
    /// Capabilities, securebits and no_new_privs (per thread in Linux).
    pub privileges: ThreadPrivileges,
    /// The signal the thread gets when its parent dies
    /// (PR_SET_PDEATHSIG; 0: none).
    pub pdeath_signal: i32,
}

/// A thread's privileges beyond its user and group IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadPrivileges {
    /// Effective capabilities (bit N = capability N).
    pub effective: u64,
    /// Permitted capabilities.
    pub permitted: u64,
    /// Inheritable capabilities.
    pub inheritable: u64,
    /// The capability bounding set.
    pub bounding: u64,
    /// Ambient capabilities.
    pub ambient: u64,
    /// SECBIT_* flags and their locks (PR_GET_SECUREBITS).
    pub securebits: u32,
    /// The no_new_privs bit (PR_SET_NO_NEW_PRIVS).
    pub no_new_privs: bool,
}

/// Disposition of one signal, in the kernel's `struct sigaction` layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    /// Signal number.
    pub signo: i32,
    /// Handler address, SIG_DFL (0) or SIG_IGN (1).
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// What kind of file an fd that ferry can carry refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathFileType {
    /// A regular file.
    Regular,
    /// A character device such as /dev/null, /dev/zero or /dev/urandom.
    CharDevice,
    /// A directory (opened O_RDONLY, or O_PATH), with its readdir position.
    Directory,
}

/// An open file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdImage {
    /// The fd number.
    pub fd: i32,
    /// Whether FD_CLOEXEC is set.
    pub cloexec: bool,
    /// Index into [`Checkpoint::files`] of the description it refers to.
    pub file: u32,
}

/// An open file description: what an fd refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileImage {
    /// A file opened by path.
    Path(OpenFile),
    /// One end of a pipe.
    Pipe(PipeEnd),
    /// An eventfd: a counter, recreated with its value.
    Eventfd(EventfdImage),
    /// A timerfd: a timer, re-armed with its remaining time and unread
    /// expirations.
    Timerfd(TimerfdImage),
    /// A signalfd: reads the signals of its mask queued for the reader.
    Signalfd(SignalfdImage),
    /// An epoll instance with its registrations.
    Epoll(EpollImage),
    /// An inotify instance with its watches.
    Inotify(InotifyImage),
    /// A unix domain socket: an end of a connected pair held by the
    /// process, or a bound, listening or unnamed one.
    UnixSocket(UnixSocket),
    /// A listening TCP socket or a bound (or unbound) UDP or TCP socket,
    /// IPv4 or IPv6.
    InetSocket(InetSocket),
    /// An end of a FIFO (named pipe) whose both ends the process holds,
    /// reopened by path.
    Fifo(FifoEnd),
    /// A memfd (memfd_create), recreated with its name, size, data and
    /// seals.
    Memfd(MemfdImage),
}

/// A memfd description: an anonymous file whose contents live only in
/// memory, so they travel in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdImage {
    /// The name given to memfd_create (the link shows "/memfd:NAME").
    pub name: String,
    /// Its inode at checkpoint: MAP_SHARED mappings of it name it.
    pub inode: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The ranges holding data, as (offset, bytes); holes are left out.
    pub data: Vec<(u64, Vec<u8>)>,
    /// Its seals (F_GET_SEALS); F_SEAL_SEAL alone means it was created
    /// without MFD_ALLOW_SEALING.
    pub seals: i32,
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// File offset.
    pub pos: i64,
    /// Its permission bits (st_mode & 07777, as fchmod set them; a new
    /// memfd has 0777).
    pub mode: u32,
}

/// An open FIFO description: reopened by path, with the data that was
/// buffered in the FIFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoEnd {
    /// The FIFO's path.
    pub path: String,
    /// Its permission bits, to recreate it if it is gone at restore.
    pub mode: u32,
    /// Open flags of the description, with the access mode, without
    /// O_CLOEXEC.
    pub flags: i32,
    /// The bytes buffered in the FIFO: carried by the first end of it in
    /// the image, empty in the others.
    pub data: Vec<u8>,
}

/// An eventfd (fdinfo "eventfd-count:" and "eventfd-semaphore:").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventfdImage {
    /// The counter: what a read returns (or counts down in semaphore mode).
    pub count: u64,
    /// EFD_SEMAPHORE: a read returns 1 and decrements the counter by one.
    pub semaphore: bool,
    /// Status flags of the description (O_NONBLOCK), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
}

/// A timerfd, as timerfd_gettime and fdinfo report it while the process is
/// frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerfdImage {
    /// The clock it counts on (CLOCK_REALTIME, CLOCK_MONOTONIC,
    /// CLOCK_BOOTTIME and their _ALARM variants).
    pub clockid: i32,
    /// Status flags of the description (O_NONBLOCK), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
    /// The flags of its last timerfd_settime (TFD_TIMER_ABSTIME,
    /// TFD_TIMER_CANCEL_ON_SET).
    pub settime_flags: i32,
    /// Expirations not yet read: a read after restore returns them (plus
    /// any that happen after restore).
    pub ticks: u64,
    /// Time left until the next expiration in nanoseconds; 0 when disarmed.
    pub remaining_ns: u64,
    /// The period in nanoseconds; 0 for a one-shot timer.
    pub interval_ns: u64,
    /// For a TFD_TIMER_ABSTIME timer on a wall clock (CLOCK_REALTIME,
    /// CLOCK_REALTIME_ALARM): its absolute expiry on that clock, so that it
    /// still fires at the same wall-clock time after restore. Other timers
    /// restart with `remaining_ns` from the moment of restore.
    pub deadline_ns: Option<u64>,
}

/// A signalfd (fdinfo "sigmask:").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalfdImage {
    /// The signals it reads, bit `n - 1` for signal `n`.
    pub sigmask: u64,
    /// Status flags of the description (O_NONBLOCK), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
}

/// An epoll instance. It is rebuilt inside the restored process after all
/// its other fds are in place, because the kernel keys each registration by
/// (file, fd number): later EPOLL_CTL_MOD/DEL calls must find the same key.
/// Which targets were ready is not saved: after restore, a ready
/// edge-triggered target may be reported once more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollImage {
    /// Status flags of the description (O_NONBLOCK ...), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
    /// Every registration, in the order fdinfo lists them.
    pub targets: Vec<EpollTarget>,
}

/// One registration of an epoll instance (a `tfd:` line of its fdinfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    /// The registered fd number; at checkpoint it was open in the process
    /// and referred to the registered file.
    pub fd: i32,
    /// The event mask with its flags (EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE,
    /// EPOLLWAKEUP ...), as the kernel holds it.
    pub events: u32,
    /// The user data returned with each event.
    pub data: u64,
}

/// An inotify instance. Events queued at checkpoint and not yet read are
/// not carried: they are lost. After restore the next watch the program
/// adds gets the number after the highest restored one, which may differ
/// from what it would have got (the kernel's counter is not visible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyImage {
    /// Status flags of the description (O_NONBLOCK ...), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
    /// Every watch, in increasing watch descriptor order.
    pub watches: Vec<InotifyWatch>,
}

/// The most unused watch descriptor numbers a restore skips (by adding and
/// removing a watch for each) to give every watch its saved number: the
/// kernel hands out numbers in increasing order only.
pub const MAX_SKIPPED_WATCHES: i32 = 1024;

/// One inotify watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    /// The watch descriptor the program knows it by.
    pub wd: i32,
    /// The event mask with IN_ONESHOT / IN_EXCL_UNLINK, as fdinfo shows it.
    pub mask: u32,
    /// Absolute path of the watched file or directory, found from its file
    /// handle at checkpoint.
    pub path: String,
}

/// Socket settings that ferry sets again on the recreated socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketOptions {
    /// SO_REUSEADDR.
    pub reuse_addr: bool,
    /// SO_REUSEPORT.
    pub reuse_port: bool,
    /// SO_SNDBUF as getsockopt reports it (twice what was asked for).
    pub sndbuf: u32,
    /// SO_RCVBUF as getsockopt reports it (twice what was asked for).
    pub rcvbuf: u32,
}

/// A unix domain socket (AF_UNIX).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSocket {
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub sock_type: i32,
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// The name it is bound to: the bytes of sun_path (a leading NUL for
    /// an abstract name); None when unnamed. Only unconnected sockets keep
    /// their name: a connected one is recreated as a socketpair end.
    pub name: Option<Vec<u8>>,
    /// The listen backlog, for a listening socket. Connections queued and
    /// not yet accepted at checkpoint are not carried.
    pub listen_backlog: Option<u32>,
    /// For an end of a connection whose other end the tree also holds:
    /// the index into [`Checkpoint::files`] of that other end.
    pub peer: Option<u32>,
    /// Data queued to be read at this end, one entry per message (for a
    /// stream socket the entries are just chunks of the byte stream).
    pub queued: Vec<Vec<u8>>,
    /// Buffer sizes and reuse flags.
    pub options: SocketOptions,
}

/// An IPv4 or IPv6 socket: TCP listening or not yet connected, or UDP not
/// connected and with nothing queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSocket {
    /// SOCK_STREAM (TCP) or SOCK_DGRAM (UDP).
    pub sock_type: i32,
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// The local address; None when the socket is not bound (an IPv4 or
    /// IPv6 socket is then told apart by `ipv6`).
    pub local: Option<std::net::SocketAddr>,
    /// An AF_INET6 socket (which may still be bound to an IPv4-mapped
    /// address).
    pub ipv6: bool,
    /// The listen backlog, for a listening TCP socket. Connections queued
    /// and not yet accepted at checkpoint are not carried.
    pub listen_backlog: Option<u32>,
    /// IPV6_V6ONLY (IPv6 sockets only).
    pub v6only: bool,
    /// TCP_NODELAY (TCP only).
    pub nodelay: bool,
    /// Buffer sizes and reuse flags.
    pub options: SocketOptions,
}

/// One end of a pipe (or FIFO) held by the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEnd {
    /// Index into [`Checkpoint::pipes`].
    pub pipe: u32,
    /// The write end (else the read end).
    pub write_end: bool,
    /// Status flags of this end's description (O_NONBLOCK ...), without
    /// the access mode and O_CLOEXEC.
    pub flags: i32,
}

/// A pipe: its capacity and the bytes buffered in it at checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeImage {
    /// The pipe's inode number on the checkpointing host, for messages.
    pub inode: u64,
    /// Capacity in bytes (F_GETPIPE_SZ).
    pub capacity: u32,
    /// Data written and not yet read.
    pub data: Vec<u8>,
}

/// A file opened by path, reopened by path on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    /// Absolute path.
    pub path: String,
    /// Regular file, character device or directory.
    pub file_type: PathFileType,
    /// The open flags from fdinfo (access mode, O_APPEND, O_NONBLOCK ...),
    /// without O_CLOEXEC, which is per fd.
    pub flags: i32,
    /// File position (for a directory, its readdir offset, as lseek
    /// reports it).
    pub pos: i64,
    /// For a file deleted while open: its index in
    /// [`Checkpoint::ghost_files`]; `path` is then where it was.
    pub ghost: Option<u32>,
}

/// A regular file deleted (unlinked) while fds still refer to it (CRIU's
/// "ghost file"): no path leads to it any more, so its contents travel in
/// the image. At restore it is recreated beside its old path, every
/// description of it is reopened from that one file, and it is unlinked
/// again. At most [`GHOST_FILE_MAX`] bytes are carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostFile {
    /// Where it was before it was deleted (without " (deleted)").
    pub path: String,
    /// Its permission bits (st_mode & 07777).
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its size in bytes.
    pub size: u64,
    /// The ranges holding data, as (offset, bytes); holes are left out.
    pub data: Vec<(u64, Vec<u8>)>,
    /// Last access time (seconds, nanoseconds).
    pub atime: (i64, i64),
    /// Last modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
}

/// The largest deleted file carried: its contents travel in the image.
pub const GHOST_FILE_MAX: u64 = 64 << 20;

/// Who a file lock belongs to, which decides how restore takes it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileLockKind {
    /// A POSIX record lock (F_SETLK): owned by the process.
    Posix,
    /// An open file description lock (F_OFD_SETLK): owned by the
    /// description.
    Ofd,
    /// A flock() lock: owned by the description, always the whole file.
    Flock,
}

/// One file lock, taken again through fd `fd` of its process on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// An fd of the process on the locked description.
    pub fd: i32,
    /// Its owner kind.
    pub kind: FileLockKind,
    /// A write (exclusive) lock; otherwise a read (shared) one.
    pub write: bool,
    /// First byte locked.
    pub start: u64,
    /// Bytes locked (0: up to the end of the file, however it grows).
    pub len: u64,
}
