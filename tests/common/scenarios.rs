//! The seed scenarios between the two hosts of the testbed, written once
//! and run by each migration mode's tests: `migrate` moves the workload
//! from A to B (and checks its statistics) the way the calling test wants.

use super::testbed::{output, wait_for, Host, HostProcess, Testbed};
use super::{path_str, run_test, TestDir};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// How a test moves the workload from A to B.
pub type Migrate<'a> = &'a dyn Fn(&Testbed, &TestDir, &HostProcess) -> Result<()>;

/// Seed scenario 1: the busybox loop (a shell forking `expr` and `sleep`
/// children) keeps counting on host B with no gap, repeat or reset.
pub fn busybox_loop(test: &str, migrate: Migrate) {
    run_test(test, |dir| {
        let bed = Testbed::up(dir)?;
        let log = output(dir);
        let shell = bed.spawn(
            Host::A,
            Path::new("/bin/busybox"),
            &[
                "sh",
                "-c",
                "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 0.1; done",
            ],
            &log,
        )?;
        wait_for(&log, "\n5\n")?;
        migrate(&bed, dir, &shell)?;
        let after = std::fs::read_to_string(&log)?.lines().count();
        wait_for(&log, &format!("\n{}\n", after + 5))?;
        ensure!(
            bed.find(Host::B, shell.ns_pid)?.is_some(),
            "the loop does not run on host B"
        );
        let numbers: Vec<u64> = std::fs::read_to_string(&log)?
            .lines()
            .map(|l| l.parse().with_context(|| format!("not a number: {l:?}")))
            .collect::<Result<_>>()?;
        for (i, n) in numbers.iter().enumerate() {
            ensure!(*n == i as u64, "line {i} holds {n}: a gap, repeat or reset");
        }
        Ok(())
    });
}

/// Seed scenario 2: a Node.js server counting requests answers N at host
/// A's address, then N+1 at host B's.
pub fn node_counter(test: &str, migrate: Migrate) {
    run_test(test, |dir| {
        let bed = Testbed::up(dir)?;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/counter_server.js");
        let node = which("node")?;
        let server = bed.spawn(
            Host::A,
            &node,
            &[path_str(&script)?, "0.0.0.0", "8123"],
            &output(dir),
        )?;
        wait_for(&output(dir), "READY")?;
        for i in 1..=3 {
            let got = bed.http_get(Host::B, "http://10.231.0.1:8123/")?;
            ensure!(got == i.to_string(), "request {i} answered {got:?}");
        }
        migrate(&bed, dir, &server)?;
        let got = bed.http_get(Host::A, "http://10.231.0.2:8123/")?;
        ensure!(
            got == "4",
            "after migration the server answered {got:?}, expected 4"
        );
        Ok(())
    });
}

fn which(program: &str) -> Result<PathBuf> {
    let out = std::process::Command::new("which").arg(program).output()?;
    ensure!(out.status.success(), "{program} is not installed");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}
