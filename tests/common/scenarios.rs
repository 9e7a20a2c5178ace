//! The seed scenarios between the two hosts of the testbed, written once
//! and run by each migration mode's tests: `migrate` moves the workload
//! from A to B (and checks its statistics) the way the calling test wants.

use super::servers::{Client, RealServer};
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

/// A real server from Debian's packages moves from A to B as a process
/// tree: state put in by a client on A, checked (and more put in) by a
/// client on B that connects after the move.
pub fn real_server(test: &str, server: RealServer, migrate: Migrate) {
    run_test(test, |dir| {
        let bed = Testbed::up(dir)?;
        // The hosts have network namespaces of their own: no other test
        // listens on their loopback.
        const PORT: u16 = 8124;
        let argv = server.prepare(dir.path(), PORT)?;
        for private in server.host_private_dirs(dir.path()) {
            for host in [Host::A, Host::B] {
                own_dir(&bed, host, &private)?;
            }
        }
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let w = bed.spawn(Host::A, Path::new(&argv[0]), &args, &output(dir))?;
        server.seed(Client::In(&bed, Host::A), dir.path(), PORT)?;
        migrate(&bed, dir, &w)?;
        ensure!(
            bed.find(Host::B, w.ns_pid)?.is_some(),
            "{server:?} does not run on host B"
        );
        server.check(Client::In(&bed, Host::B), dir.path(), PORT)
    });
}

/// Mounts a tmpfs on `dir` inside `host` (its mount namespace, which dies
/// with the testbed), owned as `dir` is: that host's own copy of it.
fn own_dir(bed: &Testbed, host: Host, dir: &Path) -> Result<()> {
    let d = path_str(dir)?;
    let script = format!("o=$(stat -c %u:%g {d}) && mount -t tmpfs tmpfs {d} && chown $o {d}");
    let (ok, out) = bed.host_exec(host, &["sh", "-c", &script])?;
    ensure!(ok, "mounting a tmpfs on {d} in host {host:?}: {out}");
    Ok(())
}

fn which(program: &str) -> Result<PathBuf> {
    let out = std::process::Command::new("which").arg(program).output()?;
    ensure!(out.status.success(), "{program} is not installed");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}
