//! Podman with ferry-runc (issue 15): the seed's busybox counter run by
//! Podman, `podman container checkpoint --export F`, the container
//! removed, `podman container restore --import F`, and `podman logs`
//! counts on with no gap or repeat; on the same Podman host, and on a
//! second one (another private storage, in a mount namespace of its own,
//! as another machine). Each host is the test's own (tests/common/podman.rs).

mod common;

use anyhow::{ensure, Context, Result};
use common::podman::{have_podman, PodmanHost, StorePath};
use common::{run_test, TestDir};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The seed's counter, verbatim.
const LOOPER: &str = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done";

fn podman_test(name: &str, test: impl FnOnce(&TestDir) -> Result<()>) {
    if !have_podman() {
        eprintln!("SKIPPED: podman is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test(name, test);
}

/// How many numbers `podman logs looper` shows, checked to be 0, 1, 2, ...
/// with no gap or repeat.
fn count(host: &PodmanHost) -> Result<u64> {
    let text = host.podman(&["logs", "looper"])?;
    let numbers: Vec<u64> = text
        .lines()
        .map(|l| {
            l.parse()
                .with_context(|| format!("podman logs shows {l:?}"))
        })
        .collect::<Result<_>>()?;
    ensure!(
        numbers.iter().copied().eq(0..numbers.len() as u64),
        "podman logs does not count on from 0 without a gap or repeat: {numbers:?}"
    );
    Ok(numbers.len() as u64)
}

/// Waits until the counter has counted past `past`.
fn wait_count(host: &PodmanHost, past: u64) -> Result<u64> {
    common::wait_counted_past(past, || count(host))
}

fn inspect(host: &PodmanHost, format: &str) -> Result<String> {
    Ok(host
        .podman(&["inspect", "-f", format, "looper"])?
        .trim()
        .to_string())
}

/// Runs the counter on `host`, lets it count, exports its checkpoint to
/// `archive` and removes the container; returns the count at the
/// checkpoint.
fn run_and_export(host: &PodmanHost, archive: &str) -> Result<u64> {
    let parent = host.cgroup_parent();
    host.podman(&[
        "run",
        "-d",
        "--name",
        "looper",
        "--network",
        "none",
        "--log-driver",
        "k8s-file",
        "--cgroup-parent",
        &parent,
        // Podman raises the limits to its defaults, which fails without
        // CAP_SYS_RESOURCE on this machine: lower ones are taken.
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "localhost/busybox",
        "/bin/sh",
        "-c",
        LOOPER,
    ])?;
    wait_count(host, 2)?;
    let started = Instant::now();
    let stats = host
        .podman(&[
            "container",
            "checkpoint",
            "--print-stats",
            "--export",
            archive,
            "looper",
        ])
        .context("podman container checkpoint --export")?;
    eprintln!(
        "podman container checkpoint --export: {:?}, {stats}",
        started.elapsed()
    );
    ensure!(
        stats.contains("frozen_time"),
        "podman's --print-stats shows no CRIU statistics: {stats}"
    );
    let at_checkpoint = count(host)?;
    ensure!(
        inspect(host, "{{.State.Running}}")? == "false",
        "the container still runs after the checkpoint"
    );
    sleep(Duration::from_millis(1500));
    let later = count(host)?;
    ensure!(
        later == at_checkpoint,
        "the count went on from {at_checkpoint} to {later} after the checkpoint stopped it"
    );
    host.podman(&["rm", "looper"])?;
    Ok(at_checkpoint)
}

/// Restores `archive` on `host` and checks the count goes on from
/// `at_checkpoint` and that Podman manages the restored container.
fn import_and_check(host: &PodmanHost, archive: &str, at_checkpoint: u64) -> Result<()> {
    let started = Instant::now();
    let stats = host
        .podman(&["container", "restore", "--print-stats", "--import", archive])
        .context("podman container restore --import")?;
    eprintln!(
        "podman container restore --import: {:?}, {stats}",
        started.elapsed()
    );
    ensure!(
        stats.contains("restore_time"),
        "podman's --print-stats shows no CRIU statistics: {stats}"
    );
    ensure!(
        inspect(host, "{{.State.Running}}")? == "true",
        "the restored container is not running"
    );
    let pid: i32 = inspect(host, "{{.State.Pid}}")?.parse()?;
    ensure!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "Podman's PID of the restored container, {pid}, is no process"
    );
    let after = wait_count(host, at_checkpoint + 2)?;
    eprintln!("counted {at_checkpoint} before the checkpoint, {after} after the restore");
    host.podman(&["stop", "--time", "1", "looper"])?;
    host.podman(&["rm", "looper"])?;
    Ok(())
}

#[test]
fn podman_export_import() {
    podman_test("podman_export_import", |dir| {
        let store = StorePath::new()?;
        let host = PodmanHost::up("one", &dir.path().join("host"), &store)?;
        let archive = dir.path().join("looper.tar.zst");
        let archive = common::path_str(&archive)?;
        host.import_busybox(dir.path(), "localhost/busybox")?;
        let at = run_and_export(&host, archive)?;
        import_and_check(&host, archive, at)
    });
}

#[test]
fn podman_export_import_other_host() {
    podman_test("podman_export_import_other_host", |dir| {
        let store = StorePath::new()?;
        let a = PodmanHost::up("a", &dir.path().join("a"), &store)?;
        let b = PodmanHost::up("b", &dir.path().join("b"), &store)?;
        let archive = dir.path().join("looper.tar.zst");
        let archive = common::path_str(&archive)?;
        a.import_busybox(dir.path(), "localhost/busybox")?;
        a.copy_image("localhost/busybox", &dir.path().join("image.tar"), &b)?;
        let at = run_and_export(&a, archive)?;
        ensure!(
            a.podman(&["ps", "--all", "--quiet"])?.trim().is_empty(),
            "the exported container is still on host A"
        );
        import_and_check(&b, archive, at)
    });
}
