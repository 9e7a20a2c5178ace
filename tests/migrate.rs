//! Live migration between two hosts of the testbed (network namespaces
//! joined by a veth pair, each with its agent in a PID namespace of its
//! own): zdtm-style workloads migrate from A to B and verify themselves
//! there; failures leave the workload running on A.

mod common;

use anyhow::{ensure, Context, Result};
use common::servers::RealServer;
use common::testbed::{finish_on, wait_for, Host, HostProcess, Testbed, HOST_B};
use common::{field, run_test, scenarios, TestDir};
use serde_json::Value;

/// Migrates a workload from A to B and checks the statistics.
fn migrate_ok(bed: &Testbed, dir: &TestDir, w: &HostProcess, extra: &[&str]) -> Result<Value> {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let run = bed.migrate(dir, w.ns_pid, HOST_B, &args)?;
    let stats = run.json().with_context(|| {
        format!(
            "migrate; agent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        )
    })?;
    ensure!(field(&stats, "bytes_sent")? > 0.0, "nothing sent: {stats}");
    let downtime = &stats["downtime"];
    common::check_downtime(downtime)?;
    ensure!(
        stats["rounds"].as_array().is_some_and(|r| !r.is_empty()),
        "no pre-copy rounds: {stats}"
    );
    ensure!(
        bed.find(Host::A, w.ns_pid)?.is_none(),
        "the workload still runs on host A after the migration"
    );
    Ok(stats)
}

fn migrate_workload(test: &str, name: &str, args: &[&str], extra: &[&str]) {
    run_test(test, |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, name, args)?;
        migrate_ok(&bed, dir, &w, extra)?;
        finish_on(&bed, dir, Host::B, &w)
    });
}

/// [`migrate_workload`] where the root's pages must have been staged on
/// B during the rounds and moved into place (warm restore), as B's agent
/// reports.
fn migrate_warm(test: &str, name: &str, args: &[&str]) {
    run_test(test, |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, name, args)?;
        migrate_ok(&bed, dir, &w, &[])?;
        wait_for(&bed.agent_log_path(Host::B), "migration received")?;
        let log = bed.agent_log(Host::B);
        let moved = log
            .lines()
            .filter(|l| l.contains("migration received"))
            .find_map(|l| l.split("pages_moved=").nth(1))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
        ensure!(
            moved.is_some_and(|m| m > 0),
            "no page was moved in from a staging on B (pages_moved {moved:?}):\n{log}"
        );
        finish_on(&bed, dir, Host::B, &w)
    });
}

#[test]
fn counters_migrate() {
    migrate_workload("migrate_counters", "counters", &[], &[]);
}

#[test]
fn threads_migrate() {
    migrate_workload("migrate_threads", "threads", &[], &[]);
}

#[test]
fn fds_migrate() {
    migrate_workload("migrate_epoll", "epoll", &[], &[]);
}

/// A TCP connection between a parent and its child (loopback of host A's
/// network namespace), with data queued unread both ways, moves to B with
/// its queues and sequence numbers and carries data there.
#[test]
fn tcp_connection_migrates() {
    migrate_workload("migrate_socket_tcp", "socket_tcp", &["4"], &[]);
}

/// SysV shared memory (a keyed segment and one marked for removal, shared
/// by a parent and its child) moves with the tree: recreated on B with the
/// same shmids and key (the hosts have IPC namespaces of their own), its
/// pages sent while the tree is frozen; nothing is left on A.
#[test]
fn sysv_shm_migrates() {
    run_test("migrate_sysv_shm", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "sysv_shm", &[])?;
        migrate_ok(&bed, dir, &w, &[])?;
        let (ok, left) = bed.host_exec(Host::A, &["cat", "/proc/sysvipc/shm"])?;
        ensure!(
            ok && left.lines().count() == 1,
            "host A still has SysV segments after the migration:\n{left}"
        );
        finish_on(&bed, dir, Host::B, &w)
    });
}

/// 1 GiB rewritten at 64 MiB/s the whole time: every page checked after
/// arrival.
#[test]
fn gigabyte_rewritten_at_64_mib_per_sec_migrates() {
    migrate_warm("migrate_1g", "steady_dirty", &["1024", "64"]);
}

/// Warm restore: the root's pages are staged on B as the rounds bring
/// them and moved into place after the freeze. Pages the workload
/// discards (MADV_DONTNEED) between rounds must read as zero on B, and
/// those it refills must hold their last contents.
#[test]
fn pages_discarded_between_rounds_migrate_as_zero() {
    migrate_warm("migrate_dontneed", "lazy_dontneed", &[]);
}

/// Warm restore of an address space with never-touched holes, a page
/// zeroed, a read-only region and a PROT_NONE guard page inside one
/// buffer, beside counters on the brk heap and the stack: every page and
/// every protection as on A.
#[test]
fn memory_layout_migrates() {
    migrate_warm("migrate_layout", "lazy_layout", &[]);
}

/// A tree whose processes share pages copy-on-write: the mappings they
/// share are restored from the image, the root's before its children are
/// cloned (not staged), and the pages they still share are one page
/// again.
#[test]
fn copy_on_write_tree_migrates() {
    migrate_workload("migrate_cow", "cow", &[], &[]);
}

/// The destination's address has no agent: the migration fails, the
/// workload keeps running on A, untouched.
#[test]
fn unreachable_destination_leaves_workload_running() {
    run_test("migrate_unreachable", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "counters", &[])?;
        let run = bed.migrate(dir, w.ns_pid, "10.231.0.2:7999", &[])?;
        let err = run.refusal()?;
        ensure!(
            err.contains("10.231.0.2:7999") && err.contains("keeps running here"),
            "unclear error: {err}"
        );
        finish_on(&bed, dir, Host::A, &w)
    });
}

/// A destination whose certificate comes from another CA is refused
/// before anything is frozen.
#[test]
fn destination_from_another_ca_is_refused() {
    run_test("migrate_foreign_ca", |dir| {
        let bed = Testbed::up(dir)?;
        let rogue = bed.rogue_agent(dir, Host::B, 7001)?;
        let w = bed.start_workload(dir, "counters", &[])?;
        let run = bed.migrate(dir, w.ns_pid, "10.231.0.2:7001", &[])?;
        let err = run.refusal()?;
        ensure!(
            err.contains("keeps running here")
                && (err.contains("certificate") || err.contains("CA")),
            "unclear error: {err}"
        );
        drop(rogue);
        finish_on(&bed, dir, Host::A, &w)
    });
}

/// The destination agent dies in the middle of pre-copy: the migration
/// fails and the workload runs on A, with its memory intact.
#[test]
fn destination_killed_mid_precopy_leaves_workload_running() {
    run_test("migrate_dest_killed", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "steady_dirty", &["256", "16"])?;
        let migration = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &["--bandwidth-limit", "32M"])?;
        wait_for(&bed.agent_log_path(Host::B), "accepted")?;
        bed.kill_agent(Host::B)?;
        let run = migration.wait()?;
        let err = run.refusal()?;
        ensure!(err.contains("keeps running here"), "unclear error: {err}");
        finish_on(&bed, dir, Host::A, &w)
    });
}

/// The destination cannot restore (the PID was taken on B after the offer
/// was accepted): the workload, frozen by then, is resumed on A.
#[test]
fn failed_restore_resumes_the_source() {
    run_test("migrate_restore_fails", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "steady_dirty", &["128", "8"])?;
        let migration = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &["--bandwidth-limit", "32M"])?;
        wait_for(&bed.agent_log_path(Host::B), "accepted")?;
        let _squatter = bed.take_pid(Host::B, w.ns_pid)?;
        let run = migration.wait()?;
        let err = run.refusal()?;
        ensure!(
            err.contains("keeps running here") && err.contains(&w.ns_pid.to_string()),
            "unclear error: {err}"
        );
        finish_on(&bed, dir, Host::A, &w)
    });
}

/// The destination cannot restore a workload holding a TCP connection
/// (its PID taken on B): the source, whose connections were in repair mode
/// while frozen, resumes with them working.
#[test]
fn failed_restore_resumes_a_tcp_connection() {
    run_test("migrate_tcp_restore_fails", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "socket_tcp", &["4", "96"])?;
        let migration = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &["--bandwidth-limit", "32M"])?;
        wait_for(&bed.agent_log_path(Host::B), "accepted")?;
        let _squatter = bed.take_pid(Host::B, w.ns_pid)?;
        let run = migration.wait()?;
        let err = run.refusal()?;
        ensure!(err.contains("keeps running here"), "unclear error: {err}");
        finish_on(&bed, dir, Host::A, &w)
    });
}

/// The link between the hosts goes down once the workload is frozen: the
/// migration fails and the workload is resumed on A.
#[test]
fn link_cut_during_final_transfer_resumes_the_source() {
    run_test("migrate_link_cut", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "steady_dirty", &["256", "64"])?;
        let migration = bed.spawn_migrate(
            dir,
            w.ns_pid,
            HOST_B,
            &["--max-rounds", "1", "--bandwidth-limit", "64M"],
        )?;
        wait_for(&bed.agent_log_path(Host::A), "switching over")?;
        bed.set_link(false)?;
        let run = migration.wait()?;
        bed.set_link(true)?;
        let err = run.refusal()?;
        ensure!(err.contains("keeps running here"), "unclear error: {err}");
        ensure!(
            bed.find(Host::B, w.ns_pid)?.is_none(),
            "a copy runs on host B too"
        );
        finish_on(&bed, dir, Host::A, &w)
    });
}

/// Seed scenario 1 between hosts: the busybox loop keeps counting on
/// host B with no gap, repeat or reset.
#[test]
fn busybox_loop_migrates() {
    scenarios::busybox_loop("migrate_busybox", &|bed, dir, w| {
        migrate_ok(bed, dir, w, &[]).map(drop)
    });
}

/// Seed scenario 2 between hosts: a Node.js server counting requests
/// answers N at host A's address, then N+1 at host B's.
#[test]
fn node_counter_migrates() {
    scenarios::node_counter("migrate_node", &|bed, dir, w| {
        migrate_ok(bed, dir, w, &[]).map(drop)
    });
}

/// Real servers from Debian's packages between hosts: state put in on A,
/// checked and more put in on B by clients connecting after the move.
fn server_migrates(test: &str, server: RealServer) {
    scenarios::real_server(test, server, &|bed, dir, w| {
        migrate_ok(bed, dir, w, &[]).map(drop)
    });
}

#[test]
fn redis_server_migrates() {
    server_migrates("migrate_redis", RealServer::Redis);
}

#[test]
fn nginx_migrates() {
    server_migrates("migrate_nginx", RealServer::Nginx);
}

#[test]
fn postgres_migrates() {
    server_migrates("migrate_postgres", RealServer::Postgres);
}

#[test]
fn jvm_counter_migrates() {
    server_migrates("migrate_jvm", RealServer::Jvm);
}

#[test]
fn python_http_server_migrates() {
    server_migrates("migrate_python", RealServer::Python);
}

/// A plain process tree (no network namespace of its own) whose TCP
/// connection uses host A's own address, 10.231.0.1, which B does not
/// have: B refuses the offer before anything is frozen, naming the
/// connection and the address; the tree runs on on A.
#[test]
fn tree_with_a_connection_on_an_address_the_destination_lacks_is_refused() {
    run_test("migrate_foreign_address", |dir| {
        let bed = Testbed::up(dir)?;
        let script = "import socket, time\n\
                      l = socket.socket(); l.bind(('10.231.0.1', 0)); l.listen()\n\
                      c = socket.create_connection(l.getsockname()); s, _ = l.accept()\n\
                      print('READY', c.getsockname()[1], flush=True)\n\
                      time.sleep(600)\n";
        let output = dir.path().join("python.out");
        let w = bed.spawn(
            Host::A,
            std::path::Path::new("/usr/bin/python3"),
            &["-c", script],
            &output,
        )?;
        let ready = wait_for(&output, "READY")?;
        let port = ready.split_whitespace().nth(1).context("no port")?;
        let run = bed.migrate(dir, w.ns_pid, HOST_B, &[])?;
        let err = run.refusal()?;
        // Either end of the connection may be the one named: both are the
        // tree's, both on 10.231.0.1.
        let named = err.contains(&format!("10.231.0.1:{port} -> 10.231.0.1:"))
            || err.contains(&format!("-> 10.231.0.1:{port} uses"));
        ensure!(
            named
                && err.contains("uses the local address 10.231.0.1,")
                && err.contains("keeps running here"),
            "unclear refusal: {err}"
        );
        let pid = bed
            .find(Host::A, w.ns_pid)?
            .context("the tree is gone from A")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
        ensure!(
            state.is_some_and(|s| s.starts_with('S')),
            "the tree on A is not running: {stat}"
        );
        ensure!(
            bed.find(Host::B, w.ns_pid)?.is_none(),
            "B kept a process {}",
            w.ns_pid
        );
        Ok(())
    });
}
