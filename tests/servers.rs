//! Request-counting servers survive a checkpoint: seed scenario 2 (a
//! Node.js HTTP server), a Rust tokio server with a multi-threaded runtime
//! and a CPython HTTP server, each a single process on one host. After N requests the server
//! is checkpointed with --leave-running, answers more requests, is killed
//! and restored from the image: the next request is answered N+1 (the count
//! continues from the checkpoint).
//!
//! Then real servers from Debian's packages (redis-server, nginx with its
//! workers, PostgreSQL 15's postmaster and workers as user postgres, a JVM
//! HTTP server), each with its own config in the test's directory: state
//! put in, checkpoint (which kills the tree), restore, and the state is
//! there, with the same PIDs, and the server takes more.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::servers::{self, Client, LocalServer, RealServer};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One GET on loopback; returns the body.
fn get(port: u16) -> Result<String> {
    Client::Local.http_get(port, "/")
}

/// Kills and reaps whatever of the server is still alive, by PID.
struct Server {
    child: Child,
    restored: Option<Pid>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self.restored {
            let _ = kill(pid, Signal::SIGKILL);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
                    _ => break,
                }
            }
        }
    }
}

/// Starts `program args` with only stdin, stdout and stderr open (through
/// bash, which closes the fds this test inherited, such as cargo's
/// jobserver pipe, which ferry would rightly refuse).
fn start_server(dir: &common::TestDir, program: &str, args: &[&str]) -> Result<(Server, u16)> {
    let out_path = dir.path().join("server.out");
    let out = std::fs::File::create(&out_path)?;
    let child = Command::new("bash")
        .args([
            "-c",
            "for fd in /proc/$$/fd/*; do fd=${fd##*/}; \\
             if [ \"$fd\" -gt 2 ]; then eval \"exec $fd>&-\"; fi; done 2>/dev/null; \\
             exec \"$@\"",
            "bash",
            program,
        ])
        .args(args)
        // libuv's io_uring backend holds an io_uring fd, which ferry does
        // not carry yet.
        .env("UV_USE_IO_URING", "0")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let server = Server {
        child,
        restored: None,
    };
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&out_path)?;
        if let Some(port) = text.lines().find_map(|l| l.strip_prefix("READY ")) {
            return Ok((server, port.trim().parse()?));
        }
        ensure!(
            start.elapsed() < Duration::from_secs(15),
            "{program} did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The scenario: N requests, checkpoint --leave-running, more requests,
/// kill, restore, and the next request is answered N+1.
fn count_continues(dir: &common::TestDir, program: &str, args: &[&str]) -> Result<()> {
    let (mut server, port) = start_server(dir, program, args)?;
    let pid = server.child.id().to_string();
    const N: u32 = 3;
    for i in 1..=N {
        ensure!(
            get(port)? == i.to_string(),
            "request {i} was not answered {i}"
        );
    }
    let image = dir.image();
    let image = common::path_str(&image)?;
    common::agent(
        dir,
        &[
            "checkpoint",
            &pid,
            "--dir",
            image,
            "--leave-running",
            "--json",
        ],
    )?
    .json()?;
    for i in N + 1..=N + 2 {
        ensure!(
            get(port)? == i.to_string(),
            "after the checkpoint request {i} was not answered {i}"
        );
    }
    server.child.kill()?;
    server.child.wait()?;
    let restore = common::agent(dir, &["restore", "--dir", image, "--json"])?.json()?;
    let original: i64 = pid.parse()?;
    ensure!(
        restore["pid"].as_i64() == Some(original),
        "restored as {} instead of {pid}",
        restore["pid"]
    );
    server.restored = Some(Pid::from_raw(original as i32));
    let next = get(port)?;
    if next != (N + 1).to_string() {
        bail!(
            "after restore the next request was answered {next}, expected {}",
            N + 1
        );
    }
    Ok(())
}

#[test]
fn node_request_counter_continues_after_restore() {
    common::run_test("node_counter", |dir| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/workloads/counter_server.js");
        count_continues(dir, "node", &[common::path_str(&script)?])
    });
}

#[test]
fn tokio_request_counter_continues_after_restore() {
    common::run_test("tokio_counter", |dir| {
        let bin = common::profile_dir()?.join("tokio-counter");
        ensure!(
            bin.exists(),
            "{} is missing: build the workspace first",
            bin.display()
        );
        count_continues(dir, common::path_str(&bin)?, &[])
    });
}

#[test]
fn python_request_counter_continues_after_restore() {
    common::run_test("python_counter", |dir| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/workloads/counter_server.py");
        count_continues(dir, "python3", &[common::path_str(&script)?])
    });
}

/// A real server: state put in, checkpoint (the tree is killed), restore
/// with the same PIDs, state checked and more put in, then `also`.
fn real_server_survives(
    test: &str,
    server: RealServer,
    also: impl FnOnce(&common::TestDir, u16) -> Result<()>,
) {
    common::run_test(test, |dir| {
        let port = servers::free_port()?;
        let argv = server.prepare(dir.path(), port)?;
        let mut running = LocalServer::start(dir, server, &argv)?;
        server.seed(Client::Local, dir.path(), port)?;
        let before = running.settled_tree();
        let image = dir.image();
        let pid = running.pid.to_string();
        let image = common::path_str(&image)?;
        common::agent(dir, &["checkpoint", &pid, "--dir", image, "--json"])?.json()?;
        running.wait_gone(&before)?;
        let restore = common::agent(dir, &["restore", "--dir", image, "--json"])?.json()?;
        ensure!(
            restore["pid"].as_i64() == Some(running.pid.as_raw().into()),
            "restored as {} instead of {pid}",
            restore["pid"]
        );
        let after = running.tree();
        ensure!(
            after == before,
            "the tree was {before:?} before the checkpoint, {after:?} after restore"
        );
        server.check(Client::Local, dir.path(), port)?;
        also(dir, port)
    });
}

#[test]
fn redis_keys_survive_restore() {
    real_server_survives("redis", RealServer::Redis, |_, _| Ok(()));
}

#[test]
fn nginx_master_and_workers_serve_after_restore() {
    real_server_survives("nginx", RealServer::Nginx, |_, _| Ok(()));
}

#[test]
fn postgres_rows_survive_restore() {
    real_server_survives("postgres", RealServer::Postgres, |_, _| Ok(()));
}

#[test]
fn jvm_request_counter_survives_restore() {
    real_server_survives("jvm", RealServer::Jvm, |_, _| Ok(()));
}

/// A client that is not root reaches the restored postmaster through its
/// unix socket: the socket file keeps its owner and mode.
#[test]
fn postgres_socket_serves_non_root_clients_after_restore() {
    real_server_survives("postgres_socket", RealServer::Postgres, |dir, port| {
        servers::postgres_socket_for_non_root(dir.path(), port)
    });
}
