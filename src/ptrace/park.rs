//! Parking: what keeps a thread ferry holds safe should ferry die while it
//! holds it. The kernel lets a tracee go as it is when its tracer dies:
//! with every signal blocked (as freezing leaves it) it runs on deaf to
//! SIGTERM, and in the middle of an injected call it crashes (the vDSO code
//! after the `syscall` returns through a frame pointer that is not its
//! own). An agent killed at the wrong moment would lose the workload it was
//! moving.
//!
//! A parked thread holds, below its stack's red zone (where the kernel puts
//! a signal frame), an rt_sigreturn frame with its own registers, signal
//! mask and FPU state, and is pointed at a `mov $15,%rax; syscall` (the C
//! library's signal restorer, found in the process's code): let go without
//! ferry, it returns at once to where it was, as from a signal handler. A
//! call injected in a parked thread runs at a vDSO `syscall` whose code
//! goes on with `leave; ...; ret`, its frame pointer set just below the
//! frame: let go after the call, it returns through the frame too. Ferry
//! unparks a thread by putting its registers and mask back itself and
//! writing back the stack bytes the frame covered.

use super::sigframe::{place_frame, signal_frame, Parking, RED_ZONE};
use super::{read_memory, resume_regs, write_memory, PtraceError, Tracee};
use crate::image::GeneralRegs;
use crate::proc::MapsEntry;
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

impl Tracee {
    /// Parks the thread (see the module): writes a frame returning to
    /// `regs` (an interrupted call restarted as the kernel would, a
    /// restart_syscall failing with EINTR as after any signal) and
    /// `sigmask` below its stack, and points it at `restorer`. The
    /// thread's own registers are the caller's to put back (its
    /// [`Tracee::unpark`] then writes back the stack).
    pub fn park(
        &mut self,
        regs: &GeneralRegs,
        sigmask: u64,
        restorer: u64,
    ) -> Result<(), PtraceError> {
        let xstate = self.xstate()?;
        let mut frame = signal_frame(&resume_regs(regs, false), sigmask, &xstate, restorer);
        let at = regs.rsp.wrapping_sub(RED_ZONE + frame.len() as u64) & !63;
        place_frame(&mut frame, at);
        let mut saved = vec![0u8; frame.len() + 8];
        // A stack pointer too low to take the frame wraps: the read fails
        // (EFAULT) and the thread is held unparked.
        read_memory(self.tid, at.wrapping_sub(8), &mut saved)?;
        write_memory(self.tid, at, &frame)?;
        let mut parked = *regs;
        parked.rip = restorer;
        parked.rsp = at + 8;
        parked.orig_rax = u64::MAX;
        self.set_regs(&parked)?;
        self.parking = Some(Parking {
            frame: at,
            saved,
            parked,
        });
        Ok(())
    }

    /// Puts the thread at rest between injected calls: back in its parking
    /// place, or, not parked, at `regs` (its own registers).
    pub fn rest(&self, regs: &GeneralRegs) -> Result<(), PtraceError> {
        self.set_regs(self.parking.as_ref().map_or(regs, |p| &p.parked))
    }

    /// Writes back the stack bytes the frame covered; the thread's
    /// registers must be its own again.
    pub fn unpark(&mut self) -> Result<(), PtraceError> {
        match self.parking.take() {
            Some(p) => write_memory(self.tid, p.frame - 8, &p.saved),
            None => Ok(()),
        }
    }
}

/// `mov $15,%rax; syscall` and `mov $15,%eax; syscall`: rt_sigreturn, as
/// C libraries (glibc's and musl's `__restore_rt`) and Go's runtime have it.
const RESTORERS: [&[u8]; 2] = [
    &[0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
    &[0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
];

/// Where a restorer was found in a mapped file: (inode, file offset of the
/// mapping) to its offset from the mapping's start (None: it has none).
/// Reading a C library's code takes a millisecond; a tree's processes
/// share it.
type FoundRestorers = Mutex<HashMap<(u64, u64), Option<u64>>>;

/// The restorers found so far by this process.
fn found_restorers() -> &'static FoundRestorers {
    static FOUND: OnceLock<FoundRestorers> = OnceLock::new();
    FOUND.get_or_init(Default::default)
}

/// The offset of a restorer in `code`.
fn restorer_in(code: &[u8]) -> Option<u64> {
    RESTORERS
        .iter()
        .filter_map(|pat| code.windows(pat.len()).position(|w| w == *pat))
        .min()
        .map(|off| off as u64)
}

/// Whether the `pat`-sized bytes at `addr` of `pid` are a restorer.
fn is_restorer(pid: Pid, addr: u64) -> bool {
    let mut bytes = [0u8; 9];
    RESTORERS.iter().any(|pat| {
        let b = &mut bytes[..pat.len()];
        read_memory(pid, addr, b).is_ok() && b == *pat
    })
}

/// The address of a `mov $15,%rax; syscall` in the executable file
/// mappings of `pid` (its C library's first), where parked threads return
/// through; None if it has none (its threads are not parked).
pub fn find_restorer(pid: Pid, maps: &[MapsEntry]) -> Option<u64> {
    let mut code: Vec<&MapsEntry> = maps
        .iter()
        .filter(|m| m.exec && m.read && m.inode != 0)
        .collect();
    code.sort_by_key(|m| !m.path.contains("libc"));
    for m in code {
        let key = (m.inode, m.offset);
        let known = found_restorers()
            .lock()
            .map(|f| f.get(&key).copied())
            .ok()
            .flatten();
        let off = match known {
            Some(off) => off,
            None => {
                let mut bytes = vec![0u8; (m.end - m.start) as usize];
                if read_memory(pid, m.start, &mut bytes).is_err() {
                    continue;
                }
                let off = restorer_in(&bytes);
                if let Ok(mut f) = found_restorers().lock() {
                    f.insert(key, off);
                }
                off
            }
        };
        if let Some(off) = off {
            if is_restorer(pid, m.start + off) {
                return Some(m.start + off);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restorer_is_found_in_code() {
        let code = [0x90, 0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05, 0x90];
        assert_eq!(restorer_in(&code), Some(1));
        assert_eq!(restorer_in(&code[2..]), None);
    }
}
