//! Host feature probes for `migrate-agent check`: each one tries the
//! mechanism rather than reading configuration.
//!
//! Kernel configs, sysctls, seccomp filters, LSMs and container runtimes all
//! decide whether a mechanism works, and none of them can be read reliably
//! (a kernel without CONFIG_MEM_SOFT_DIRTY even accepts clear_refs and then
//! reports nothing). So every probe does the smallest real use of the
//! mechanism: it forks a child and ptraces it, reads its memory, takes an fd
//! out of it, freezes an empty cgroup, and so on. Every probe cleans up after
//! itself (children killed and reaped, cgroups removed, fds closed), on
//! failure too, and takes at most about a second (children that do not stop
//! or exit in time are killed).

use super::{cpu, pidfd_getfd, pidfd_open, ptrace_get_rseq, ptrace_get_xstate, uffd};
use crate::proc::pagemap;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, ForkResult, Pid};
use serde::Serialize;
use std::ffi::c_void;
use std::fs::{self, File};
use std::io::IoSliceMut;
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Probe name: PTRACE_SEIZE and PTRACE_INTERRUPT stop a child, which is then
/// detached. Required: every checkpoint and restore is done under ptrace.
pub const PTRACE_SEIZE: &str = "ptrace-seize";
/// Probe name: process_vm_readv reads a child's memory. Required: the dump
/// copies pages with it.
pub const PROCESS_VM_READV: &str = "process-vm-readv";
/// Probe name: pidfd_open and pidfd_getfd take an fd out of a child. Used to
/// pull a userfaultfd created inside a restored process.
pub const PIDFD_GETFD: &str = "pidfd-getfd";
/// Probe name: clone3 with set_tid creates a process with a chosen PID.
/// Required: a restore recreates every PID and TID.
pub const CLONE3_SET_TID: &str = "clone3-set-tid";
/// Probe name: prctl(PR_SET_MM, PR_SET_MM_MAP) exists. Required: a restore
/// sets the mm's code, data, brk, stack, argument and environment bounds.
pub const PRCTL_MM_MAP: &str = "prctl-mm-map";
/// Probe name: PTRACE_GETREGSET reads NT_X86_XSTATE of a stopped child.
/// Required: the FPU, SSE, AVX... state is part of every thread's image.
pub const XSTATE_REGSET: &str = "ptrace-xstate-regset";
/// Probe name: PTRACE_GET_RSEQ_CONFIGURATION reads a child's rseq
/// registration, which a restore must re-register per thread.
pub const RSEQ_CONFIGURATION: &str = "ptrace-rseq-configuration";
/// Probe name: userfaultfd with UFFDIO_API, which is enough for
/// missing-page handling: lazy restore (post-copy).
pub const USERFAULTFD: &str = "userfaultfd";
/// Probe name: userfaultfd write-protect mode (UFFD_FEATURE_PAGEFAULT_FLAG_WP).
pub const USERFAULTFD_WP: &str = "userfaultfd-wp";
/// Probe name: UFFD_FEATURE_WP_UNPOPULATED, so write-protecting a range also
/// covers pages not yet faulted in.
pub const USERFAULTFD_WP_UNPOPULATED: &str = "userfaultfd-wp-unpopulated";
/// Probe name: UFFD_FEATURE_WP_ASYNC, which lets the kernel resolve
/// write-protect faults itself: the dirty tracker that replaces soft-dirty.
pub const USERFAULTFD_WP_ASYNC: &str = "userfaultfd-wp-async";
/// Probe name: the PAGEMAP_SCAN ioctl on pagemap, which reads (and re-arms)
/// the pages written since the last scan in one call.
pub const PAGEMAP_SCAN: &str = "pagemap-scan";
/// Probe name: soft-dirty bits in pagemap (CONFIG_MEM_SOFT_DIRTY), the
/// classic dirty tracker for iterative pre-copy.
pub const SOFT_DIRTY: &str = "soft-dirty";
/// Probe name: time namespaces, to keep CLOCK_MONOTONIC continuous across a
/// migration.
pub const TIME_NAMESPACE: &str = "time-namespace";
/// Probe name: the cgroup v1 freezer, to stop a whole container at once.
pub const CGROUP_V1_FREEZER: &str = "cgroup-v1-freezer";
/// Probe name: cgroup v2 cgroup.freeze, to stop a whole container at once.
pub const CGROUP_V2_FREEZE: &str = "cgroup-v2-freeze";
/// Probe name: TCP_REPAIR, to checkpoint and restore established TCP
/// connections.
pub const TCP_REPAIR: &str = "tcp-repair";

/// How long a probe waits for a child to stop or exit before killing it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a cgroup probe waits for an empty cgroup to report a new state.
const CGROUP_TIMEOUT: Duration = Duration::from_millis(200);
/// `status >> 16` of waitpid for a PTRACE_INTERRUPT (or group) stop of a
/// seized tracee; libc only has it for uclibc.
const PTRACE_EVENT_STOP: i32 = 128;
/// Size of struct prctl_mm_map on x86_64, the size ferry's restore passes to
/// PR_SET_MM_MAP (the kernel refuses any other size).
const PRCTL_MM_MAP_SIZE: u32 = 104;
/// A value the process_vm_readv probe reads out of a forked child, where it
/// sits at the same address as in this process.
static PROCESS_VM_READV_MARKER: u64 = 0x6665_7272_7970_726f;
/// Numbers the temporary cgroups of concurrent probe runs apart.
static CGROUP_SEQUENCE: AtomicU32 = AtomicU32::new(0);
/// Serializes soft-dirty probes: a concurrent clear_refs of this process
/// would clear the bit between another probe's write and read.
static SOFT_DIRTY_LOCK: Mutex<()> = Mutex::new(());

/// userfaultfd feature bits (UFFDIO_API) with their names, for reports.
const UFFD_FEATURES: &[(u32, &str)] = &[
    (0, "wp"),
    (1, "event-fork"),
    (2, "event-remap"),
    (3, "event-remove"),
    (4, "missing-hugetlbfs"),
    (5, "missing-shmem"),
    (6, "event-unmap"),
    (7, "sigbus"),
    (8, "thread-id"),
    (9, "minor-hugetlbfs"),
    (10, "minor-shmem"),
    (11, "exact-address"),
    (12, "wp-hugetlbfs-shmem"),
    (13, "wp-unpopulated"),
    (14, "poison"),
    (15, "wp-async"),
    (16, "move"),
];
/// UFFD_FEATURE_PAGEFAULT_FLAG_WP.
const UFFD_FEATURE_WP: u32 = 0;
/// UFFD_FEATURE_WP_UNPOPULATED.
const UFFD_FEATURE_WP_UNPOPULATED: u32 = 13;
/// UFFD_FEATURE_WP_ASYNC.
const UFFD_FEATURE_WP_ASYNC: u32 = 15;

/// What a probe found out about one mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// The mechanism was tried and worked.
    Present,
    /// The kernel or host lacks the mechanism (unknown system call, ioctl or
    /// flag, no such mount).
    Absent,
    /// The probe could not use the mechanism for another reason (permission,
    /// resources, unexpected behaviour): it may exist but is unusable here.
    Failed,
}

impl ProbeStatus {
    /// The status as the word printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Present => "present",
            ProbeStatus::Absent => "absent",
            ProbeStatus::Failed => "failed",
        }
    }
}

/// The outcome of trying one mechanism, as `migrate-agent check` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// Which mechanism (one of this module's probe name constants).
    pub name: &'static str,
    /// Whether it worked.
    pub status: ProbeStatus,
    /// Whether checkpoint/restore is impossible without it.
    pub required: bool,
    /// What was tried and seen, or why it did not work.
    pub detail: String,
}

/// The CPU's XSAVE configuration: a thread's register image can only be
/// loaded on a CPU with the same state components enabled.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// XCR0: the XSAVE state components the kernel enabled.
    pub xcr0: u64,
    /// Size in bytes of the XSAVE area for those components.
    pub xsave_size: u32,
    /// Names of the enabled components.
    pub xsave_components: Vec<&'static str>,
}

/// Everything `migrate-agent check` learns about this host: which of the
/// mechanisms ferry uses work here, so a migration can be refused up front
/// instead of failing half-way.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// The kernel release (uname -r): both ends of a migration should match.
    pub kernel_release: String,
    /// The CPU's XSAVE configuration.
    pub cpu: CpuReport,
    /// One result per mechanism, in probing order.
    pub probes: Vec<ProbeResult>,
}

impl HostReport {
    /// The required mechanisms that did not work: each one makes
    /// checkpoint/restore impossible on this host.
    pub fn checkpoint_blockers(&self) -> Vec<&ProbeResult> {
        self.probes
            .iter()
            .filter(|p| p.required && p.status != ProbeStatus::Present)
            .collect()
    }

    /// Whether every mechanism checkpoint/restore needs works here.
    pub fn can_checkpoint(&self) -> bool {
        self.checkpoint_blockers().is_empty()
    }

    /// The result of the probe called `name`, to choose between optional
    /// mechanisms (for example the dirty-page tracker).
    pub fn probe(&self, name: &str) -> Option<&ProbeResult> {
        self.probes.iter().find(|p| p.name == name)
    }
}

/// Tries every mechanism ferry uses on this host and reports what works.
/// Takes well under two seconds and leaves no process, fd or cgroup behind.
pub fn probe_host() -> HostReport {
    let xcr0 = cpu::xcr0();
    let mut probes = vec![
        result(PTRACE_SEIZE, true, probe_ptrace_seize()),
        result(PROCESS_VM_READV, true, probe_process_vm_readv()),
        result(PIDFD_GETFD, false, probe_pidfd_getfd()),
        result(CLONE3_SET_TID, true, probe_clone3_set_tid()),
        result(PRCTL_MM_MAP, true, probe_prctl_mm_map()),
        result(XSTATE_REGSET, true, probe_xstate_regset()),
        result(RSEQ_CONFIGURATION, false, probe_rseq_configuration()),
    ];
    probes.extend(dirty_tracking_probes());
    probes.extend([
        result(TIME_NAMESPACE, false, probe_time_namespace()),
        result(CGROUP_V1_FREEZER, false, probe_cgroup_v1_freezer()),
        result(CGROUP_V2_FREEZE, false, probe_cgroup_v2_freeze()),
        result(TCP_REPAIR, false, probe_tcp_repair()),
    ]);
    HostReport {
        kernel_release: kernel_release(),
        cpu: CpuReport {
            xcr0,
            xsave_size: cpu::xsave_size(),
            xsave_components: cpu::xsave_component_names(xcr0),
        },
        probes,
    }
}

/// Tries only the mechanisms a dirty-page tracker can be built on
/// (userfaultfd and its write-protect features, PAGEMAP_SCAN, soft-dirty):
/// what a checkpoint needs to choose its tracker, without the rest of
/// `probe_host`.
pub fn dirty_tracking_probes() -> Vec<ProbeResult> {
    let mut probes = userfaultfd_results(probe_userfaultfd());
    probes.extend([
        result(PAGEMAP_SCAN, false, probe_pagemap_scan()),
        result(SOFT_DIRTY, false, probe_soft_dirty()),
    ]);
    probes
}

/// Why a probe did not find its mechanism working.
#[derive(Debug)]
struct NotWorking {
    /// Absent or Failed.
    status: ProbeStatus,
    /// The sentence that explains it.
    detail: String,
}

/// A probe's outcome: the detail of a working mechanism, or why it is not.
type Finding = Result<String, NotWorking>;

/// The mechanism is missing from this kernel or host.
fn absent(detail: impl Into<String>) -> NotWorking {
    NotWorking {
        status: ProbeStatus::Absent,
        detail: detail.into(),
    }
}

/// The mechanism could not be used for a reason other than its absence.
fn failed(detail: impl Into<String>) -> NotWorking {
    NotWorking {
        status: ProbeStatus::Failed,
        detail: detail.into(),
    }
}

/// Turns the error of `action` into Absent when it is one of the errnos by
/// which a kernel says it lacks the mechanism, and Failed otherwise.
fn errno_outcome(action: &str, err: Errno, absent_when: &[Errno]) -> NotWorking {
    let detail = format!("{action} failed with {err}");
    if absent_when.contains(&err) {
        absent(detail)
    } else {
        failed(detail)
    }
}

/// `action` failed with an I/O error: named by its errno, as nix does.
fn io_failed(action: impl std::fmt::Display, err: std::io::Error) -> NotWorking {
    match err.raw_os_error() {
        Some(raw) => failed(format!("{action} failed with {}", Errno::from_raw(raw))),
        None => failed(format!("{action} failed: {err}")),
    }
}

/// Packs a finding into the reported result.
fn result(name: &'static str, required: bool, finding: Finding) -> ProbeResult {
    let (status, detail) = match finding {
        Ok(detail) => (ProbeStatus::Present, detail),
        Err(not) => (not.status, not.detail),
    };
    ProbeResult {
        name,
        status,
        required,
        detail,
    }
}

/// A child forked by a probe. Dropping it kills and reaps it unless it was
/// already reaped, so no probe leaves a process behind.
struct ProbeChild {
    /// The child's PID.
    pid: Pid,
    /// Whether waitpid already collected its exit.
    reaped: bool,
}

impl ProbeChild {
    /// Forks a child that runs `body` and exits with its return value. The
    /// child gets SIGKILL if this thread dies, so it cannot outlive the
    /// probe. `body` runs after fork in a possibly multi-threaded process:
    /// it must be async-signal-safe (raw system calls, no allocation).
    fn fork(body: fn() -> i32) -> Result<ProbeChild, NotWorking> {
        let parent = std::process::id();
        // SAFETY: the child only makes async-signal-safe calls (prctl,
        // getppid, `body`, which must be async-signal-safe, and _exit); it
        // takes no lock and does not allocate.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: raw system calls in the freshly forked child.
                unsafe {
                    libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    );
                    if libc::getppid() as u32 != parent {
                        libc::_exit(127);
                    }
                    libc::_exit(body())
                }
            }
            Ok(ForkResult::Parent { child }) => Ok(ProbeChild {
                pid: child,
                reaped: false,
            }),
            Err(err) => Err(failed(format!("fork of a probe child failed with {err}"))),
        }
    }

    /// Takes charge of a child created otherwise (clone3), to reap it.
    fn adopt(pid: Pid) -> ProbeChild {
        ProbeChild { pid, reaped: false }
    }

    /// Waits for the next state change of the child, at most CHILD_TIMEOUT.
    fn wait(&mut self) -> Result<WaitStatus, NotWorking> {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    if Instant::now() >= deadline {
                        return Err(failed(format!(
                            "child {} neither stopped nor exited within {} ms",
                            self.pid,
                            CHILD_TIMEOUT.as_millis()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(status) => {
                    if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                        self.reaped = true;
                    }
                    return Ok(status);
                }
                Err(Errno::EINTR) => {}
                Err(err) => {
                    return Err(failed(format!(
                        "waitpid for child {} failed with {err}",
                        self.pid
                    )))
                }
            }
        }
    }

    /// Waits for the child to exit and returns its exit code.
    fn exit_code(&mut self) -> Result<i32, NotWorking> {
        match self.wait()? {
            WaitStatus::Exited(_, code) => Ok(code),
            other => Err(failed(format!(
                "child {} ended with {other:?} instead of exiting",
                self.pid
            ))),
        }
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SIGKILL ends the child whether it runs, sleeps or is ptrace-stopped.
        let _ = kill(self.pid, Signal::SIGKILL);
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// Body of a probe child that waits to be killed.
fn idle_until_killed() -> i32 {
    loop {
        // SAFETY: pause is async-signal-safe and touches no memory.
        unsafe { libc::pause() };
    }
}

/// Forks an idle child, seizes it and brings it into a ptrace stop
/// (PTRACE_INTERRUPT). Dropping the child kills it.
fn stopped_child() -> Result<ProbeChild, NotWorking> {
    let mut child = ProbeChild::fork(idle_until_killed)?;
    let pid = child.pid;
    ptrace::seize(pid, ptrace::Options::empty())
        .map_err(|e| errno_outcome(&format!("PTRACE_SEIZE of child {pid}"), e, &[Errno::EIO]))?;
    ptrace::interrupt(pid).map_err(|e| {
        errno_outcome(
            &format!("PTRACE_INTERRUPT of child {pid}"),
            e,
            &[Errno::EIO],
        )
    })?;
    match child.wait()? {
        WaitStatus::PtraceEvent(_, Signal::SIGTRAP, PTRACE_EVENT_STOP) => Ok(child),
        other => Err(failed(format!(
            "child {pid} reported {other:?} after PTRACE_INTERRUPT instead of a ptrace stop"
        ))),
    }
}

/// Seizes, stops and detaches a child.
fn probe_ptrace_seize() -> Finding {
    let child = stopped_child()?;
    let pid = child.pid;
    ptrace::detach(pid, None)
        .map_err(|e| failed(format!("PTRACE_DETACH of child {pid} failed with {e}")))?;
    Ok(format!(
        "seized child {pid}, stopped it with PTRACE_INTERRUPT and detached"
    ))
}

/// Reads a known value out of a child's memory.
fn probe_process_vm_readv() -> Finding {
    let child = ProbeChild::fork(idle_until_killed)?;
    let mut buf = [0u8; 8];
    let remote = RemoteIoVec {
        base: std::ptr::addr_of!(PROCESS_VM_READV_MARKER) as usize,
        len: buf.len(),
    };
    let read =
        process_vm_readv(child.pid, &mut [IoSliceMut::new(&mut buf)], &[remote]).map_err(|e| {
            errno_outcome(
                &format!("process_vm_readv of child {}", child.pid),
                e,
                &[Errno::ENOSYS],
            )
        })?;
    let value = u64::from_ne_bytes(buf);
    if read != buf.len() || value != PROCESS_VM_READV_MARKER {
        return Err(failed(format!(
            "process_vm_readv of child {} read {read} bytes, value {value:#x}, \
             instead of 8 bytes, value {PROCESS_VM_READV_MARKER:#x}",
            child.pid
        )));
    }
    Ok(format!(
        "read {value:#x} from child {} as expected",
        child.pid
    ))
}

/// Takes a pipe fd out of a child with pidfd_getfd and checks it is the same
/// pipe.
fn probe_pidfd_getfd() -> Finding {
    let (pipe_read, _pipe_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| failed(format!("pipe2 failed with {e}")))?;
    let child = ProbeChild::fork(idle_until_killed)?;
    let pid = child.pid;
    let pidfd = pidfd_open(pid)
        .map_err(|e| errno_outcome(&format!("pidfd_open of child {pid}"), e, &[Errno::ENOSYS]))?;
    let fd = pipe_read.as_raw_fd();
    let taken = pidfd_getfd(&pidfd, fd).map_err(|e| {
        errno_outcome(
            &format!("pidfd_getfd of fd {fd} of child {pid}"),
            e,
            &[Errno::ENOSYS],
        )
    })?;
    let taken_fd = taken.as_raw_fd();
    let inode_of = |file: File| file.metadata().map(|m| m.ino());
    let ours = pipe_read
        .try_clone()
        .and_then(|f| inode_of(File::from(f)))
        .map_err(|e| io_failed(format!("fstat of our pipe fd {fd}"), e))?;
    let theirs = inode_of(File::from(taken))
        .map_err(|e| io_failed(format!("fstat of the taken fd {taken_fd}"), e))?;
    if ours != theirs {
        return Err(failed(format!(
            "pidfd_getfd of fd {fd} of child {pid} gave inode {theirs} instead of pipe inode {ours}"
        )));
    }
    Ok(format!("took fd {fd} (a pipe) out of child {pid}"))
}

/// Creates a child as PID 1 of a new PID namespace with clone3(set_tid).
fn probe_clone3_set_tid() -> Finding {
    // SAFETY: the child only calls raw getpid and _exit.
    let ret = unsafe { super::fork_with_pid(libc::CLONE_NEWPID as u64, 1) };
    if ret == 0 {
        // SAFETY: in the child: raw getpid and _exit, both async-signal-safe.
        unsafe { libc::_exit(libc::syscall(libc::SYS_getpid) as i32) }
    }
    let pid = Errno::result(ret).map_err(|e| {
        errno_outcome(
            "clone3 with CLONE_NEWPID and set_tid [1]",
            e,
            &[Errno::ENOSYS, Errno::E2BIG, Errno::EINVAL],
        )
    })?;
    let mut child = ProbeChild::adopt(Pid::from_raw(pid as i32));
    let seen = child.exit_code()?;
    if seen != 1 {
        return Err(failed(format!(
            "clone3 with set_tid [1] made child {pid}, which saw itself as PID {seen} instead of 1"
        )));
    }
    Ok(format!(
        "clone3 created child {pid} as PID 1 of a new PID namespace"
    ))
}

/// Asks the kernel for the size of struct prctl_mm_map (PR_SET_MM_MAP_SIZE),
/// which only kernels with CONFIG_CHECKPOINT_RESTORE answer.
fn probe_prctl_mm_map() -> Finding {
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one unsigned int to the address
    // passed, which is a live local.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP_SIZE as libc::c_ulong,
            &mut size as *mut libc::c_uint as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Errno::result(ret).map_err(|e| {
        errno_outcome(
            "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE) (kernels without \
             CONFIG_CHECKPOINT_RESTORE refuse it)",
            e,
            &[Errno::EINVAL],
        )
    })?;
    if size != PRCTL_MM_MAP_SIZE {
        return Err(failed(format!(
            "the kernel's struct prctl_mm_map is {size} bytes, ferry passes {PRCTL_MM_MAP_SIZE}"
        )));
    }
    Ok(format!("struct prctl_mm_map is {size} bytes"))
}

/// Reads the NT_X86_XSTATE regset of a stopped child.
fn probe_xstate_regset() -> Finding {
    let child = stopped_child()?;
    let xstate = ptrace_get_xstate(child.pid).map_err(|e| {
        errno_outcome(
            &format!("PTRACE_GETREGSET NT_X86_XSTATE of child {}", child.pid),
            e,
            &[Errno::EINVAL, Errno::ENODEV, Errno::EIO],
        )
    })?;
    Ok(format!(
        "read {} bytes of XSAVE state (CPUID XSAVE area: {} bytes)",
        xstate.len(),
        cpu::xsave_size()
    ))
}

/// Reads the rseq registration of a stopped child.
fn probe_rseq_configuration() -> Finding {
    let child = stopped_child()?;
    let conf = ptrace_get_rseq(child.pid).map_err(|e| {
        errno_outcome(
            &format!("PTRACE_GET_RSEQ_CONFIGURATION of child {}", child.pid),
            e,
            &[Errno::EIO, Errno::EINVAL],
        )
    })?;
    Ok(match conf {
        Some((addr, len, signature)) => {
            format!("child's rseq area: {len} bytes at {addr:#x}, signature {signature:#x}")
        }
        None => "readable; the child has no rseq registered".to_string(),
    })
}

/// Creates a userfaultfd and runs UFFDIO_API with no features requested,
/// which makes the kernel report every feature it supports: returns them.
fn probe_userfaultfd() -> Result<u64, NotWorking> {
    let uffd = uffd::userfaultfd(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .map_err(|e| errno_outcome("userfaultfd(O_CLOEXEC|O_NONBLOCK)", e, &[Errno::ENOSYS]))?;
    uffd::uffd_api(&uffd, 0)
        .map_err(|e| errno_outcome("UFFDIO_API", e, &[Errno::EINVAL, Errno::ENOTTY]))
}

/// Names of the userfaultfd feature bits set in `features`.
fn uffd_feature_names(features: u64) -> String {
    let names: Vec<&str> = UFFD_FEATURES
        .iter()
        .filter(|(bit, _)| features & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join(" ")
}

/// The userfaultfd results from the features UFFDIO_API offered (or why
/// there is no userfaultfd): the base mechanism (missing-page handling) and
/// the write-protect features.
fn userfaultfd_results(api: Result<u64, NotWorking>) -> Vec<ProbeResult> {
    let base = match &api {
        Ok(features) => Ok(format!(
            "missing-page mode; UFFDIO_API features {features:#x}: {}",
            uffd_feature_names(*features)
        )),
        Err(not) => Err(NotWorking {
            status: not.status,
            detail: not.detail.clone(),
        }),
    };
    let feature = |bit: u32, flag: &str| -> Finding {
        match &api {
            Ok(features) if features & (1u64 << bit) != 0 => {
                Ok(format!("{flag} (bit {bit}) is offered"))
            }
            Ok(features) => Err(absent(format!(
                "UFFDIO_API features {features:#x} lack {flag} (bit {bit})"
            ))),
            Err(not) => Err(NotWorking {
                status: not.status,
                detail: format!("no userfaultfd: {}", not.detail),
            }),
        }
    };
    vec![
        result(USERFAULTFD, false, base),
        result(
            USERFAULTFD_WP,
            false,
            feature(UFFD_FEATURE_WP, "UFFD_FEATURE_PAGEFAULT_FLAG_WP"),
        ),
        result(
            USERFAULTFD_WP_UNPOPULATED,
            false,
            feature(UFFD_FEATURE_WP_UNPOPULATED, "UFFD_FEATURE_WP_UNPOPULATED"),
        ),
        result(
            USERFAULTFD_WP_ASYNC,
            false,
            feature(UFFD_FEATURE_WP_ASYNC, "UFFD_FEATURE_WP_ASYNC"),
        ),
    ]
}

/// The size of a page.
fn page_size() -> usize {
    // SAFETY: sysconf only reads a system value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Private anonymous read-write pages of our own for the memory probes;
/// unmapped on drop.
struct AnonPages {
    /// Start of the mapping.
    base: NonNull<c_void>,
    /// Length of the mapping in bytes.
    len: usize,
    /// The page size.
    page: usize,
}

impl AnonPages {
    /// Maps `pages` pages.
    fn map(pages: usize) -> Result<AnonPages, NotWorking> {
        let page = page_size();
        let len = pages * page;
        let length =
            NonZeroUsize::new(len).ok_or_else(|| failed("a probe asked to map zero pages"))?;
        // SAFETY: a new private anonymous mapping at an address of the
        // kernel's choice cannot alias any existing memory.
        let base = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(|e| failed(format!("mmap of {len} anonymous bytes failed with {e}")))?;
        Ok(AnonPages { base, len, page })
    }

    /// Address of page `index`.
    fn addr(&self, index: usize) -> usize {
        self.base.as_ptr() as usize + index * self.page
    }

    /// Writes to page `index`, which faults it in (or marks it dirty).
    fn write(&self, index: usize) {
        assert!(
            index * self.page < self.len,
            "page {index} is outside the probe mapping"
        );
        // SAFETY: the address is inside this live read-write mapping, which
        // nothing else references.
        unsafe { std::ptr::write_volatile(self.addr(index) as *mut u8, 1) };
    }
}

impl Drop for AnonPages {
    fn drop(&mut self) {
        // SAFETY: this mapping is ours and no reference into it outlives self.
        let _ = unsafe { munmap(self.base, self.len) };
    }
}

/// Asks PAGEMAP_SCAN for the present pages of a 4-page range of our own of
/// which pages 0 and 2 were written.
fn probe_pagemap_scan() -> Finding {
    let pages = AnonPages::map(4)?;
    pages.write(0);
    pages.write(2);
    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| io_failed("opening /proc/self/pagemap", e))?;
    let mut seen = Vec::new();
    uffd::pagemap_scan(
        &pagemap,
        pages.addr(0) as u64,
        pages.addr(4) as u64,
        0,
        uffd::PAGE_IS_PRESENT,
        &mut seen,
    )
    .map_err(|e| {
        errno_outcome(
            "PAGEMAP_SCAN on /proc/self/pagemap",
            e,
            &[Errno::ENOTTY, Errno::EINVAL],
        )
    })?;
    let found = seen.len();
    let expected = [
        (pages.addr(0) as u64, pages.addr(1) as u64),
        (pages.addr(2) as u64, pages.addr(3) as u64),
    ];
    if seen == expected {
        Ok("found exactly the 2 written pages of 4 present".to_string())
    } else {
        Ok(format!(
            "works; reported {found} present region(s) where pages 0 and 2 of 4 were written"
        ))
    }
}

/// Reads the pagemap entry of `addr` in this process.
fn pagemap_entry(pagemap: &File, addr: usize, page: usize) -> Result<u64, NotWorking> {
    let mut entry = [0u64];
    pagemap::read_entries(pagemap, (addr / page) as u64, &mut Vec::new(), &mut entry)
        .map_err(|e| io_failed(format!("reading /proc/self/pagemap at {addr:#x}"), e))?;
    Ok(entry[0])
}

/// Clears the soft-dirty bits of this process, writes a page and checks
/// that its pagemap entry got the soft-dirty bit (55). Kernels without
/// CONFIG_MEM_SOFT_DIRTY accept the clear and leave the bit 0.
fn probe_soft_dirty() -> Finding {
    let _serialized = SOFT_DIRTY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let pages = AnonPages::map(1)?;
    pages.write(0);
    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| io_failed("opening /proc/self/pagemap", e))?;
    fs::write("/proc/self/clear_refs", "4")
        .map_err(|e| io_failed("writing 4 to /proc/self/clear_refs", e))?;
    let cleared = pagemap_entry(&pagemap, pages.addr(0), pages.page)?;
    pages.write(0);
    let written = pagemap_entry(&pagemap, pages.addr(0), pages.page)?;
    if written & pagemap::PRESENT == 0 {
        return Err(failed(format!(
            "the written page's pagemap entry {written:#x} does not say present"
        )));
    }
    match (
        cleared & pagemap::SOFT_DIRTY != 0,
        written & pagemap::SOFT_DIRTY != 0,
    ) {
        (false, true) => Ok("bit 55 cleared by clear_refs and set by a write".to_string()),
        (_, false) => Err(absent(
            "bit 55 stays 0 after a write: the kernel lacks CONFIG_MEM_SOFT_DIRTY",
        )),
        (true, true) => Err(failed("writing 4 to clear_refs did not clear bit 55")),
    }
}

/// Body of the time-namespace child: 0 when unshare(CLONE_NEWTIME) works,
/// else its errno.
fn unshare_time_namespace() -> i32 {
    // SAFETY: unshare is a plain system call; errno is read right after.
    if unsafe { libc::unshare(libc::CLONE_NEWTIME) } == 0 {
        0
    } else {
        Errno::last_raw()
    }
}

/// Enters a new time namespace in a forked child.
fn probe_time_namespace() -> Finding {
    let mut child = ProbeChild::fork(unshare_time_namespace)?;
    match child.exit_code()? {
        0 => Ok(format!("child {} entered a new time namespace", child.pid)),
        errno => Err(errno_outcome(
            "unshare(CLONE_NEWTIME)",
            Errno::from_raw(errno),
            &[Errno::EINVAL],
        )),
    }
}

/// Mount point of the first mount of filesystem type `fstype` whose super
/// options include `option` (when given), from /proc/self/mountinfo.
fn find_mount(fstype: &str, option: Option<&str>) -> Result<Option<PathBuf>, NotWorking> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io_failed("reading /proc/self/mountinfo", e))?;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut fs_fields = right.split(' ');
        let (Some(ty), Some(_source), Some(options)) =
            (fs_fields.next(), fs_fields.next(), fs_fields.next())
        else {
            continue;
        };
        let wanted_option = option.map_or(true, |o| options.split(',').any(|x| x == o));
        if ty == fstype && wanted_option {
            if let Some(mount_point) = left.split(' ').nth(4) {
                return Ok(Some(PathBuf::from(crate::proc::notify::unescape_octal(
                    mount_point,
                ))));
            }
        }
    }
    Ok(None)
}

/// A cgroup made by a probe. `remove` (or, on early return, drop) writes the
/// thaw value back and removes it, so no probe leaves a cgroup behind.
struct TempCgroup {
    /// Directory of the cgroup.
    path: PathBuf,
    /// The control file and the value that thaws the cgroup.
    thaw: (&'static str, &'static str),
    /// Whether `remove` already ran.
    removed: bool,
}

impl TempCgroup {
    /// Creates ferry-probe-<pid>-<n> under `parent`.
    fn create(parent: &Path, thaw: (&'static str, &'static str)) -> Result<TempCgroup, NotWorking> {
        let name = format!(
            "ferry-probe-{}-{}",
            std::process::id(),
            CGROUP_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        fs::create_dir(&path)
            .map_err(|e| io_failed(format!("creating cgroup {}", path.display()), e))?;
        Ok(TempCgroup {
            path,
            thaw,
            removed: false,
        })
    }

    /// Writes `value` to the control file `file`.
    fn write(&self, file: &str, value: &str) -> Result<(), NotWorking> {
        let path = self.path.join(file);
        fs::write(&path, value)
            .map_err(|e| io_failed(format!("writing {value} to {}", path.display()), e))
    }

    /// Waits until the control file `file` has a line equal to `want`.
    fn wait_for(&self, file: &str, want: &str) -> Result<(), NotWorking> {
        let path = self.path.join(file);
        let deadline = Instant::now() + CGROUP_TIMEOUT;
        loop {
            let content = fs::read_to_string(&path)
                .map_err(|e| io_failed(format!("reading {}", path.display()), e))?;
            if content.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "{} still reads {:?} after {} ms, not {want:?}",
                    path.display(),
                    content.trim(),
                    CGROUP_TIMEOUT.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws and removes the cgroup.
    fn remove(mut self) -> Result<(), NotWorking> {
        self.removed = true;
        let _ = fs::write(self.path.join(self.thaw.0), self.thaw.1);
        fs::remove_dir(&self.path)
            .map_err(|e| io_failed(format!("removing cgroup {}", self.path.display()), e))
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::write(self.path.join(self.thaw.0), self.thaw.1);
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// Freezes and thaws an empty cgroup of the v1 freezer hierarchy.
fn probe_cgroup_v1_freezer() -> Finding {
    let mount = find_mount("cgroup", Some("freezer"))?
        .ok_or_else(|| absent("no cgroup v1 freezer hierarchy is mounted"))?;
    let cgroup = TempCgroup::create(&mount, ("freezer.state", "THAWED"))?;
    cgroup.write("freezer.state", "FROZEN")?;
    cgroup.wait_for("freezer.state", "FROZEN")?;
    cgroup.write("freezer.state", "THAWED")?;
    cgroup.wait_for("freezer.state", "THAWED")?;
    cgroup.remove()?;
    Ok(format!(
        "froze and thawed an empty cgroup under {}",
        mount.display()
    ))
}

/// Freezes and thaws an empty cgroup v2 cgroup with cgroup.freeze.
fn probe_cgroup_v2_freeze() -> Finding {
    let mount =
        find_mount("cgroup2", None)?.ok_or_else(|| absent("no cgroup2 hierarchy is mounted"))?;
    let cgroup = TempCgroup::create(&mount, ("cgroup.freeze", "0"))?;
    if !cgroup.path.join("cgroup.freeze").exists() {
        cgroup.remove()?;
        return Err(absent(format!(
            "cgroups under {} have no cgroup.freeze (kernel before 5.2)",
            mount.display()
        )));
    }
    cgroup.write("cgroup.freeze", "1")?;
    cgroup.wait_for("cgroup.events", "frozen 1")?;
    cgroup.write("cgroup.freeze", "0")?;
    cgroup.wait_for("cgroup.events", "frozen 0")?;
    cgroup.remove()?;
    Ok(format!(
        "froze and thawed an empty cgroup under {}",
        mount.display()
    ))
}

/// Puts a fresh TCP socket into repair mode.
fn probe_tcp_repair() -> Finding {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| failed(format!("socket(AF_INET, SOCK_STREAM) failed with {e}")))?;
    setsockopt(&sock, sockopt::TcpRepair, &1).map_err(|e| {
        errno_outcome(
            "setsockopt(SOL_TCP, TCP_REPAIR, 1)",
            e,
            &[Errno::ENOPROTOOPT],
        )
    })?;
    Ok("a TCP socket entered repair mode".to_string())
}

/// The kernel release, as uname -r prints it.
fn kernel_release() -> String {
    // SAFETY: utsname is a struct of char arrays, for which all zeroes is a
    // valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given, which is a live local.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return format!("unknown (uname failed with {})", Errno::last());
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
