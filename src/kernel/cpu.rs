//! CPU features that decide whether saved register state can be loaded on
//! this CPU: the XSAVE feature set (XCR0) and the size of the XSAVE area.

/// XSAVE state components (bits of XCR0) with their names, for messages and
/// `migrate-agent check`.
pub const XSAVE_COMPONENTS: &[(u32, &str)] = &[
    (0, "x87"),
    (1, "sse"),
    (2, "avx"),
    (3, "mpx-bndregs"),
    (4, "mpx-bndcsr"),
    (5, "avx512-opmask"),
    (6, "avx512-zmm-hi256"),
    (7, "avx512-hi16-zmm"),
    (9, "pkru"),
    (17, "amx-tilecfg"),
    (18, "amx-tiledata"),
];

/// Whether the CPU and kernel have enabled XSAVE (CPUID.1:ECX.OSXSAVE).
pub fn has_osxsave() -> bool {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    leaf1.ecx & (1 << 27) != 0
}

/// Whether the CPU has CET shadow stacks (CPUID.(EAX=7,ECX=0):ECX.CET_SS),
/// which a process may run its threads with.
pub fn has_shadow_stacks() -> bool {
    core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 7) != 0
}

/// XCR0: the state components the kernel enabled for user space, or 0 when
/// XSAVE is not enabled.
pub fn xcr0() -> u64 {
    if !has_osxsave() {
        return 0;
    }
    // SAFETY: OSXSAVE is set (checked above), so XGETBV with ECX=0 is a valid
    // instruction in user mode; it only reads a register.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}

/// Size in bytes of the XSAVE area for the features enabled in XCR0
/// (CPUID.(EAX=0DH,ECX=0):EBX), which is the NT_X86_XSTATE regset size.
pub fn xsave_size() -> u32 {
    if !has_osxsave() {
        return 0;
    }
    let leaf = core::arch::x86_64::__cpuid_count(0xd, 0);
    leaf.ebx
}

/// XSAVE components whose state the kernel allocates only for a process
/// that asks for it (AMX tile data, XFEATURE_MASK_USER_DYNAMIC).
pub const XSAVE_DYNAMIC: u64 = 1 << 18;

/// The size of the XSAVE area (standard format) holding the components of
/// `xcr0` but the dynamic ones: the most a signal frame of a thread that
/// has not asked for them may carry (the kernel's `fpstate->user_size`).
pub fn xsave_size_without_dynamic(xcr0: u64) -> u32 {
    // The legacy area and the XSAVE header.
    let mut end = 576;
    for bit in 2..64 {
        if xcr0 & !XSAVE_DYNAMIC & (1 << bit) != 0 {
            let leaf = core::arch::x86_64::__cpuid_count(0xd, bit);
            end = end.max(leaf.ebx + leaf.eax);
        }
    }
    end
}

/// Names of the XSAVE components enabled in `xcr0`.
pub fn xsave_component_names(xcr0: u64) -> Vec<&'static str> {
    XSAVE_COMPONENTS
        .iter()
        .filter(|(bit, _)| xcr0 & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}
