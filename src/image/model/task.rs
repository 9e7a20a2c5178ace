//! Per-task state of the model: threads and their registers, signals,
//! timers, credentials, resource limits and seccomp filters.

use serde::{Deserialize, Serialize};

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
    /// Whether the process may be traced and read through /proc by its own
    /// user, and dumps core (PR_GET_DUMPABLE: 0, 1, or 2 for root only).
    /// Set again after the IDs at restore: changing them resets it.
    pub dumpable: u32,
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
    /// Scheduling policy, static priority and nice value (per thread in
    /// Linux).
    pub sched: ThreadSched,
    /// Seccomp filters of this thread beyond the process's shared ones
    /// (`ProcessImage::seccomp`), oldest first: a thread that installed a
    /// filter without SECCOMP_FILTER_FLAG_TSYNC.
    pub seccomp_filters: Vec<SeccompFilter>,
    /// Whether the thread is in strict seccomp mode (read, write, exit and
    /// sigreturn only), entered again as its last restored state.
    pub seccomp_strict: bool,
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

/// A thread's scheduling, as sched_getscheduler and /proc/PID/task/TID/stat
/// report it, set again by an injected sched_setattr (and setpriority).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSched {
    /// SCHED_OTHER (0), SCHED_FIFO (1), SCHED_RR (2), SCHED_BATCH (3) or
    /// SCHED_IDLE (5); SCHED_DEADLINE is refused before the freeze.
    pub policy: u32,
    /// SCHED_RESET_ON_FORK: children start with the default policy.
    pub reset_on_fork: bool,
    /// Static priority of a real-time policy (1-99; 0 otherwise).
    pub rt_priority: u32,
    /// Nice value (-20..19), kept by the kernel under any policy.
    pub nice: i32,
}
