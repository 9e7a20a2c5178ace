//! The rt_sigreturn frame a parked thread (park.rs) returns
//! through, laid out as the x86_64 kernel reads it, and the check that a
//! vDSO `syscall` goes on by returning through the frame pointer. Kept
//! apart from parking itself, which needs the tracee.

use crate::image::GeneralRegs;
use crate::kernel::{self, cpu::XSAVE_DYNAMIC};

/// A parked thread's frame: where it is and what it covered.
#[derive(Debug, Clone)]
pub struct Parking {
    /// Address of the rt_sigreturn frame (its first word is the
    /// restorer's address, which `ret` pops).
    pub frame: u64,
    /// The stack bytes from `frame - 8` that the frame and the word below
    /// it (popped into the frame pointer by `leave`) replaced.
    pub(super) saved: Vec<u8>,
    /// Its registers while parked: at the restorer, the stack pointer just
    /// above the frame's first word.
    pub(super) parked: GeneralRegs,
}

/// The bytes the x86_64 ABI lets a function use below its stack pointer
/// without moving it; a signal frame goes below them.
pub(super) const RED_ZONE: u64 = 128;

/// Offsets in the kernel's `struct rt_sigframe` (x86_64): `pretcode`, then
/// `struct ucontext` (flags, link, `stack_t`, `struct sigcontext`, the
/// 8-byte kernel sigset), then `siginfo`; the XSAVE area follows, 64-byte
/// aligned.
pub(super) mod frame {
    /// `uc.uc_flags`.
    pub const UC_FLAGS: usize = 8;
    /// `uc.uc_stack.ss_flags`.
    pub const SS_FLAGS: usize = 8 + 16 + 8;
    /// `uc.uc_mcontext`: `struct sigcontext`.
    pub const MCONTEXT: usize = 8 + 40;
    /// `uc.uc_sigmask`.
    pub const SIGMASK: usize = MCONTEXT + 256;
    /// The XSAVE area (after the 128-byte siginfo), 64-byte aligned.
    pub const FPSTATE: usize = 448;
    /// UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, as the
    /// kernel sets them for a 64-bit signal.
    pub const FLAGS: u64 = 0x7;
    /// An `ss_flags` do_sigaltstack rejects: the thread's alternate signal
    /// stack, which ferry does not know, is left as it is.
    pub const KEEP_ALTSTACK: u32 = 3;
    /// The XSAVE header's XSTATE_BV.
    pub const XSTATE_BV: usize = 512;
    /// `struct _fpx_sw_bytes` sits at byte 464 of the FXSAVE area.
    pub const SW_BYTES: usize = 464;
    /// FP_XSTATE_MAGIC1 and FP_XSTATE_MAGIC2: the kernel restores the
    /// whole XSAVE area only when both are there.
    pub const MAGIC1: u32 = 0x4650_5853;
    /// See MAGIC1.
    pub const MAGIC2: u32 = 0x4650_5845;
}

/// The frame's length for an XSAVE area of `xstate_len` bytes (and the
/// trailing magic), a multiple of 64.
fn frame_len(xstate_len: usize) -> usize {
    (frame::FPSTATE + xstate_len + 4).next_multiple_of(64)
}

/// The rt_sigreturn frame that returns a thread to `regs` with signal mask
/// `sigmask` and the FPU state of `xstate` (as PTRACE_GETREGSET
/// NT_X86_XSTATE gave it, the user XCR0 in its software bytes) but its
/// dynamic components (AMX tile data, left out: the kernel takes no more
/// than a thread without them can hold); its first word is `restorer`.
/// [`place_frame`] then says where it goes.
pub(super) fn signal_frame(
    regs: &GeneralRegs,
    sigmask: u64,
    xstate: &[u8],
    restorer: u64,
) -> Vec<u8> {
    let sw = frame::SW_BYTES;
    let xcr0 = xstate
        .get(sw..sw + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let features = xcr0 & !XSAVE_DYNAMIC;
    let size = (kernel::cpu::xsave_size_without_dynamic(xcr0) as usize).min(xstate.len());
    let mut f = vec![0u8; frame_len(size)];
    let put =
        |f: &mut Vec<u8>, off: usize, v: u64| f[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut f, 0, restorer);
    put(&mut f, frame::UC_FLAGS, frame::FLAGS);
    f[frame::SS_FLAGS..frame::SS_FLAGS + 4].copy_from_slice(&frame::KEEP_ALTSTACK.to_le_bytes());
    let r = regs;
    let words = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.eflags,
    ];
    for (i, w) in words.iter().enumerate() {
        put(&mut f, frame::MCONTEXT + 8 * i, *w);
    }
    // cs, gs, fs, ss (16 bits each); then err, trapno, oldmask, cr2 stay 0.
    let segs = frame::MCONTEXT + 8 * words.len();
    f[segs..segs + 2].copy_from_slice(&(r.cs as u16).to_le_bytes());
    f[segs + 6..segs + 8].copy_from_slice(&(r.ss as u16).to_le_bytes());
    put(&mut f, frame::SIGMASK, sigmask);

    let x = &mut f[frame::FPSTATE..frame::FPSTATE + size + 4];
    x[..size].copy_from_slice(&xstate[..size]);
    // The header's XSTATE_BV: what is left out is not there.
    let bv = frame::XSTATE_BV;
    let present = u64::from_le_bytes(x[bv..bv + 8].try_into().expect("8 bytes")) & features;
    x[bv..bv + 8].copy_from_slice(&present.to_le_bytes());
    // The software bytes a signal frame has where PTRACE_GETREGSET puts
    // XCR0.
    x[sw..sw + 48].fill(0);
    x[sw..sw + 4].copy_from_slice(&frame::MAGIC1.to_le_bytes());
    x[sw + 4..sw + 8].copy_from_slice(&(size as u32 + 4).to_le_bytes());
    x[sw + 8..sw + 16].copy_from_slice(&features.to_le_bytes());
    x[sw + 16..sw + 20].copy_from_slice(&(size as u32).to_le_bytes());
    x[size..].copy_from_slice(&frame::MAGIC2.to_le_bytes());
    f
}

/// Places `frame` (a [`signal_frame`]) at address `at`: its pointer to
/// its own XSAVE area, the one address it holds.
pub(super) fn place_frame(frame: &mut [u8], at: u64) {
    let fpstate = frame::MCONTEXT + 184;
    frame[fpstate..fpstate + 8].copy_from_slice(&(at + frame::FPSTATE as u64).to_le_bytes());
}

/// Whether the code after a `syscall` (`after`) returns through the frame
/// pointer: `leave`, then only `xor reg,reg`s, then `ret` (the vDSO's
/// fallback calls end so), which lets a parked thread left after an
/// injected call return through its frame.
pub fn returns_through_frame_pointer(after: &[u8]) -> bool {
    let Some((&0xc9, mut rest)) = after.split_first() else {
        return false;
    };
    loop {
        match rest {
            [0xc3, ..] => return true,
            [0x31, modrm, tail @ ..] if xor_self(*modrm) => rest = tail,
            [0x45 | 0x48 | 0x4d, 0x31, modrm, tail @ ..] if xor_self(*modrm) => rest = tail,
            _ => return false,
        }
    }
}

/// Whether ModRM byte `m` names one register twice (`xor r, r`).
fn xor_self(m: u8) -> bool {
    m >> 6 == 3 && (m >> 3) & 7 == m & 7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vdso_fallback_epilogue_returns_through_the_frame_pointer() {
        // This kernel's vDSO after its first `syscall`.
        let after = [
            0xc9, 0x31, 0xd2, 0x31, 0xc9, 0x31, 0xf6, 0x31, 0xff, 0x45, 0x31, 0xc0, 0x45, 0x31,
            0xc9, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xdb, 0xc3,
        ];
        assert!(returns_through_frame_pointer(&after));
        assert!(!returns_through_frame_pointer(&[0xc3]));
        assert!(!returns_through_frame_pointer(&[0xc9, 0x31, 0xd1, 0xc3]));
    }

    #[test]
    fn the_frame_holds_registers_mask_and_xsave_where_rt_sigreturn_reads_them() {
        let regs = GeneralRegs {
            rip: 0x1111,
            rsp: 0x2222,
            rax: 0x3333,
            cs: 0x33,
            ss: 0x2b,
            ..GeneralRegs::default()
        };
        // x87, SSE and AVX: 832 bytes.
        let mut xstate = vec![0u8; 1000];
        xstate[frame::XSTATE_BV] = 0x7;
        xstate[frame::SW_BYTES] = 0x7;
        let mut f = signal_frame(&regs, 0xabc, &xstate, 0x7777);
        place_frame(&mut f, 0x10000);
        let word = |off: usize| u64::from_le_bytes(f[off..off + 8].try_into().unwrap());
        assert_eq!(f.len() % 64, 0);
        assert_eq!(word(0), 0x7777);
        assert_eq!(word(frame::MCONTEXT + 13 * 8), 0x3333); // rax
        assert_eq!(word(frame::MCONTEXT + 15 * 8), 0x2222); // rsp
        assert_eq!(word(frame::MCONTEXT + 16 * 8), 0x1111); // rip
        assert_eq!(word(frame::MCONTEXT + 184), 0x10000 + frame::FPSTATE as u64);
        assert_eq!(word(frame::SIGMASK), 0xabc);
        let sw = frame::FPSTATE + frame::SW_BYTES;
        assert_eq!(word(sw + 8), 0x7);
        assert_eq!(word(frame::FPSTATE + frame::XSTATE_BV), 0x7);
        let magic2 = frame::FPSTATE + 832;
        assert_eq!(f[magic2..magic2 + 4], frame::MAGIC2.to_le_bytes());
    }
}
