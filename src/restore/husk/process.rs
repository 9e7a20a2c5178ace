//! The husk: one process of the tree under construction, and the
//! injected-call helpers every resource file uses (calls through the
//! remote layer, the helper area that arguments go through). Kept apart
//! from mod.rs so that the resource files and the orchestration both
//! import it without importing each other.

use crate::image::{Checkpoint, FileImage, HostInfo, ProcessImage, PAGE_SIZE};
use crate::proc;
use crate::ptrace::remote::{Remote, RemoteError, Scratch};
use crate::ptrace::{write_memory, Tracee};
use crate::restore::channel::FdChannel;
use crate::restore::error::RestoreError;
use nix::sys::ptrace::Options;
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// Size of the helper area mapped in the husk: a `syscall` instruction, a
/// scratch area for arguments and a small stack.
pub(super) const HELPER_LEN: u64 = 16 * PAGE_SIZE;

/// Offset of the scratch area for strings (paths, names).
pub(super) const STR_OFF: u64 = PAGE_SIZE;

/// Offset of the scratch area for structs (sigaction, clone_args, ...).
pub(super) const STRUCT_OFF: u64 = 2 * PAGE_SIZE;

/// Offset of the auxiliary vector copy for PR_SET_MM_MAP.
pub(super) const AUXV_OFF: u64 = 3 * PAGE_SIZE;

/// Offset of the seccomp filter program being installed.
pub(super) const FILTER_OFF: u64 = 4 * PAGE_SIZE;

/// Room for it: BPF_MAXINSNS (4096) instructions of 8 bytes.
pub(super) const FILTER_ROOM: u64 = 8 * PAGE_SIZE;

/// Room needed around the helper: the helper itself, and a spot to park the
/// vDSO group while it moves.
pub(super) const HELPER_RESERVE: u64 = 32 << 20;

/// Where the vDSO group is parked, relative to the helper.
pub(super) const PARK_OFF: u64 = 16 << 20;

/// A husk under construction.
pub(super) struct Husk<'a> {
    pub(super) image: &'a ProcessImage,
    /// The open file descriptions of the whole tree.
    pub(super) files: &'a [FileImage],
    /// Every process of the tree (for process groups).
    pub(super) tree: &'a Checkpoint,
    /// The checkpointing host, whose vDSO must match this one.
    pub(super) host: &'a HostInfo,
    /// Which mappings receive pages (mapped writable until they are in).
    pub(super) filled: Vec<bool>,
    /// Which mappings come from the parent's husk with the clone (pages
    /// still shared copy-on-write); empty when none do.
    pub(super) inherited: Vec<bool>,
    /// Which mappings are in, with this process's pages, before its
    /// children are cloned: the inherited ones and those a child inherits.
    pub(super) premapped: Vec<bool>,
    pub(super) pid: Pid,
    /// Leader first, then the threads as they are created.
    pub(super) threads: Vec<Tracee>,
    /// The address of the `syscall` instruction used for injection.
    pub(super) syscall_insn: u64,
    /// The helper area, once mapped.
    pub(super) helper: u64,
    /// Keeps the husk alive until it is seized; closed afterwards.
    pub(super) lifeline: Option<OwnedFd>,
    /// Where files are handed in when pidfd_getfd from migrate-agent is
    /// impossible (a container's husk).
    pub(super) channel: Option<&'a FdChannel>,
    /// This husk's connection on the channel, while its fds are restored.
    pub(super) channel_end: Option<std::os::unix::net::UnixStream>,
    /// The husk is a process that existed before (a container's init):
    /// its pending signals are its own, not the image's.
    pub(super) taken: bool,
    /// Where the root's pre-copied pages wait in this husk (a warm
    /// restore's root), until the mappings are made.
    pub(super) staging: Option<crate::restore::warm::Staging>,
    /// Which mappings were moved in from the staging, their pages in.
    pub(super) warm: Vec<bool>,
}

/// How the husk's threads are traced.
pub(super) fn trace_options() -> Options {
    Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_EXITKILL
}

/// The signal mask the husk is built under: every signal blocked.
pub(super) fn all_signals_blocked() -> u64 {
    !0
}

impl<'a> Husk<'a> {
    /// The husk of process `image` of `tree`, traced by `leader` and
    /// running its injected calls at `syscall_insn`; made by the
    /// constructors in tree.rs, which set what differs.
    pub(super) fn new(
        image: &'a ProcessImage,
        tree: &'a Checkpoint,
        leader: Tracee,
        syscall_insn: u64,
    ) -> Self {
        Husk {
            image,
            files: &tree.files,
            tree,
            host: &tree.host,
            filled: Vec::new(),
            inherited: Vec::new(),
            premapped: Vec::new(),
            pid: leader.tid,
            threads: vec![leader],
            syscall_insn,
            helper: 0,
            lifeline: None,
            channel: None,
            channel_end: None,
            taken: false,
            staging: None,
            warm: Vec::new(),
        }
    }

    /// Runs `call` (system calls of the remote layer) in thread `idx`;
    /// a call's error fails the restore as `what`.
    pub(super) fn sys<T>(
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
    pub(super) fn scratch(&self) -> Scratch {
        Scratch {
            pid: self.pid,
            addr: self.helper,
            len: HELPER_LEN,
        }
    }

    /// Writes `bytes` into the helper's scratch area at `off`; returns the
    /// address in the husk.
    pub(super) fn put(&self, off: u64, bytes: &[u8]) -> Result<u64, RestoreError> {
        Ok(self.scratch().put(off, bytes)?)
    }

    /// Writes a NUL-terminated string into the string scratch area.
    pub(super) fn put_str(&self, s: &str) -> Result<u64, RestoreError> {
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

    /// Maps the helper area at an address free both in the husk and in the
    /// image, and places a `syscall` instruction at its start.
    pub(super) fn map_helper(&mut self) -> Result<(), RestoreError> {
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
}
