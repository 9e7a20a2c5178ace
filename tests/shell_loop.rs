//! Seed scenario of issue 3: a busybox shell loop that forks a child for
//! every number it writes (`expr` in a command substitution, `sleep`) is
//! checkpointed at random moments (often while a child runs or is a
//! zombie), killed and restored, 20 times in a row; its log must continue
//! from the last number with no gap, no repeat and no reset.

mod common;

use anyhow::{ensure, Context, Result};
use common::{descendants, kill_and_reap, path_str};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The loop of the issue, with a short sleep (busybox sleep takes
/// fractions) to keep the test short.
const SCRIPT: &str = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 0.05; done";
const ROUNDS: u32 = 20;

/// Waits for `pid`, our child (directly or as subreaper), to be reaped.
fn reap(pid: Pid) -> Result<()> {
    let start = Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(e).context(format!("waitpid({pid})")),
        }
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "pid {pid} was not reaped within 10 s"
        );
        sleep(Duration::from_millis(5));
    }
}

/// Reaps every zombie reparented to this test (the subreaper): a child the
/// shell forked after its family was listed was killed by the checkpoint
/// too. Safe here because this test binary holds this one test only.
fn reap_orphans() {
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
    {}
}

/// Kills and reaps the shell and its children by PID, whatever happens.
struct Tree(Pid);

impl Drop for Tree {
    fn drop(&mut self) {
        let family = descendants(self.0);
        let _ = kill(self.0, Signal::SIGKILL);
        let _ = reap(self.0);
        kill_and_reap(&family);
    }
}

/// The numbers in the log must be 0, 1, 2 ... without a gap or a repeat.
fn check_log(text: &str) -> Result<u64> {
    let mut next = 0u64;
    for (i, line) in text.lines().enumerate() {
        let n: u64 = line
            .parse()
            .with_context(|| format!("line {} of the log is {line:?}", i + 1))?;
        ensure!(
            n == next,
            "line {} of the log is {n}, expected {next} (a gap, a repeat or a reset)",
            i + 1
        );
        next += 1;
    }
    Ok(next)
}

#[test]
fn busybox_loop_survives_repeated_checkpoint_and_restore() {
    common::run_test("busybox_loop", |dir| {
        let log = dir.path().join("files/out.log");
        let out = std::fs::File::create(&log)?;
        // bash closes the fds this test inherited (cargo's jobserver pipe),
        // then becomes busybox sh.
        let child = Command::new("bash")
            .args([
                "-c",
                "for fd in /proc/$$/fd/*; do fd=${fd##*/}; \\
                 if [ \"$fd\" -gt 2 ]; then eval \"exec $fd>&-\"; fi; done 2>/dev/null; \\
                 exec busybox sh -c \"$0\"",
                SCRIPT,
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .context("starting busybox sh (scripts/setup.sh installs busybox-static)")?;
        let pid = Pid::from_raw(child.id() as i32);
        let _tree = Tree(pid);
        let mut seed = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos() | 1;
        sleep(Duration::from_millis(300));
        for round in 0..ROUNDS {
            // A random moment: 20-270 ms into a 50 ms loop.
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            sleep(Duration::from_millis(20 + u64::from(seed % 250)));
            let family = descendants(pid);
            let image = dir.path().join(format!("image-{round}"));
            let pid_arg = pid.to_string();
            common::agent(
                dir,
                &["checkpoint", &pid_arg, "--dir", path_str(&image)?, "--json"],
            )?
            .json()
            .with_context(|| format!("checkpoint {round}"))?;
            reap(pid)?;
            kill_and_reap(&family);
            reap_orphans();
            let pidfile = dir.path().join(format!("restored-{round}.pid"));
            let run = common::agent(
                dir,
                &[
                    "restore",
                    "--dir",
                    path_str(&image)?,
                    "--pidfile",
                    path_str(&pidfile)?,
                    "--json",
                ],
            )?;
            run.json().with_context(|| format!("restore {round}"))?;
            let restored: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
            ensure!(
                restored == pid.as_raw(),
                "round {round}: restored as {restored}"
            );
        }
        sleep(Duration::from_millis(300));
        let text = std::fs::read_to_string(&log)?;
        let lines = check_log(&text)?;
        ensure!(
            lines > u64::from(ROUNDS),
            "only {lines} numbers were written"
        );
        drop(child);
        Ok(())
    });
}
