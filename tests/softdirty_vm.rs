//! The soft-dirty dirty tracker where soft-dirty exists: the development
//! and CI host's kernel lacks CONFIG_MEM_SOFT_DIRTY, so scripts/softdirty-vm.sh
//! boots Debian 12's 6.1 kernel under qemu (TCG) with
//! examples/softdirty_guest.rs as /init. There the probe must choose
//! soft-dirty (6.1 has neither UFFD_FEATURE_WP_ASYNC nor PAGEMAP_SCAN), the
//! tracker must report exactly the written pages round after round, across
//! munmap and mmap, and a checkpoint with pre-copy of a process that keeps
//! writing must hold one consistent moment of its memory. Needs root (mknod
//! of the initramfs console), qemu-system-x86, cpio and xz (scripts/setup.sh)
//! and apt access to the kernel package the first time (cached in
//! target/softdirty-vm).

use std::process::Command;

#[test]
fn soft_dirty_tracker_in_a_6_1_guest() -> anyhow::Result<()> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the soft-dirty VM test must run as root (it creates the initramfs console node)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/softdirty-vm.sh");
    // The script bounds the guest's run (FERRY_VM_TIMEOUT, 120 s) and kills
    // qemu itself.
    let out = Command::new("bash").arg(script).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().map(|l| l.trim_end()).collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    let failed: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("softdirty-vm: FAIL"))
        .collect();
    assert!(
        failed.is_empty(),
        "failed checks in the guest: {failed:#?}\n{stdout}\n{stderr}"
    );
    for prefix in [
        "softdirty-vm: kernel 6.1.",
        "softdirty-vm: PASS backend: the probe chose soft-dirty",
        "softdirty-vm: PASS tracker:",
        "softdirty-vm: PASS round 1:",
        "softdirty-vm: PASS round 2:",
        "softdirty-vm: PASS round 3 (no writes):",
        "softdirty-vm: PASS round 4 (munmap and mmap):",
        "softdirty-vm: PASS round 5 (after remap):",
        "softdirty-vm: PASS checkpoint pre-copy:",
        "softdirty-vm: PASS checkpoint image consistent:",
        "softdirty-vm: PASS (",
    ] {
        assert!(
            has(prefix),
            "no line {prefix:?} from the guest:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        out.status.success(),
        "scripts/softdirty-vm.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(())
}
