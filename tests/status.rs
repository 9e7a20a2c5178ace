//! `migrate-agent status` through the control socket, between the two
//! testbed hosts: the peers (configured in `[peers]` by scripts/testbed.sh)
//! reachable with their certificates' expiry, a migration seen while it
//! runs (phase, round, bytes, rate, ETA) and once finished (outcome,
//! downtime); and the 30-day certificate warning of `check` and `status`.

mod common;

use anyhow::{ensure, Context, Result};
use common::testbed::{finish_on, Host, Testbed, HOST_B};
use common::{agent, path_str, run_test, TestDir};
use serde_json::Value;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `status --json` of a host's agent.
fn status(bed: &Testbed, dir: &TestDir, host: Host) -> Result<Value> {
    let socket = bed.control_socket(host);
    agent(
        dir,
        &["status", "--json", "--control-socket", path_str(&socket)?],
    )?
    .json()
}

/// The one configured peer is `name`, reachable, with a certificate valid
/// for about a year (the default of `certs issue`).
fn check_peer(status: &Value, name: &str) -> Result<()> {
    let peers = status["peers"].as_array().context("no peers")?;
    ensure!(peers.len() == 1, "{status}");
    let peer = &peers[0];
    ensure!(peer["name"] == name && peer["reachable"] == true, "{peer}");
    let expires = peer["certificate"]["expires_unix"]
        .as_u64()
        .with_context(|| format!("no expiry: {peer}"))?;
    let days = expires.saturating_sub(now_unix()) / 86_400;
    ensure!(
        (360..=366).contains(&days),
        "expires in {days} days: {peer}"
    );
    Ok(())
}

#[test]
fn status_shows_peers_and_a_running_then_finished_migration() {
    run_test("status_migration", |dir| {
        let bed = Testbed::up(dir)?;
        let a = status(&bed, dir, Host::A)?;
        ensure!(a["name"] == "host-a", "{a}");
        ensure!(a["version"] == env!("CARGO_PKG_VERSION"), "{a}");
        ensure!(
            a["config_file"]
                .as_str()
                .is_some_and(|f| f.ends_with("a.toml")),
            "{a}"
        );
        ensure!(
            a["certificate"]["expires_unix"].as_u64() > Some(now_unix()),
            "{a}"
        );
        check_peer(&a, "host-b")?;
        check_peer(&status(&bed, dir, Host::B)?, "host-a")?;

        // 256 MiB at 32 MiB/s: several seconds of pre-copy to look at.
        let w = bed.start_workload(dir, "steady_dirty", &["256", "16"])?;
        let migration = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &["--bandwidth-limit", "32M"])?;
        let start = Instant::now();
        let running = loop {
            let s = status(&bed, dir, Host::A)?;
            let running = &s["running"][0];
            if running["progress"]["bytes_sent"].as_u64() > Some(0) {
                break running.clone();
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "no migration in progress seen: {s}"
            );
            sleep(Duration::from_millis(200));
        };
        ensure!(
            running["workload"] == format!("process {}", w.ns_pid) && running["to"] == HOST_B,
            "{running}"
        );
        let progress = &running["progress"];
        ensure!(
            progress["phase"] == "precopy" || progress["phase"] == "frozen",
            "{running}"
        );
        ensure!(progress["round"].as_u64().is_some(), "{running}");
        ensure!(
            progress["throughput_bytes_per_sec"].as_f64() > Some(0.0),
            "{running}"
        );
        ensure!(running["eta_secs"].as_f64() >= Some(0.0), "{running}");

        let run = migration.wait()?;
        ensure!(run.status.success(), "{}{}", run.stdout, run.stderr);
        let a = status(&bed, dir, Host::A)?;
        ensure!(a["running"].as_array().is_some_and(Vec::is_empty), "{a}");
        let finished = &a["finished"][0];
        ensure!(
            finished["outcome"] == "migrated"
                && finished["workload"] == format!("process {}", w.ns_pid)
                && finished["downtime_ms"].as_f64() > Some(0.0),
            "{a}"
        );

        // The person's form says the same.
        let socket = bed.control_socket(Host::A);
        let text = agent(dir, &["status", "--control-socket", path_str(&socket)?])?;
        ensure!(text.status.success(), "{}", text.stderr);
        for expected in [
            "host-b 10.231.0.2:7420: reachable",
            "migrated in",
            "downtime",
        ] {
            ensure!(
                text.stdout.contains(expected),
                "no {expected:?}:\n{}",
                text.stdout
            );
        }
        // The agents' log files are for people and log collectors: no
        // terminal colour codes (issue 19).
        for host in [Host::A, Host::B] {
            let log = bed.agent_log(host);
            ensure!(!log.is_empty(), "agent {host:?} logged nothing");
            ensure!(
                !log.contains('\x1b'),
                "agent {host:?}'s log holds escape sequences:\n{log}"
            );
        }
        finish_on(&bed, dir, Host::B, &w)
    });
}

#[test]
fn certificates_near_their_end_are_warned_about() {
    run_test("status_cert_expiry", |dir| {
        let d = dir.path();
        let ca = d.join("ca");
        let host = d.join("host");
        agent(dir, &["certs", "init", "--dir", path_str(&ca)?])?;
        let issued = agent(
            dir,
            &[
                "certs",
                "issue",
                "--ca",
                path_str(&ca)?,
                "--name",
                "host-a",
                "--days",
                "10",
                "--out",
                path_str(&host)?,
            ],
        )?;
        ensure!(issued.status.success(), "{}", issued.stderr);
        let config = d.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"host-a\"\nlisten = \"127.0.0.1:7420\"\nca = \"{}/ca.pem\"\n\
                 cert = \"{}/cert.pem\"\nkey = \"{}/key.pem\"\n",
                ca.display(),
                host.display(),
                host.display()
            ),
        )?;
        let check = agent(dir, &["check", "--json", "--config", path_str(&config)?])?;
        let report = check.json()?;
        let cert = &report["certificates"][format!("{}/cert.pem", host.display())];
        let days = cert["expires_unix"]
            .as_u64()
            .context("no expiry")?
            .saturating_sub(now_unix())
            / 86_400;
        ensure!(days == 9 || days == 10, "{report}");
        ensure!(
            check.stderr.contains("warning: the certificate")
                && check.stderr.contains("cert.pem expires in"),
            "no warning:\n{}",
            check.stderr
        );
        // The CA (valid for centuries) is not warned about.
        ensure!(!check.stderr.contains("ca.pem"), "{}", check.stderr);
        let zero = agent(
            dir,
            &[
                "certs",
                "issue",
                "--ca",
                path_str(&ca)?,
                "--name",
                "x",
                "--days",
                "0",
                "--out",
                path_str(&d.join("x"))?,
            ],
        )?;
        ensure!(!zero.status.success(), "--days 0 was accepted");
        Ok(())
    });
}
