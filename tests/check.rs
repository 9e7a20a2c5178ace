//! `probe_host()` on the CI machine kind (root, Linux 6.18, see
//! shared/design/kernel-facts.md): every mechanism that host is known to
//! have must be reported present, and probing must leave nothing behind.

use ferry::memory::DirtyBackend;
use ferry::probe::{probe_host, Feature, ProbeStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests count this process's children, fds and cgroups: they must not
/// probe at the same time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn ci_host_has_every_mechanism_it_is_known_to_have() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let report = probe_host();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "probing took {elapsed:?}, more than 2 s"
    );
    assert!(
        report.can_checkpoint(),
        "checkpoint blockers: {:?}",
        report.checkpoint_blockers()
    );
    for name in [
        Feature::PtraceSeize,
        Feature::ProcessVmReadv,
        Feature::PidfdGetfd,
        Feature::Clone3SetTid,
        Feature::PrctlMmMap,
        Feature::XstateRegset,
        Feature::UserfaultfdWpAsync,
        Feature::PagemapScan,
        Feature::TimeNamespace,
        Feature::TcpRepair,
    ] {
        let result = report
            .probe(name)
            .ok_or_else(|| anyhow::anyhow!("the report has no {name} probe"))?;
        assert_eq!(result.status, ProbeStatus::Present, "{result:?}");
    }
    let json = serde_json::to_value(&report)?;
    assert_eq!(json["probes"][0]["status"], "present", "{json}");
    // This kernel lacks CONFIG_MEM_SOFT_DIRTY: the probe must see that (a
    // soft-dirty tracker would report nothing), and pre-copy must use
    // uffd-wp async.
    let soft_dirty = report
        .probe(Feature::SoftDirty)
        .ok_or_else(|| anyhow::anyhow!("the report has no soft-dirty probe"))?;
    assert_eq!(soft_dirty.status, ProbeStatus::Absent, "{soft_dirty:?}");
    assert_eq!(
        DirtyBackend::choose(&report.probes),
        DirtyBackend::UffdWpAsync
    );
    assert_eq!(DirtyBackend::detect(), DirtyBackend::UffdWpAsync);
    Ok(())
}

#[test]
fn probing_leaves_no_child_fd_or_cgroup_behind() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fds_before = std::fs::read_dir("/proc/self/fd")?.count();
    probe_host();
    let fds_after = std::fs::read_dir("/proc/self/fd")?.count();
    assert_eq!(fds_before, fds_after, "fds open before and after probing");

    let children = std::fs::read_to_string(format!(
        "/proc/self/task/{}/children",
        nix::unistd::gettid()
    ))?;
    assert_eq!(children.trim(), "", "children left by probing");
    match nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        Err(nix::errno::Errno::ECHILD) => {}
        other => panic!("a probe child was left unreaped: waitpid says {other:?}"),
    }

    let prefix = format!("ferry-probe-{}-", std::process::id());
    for mount in [
        "/sys/fs/cgroup/freezer",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ] {
        let Ok(entries) = std::fs::read_dir(mount) else {
            continue;
        };
        for entry in entries {
            let name = entry?.file_name();
            assert!(
                !name.to_string_lossy().starts_with(&prefix),
                "cgroup {mount}/{name:?} left by probing"
            );
        }
    }
    Ok(())
}
