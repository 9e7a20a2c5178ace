//! The seed's scenario 1 on Docker with ferry-runc as the default runtime
//! (issue 15): `docker run -d --name looper busybox` with the busybox
//! counter, `docker checkpoint create looper checkpoint1`, `docker start
//! --checkpoint checkpoint1 looper`, and the count goes on with no gap or
//! repeat; also with `--leave-running`. Each test starts its own dockerd
//! (tests/common/docker.rs).
//!
//! Until the engine carries a container's external stdio (the shim's
//! pipes), the counter writes into /log inside the container instead of
//! its stdout, and the test reads it with `docker cp`; then these tests
//! read `docker logs`.

mod common;

use anyhow::{ensure, Context, Result};
use common::docker::{have_docker, DockerHost};
use common::{path_str, run_test, TestDir};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The seed's counter, its output sent to /log (see the top of the file).
const LOOPER: &str =
    "exec >/log 2>&1; i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done";

/// What `docker run` is given besides the image and command: Docker's
/// defaults, or the confinement loosened.
const UNCONFINED: &[&str] = &[
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "SYS_PTRACE",
    "--security-opt",
    "seccomp=unconfined",
];

fn docker_test(name: &str, test: impl FnOnce(&TestDir) -> Result<()>) {
    if !have_docker() {
        eprintln!("SKIPPED: docker.io is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test(name, test);
}

/// The numbers /log holds, checked to be 0, 1, 2, ... with no gap or
/// repeat.
fn count(host: &DockerHost, dir: &TestDir, name: &str) -> Result<u64> {
    let copy = dir.path().join(format!("log-{name}"));
    let _ = std::fs::remove_file(&copy);
    host.docker(&["cp", "looper:/log", path_str(&copy)?])?;
    let text = std::fs::read_to_string(&copy)?;
    let mut n = 0u64;
    for line in text.lines() {
        ensure!(
            line == n.to_string(),
            "the count goes {}, then {line:?} instead of {n}: {text:?}",
            n.saturating_sub(1)
        );
        n += 1;
    }
    Ok(n)
}

/// Waits until the counter has counted past `past`.
fn wait_count(host: &DockerHost, dir: &TestDir, past: u64) -> Result<u64> {
    let start = Instant::now();
    loop {
        let n = count(host, dir, "wait")?;
        if n > past {
            return Ok(n);
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the counter stays at {n} lines (wanted more than {past})"
        );
        sleep(Duration::from_millis(300));
    }
}

/// `docker start --checkpoint checkpoint1 looper`. Docker 20.10 uploads
/// the checkpoint to containerd as a blob which containerd may still hold
/// from the checkpoint itself (the same bytes) until its garbage
/// collection runs, and then fails with "content sha256:...: already
/// exists" before any runtime is called: that one error is retried.
fn start_from_checkpoint(host: &DockerHost) -> Result<()> {
    let args = ["start", "--checkpoint", "checkpoint1", "looper"];
    for _ in 0..10 {
        let out = host.run(&args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains("already exists") {
            break;
        }
        eprintln!("retrying in 1 s: {}", stderr.trim());
        sleep(Duration::from_secs(1));
    }
    if inspect(host, "{{.State.Running}}")? != "true" {
        host.docker(&args).context("docker start --checkpoint")?;
    }
    Ok(())
}

/// The capability sets and seccomp state of process `pid`, as
/// /proc/PID/status shows them.
fn confinement(pid: i32) -> Result<Vec<String>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the status of process {pid}"))?;
    Ok(status
        .lines()
        .filter(|l| {
            [
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect())
}

fn inspect(host: &DockerHost, format: &str) -> Result<String> {
    Ok(host
        .docker(&["inspect", "-f", format, "looper"])?
        .trim()
        .to_string())
}

/// Scenario 1: run, checkpoint (killing it, or `--leave-running`), start
/// from the checkpoint, check the count and that Docker manages the
/// restored container (running, its PID, `docker kill`, `docker rm`).
fn scenario1(dir: &TestDir, run_opts: &[&str], leave_running: bool) -> Result<()> {
    let host = DockerHost::up()?;
    host.import_busybox(dir.path(), "busybox")?;
    let mut run = vec!["run", "-d", "--name", "looper"];
    run.extend_from_slice(run_opts);
    run.extend_from_slice(&["busybox", "/bin/sh", "-c", LOOPER]);
    host.docker(&run)?;
    wait_count(&host, dir, 2)?;
    let confinement = confinement(inspect(&host, "{{.State.Pid}}")?.parse()?)?;

    let mut ck = vec!["checkpoint", "create"];
    if leave_running {
        ck.push("--leave-running");
    }
    ck.extend_from_slice(&["looper", "checkpoint1"]);
    host.docker(&ck).context("docker checkpoint create")?;
    let at_checkpoint = count(&host, dir, "checkpoint")?;
    if leave_running {
        ensure!(
            inspect(&host, "{{.State.Running}}")? == "true",
            "the container stopped despite --leave-running"
        );
        wait_count(&host, dir, at_checkpoint)?;
        host.docker(&["kill", "looper"])?;
    } else {
        ensure!(
            inspect(&host, "{{.State.Running}}")? == "false",
            "the container still runs after the checkpoint"
        );
        sleep(Duration::from_millis(1500));
        let later = count(&host, dir, "stopped")?;
        ensure!(
            later == at_checkpoint,
            "the count went on from {at_checkpoint} to {later} after the checkpoint stopped it"
        );
    }

    start_from_checkpoint(&host)?;
    ensure!(
        inspect(&host, "{{.State.Running}}")? == "true",
        "the restored container is not running"
    );
    let pid: i32 = inspect(&host, "{{.State.Pid}}")?.parse()?;
    ensure!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "Docker's PID of the restored container, {pid}, is no process"
    );
    let restored = self::confinement(pid)?;
    ensure!(
        restored == confinement,
        "the restored init's capabilities and seccomp differ: {restored:?}, not {confinement:?}"
    );
    let after = wait_count(&host, dir, at_checkpoint + 2)?;
    eprintln!("counted {at_checkpoint} before the checkpoint, {after} after the restore");
    host.docker(&["kill", "looper"])?;
    host.docker(&["rm", "looper"])?;
    Ok(())
}

#[test]
fn docker_scenario1_unconfined() {
    docker_test("docker_scenario1_unconfined", |dir| {
        scenario1(dir, UNCONFINED, false)
    });
}

#[test]
fn docker_scenario1_unconfined_leave_running() {
    docker_test("docker_scenario1_unconfined_leave_running", |dir| {
        scenario1(dir, UNCONFINED, true)
    });
}

#[test]
fn docker_scenario1() {
    docker_test("docker_scenario1", |dir| scenario1(dir, &[], false));
}

#[test]
fn docker_scenario1_leave_running() {
    docker_test("docker_scenario1_leave_running", |dir| {
        scenario1(dir, &[], true)
    });
}
