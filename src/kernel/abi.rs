//! The x86_64 layouts of the kernel structs that checkpoint reads back
//! from injected calls and restore writes for them, each declared once.
//! The zerocopy derives check at compile time that a layout has no hidden
//! padding and can be read from any bytes, so each side converts with
//! [`IntoBytes::as_bytes`] and [`FromBytes::read_from_bytes`] (or the
//! `decode` helpers here) instead of slicing words by hand.

pub use zerocopy::{FromBytes, IntoBytes};
use zerocopy::{Immutable, KnownLayout};

use super::SIGINFO_SIZE;

/// The kernel's `struct sigaction` as rt_sigaction takes and returns it
/// (not libc's: the handler, flags, restorer, then a 64-bit mask).
#[repr(C)]
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct KernelSigaction {
    /// sa_handler (SIG_DFL 0, SIG_IGN 1, or the handler's address).
    pub handler: u64,
    /// sa_flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// sa_mask, one bit per signal.
    pub mask: u64,
}

/// The kernel's `siginfo_t` (always 128 bytes): the three leading fields
/// ferry reads, and the union it passes on untouched.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Siginfo {
    /// si_signo.
    pub signo: i32,
    /// si_errno.
    pub errno: i32,
    /// si_code.
    pub code: i32,
    /// The rest (the union, by si_code).
    pub rest: [u8; SIGINFO_SIZE - 12],
}

impl Siginfo {
    /// The siginfo saved as `raw` (as a ptrace query returned it), cut or
    /// zero-padded to the kernel's size.
    pub fn from_saved(raw: &[u8]) -> Self {
        let mut out = [0u8; SIGINFO_SIZE];
        let n = raw.len().min(out.len());
        out[..n].copy_from_slice(&raw[..n]);
        Self::read_from_bytes(&out).expect("SIGINFO_SIZE bytes")
    }
}

/// The kernel's `struct sigevent` for timer_create: the value, signal and
/// notification kind, and the thread ID of SIGEV_THREAD_ID in a 48-byte
/// union.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Sigevent {
    /// sigev_value.
    pub value: u64,
    /// sigev_signo.
    pub signo: i32,
    /// sigev_notify.
    pub notify: i32,
    /// The union's _tid (SIGEV_THREAD_ID).
    pub notify_tid: i32,
    /// The rest of the union.
    pub rest: [u8; 44],
}

/// A `struct timespec` or `struct timeval`: seconds and the fraction
/// (nanoseconds or microseconds, by the struct).
#[repr(C)]
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TimeWords {
    /// Seconds.
    pub sec: u64,
    /// Nanoseconds (timespec) or microseconds (timeval).
    pub frac: u64,
}

impl TimeWords {
    /// Splits `v` counted in units of which `per_sec` make a second.
    pub fn split(v: u64, per_sec: u64) -> Self {
        TimeWords {
            sec: v / per_sec,
            frac: v % per_sec,
        }
    }

    /// The time counted in units of which `per_sec` make a second.
    pub fn total(self, per_sec: u64) -> u64 {
        self.sec * per_sec + self.frac
    }
}

/// The kernel's `struct itimerspec` (timer_settime, timer_gettime) and
/// `struct itimerval` (setitimer, getitimer): the interval, then the time
/// left, in nanoseconds or microseconds by the struct.
#[repr(C)]
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TimerValue {
    /// it_interval.
    pub interval: TimeWords,
    /// it_value.
    pub value: TimeWords,
}

/// Nanoseconds in a second (struct itimerspec).
pub const NSEC_PER_SEC: u64 = 1_000_000_000;
/// Microseconds in a second (struct itimerval).
pub const USEC_PER_SEC: u64 = 1_000_000;

impl TimerValue {
    /// The struct for an interval and a time left counted in units of
    /// which `per_sec` make a second.
    pub fn new(interval: u64, value: u64, per_sec: u64) -> Self {
        TimerValue {
            interval: TimeWords::split(interval, per_sec),
            value: TimeWords::split(value, per_sec),
        }
    }
}

/// The kernel's `stack_t` (sigaltstack).
#[repr(C)]
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct StackT {
    /// ss_sp.
    pub sp: u64,
    /// ss_flags.
    pub flags: i32,
    /// Padding before ss_size.
    pub pad: u32,
    /// ss_size.
    pub size: u64,
}

/// The kernel's `struct prctl_mm_map` (PR_SET_MM_MAP).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PrctlMmMap {
    /// start_code, end_code, start_data, end_data, start_brk, brk,
    /// start_stack, arg_start, arg_end, env_start, env_end, in order.
    pub fields: [u64; 11],
    /// Address of the auxiliary vector.
    pub auxv: u64,
    /// Its size in bytes.
    pub auxv_size: u32,
    /// An fd of the executable, for the exe link.
    pub exe_fd: u32,
}

/// The kernel's `struct __user_cap_header_struct` (capset).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CapHeader {
    /// _LINUX_CAPABILITY_VERSION_3 for 64-bit sets.
    pub version: u32,
    /// The thread (0: the caller).
    pub pid: i32,
}

/// _LINUX_CAPABILITY_VERSION_3: capability sets of 64 bits, in two
/// [`CapData`] halves.
pub const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The kernel's `struct __user_cap_data_struct`: 32 bits of each set.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CapData {
    /// Effective set.
    pub effective: u32,
    /// Permitted set.
    pub permitted: u32,
    /// Inheritable set.
    pub inheritable: u32,
}

impl CapData {
    /// The two halves (low 32 bits, then high) of 64-bit sets, as capset
    /// version 3 takes them.
    pub fn halves(effective: u64, permitted: u64, inheritable: u64) -> [CapData; 2] {
        [0, 32].map(|half| CapData {
            effective: (effective >> half) as u32,
            permitted: (permitted >> half) as u32,
            inheritable: (inheritable >> half) as u32,
        })
    }
}

/// The kernel's `struct epoll_event`, packed on x86_64.
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct EpollEvent {
    /// Event mask.
    pub events: u32,
    /// User data.
    pub data: u64,
}

/// The kernel's `struct sock_filter`: one classic BPF instruction.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// The kernel's `struct sock_fprog` (seccomp SECCOMP_SET_MODE_FILTER).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SockFprog {
    /// Number of instructions.
    pub len: u16,
    /// Padding before the pointer.
    pub pad: [u8; 6],
    /// Address of the first [`SockFilter`].
    pub filter: u64,
}

/// The kernel's `struct rlimit64` (prlimit64).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Rlimit64 {
    /// Soft limit (u64::MAX: RLIM_INFINITY).
    pub cur: u64,
    /// Hard limit (u64::MAX: RLIM_INFINITY).
    pub max: u64,
}

/// The kernel's `struct flock` (fcntl F_SETLK, F_OFD_SETLK, F_GETLK):
/// the lock type and whence, then the range and the holder's PID, with
/// the padding x86_64 puts after whence and after the PID named.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Flock {
    /// l_type: F_RDLCK, F_WRLCK or F_UNLCK.
    pub kind: i16,
    /// l_whence: SEEK_SET for the ranges ferry takes.
    pub whence: i16,
    /// Padding before l_start.
    pub pad: u32,
    /// l_start: the first byte.
    pub start: i64,
    /// l_len: bytes locked (0: up to the end of the file).
    pub len: i64,
    /// l_pid: the holder (F_GETLK); 0 when taking a lock (and for OFD
    /// locks, which require it).
    pub pid: i32,
    /// Padding after l_pid.
    pub pad2: u32,
}

/// Reads a `T` from the start of `bytes` (read back from a tracee);
/// None if they are too short.
pub fn decode<T: FromBytes>(bytes: &[u8]) -> Option<T> {
    T::read_from_prefix(bytes).ok().map(|(value, _)| value)
}

/// The kernel's `struct tcp_repair_opt`: one TCP option negotiated at
/// connection time, given back to a socket in repair mode
/// (TCP_REPAIR_OPTIONS takes an array of them).
#[repr(C)]
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TcpRepairOpt {
    /// TCPOPT_MSS, TCPOPT_WINDOW, TCPOPT_SACK_PERM or TCPOPT_TIMESTAMP.
    pub opt_code: u32,
    /// The MSS clamp; for TCPOPT_WINDOW the send scale, with the receive
    /// scale in the high 16 bits; 0 for the others.
    pub opt_val: u32,
}

/// The kernel's `struct tcp_repair_window` (TCP_REPAIR_WINDOW): the
/// windows both ends advertised, read and set in repair mode.
#[repr(C)]
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TcpRepairWindow {
    /// Sequence number of the segment that last updated the send window.
    pub snd_wl1: u32,
    /// The send window (what the peer allows).
    pub snd_wnd: u32,
    /// The largest send window the peer ever offered.
    pub max_window: u32,
    /// The receive window advertised.
    pub rcv_wnd: u32,
    /// rcv_nxt when the receive window was last advertised.
    pub rcv_wup: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_the_kernel_sizes() {
        assert_eq!(std::mem::size_of::<KernelSigaction>(), 32);
        assert_eq!(std::mem::size_of::<Siginfo>(), 128);
        assert_eq!(std::mem::size_of::<Sigevent>(), 64);
        assert_eq!(std::mem::size_of::<TimerValue>(), 32);
        assert_eq!(std::mem::size_of::<StackT>(), 24);
        assert_eq!(std::mem::size_of::<PrctlMmMap>(), 104);
        assert_eq!(std::mem::size_of::<CapHeader>(), 8);
        assert_eq!(std::mem::size_of::<CapData>(), 12);
        assert_eq!(std::mem::size_of::<EpollEvent>(), 12);
        assert_eq!(std::mem::size_of::<SockFilter>(), 8);
        assert_eq!(std::mem::size_of::<SockFprog>(), 16);
    }

    #[test]
    fn sigaction_round_trips_through_bytes() {
        let act = KernelSigaction {
            handler: 0x401000,
            flags: 0x0400_0004,
            restorer: 0x7f00_0000_1000,
            mask: 1 << 9,
        };
        let bytes = act.as_bytes();
        assert_eq!(&bytes[..8], &0x401000u64.to_ne_bytes());
        assert_eq!(decode::<KernelSigaction>(bytes), Some(act));
        assert_eq!(decode::<KernelSigaction>(&bytes[..31]), None);
    }

    #[test]
    fn siginfo_is_padded_and_names_its_signal() {
        let s = Siginfo::from_saved(&17i32.to_ne_bytes());
        assert_eq!((s.signo, s.code), (17, 0));
        assert_eq!(s.as_bytes().len(), SIGINFO_SIZE);
    }

    #[test]
    fn timer_values_split_and_join() {
        let t = TimerValue::new(1_500_000, 2_000_001, USEC_PER_SEC);
        assert_eq!((t.interval.sec, t.interval.frac), (1, 500_000));
        assert_eq!(t.value.total(USEC_PER_SEC), 2_000_001);
        let words: Vec<u64> = [1u64, 500_000, 2, 1].to_vec();
        assert_eq!(t.as_bytes(), words.as_bytes());
    }
}

/// F_SETOWN_EX: sets who gets a description's SIGIO and SIGURG signals.
pub const F_SETOWN_EX: i32 = 15;
/// F_GETOWN_EX: reads who gets them.
pub const F_GETOWN_EX: i32 = 16;
/// F_SETSIG: the signal a description sends when it becomes ready.
pub const F_SETSIG: i32 = 10;
/// F_GETSIG: the signal set by F_SETSIG (0: SIGIO).
pub const F_GETSIG: i32 = 11;
/// `FOwnerEx::kind`: the owner is one thread.
pub const F_OWNER_TID: i32 = 0;
/// `FOwnerEx::kind`: the owner is a process.
pub const F_OWNER_PID: i32 = 1;
/// `FOwnerEx::kind`: the owner is a process group.
pub const F_OWNER_PGRP: i32 = 2;

/// The kernel's `struct f_owner_ex` (fcntl F_GETOWN_EX, F_SETOWN_EX): who
/// gets a description's SIGIO and SIGURG signals.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct FOwnerEx {
    /// F_OWNER_TID, F_OWNER_PID or F_OWNER_PGRP.
    pub kind: i32,
    /// The thread, process or group (0: none).
    pub pid: i32,
}

/// The kernel's `struct sched_attr` in its first version
/// (SCHED_ATTR_SIZE_VER0, 48 bytes): what sched_setattr takes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SchedAttr {
    /// The size of this struct (48).
    pub size: u32,
    /// SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE ...
    pub policy: u32,
    /// SCHED_FLAG_* (SCHED_FLAG_RESET_ON_FORK is 1).
    pub flags: u64,
    /// Nice value, for SCHED_OTHER and SCHED_BATCH.
    pub nice: i32,
    /// Static priority, for SCHED_FIFO and SCHED_RR.
    pub priority: u32,
    /// SCHED_DEADLINE runtime (unused here).
    pub runtime: u64,
    /// SCHED_DEADLINE deadline (unused here).
    pub deadline: u64,
    /// SCHED_DEADLINE period (unused here).
    pub period: u64,
}

impl SchedAttr {
    /// SCHED_FLAG_RESET_ON_FORK in `flags`.
    pub const RESET_ON_FORK: u64 = 1;

    /// The attributes of `policy` with `priority` and `nice`, and
    /// SCHED_FLAG_RESET_ON_FORK when `reset_on_fork`.
    pub fn new(policy: u32, reset_on_fork: bool, priority: u32, nice: i32) -> Self {
        SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy,
            flags: if reset_on_fork {
                Self::RESET_ON_FORK
            } else {
                0
            },
            nice,
            priority,
            ..SchedAttr::default()
        }
    }
}
