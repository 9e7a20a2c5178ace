//! The seed's scenario 1 on Docker with ferry-runc as the default runtime
//! (issue 15): `docker run -d --name looper busybox` with the busybox
//! counter, `docker checkpoint create looper checkpoint1`, `docker start
//! --checkpoint checkpoint1 looper`, and the count goes on with no gap or
//! repeat in `docker logs` (the container's stdout is the shim's pipe,
//! carried as its external stdio); also with `--leave-running`. Each test
//! starts its own dockerd (tests/common/docker.rs).

mod common;

use anyhow::{ensure, Context, Result};
use common::docker::{docker_test, DockerHost};
use common::TestDir;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The seed's counter, verbatim.
const LOOPER: &str = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done";

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

/// The runs of consecutive numbers `docker logs looper` shows, as
/// (first, last): one run from 0 when the count never repeated or skipped.
fn runs(host: &DockerHost) -> Result<Vec<(u64, u64)>> {
    let text = host.docker(&["logs", "looper"])?;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for line in text.lines() {
        let n: u64 = line
            .parse()
            .with_context(|| format!("docker logs shows {line:?}: {text:?}"))?;
        match runs.last_mut() {
            Some((_, last)) if n == *last + 1 => *last = n,
            _ => runs.push((n, n)),
        }
    }
    Ok(runs)
}

/// How many numbers the counter has written, checked to be 0, 1, 2, ...
/// with no gap or repeat.
fn count(host: &DockerHost) -> Result<u64> {
    match runs(host)?.as_slice() {
        [] => Ok(0),
        [(0, last)] => Ok(last + 1),
        other => anyhow::bail!(
            "docker logs does not count on from 0 without a gap or repeat: runs {other:?}"
        ),
    }
}

/// Waits until the counter has counted past `past`.
fn wait_count(host: &DockerHost, past: u64) -> Result<u64> {
    common::wait_counted_past(past, || count(host))
}

/// `docker start --checkpoint checkpoint1 CONTAINER`. Docker 20.10 uploads
/// the checkpoint to containerd as a blob which containerd may still hold
/// from the checkpoint itself (the same bytes) until its garbage
/// collection runs, and then fails with "content sha256:...: already
/// exists" before any runtime is called: that one error is retried.
fn start_from_checkpoint(host: &DockerHost, container: &str) -> Result<()> {
    let args = ["start", "--checkpoint", "checkpoint1", container];
    for _ in 0..10 {
        let out = host.run(&args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains("already exists") {
            break;
        }
        eprintln!("retrying in 1 s: {}", stderr.trim());
        sleep(Duration::from_secs(1));
    }
    if inspect(host, container, "{{.State.Running}}")? != "true" {
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

fn inspect(host: &DockerHost, container: &str, format: &str) -> Result<String> {
    Ok(host
        .docker(&["inspect", "-f", format, container])?
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
    wait_count(&host, 2)?;
    let confinement = confinement(inspect(&host, "looper", "{{.State.Pid}}")?.parse()?)?;

    let mut ck = vec!["checkpoint", "create"];
    if leave_running {
        ck.push("--leave-running");
    }
    ck.extend_from_slice(&["looper", "checkpoint1"]);
    host.docker(&ck).context("docker checkpoint create")?;
    let at_checkpoint = count(&host)?;
    if leave_running {
        ensure!(
            inspect(&host, "looper", "{{.State.Running}}")? == "true",
            "the container stopped despite --leave-running"
        );
        wait_count(&host, at_checkpoint + 1)?;
        host.docker(&["kill", "looper"])?;
        host.docker(&["wait", "looper"])?;
    } else {
        ensure!(
            inspect(&host, "looper", "{{.State.Running}}")? == "false",
            "the container still runs after the checkpoint"
        );
        sleep(Duration::from_millis(1500));
        let later = count(&host)?;
        ensure!(
            later == at_checkpoint,
            "the count went on from {at_checkpoint} to {later} after the checkpoint stopped it"
        );
    }

    start_from_checkpoint(&host, "looper")?;
    ensure!(
        inspect(&host, "looper", "{{.State.Running}}")? == "true",
        "the restored container is not running"
    );
    let pid: i32 = inspect(&host, "looper", "{{.State.Pid}}")?.parse()?;
    ensure!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "Docker's PID of the restored container, {pid}, is no process"
    );
    let restored = self::confinement(pid)?;
    ensure!(
        restored == confinement,
        "the restored init's capabilities and seccomp differ: {restored:?}, not {confinement:?}"
    );
    let after = if leave_running {
        wait_restored_run(&host, at_checkpoint)?
    } else {
        wait_count(&host, at_checkpoint + 2)?
    };
    eprintln!("counted {at_checkpoint} before the checkpoint, {after} after the restore");
    host.docker(&["kill", "looper"])?;
    host.docker(&["rm", "looper"])?;
    Ok(())
}

/// With `--leave-running` the first container went on counting past the
/// checkpoint before it was killed, so `docker logs` shows two runs: the
/// first one from 0, then the restored one, which must start where the
/// checkpoint was taken (`at_checkpoint` numbers were seen just after it;
/// one more may have been in the shim's pipe or written meanwhile) and go on. Returns how far the
/// restored one has counted once it has counted two.
fn wait_restored_run(host: &DockerHost, at_checkpoint: u64) -> Result<u64> {
    let start = Instant::now();
    loop {
        let runs = runs(host)?;
        match runs.as_slice() {
            [(0, _)] => {}
            [(0, _), (first, last)] => {
                ensure!(
                    (at_checkpoint.saturating_sub(1)..=at_checkpoint + 1).contains(first),
                    "the restored container counts on from {first}, not from the checkpoint's {at_checkpoint}"
                );
                if last >= &(first + 2) {
                    return Ok(last + 1);
                }
            }
            other => anyhow::bail!(
                "docker logs shows a gap or repeat besides the restore's: runs {other:?}"
            ),
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the restored counter did not count on: runs {runs:?}"
        );
        sleep(Duration::from_millis(300));
    }
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

/// Scenario 2: the Node.js request counter (tests/workloads/
/// counter_server.js) run with Docker's defaults, answered N requests,
/// checkpointed (stopped, or `--leave-running` and then killed), started
/// from the checkpoint: the next request answers N+1, and the restored
/// init has the capabilities and seccomp filters it had.
fn scenario2(dir: &TestDir, leave_running: bool) -> Result<()> {
    let host = DockerHost::up()?;
    host.import_node(dir.path(), "node-counter")?;
    host.run_node_counter()?;
    let url = host.counter_url()?;
    let mut n = 0;
    for _ in 0..3 {
        n = host.http_get(&url)?.parse::<u64>()?;
    }
    ensure!(n == 3, "the counter answered {n} to the third request");
    let confinement = confinement(inspect(&host, "counter", "{{.State.Pid}}")?.parse()?)?;

    let mut ck = vec!["checkpoint", "create"];
    if leave_running {
        ck.push("--leave-running");
    }
    ck.extend_from_slice(&["counter", "checkpoint1"]);
    host.docker(&ck).context("docker checkpoint create")?;
    if leave_running {
        ensure!(
            inspect(&host, "counter", "{{.State.Running}}")? == "true",
            "the container stopped despite --leave-running"
        );
        let still = host.http_get(&url)?;
        ensure!(
            still == (n + 1).to_string(),
            "the container left running answered {still:?}, not {}",
            n + 1
        );
        host.docker(&["kill", "counter"])?;
        host.docker(&["wait", "counter"])?;
    } else {
        ensure!(
            inspect(&host, "counter", "{{.State.Running}}")? == "false",
            "the container still runs after the checkpoint"
        );
    }

    start_from_checkpoint(&host, "counter")?;
    let pid: i32 = inspect(&host, "counter", "{{.State.Pid}}")?.parse()?;
    let restored = self::confinement(pid)?;
    ensure!(
        restored == confinement,
        "the restored init's capabilities and seccomp differ: {restored:?}, not {confinement:?}"
    );
    let url = host.counter_url()?;
    let next = host.http_get(&url)?;
    ensure!(
        next == (n + 1).to_string(),
        "the restored counter answered {next:?}, not {}",
        n + 1
    );
    eprintln!("answered {n} before the checkpoint, {next} after the restore at {url}");
    host.docker(&["kill", "counter"])?;
    host.docker(&["rm", "counter"])?;
    Ok(())
}

#[test]
fn docker_scenario2() {
    docker_test("docker_scenario2", |dir| scenario2(dir, false));
}

#[test]
fn docker_scenario2_leave_running() {
    docker_test("docker_scenario2_leave_running", |dir| scenario2(dir, true));
}
