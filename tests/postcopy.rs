//! Post-copy and hybrid live migration between the two hosts of the
//! testbed: the workload runs on B while its pages still come from A (on
//! fault, and pushed in the background), and verifies itself there.

mod common;

use anyhow::{ensure, Context, Result};
use common::servers::RealServer;
use common::testbed::{finish_on, wait_for, Host, HostProcess, Testbed, HOST_B};
use common::{field, run_test, scenarios, TestDir};
use serde_json::Value;
use std::thread::sleep;
use std::time::Duration;

/// Migrates with `--mode mode` from A to B and checks the post-copy
/// statistics.
fn migrate_lazy(bed: &Testbed, dir: &TestDir, w: &HostProcess, mode: &str) -> Result<Value> {
    let run = bed.migrate(dir, w.ns_pid, HOST_B, &["--json", "--mode", mode])?;
    let stats = run.json().with_context(|| {
        format!(
            "migrate --mode {mode}; agent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        )
    })?;
    common::check_downtime(&stats["downtime"])?;
    let post = &stats["postcopy"];
    for f in [
        "freeze_to_running_ms",
        "remote_pages",
        "faults",
        "pages_faulted",
        "pages_pushed",
        "fault_latency_p50_us",
        "fault_latency_p99_us",
        "all_local_ms",
    ] {
        field(post, f).with_context(|| format!("post-copy statistics: {stats}"))?;
    }
    ensure!(
        field(post, "remote_pages")? > 0.0,
        "no page was left for post-copy: {stats}"
    );
    let rounds = stats["rounds"].as_array().map_or(0, Vec::len);
    match mode {
        "postcopy" => ensure!(rounds == 0, "post-copy ran pre-copy rounds: {stats}"),
        _ => ensure!(rounds > 0, "hybrid ran no pre-copy round: {stats}"),
    }
    ensure!(
        bed.find(Host::A, w.ns_pid)?.is_none(),
        "the workload still runs on host A after the migration"
    );
    Ok(stats)
}

fn lazy_workload(test: &str, name: &str, args: &[&str], mode: &str) {
    run_test(test, |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, name, args)?;
        let stats = migrate_lazy(&bed, dir, &w, mode)?;
        eprintln!("{test}: {}", stats["postcopy"]);
        finish_on(&bed, dir, Host::B, &w)
    });
}

#[test]
fn counters_postcopy() {
    lazy_workload("postcopy_counters", "counters", &[], "postcopy");
}

#[test]
fn threads_postcopy() {
    lazy_workload("postcopy_threads", "threads", &[], "postcopy");
}

/// A loopback TCP connection inside the tree, data queued both ways, moves
/// in post-copy too (its state goes with the frozen state, before any page).
#[test]
fn tcp_connection_postcopy() {
    lazy_workload("postcopy_socket_tcp", "socket_tcp", &["4"], "postcopy");
}

/// Tests that differ only by mode: each line names the post-copy test and
/// the hybrid one (with the names their runs go by) and the check both
/// run, given the run's name and the mode.
macro_rules! postcopy_and_hybrid {
    ($($(#[$doc:meta])* $postcopy:ident($postcopy_run:literal), $hybrid:ident($hybrid_run:literal) => $check:expr;)*) => {
        $(
            $(#[$doc])*
            #[test]
            fn $postcopy() {
                ($check)($postcopy_run, "postcopy");
            }

            $(#[$doc])*
            #[test]
            fn $hybrid() {
                ($check)($hybrid_run, "hybrid");
            }
        )*
    };
}

postcopy_and_hybrid! {
    /// 1 GiB rewritten at 64 MiB/s: every page checked on the destination
    /// after the last one arrived. In post-copy it is frozen at once; in
    /// hybrid, after pre-copy rounds, the pages written since the last
    /// round come on fault and the rest is installed from the rounds.
    gigabyte_rewritten_postcopy("postcopy_1g"), gigabyte_rewritten_hybrid("hybrid_1g") =>
        |test, mode| lazy_workload(test, "steady_dirty", &["1024", "64"], mode);
    /// A 64 MiB buffer with never-touched 64 KiB chunks, a page zeroed
    /// explicitly, a read-only region and a PROT_NONE guard page, beside
    /// counters in a global, on the brk heap and on the stack: every page
    /// the source has is delivered (or known to be zero) and the post-copy
    /// phase ends instead of stalling.
    memory_layout_postcopy("postcopy_layout"), memory_layout_hybrid("hybrid_layout") =>
        |test, mode| lazy_workload(test, "lazy_layout", &[], mode);
    /// Seed scenario 1: the busybox loop, its shell and children's pages
    /// coming on fault, counts on with no gap, repeat or reset.
    busybox_loop_postcopy("postcopy_busybox"), busybox_loop_hybrid("hybrid_busybox") =>
        |test, mode| {
            scenarios::busybox_loop(test, &|bed, dir, w| {
                migrate_lazy(bed, dir, w, mode).map(drop)
            })
        };
    /// Seed scenario 2: the Node.js counter (a V8 heap, libuv, a listening
    /// socket) answers N on A, N+1 on B while its heap still arrives.
    node_counter_postcopy("postcopy_node"), node_counter_hybrid("hybrid_node") =>
        |test, mode| {
            scenarios::node_counter(test, &|bed, dir, w| {
                migrate_lazy(bed, dir, w, mode).map(drop)
            })
        };
    /// redis-server: its keys, read and incremented on B while its heap
    /// still arrives.
    redis_postcopy("postcopy_redis"), redis_hybrid("hybrid_redis") =>
        |test, mode| server_lazy(test, RealServer::Redis, mode);
    /// nginx: the master and its workers (each with its own userfaultfd)
    /// serve on B.
    nginx_postcopy("postcopy_nginx"), nginx_hybrid("hybrid_nginx") =>
        |test, mode| server_lazy(test, RealServer::Nginx, mode);
    /// PostgreSQL 15: the postmaster, its workers and their shared memory
    /// (a shared anonymous mapping and a SysV segment) on B, rows read
    /// and inserted there.
    postgres_postcopy("postcopy_postgres"), postgres_hybrid("hybrid_postgres") =>
        |test, mode| server_lazy(test, RealServer::Postgres, mode);
    /// A JVM HTTP server (dozens of threads, a large reserved heap) counts
    /// on at B while its heap still arrives.
    jvm_postcopy("postcopy_jvm"), jvm_hybrid("hybrid_jvm") =>
        |test, mode| server_lazy(test, RealServer::Jvm, mode);
}

/// A real server from Debian's packages moved with `--mode mode`.
fn server_lazy(test: &str, server: RealServer, mode: &str) {
    scenarios::real_server(test, server, &|bed, dir, w| {
        migrate_lazy(bed, dir, w, mode).map(drop)
    });
}

/// read() from a pipe into pages still on the source: faults inside the
/// system call are served.
#[test]
fn read_into_missing_buffer_postcopy() {
    lazy_workload("postcopy_read", "lazy_read", &["64"], "postcopy");
}

/// The restored process forks while pages still arrive: each child gets
/// them through its own userfaultfd. It starts forking once it runs on B
/// (a tree that changes during the offer is another matter).
#[test]
fn fork_after_restore_postcopy() {
    run_test("postcopy_fork", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "lazy_fork", &["256"])?;
        let run = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &["--json", "--mode", "postcopy"])?;
        for _ in 0..30_000 {
            if bed.find(Host::B, w.ns_pid)?.is_some() {
                break;
            }
            sleep(Duration::from_millis(1));
        }
        std::fs::write(dir.path().join("files").join("go"), b"")?;
        let stats = run.wait()?.json().with_context(|| {
            format!(
                "migrate; agent A:\n{}\nagent B:\n{}",
                bed.agent_log(Host::A),
                bed.agent_log(Host::B)
            )
        })?;
        eprintln!("postcopy_fork: {}", stats["postcopy"]);
        ensure!(
            field(&stats["postcopy"], "remote_pages")? > 0.0,
            "no page was left for post-copy: {stats}"
        );
        finish_on(&bed, dir, Host::B, &w)
    });
}

/// Memory discarded with MADV_DONTNEED reads zero, never the old page.
#[test]
fn dontneed_postcopy() {
    lazy_workload("postcopy_dontneed", "lazy_dontneed", &["64"], "postcopy");
}

/// Resident memory of process `pid` (root namespace), in MiB.
fn rss_mib(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kib / 1024)
}

/// Migrates 256 MiB rewritten at 16 MiB/s in post-copy mode (the
/// background push limited to 64 MiB/s) and takes the link down for `cut`
/// as soon as the workload runs on B, checking that most of its memory is
/// still on A then; the workload must complete on B with correct memory.
/// Returns the post-copy statistics.
fn postcopy_through_cut(test: &str, cut: Duration) -> Value {
    let mut out = Value::Null;
    run_test(test, |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "steady_dirty", &["256", "16"])?;
        let run = bed.spawn_migrate(
            dir,
            w.ns_pid,
            HOST_B,
            &["--json", "--mode", "postcopy", "--bandwidth-limit", "64M"],
        )?;
        wait_for(&bed.agent_log_path(Host::B), "the workload runs here")?;
        bed.set_link(false)?;
        let on_b = bed
            .find(Host::B, w.ns_pid)?
            .context("the workload does not run on B")?;
        let resident = rss_mib(on_b);
        sleep(cut);
        bed.set_link(true)?;
        let resident = resident?;
        ensure!(
            resident < 192,
            "{resident} MiB of the workload's 256 were on B when the link was cut: the cut tested little"
        );
        let stats = run.wait()?.json().with_context(|| {
            format!(
                "migrate through a {cut:?} cut; agent A:\n{}\nagent B:\n{}",
                bed.agent_log(Host::A),
                bed.agent_log(Host::B)
            )
        })?;
        finish_on(&bed, dir, Host::B, &w)?;
        out = stats["postcopy"].clone();
        Ok(())
    });
    out
}

/// A 2 s cut during post-copy (shorter than the transport's idle timeout:
/// the connection survives by retransmission).
#[test]
fn link_cut_for_2s_during_postcopy() {
    let post = postcopy_through_cut("postcopy_cut_2s", Duration::from_secs(2));
    eprintln!("postcopy_cut_2s: {post}");
}

/// A 7 s cut, longer than the idle timeout: the connection dies, the
/// workload waits on its faults on B, B reconnects to A and names the
/// pages it still misses, and A (still frozen) goes on serving them.
#[test]
fn link_cut_for_7s_during_postcopy_recovers() {
    let post = postcopy_through_cut("postcopy_cut_7s", Duration::from_secs(7));
    assert!(
        post["resumes"].as_u64().is_some_and(|r| r >= 1),
        "no post-copy resume after a 7 s cut: {post}"
    );
}

/// The link fails for good during post-copy: B tries to reconnect for
/// its `postcopy_recovery_secs`, then kills its copy (its memory is
/// incomplete); A, which waited longer, resumes its frozen copy, which
/// holds every page: the workload runs once, on A.
#[test]
fn link_lost_during_postcopy_resumes_on_source() {
    run_test("postcopy_link_lost", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "steady_dirty", &["1024", "64"])?;
        let run = bed.spawn_migrate(dir, w.ns_pid, HOST_B, &["--json", "--mode", "postcopy"])?;
        for _ in 0..30_000 {
            if bed.find(Host::B, w.ns_pid)?.is_some() {
                break;
            }
            sleep(Duration::from_millis(1));
        }
        bed.set_link(false)?;
        let result = run.wait();
        bed.set_link(true)?;
        let err = result?.refusal()?.to_string();
        ensure!(
            err.contains("keeps running here"),
            "the failure does not say where the workload runs: {err}"
        );
        for _ in 0..1000 {
            if bed.find(Host::B, w.ns_pid)?.is_none() {
                break;
            }
            sleep(Duration::from_millis(10));
        }
        ensure!(
            bed.find(Host::B, w.ns_pid)?.is_none(),
            "the destination's copy still runs after the link was lost"
        );
        finish_on(&bed, dir, Host::A, &w)
    });
}

/// The source agent dies for good during post-copy: B, which cannot get
/// the pages still on A, tries to reconnect for its
/// `postcopy_recovery_secs`, then kills its copy and says why (A's copy
/// stays held frozen for an agent that never comes back; the testbed
/// ends it).
#[test]
fn source_gone_during_postcopy_kills_the_incomplete_copy() {
    run_test("postcopy_source_gone", |dir| {
        let bed = Testbed::up(dir)?;
        let w = bed.start_workload(dir, "steady_dirty", &["256", "16"])?;
        let run = bed.spawn_migrate(
            dir,
            w.ns_pid,
            HOST_B,
            &["--json", "--mode", "postcopy", "--bandwidth-limit", "32M"],
        )?;
        wait_for(&bed.agent_log_path(Host::B), "the workload runs here")?;
        bed.kill_agent(Host::A)?;
        drop(run);
        // Noticed within the idle timeout (5 s), then 15 s of attempts.
        let mut log = String::new();
        for _ in 0..400 {
            log = bed.agent_log(Host::B);
            if log.contains("was killed") {
                break;
            }
            sleep(Duration::from_millis(100));
        }
        ensure!(
            log.contains("could not be reached again") && log.contains("incomplete"),
            "B's log does not say why its copy was killed:\n{log}"
        );
        for _ in 0..1000 {
            if bed.find(Host::B, w.ns_pid)?.is_none() {
                return Ok(());
            }
            sleep(Duration::from_millis(10));
        }
        anyhow::bail!("the incomplete copy still runs on B")
    });
}

/// The destination agent dies (SIGKILL, its host stays) 0.3 s after the
/// restored copy runs on B, most of its pages still on A: its post-copy
/// guard keeps the copy's faults blocked and kills it, so it never runs on
/// a page that was not delivered (the workload checks its counters and
/// its read-only and never-touched pages as it goes, and would print
/// FAIL), and says so in B's log. A, which waits for B to reconnect, then
/// resumes its frozen copy, which holds every page: one copy, on A.
#[test]
fn destination_agent_killed_during_postcopy_kills_its_copy() {
    run_test("postcopy_dest_killed", |dir| {
        let bed = Testbed::up_lasting(dir)?;
        let w = bed.start_workload(dir, "lazy_layout", &[])?;
        let run = bed.spawn_migrate(
            dir,
            w.ns_pid,
            HOST_B,
            &["--json", "--mode", "postcopy", "--bandwidth-limit", "8M"],
        )?;
        wait_for(&bed.agent_log_path(Host::B), "the workload runs here")?;
        sleep(Duration::from_millis(300));
        bed.kill_agent(Host::B)?;
        for _ in 0..500 {
            if bed.find(Host::B, w.ns_pid)?.is_none() {
                break;
            }
            sleep(Duration::from_millis(10));
        }
        ensure!(
            bed.find(Host::B, w.ns_pid)?.is_none(),
            "B's copy still runs 5 s after its agent died (on zero pages)"
        );
        let log = bed.agent_log(Host::B);
        ensure!(
            log.contains("post-copy guard") && log.contains("children were killed"),
            "B's log does not say its copy was killed:\n{log}"
        );
        let out = std::fs::read_to_string(common::testbed::output(dir))?;
        ensure!(
            !out.contains("FAIL"),
            "B's copy ran on pages that were not delivered:\n{out}"
        );
        let err = run.wait()?.refusal()?.to_string();
        eprintln!("postcopy_dest_killed: the source says: {err}");
        ensure!(
            err.contains("keeps running here"),
            "the failure does not say where the workload runs: {err}"
        );
        finish_on(&bed, dir, Host::A, &w)
    });
}
