//! `migrate-agent dry-run` on real workloads: the dirty rate it measures,
//! the blockers it lists, the workload left exactly as it was (after a
//! whole run and after a SIGINT in the middle), and the probe of a
//! destination between the testbed hosts (run by the source's agent, in
//! its view of the PIDs).

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::testbed::{wait_for, Host, Testbed, HOST_B};
use common::{agent_bin, path_str, proc_state, run_test, AgentRun, Spec, TestDir, Workload};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const MIB: f64 = (1u64 << 20) as f64;

/// 512 MiB rewritten at 64 MiB/s.
const STEADY: Spec = Spec::new("steady_dirty").args(&["512", "64"]);
/// A small steady writer, for the tests that do not look at the rate.
const SMALL_STEADY: Spec = Spec::new("steady_dirty").args(&["64", "16"]);
/// Holds two multipath TCP sockets (IPPROTO_MPTCP) still connecting at
/// fds 10 and 11 (their listener, its accept queue full, at 12).
const SOCKET: Spec = Spec::new("unsupported_fd").args(&["socket"]);

/// How many mappings of `pid` are registered for userfaultfd tracking
/// ("uw" in smaps).
fn tracked_mappings(pid: i32) -> Result<usize> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    Ok(smaps
        .lines()
        .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw"))
        .count())
}

/// The dry run left nothing in the process: no tracer, no tracked mapping.
fn untouched(pid: i32) -> Result<()> {
    let (state, tracer) = proc_state(Pid::from_raw(pid))?;
    ensure!(tracer == 0, "process {pid} is still traced by {tracer}");
    ensure!(
        !matches!(state, 't' | 'T'),
        "process {pid} is stopped (state {state})"
    );
    let tracked = tracked_mappings(pid)?;
    ensure!(
        tracked == 0,
        "process {pid} still has {tracked} mappings registered for write tracking"
    );
    Ok(())
}

/// The report a dry run printed with --json (whatever its exit code).
fn report(run: &AgentRun) -> Result<Value> {
    ensure!(
        !run.stderr.contains("panicked"),
        "migrate-agent panicked:\n{}",
        run.stderr
    );
    serde_json::from_str(run.stdout.trim()).with_context(|| {
        format!(
            "dry-run --json printed:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    })
}

fn number(v: &Value, path: &[&str]) -> Result<f64> {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_f64()
        .with_context(|| format!("no number at {path:?} in {v}"))
}

#[test]
fn measures_the_rate_of_a_steady_writer() {
    run_test("measures_the_rate_of_a_steady_writer", |dir| {
        let mut w = Workload::start(dir, &STEADY)?;
        let pid = w.pid().to_string();
        let run = common::agent(dir, &["dry-run", &pid, "--duration", "3s", "--json"])?;
        let r = report(&run)?;
        ensure!(run.status.success(), "the dry run says no: {r}");
        ensure!(r["can_move"] == Value::Bool(true), "cannot move: {r}");
        let m = &r["measurement"];
        let rate = number(m, &["dirty_bytes_per_sec"])? / MIB;
        ensure!(
            (rate - 64.0).abs() <= 64.0 * 0.2,
            "measured {rate:.1} MiB/s for a workload writing 64 MiB/s"
        );
        let ws = number(m, &["working_set_bytes"])? / MIB;
        ensure!(
            ws > 0.0 && ws <= 512.0,
            "working set {ws:.1} MiB for 512 MiB written in a cycle"
        );
        ensure!(
            number(m, &["memory_bytes"])? / MIB >= 512.0,
            "memory under 512 MiB: {m}"
        );
        ensure!(
            m["samples"].as_array().is_some_and(|s| s.len() >= 4),
            "too few samples: {m}"
        );
        ensure!(
            r["predictions"].as_array().map(Vec::len) == Some(3),
            "expected one prediction per mode: {r}"
        );
        ensure!(
            r["recommendation"]["mode"].is_string(),
            "no recommended mode: {r}"
        );
        ensure!(r["bandwidth_source"] == "default", "{r}");
        untouched(w.pid().as_raw())?;
        w.finish(&STEADY)
    });
}

#[test]
fn lists_the_blockers_with_pid_and_fd() {
    run_test("lists_the_blockers_with_pid_and_fd", |dir| {
        let mut w = Workload::start(dir, &SOCKET)?;
        let pid = w.pid().as_raw();
        let run = common::agent(
            dir,
            &["dry-run", &pid.to_string(), "--duration", "500ms", "--json"],
        )?;
        let r = report(&run)?;
        ensure!(
            run.status.code() == Some(3),
            "expected exit code 3 (cannot move), got {}: {r}",
            run.status
        );
        ensure!(r["can_move"] == Value::Bool(false), "{r}");
        let blockers = r["blockers"].as_array().context("no blockers array")?;
        let at_fd_10 = blockers
            .iter()
            .find(|b| b["pid"] == pid && b["resource"] == "fd 10")
            .with_context(|| format!("no blocker for fd 10 of process {pid}: {r}"))?;
        ensure!(
            at_fd_10["reason"]
                .as_str()
                .is_some_and(|s| s.contains("socket")),
            "the reason does not say socket: {at_fd_10}"
        );
        ensure!(
            r["recommendation"]["mode"].is_null(),
            "a mode is recommended for a workload that cannot move: {r}"
        );
        // The established connection at fd 13 is carried: listed, not a
        // blocker.
        ensure!(
            !blockers
                .iter()
                .any(|b| b["pid"] == pid && b["resource"] == "fd 13"),
            "the established connection at fd 13 is a blocker: {r}"
        );
        let connections = r["connections"]
            .as_array()
            .context("no connections array")?;
        ensure!(
            connections.len() == 1
                && connections[0]
                    .as_str()
                    .is_some_and(|c| c.starts_with("127.0.0.1:") && c.contains(" -> 127.0.0.1:")),
            "expected the connection at fd 13 in the list: {r}"
        );
        // The human report names them too.
        let human = common::agent(dir, &["dry-run", &pid.to_string(), "--duration", "300ms"])?;
        ensure!(
            human.stdout.contains(&format!("process {pid} fd 10")),
            "the table does not list fd 10:\n{}",
            human.stdout
        );
        untouched(pid)?;
        w.finish(&SOCKET)
    });
}

/// A shell whose child (unsupported_fd.c) holds the multipath TCP
/// sockets: killed, both, when dropped.
struct ShellTree {
    shell: std::process::Child,
    child: i32,
}

impl Drop for ShellTree {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child), Signal::SIGKILL);
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

#[test]
fn lists_a_blocker_deep_in_a_tree() {
    run_test("lists_a_blocker_deep_in_a_tree", |dir| {
        let bin = common::workload_bin("unsupported_fd")?;
        let output = dir.path().join("output.txt");
        let shell = Command::new("/bin/sh")
            .args(["-c", "\"$0\" \"$1\" socket & wait"])
            .arg(&bin)
            .arg(dir.path().join("files"))
            .stdin(Stdio::null())
            .stdout(File::create(&output)?)
            .stderr(File::create(dir.path().join("shell.err"))?)
            .spawn()?;
        let mut tree = ShellTree { shell, child: 0 };
        wait_for(&output, "READY")?;
        let children = common::descendants(Pid::from_raw(tree.shell.id() as i32));
        let [child] = children[..] else {
            bail!("the shell has descendants {children:?}");
        };
        tree.child = child.as_raw();
        let root = tree.shell.id().to_string();
        let run = common::agent(dir, &["dry-run", &root, "--duration", "300ms", "--json"])?;
        let r = report(&run)?;
        ensure!(run.status.code() == Some(3), "exit {}: {r}", run.status);
        let processes = r["measurement"]["processes"].as_array().map(Vec::len);
        ensure!(
            processes == Some(2),
            "expected the shell and its child: {r}"
        );
        let blockers = r["blockers"].as_array().context("no blockers array")?;
        ensure!(
            blockers
                .iter()
                .any(|b| b["pid"] == tree.child && b["resource"] == "fd 10"),
            "no blocker for fd 10 of the child {}: {r}",
            tree.child
        );
        // Every blocker, not only the first: the second socket too.
        ensure!(
            blockers
                .iter()
                .any(|b| b["pid"] == tree.child && b["resource"] == "fd 11"),
            "no blocker for fd 11 of the child {}: {r}",
            tree.child
        );
        untouched(tree.child)?;
        untouched(tree.shell.id() as i32)?;
        kill(child, Signal::SIGTERM)?;
        let out = wait_for(&output, "PASS")?;
        ensure!(
            out == "READY\nPASS\n",
            "expected READY then PASS, got:\n{out}"
        );
        Ok(())
    });
}

#[test]
fn an_interrupted_dry_run_removes_its_tracking() {
    run_test("an_interrupted_dry_run_removes_its_tracking", |dir| {
        let mut w = Workload::start(dir, &SMALL_STEADY)?;
        let pid = w.pid().as_raw();
        let out = dir.path().join("dry-run.out");
        let mut child = Command::new(agent_bin()?)
            .args(["dry-run", &pid.to_string(), "--duration", "60s", "--json"])
            .stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(dir.path().join("dry-run.err"))?)
            .spawn()?;
        let result = (|| {
            let start = Instant::now();
            while tracked_mappings(pid)? == 0 {
                ensure!(
                    start.elapsed() < Duration::from_secs(20),
                    "the dry run never tracked the workload"
                );
                if let Some(status) = child.try_wait()? {
                    bail!("the dry run ended ({status}) before tracking");
                }
                sleep(Duration::from_millis(20));
            }
            kill(Pid::from_raw(child.id() as i32), Signal::SIGINT)?;
            let start = Instant::now();
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                ensure!(
                    start.elapsed() < Duration::from_secs(20),
                    "the dry run did not stop after SIGINT"
                );
                sleep(Duration::from_millis(20));
            };
            ensure!(
                status.code() == Some(130) && status.signal().is_none(),
                "expected exit code 130 after SIGINT, got {status}"
            );
            let r: Value = serde_json::from_str(fs::read_to_string(&out)?.trim())?;
            ensure!(
                r["measurement"]["interrupted"] == Value::Bool(true),
                "the report does not say interrupted: {r}"
            );
            Ok(())
        })();
        let _ = child.kill();
        let _ = child.wait();
        result?;
        untouched(pid)?;
        common::check_running(&mut w, "after an interrupted dry run")?;
        w.finish(&SMALL_STEADY)
    });
}

/// SIGTERMs the workload on host A and checks that it printed PASS.
fn finish_on_a(bed: &Testbed, dir: &TestDir, ns_pid: i32) -> Result<()> {
    let pid = bed
        .find(Host::A, ns_pid)?
        .context("the workload is not running on host A")?;
    kill(Pid::from_raw(pid), Signal::SIGTERM)?;
    let out = wait_for(&dir.path().join("output.txt"), "PASS")?;
    ensure!(
        out == "READY\nPASS\n",
        "expected READY then PASS, got:\n{out}"
    );
    Ok(())
}

#[test]
fn probes_the_destination_and_reports_an_unreachable_one() {
    run_test(
        "probes_the_destination_and_reports_an_unreachable_one",
        |dir| {
            let bed = Testbed::up(dir)?;
            let w = bed.start_workload(dir, "steady_dirty", &["64", "16"])?;
            let ns_pid = w.ns_pid.to_string();
            let socket = bed.control_socket(Host::A);
            let args = |to: &'static str| {
                Ok::<_, anyhow::Error>(vec![
                    "dry-run".to_string(),
                    ns_pid.clone(),
                    "--duration".into(),
                    "1s".into(),
                    "--to".into(),
                    to.into(),
                    "--control-socket".into(),
                    path_str(&socket)?.to_string(),
                    "--json".into(),
                ])
            };
            let run_with = |to: &'static str| -> Result<AgentRun> {
                let a = args(to)?;
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                bed.agent_in(Host::A, &refs)
            };

            let run = run_with(HOST_B)?;
            let r = report(&run).with_context(|| {
                format!(
                    "agent A:\n{}\nagent B:\n{}",
                    bed.agent_log(Host::A),
                    bed.agent_log(Host::B)
                )
            })?;
            let d = &r["destination"];
            ensure!(d["reachable"] == Value::Bool(true), "unreachable: {d}");
            ensure!(d["compatible"] == Value::Bool(true), "incompatible: {d}");
            ensure!(
                number(d, &["probe", "bandwidth_bytes_per_sec"])? > 0.0,
                "no bandwidth measured: {d}"
            );
            ensure!(r["bandwidth_source"] == "measured", "{r}");
            ensure!(run.status.success(), "the dry run says no: {r}");
            let root = bed
                .find(Host::A, w.ns_pid)?
                .context("the workload is gone from host A")?;
            untouched(root)?;

            // Run from outside host A's PID namespace, the PID is still the
            // one agent A sees, as for `migrate`: the agent runs the whole
            // dry run.
            let a = args(HOST_B)?;
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let run = common::agent(dir, &refs)?;
            let r = report(&run)?;
            ensure!(
                run.status.success(),
                "the dry run from outside says no: {r}"
            );
            ensure!(
                r["measurement"]["processes"][0] == w.ns_pid,
                "the dry run from outside did not measure process {} of host A: {r}",
                w.ns_pid
            );
            ensure!(r["destination"]["reachable"] == Value::Bool(true), "{r}");
            untouched(root)?;

            // Host B listens on 7420 only: nothing answers on 7999.
            let run = run_with("10.231.0.2:7999")?;
            let r = report(&run)?;
            let d = &r["destination"];
            ensure!(d["reachable"] == Value::Bool(false), "reachable? {d}");
            ensure!(
                d["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("10.231.0.2:7999")),
                "the error does not name the destination: {d}"
            );
            ensure!(run.status.code() == Some(3), "exit {}: {r}", run.status);
            untouched(root)?;
            finish_on_a(&bed, dir, w.ns_pid)
        },
    );
}
