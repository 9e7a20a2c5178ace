//! The switch-over's two-phase commit against real agents (issue 18): on
//! testbed hosts whose PID namespace outlives their agent, an agent dies
//! or stalls at the switch-over, and afterwards exactly one copy of a
//! checksummed, memory-rewriting workload (steady_dirty) runs and verifies
//! PASS at SIGTERM. The faults at an exact moment come from the agents'
//! test-only hook, the environment variable FERRY_FAULT
//! (`migration::journal::fault`): `after-prepared` kills the destination
//! agent right after it recorded Prepared and told the source,
//! `after-commit` kills the source agent right after it recorded
//! Committed, before it sends Commit, `postcopy-running` kills the source
//! agent of a post-copy migration when the destination's copy runs.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::testbed::{finish_on, wait_for, Host, HostProcess, Testbed, HOST_B};
use common::{agent_bin, run_test, AgentRun, TestDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a restarted destination may take to settle its held copy.
const SETTLE: Duration = Duration::from_secs(40);

fn letter(host: Host) -> &'static str {
    match host {
        Host::A => "a",
        _ => "b",
    }
}

/// An agent this test started again in a host (after its first one was
/// killed), with `FERRY_FAULT` set or not; its log goes on the host's
/// agent log. Dropping it kills it (by PID).
struct Restarted {
    nsenter: Child,
}

impl Restarted {
    /// The agent's PID (nsenter's child).
    fn pid(&self) -> Result<i32> {
        let id = self.nsenter.id();
        let start = Instant::now();
        loop {
            let children = fs::read_to_string(format!("/proc/{id}/task/{id}/children"))?;
            if let Some(pid) = children.split_whitespace().next() {
                return Ok(pid.parse()?);
            }
            ensure!(
                start.elapsed() < Duration::from_secs(5),
                "no agent under nsenter {id}"
            );
            sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        if let Ok(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.nsenter.wait();
    }
}

/// Kills the agent of `host` if it runs, and starts it again there, with
/// `FERRY_FAULT=fault` when given; waits until it serves.
fn restart_agent(bed: &Testbed, host: Host, fault: Option<&str>) -> Result<Restarted> {
    if let Ok(old) = bed.agent_pid(host) {
        kill(Pid::from_raw(old), Signal::SIGKILL)?;
        // Its claim on the work directory goes with it.
        let start = Instant::now();
        while fs::read_to_string(format!("/proc/{old}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
            ensure!(
                start.elapsed() < Duration::from_secs(5),
                "agent {old} does not die"
            );
            sleep(Duration::from_millis(10));
        }
    }
    let dir = bed.agents_dir();
    let socket = bed.control_socket(host);
    // The dead agent's socket stays until the new one replaces it.
    let _ = fs::remove_file(&socket);
    let init = fs::read_to_string(dir.join(letter(host)).join("init.pid"))?;
    let log = fs::OpenOptions::new()
        .append(true)
        .open(bed.agent_log_path(host))?;
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", init.trim(), "-n", "-p", "-m", "-i", "--"])
        .arg(agent_bin()?)
        .arg("serve")
        .arg("--config")
        .arg(dir.join(format!("{}.toml", letter(host))))
        .env_remove("FERRY_FAULT")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(f) = fault {
        cmd.env("FERRY_FAULT", f);
    }
    let agent = Restarted {
        nsenter: cmd.spawn().context("starting an agent again")?,
    };
    let start = Instant::now();
    while !socket.exists() {
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "the restarted agent of {host:?} does not serve:\n{}",
            bed.agent_log(host)
        );
        sleep(Duration::from_millis(20));
    }
    Ok(agent)
}

/// The destination's two-phase commit records (none once it settled).
fn records(bed: &Testbed, host: Host) -> Vec<PathBuf> {
    let dir = bed.agents_dir().join(letter(host)).join("work/.twopc");
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("destination-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until B holds no undecided copy, then checks that exactly one
/// copy of the workload exists (on A or on B, and not frozen) and that it
/// verifies PASS; returns the host it ran on.
fn exactly_one_copy(bed: &Testbed, dir: &TestDir, w: &HostProcess) -> Result<Host> {
    let ns_pid = w.ns_pid;
    let start = Instant::now();
    while !records(bed, Host::B).is_empty() {
        if start.elapsed() > SETTLE {
            bail!(
                "B still holds an undecided copy after {SETTLE:?}:\nagent A:\n{}\nagent B:\n{}",
                bed.agent_log(Host::A),
                bed.agent_log(Host::B)
            );
        }
        sleep(Duration::from_millis(100));
    }
    // A killed copy may take a moment to be reaped.
    let mut on = (None, None);
    for _ in 0..100 {
        on = (bed.find(Host::A, ns_pid)?, bed.find(Host::B, ns_pid)?);
        if on.0.is_none() || on.1.is_none() {
            break;
        }
        sleep(Duration::from_millis(50));
    }
    let host = match on {
        (Some(_), None) => Host::A,
        (None, Some(_)) => Host::B,
        (Some(_), Some(_)) => bail!(
            "two copies run, on A and on B:\nagent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        ),
        (None, None) => bail!(
            "no copy runs:\nagent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        ),
    };
    let pid = match on {
        (Some(p), _) | (_, Some(p)) => p,
        _ => unreachable!("one copy found above"),
    };
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    ensure!(
        !state.contains(") D "),
        "the copy on {host:?} is still frozen: {state}"
    );
    eprintln!("the workload runs on {host:?}");
    finish_on(bed, dir, host, w)?;
    Ok(host)
}

/// Migrates a workload to B with B's agent killed at `fault`
/// (FERRY_FAULT), restarts that agent, and checks that exactly one copy
/// runs; returns where, and what the CLI said.
fn destination_killed_at(dir: &TestDir, fault: &str) -> Result<(Host, AgentRun)> {
    let bed = Testbed::up_lasting(dir)?;
    let faulty = restart_agent(&bed, Host::B, Some(fault))?;
    let w = bed.start_workload(dir, "steady_dirty", &["64", "8"])?;
    let run = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &[])?;
    wait_for(&bed.agent_log_path(Host::B), "killing this agent")?;
    drop(faulty);
    let result = run.wait()?;
    let _b = restart_agent(&bed, Host::B, None)?;
    let host = exactly_one_copy(&bed, dir, &w)?;
    Ok((host, result))
}

/// The destination agent dies right after it recorded Prepared and told
/// the source; restarted, it asks the source for the decision and lets
/// its held copy run or kills it: exactly one copy runs, and the CLI said
/// where.
#[test]
fn destination_killed_after_prepared_settles_on_restart() {
    run_test("twopc_dest_prepared", |dir| {
        let (host, result) = destination_killed_at(dir, "after-prepared")?;
        let expected = if result.status.success() {
            Host::B
        } else {
            Host::A
        };
        ensure!(
            host == expected,
            "the CLI said {} but the copy runs on {host:?}:\n{}{}",
            if result.status.success() {
                "migrated"
            } else {
                "failed"
            },
            result.stdout,
            result.stderr
        );
        Ok(())
    });
}

/// The destination agent dies once its restored copy is held frozen,
/// before it recorded Prepared: the source, never told Prepared, resumes
/// its own copy, and the restarted destination kills the held one (its
/// record says it was restoring it): exactly one copy runs, on A.
#[test]
fn destination_killed_while_holding_kills_its_copy_on_restart() {
    run_test("twopc_dest_holding", |dir| {
        let (host, result) = destination_killed_at(dir, "after-hold")?;
        ensure!(
            !result.status.success(),
            "the CLI said migrated, yet B never told Prepared:\n{}",
            result.stdout
        );
        ensure!(host == Host::A, "the copy runs on {host:?}, not A");
        Ok(())
    });
}

/// The destination agent is stopped (SIGSTOP) for 10 s from the moment
/// it told the source Prepared, then continued: the link times out on both
/// sides meanwhile, yet exactly one copy runs afterwards, where the CLI
/// said.
#[test]
fn destination_stopped_at_switch_over_keeps_one_copy() {
    run_test("twopc_dest_stopped", |dir| {
        let bed = Testbed::up_lasting(dir)?;
        let w = bed.start_workload(dir, "steady_dirty", &["64", "8"])?;
        let run = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &["--bandwidth-limit", "32M"])?;
        wait_for(&bed.agent_log_path(Host::B), "told the source Prepared")?;
        let b = Pid::from_raw(bed.agent_pid(Host::B)?);
        kill(b, Signal::SIGSTOP)?;
        sleep(Duration::from_secs(10));
        kill(b, Signal::SIGCONT)?;
        let result = run.wait()?;
        let host = exactly_one_copy(&bed, dir, &w)?;
        let said_migrated = result.status.success();
        ensure!(
            (host == Host::B) == said_migrated,
            "the CLI said {} but the copy runs on {host:?}:\n{}{}",
            if said_migrated { "migrated" } else { "failed" },
            result.stdout,
            result.stderr
        );
        ensure!(
            !said_migrated
                || result.stdout.contains("committed")
                || result.stdout.contains("migrated"),
            "unclear success: {}",
            result.stdout
        );
        Ok(())
    });
}

/// The source agent dies right after it recorded Committed, before it
/// sends Commit: the destination keeps its copy held and asks again and
/// again; once the source agent is back it learns Committed and its copy
/// runs, verifying PASS.
#[test]
fn source_killed_after_commit_lets_the_destination_run() {
    run_test("twopc_source_committed", |dir| {
        let (bed, w) = source_killed_at(dir, "after-commit", &[])?;
        // Unreachable source: B keeps asking, its copy held.
        wait_for(&bed.agent_log_path(Host::B), "stays held")?;
        ensure!(
            !records(&bed, Host::B).is_empty(),
            "B settled without the source"
        );
        // The source's own tree stays frozen without its agent; the agent
        // started again kills it (Committed).
        stays_frozen(&bed, Host::A, &w)?;
        let _a = restart_agent(&bed, Host::A, None)?;
        let host = exactly_one_copy(&bed, dir, &w)?;
        ensure!(host == Host::B, "the copy runs on {host:?}, not on B");
        Ok(())
    });
}

/// Migrates a workload to B (with `args`) with A's agent killed at
/// `fault` (FERRY_FAULT); returns once the CLI ended, A's agent dead.
fn source_killed_at(dir: &TestDir, fault: &str, args: &[&str]) -> Result<(Testbed, HostProcess)> {
    let bed = Testbed::up_lasting(dir)?;
    let faulty = restart_agent(&bed, Host::A, Some(fault))?;
    let w = bed.start_workload(dir, "steady_dirty", &["64", "8"])?;
    let run = bed.spawn_migrate(dir, w.ns_pid, HOST_B, args)?;
    wait_for(&bed.agent_log_path(Host::A), "killing this agent")?;
    drop(faulty);
    let _ = run.wait()?;
    Ok((bed, w))
}

/// Checks that the copy of `w` on `host` is there and stays frozen (its
/// agent dead, the kernel holds it) for a while.
fn stays_frozen(bed: &Testbed, host: Host, w: &HostProcess) -> Result<()> {
    for _ in 0..10 {
        let pid = bed
            .find(host, w.ns_pid)?
            .with_context(|| format!("no copy on {host:?} after its agent died"))?;
        let state = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        ensure!(
            state.contains(") D "),
            "the copy on {host:?} runs without its agent: {state}"
        );
        sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Post-copy: the source agent dies as soon as the destination's copy
/// runs, most of its pages still on the source. The source's tree stays
/// frozen, and the agent started again serves the pages left there to
/// the destination, which reconnects: the copy on B gets every page and
/// verifies PASS, the one on A is killed.
#[test]
fn source_killed_during_postcopy_serves_from_its_next_run() {
    run_test("twopc_source_postcopy", |dir| {
        let (bed, w) = source_killed_at(dir, "postcopy-running", &["--mode", "postcopy"])?;
        stays_frozen(&bed, Host::A, &w)?;
        let _a = restart_agent(&bed, Host::A, None)?;
        wait_for(
            &bed.agent_log_path(Host::A),
            "every page is on the destination",
        )?;
        let host = exactly_one_copy(&bed, dir, &w)?;
        ensure!(host == Host::B, "the copy runs on {host:?}, not on B");
        Ok(())
    });
}
