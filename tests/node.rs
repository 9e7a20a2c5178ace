//! Seed scenario 2 on one host: a Node.js HTTP request counter survives a
//! checkpoint. After N requests it is checkpointed with --leave-running,
//! answers more requests, is killed and restored from the image: the next
//! request is answered N+1 (the count continues from the checkpoint).

mod common;

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One GET on loopback; returns the body.
fn get(port: u16) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).context("connecting to the server")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let body = reply
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(body)
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

#[test]
fn node_request_counter_continues_after_restore() {
    common::run_test("node_counter", |dir| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/workloads/counter_server.js");
        let out_path = dir.path().join("node.out");
        let out = std::fs::File::create(&out_path)?;
        // Through bash, to close the fds this test inherited (cargo's
        // jobserver pipe), which ferry would rightly refuse.
        let child = Command::new("bash")
            .args([
                "-c",
                "for fd in /proc/$$/fd/*; do fd=${fd##*/}; \
                 if [ \"$fd\" -gt 2 ]; then eval \"exec $fd>&-\"; fi; done 2>/dev/null; \
                 exec node \"$0\"",
            ])
            .arg(&script)
            // libuv's io_uring backend holds an io_uring fd, which ferry
            // does not carry yet.
            .env("UV_USE_IO_URING", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting node (scripts/setup.sh installs it)")?;
        let mut server = Server {
            child,
            restored: None,
        };
        let pid = server.child.id().to_string();
        let start = Instant::now();
        let port: u16 = loop {
            let text = std::fs::read_to_string(&out_path)?;
            if let Some(port) = text.lines().find_map(|l| l.strip_prefix("READY ")) {
                break port.trim().parse()?;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(15),
                "node did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        const N: u32 = 3;
        for i in 1..=N {
            ensure!(
                get(port)? == i.to_string(),
                "request {i} was not answered {i}"
            );
        }
        let image = dir.image();
        common::agent(
            dir,
            &[
                "checkpoint",
                &pid,
                "--dir",
                common::path_str(&image)?,
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
        let restore = common::agent(
            dir,
            &["restore", "--dir", common::path_str(&image)?, "--json"],
        )?
        .json()?;
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
    });
}
