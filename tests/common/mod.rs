//! Support for the zdtm-style acceptance tests: compiling the C workloads in
//! tests/workloads, running them with their output in a file, driving
//! `migrate-agent checkpoint`/`restore` and checking what comes back.
//!
//! A workload prints "READY" once its resource is set up, keeps exercising it
//! and, on SIGTERM, verifies it and prints "PASS" or "FAIL: <reason>".

// Each test crate (zdtm.rs, bad_input.rs) uses a different part of this.
#![allow(dead_code)]

pub mod docker;
pub mod keepalive;
pub mod podman;
pub mod scenarios;
pub mod servers;
pub mod testbed;

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::Value;
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// A hang guard, not a speed check: a debug-build migration of 1 GiB on a
/// busy 2-core machine has taken over 40 s.
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);

/// How a workload is started and driven.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// tests/workloads/<name>.c
    pub name: &'static str,
    /// Arguments after the files directory (argv[1]).
    pub args: &'static [&'static str],
    /// The workload expects a SIGUSR1 before SIGTERM.
    pub usr1: bool,
    /// Lower bound for `pages_written` in the checkpoint statistics.
    pub min_pages_written: u64,
    /// Upper bound for `pages_written` (memory shared by several
    /// processes must be dumped once).
    pub max_pages_written: u64,
    /// Extra arguments of `checkpoint` ("{pid}" becomes the workload's PID).
    pub checkpoint_args: &'static [&'static str],
    /// Extra arguments of `restore` ("{pid}" becomes the workload's PID).
    pub restore_args: &'static [&'static str],
}

impl Spec {
    pub const fn new(name: &'static str) -> Self {
        Spec {
            name,
            args: &[],
            usr1: false,
            min_pages_written: 1,
            max_pages_written: u64::MAX,
            checkpoint_args: &[],
            restore_args: &[],
        }
    }

    pub const fn agent_args(
        self,
        checkpoint_args: &'static [&'static str],
        restore_args: &'static [&'static str],
    ) -> Self {
        Spec {
            checkpoint_args,
            restore_args,
            ..self
        }
    }

    /// `args` with "{pid}" replaced by `pid`.
    fn with_pid(args: &[&str], pid: Pid) -> Vec<String> {
        args.iter()
            .map(|a| a.replace("{pid}", &pid.to_string()))
            .collect()
    }

    pub const fn args(self, args: &'static [&'static str]) -> Self {
        Spec { args, ..self }
    }

    pub const fn usr1(self) -> Self {
        Spec { usr1: true, ..self }
    }

    pub const fn min_pages_written(self, min_pages_written: u64) -> Self {
        Spec {
            min_pages_written,
            ..self
        }
    }

    pub const fn max_pages_written(self, max_pages_written: u64) -> Self {
        Spec {
            max_pages_written,
            ..self
        }
    }
}

/// Whether the checkpoint kills the process or leaves it running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Kill,
    LeaveRunning,
}

/// target/<profile>, found from this test executable (target/<profile>/deps/<test>).
/// target/<profile>, where the workspace's binaries are.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot find target dir from {}", exe.display()))
}

/// The migrate-agent binary: $FERRY_AGENT_BIN or target/<profile>/migrate-agent.
pub fn agent_bin() -> Result<PathBuf> {
    let bin = match std::env::var_os("FERRY_AGENT_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => profile_dir()?.join("migrate-agent"),
    };
    ensure!(
        bin.exists(),
        "{} does not exist: run `cargo build --workspace` first or set FERRY_AGENT_BIN",
        bin.display()
    );
    Ok(bin)
}

fn mtime(path: &Path) -> Result<SystemTime> {
    Ok(fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .modified()?)
}

/// Compiles tests/workloads/<name>.c into target/<profile>/workloads/<name>
/// unless the binary is newer than the source and zdtm.h.
pub fn workload_bin(name: &str) -> Result<PathBuf> {
    static UNIQUE: AtomicU32 = AtomicU32::new(0);
    // One compilation at a time in this test process: a second rename over a
    // binary that another test already runs would show its mappings as
    // "(deleted)", which checkpoint rightly refuses.
    static COMPILING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads");
    let src = src_dir.join(format!("{name}.c"));
    let out_dir = profile_dir()?.join("workloads");
    let bin = out_dir.join(name);
    let newest_src = mtime(&src)?.max(mtime(&src_dir.join("zdtm.h"))?);
    if bin.exists() && mtime(&bin)? >= newest_src {
        return Ok(bin);
    }
    fs::create_dir_all(&out_dir)?;
    // Tests run in parallel: compile to a private name, then rename atomically.
    let tmp = out_dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    ));
    let out = Command::new("gcc")
        .args(["-O1", "-g", "-pthread", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .context("running gcc")?;
    if !out.status.success() || !out.stderr.is_empty() {
        let _ = fs::remove_file(&tmp);
    }
    ensure!(
        out.status.success() && out.stderr.is_empty(),
        "gcc {} failed or warned:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &bin)?;
    Ok(bin)
}

/// Polls `count` (how many numbers a counter has written) until it is
/// past `past`, for up to 30 s; returns the count.
pub fn wait_counted_past(past: u64, mut count: impl FnMut() -> Result<u64>) -> Result<u64> {
    let start = Instant::now();
    loop {
        let n = count()?;
        if n > past {
            return Ok(n);
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the counter stays at {n} lines (wanted more than {past})"
        );
        sleep(Duration::from_millis(300));
    }
}

/// A per-test scratch directory: removed when the test passed, kept (and its
/// path printed) when it failed.
pub struct TestDir {
    path: PathBuf,
    passed: bool,
}

impl TestDir {
    /// A fresh directory for `test` (kept unless [`TestDir::passed`]).
    pub fn new(test: &str) -> Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
        let path = std::env::temp_dir()
            .join("ferry-zdtm")
            .join(format!("{test}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(path.join("files"))
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(TestDir {
            path,
            passed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The test passed: the directory is removed when dropped.
    pub fn passed(&mut self) {
        self.passed = true;
    }

    pub fn image(&self) -> PathBuf {
        self.path.join("image")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.passed {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            release_network_lock(&self.image());
            eprintln!("test files kept in {}", self.path.display());
        }
    }
}

/// Deletes the network lock a checkpoint left in the host's namespace for
/// the restore of `image` (the table the image names), when the test
/// failed before a restore released it: it is this test's own table.
fn release_network_lock(image: &Path) {
    if !image.exists() {
        return;
    }
    let Ok(bin) = agent_bin() else { return };
    let Ok(out) = Command::new(bin)
        .arg("image")
        .arg("show")
        .arg(image)
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["network", "lock", table, "engaged", "until", "restore"] = words.as_slice() {
            if table.starts_with("ferry_") {
                let _ = Command::new("nft")
                    .args(["delete", "table", "inet", table])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Runs one test body with a fresh TestDir, as a child subreaper so that
/// restored processes (detached from the CLI) become our children.
pub fn run_test(test: &str, body: impl FnOnce(&TestDir) -> Result<()>) {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let mut dir = TestDir::new(test).expect("creating the test directory");
    if let Err(err) = body(&dir) {
        panic!("{test}: {err:#}");
    }
    dir.passed = true;
}

/// A running workload: the original child and, once restored, its restored
/// incarnation. Dropping it SIGKILLs and reaps whichever is still alive,
/// with the descendants it had when it was checkpointed.
pub struct Workload {
    name: &'static str,
    child: Child,
    child_reaped: bool,
    restored: Option<Pid>,
    restored_reaped: bool,
    output: PathBuf,
    /// The workload's descendants (a process tree) at checkpoint: the same
    /// PIDs before and after restore.
    descendants: Vec<Pid>,
}

/// Every descendant of `pid` (children, grandchildren ...), zombies
/// included, from /proc/PID/task/TID/children.
pub fn descendants(pid: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            let Ok(text) = fs::read_to_string(path) else {
                continue;
            };
            for child in text.split_whitespace().filter_map(|t| t.parse().ok()) {
                out.push(Pid::from_raw(child));
                todo.push(Pid::from_raw(child));
            }
        }
    }
    out
}

/// The parent PID of `pid`, if it exists.
fn parent_of(pid: Pid) -> Option<Pid> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace()
        .nth(1)?
        .parse()
        .ok()
        .map(Pid::from_raw)
}

/// SIGKILLs `pids` and reaps them by PID as they become our children (the
/// test is their subreaper once their parents are gone), until each is gone
/// or 5 s have passed. Only these PIDs are waited for: other tests of this
/// process have their own children. A PID is killed only while it is still
/// in the family (its parent is us or one of `pids`), never a stranger that
/// reused it.
pub fn kill_and_reap(pids: &[Pid]) {
    let us = Pid::from_raw(std::process::id() as i32);
    let ours: Vec<Pid> = pids
        .iter()
        .copied()
        .filter(|&pid| parent_of(pid).is_some_and(|pp| pp == us || pids.contains(&pp)))
        .collect();
    for &pid in &ours {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let pids = &ours[..];
    let start = Instant::now();
    let mut left: Vec<Pid> = pids.to_vec();
    while !left.is_empty() && start.elapsed() < Duration::from_secs(5) {
        left.retain(|&pid| {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            Path::new(&format!("/proc/{pid}")).exists()
        });
        if !left.is_empty() {
            sleep(POLL);
        }
    }
}

impl Workload {
    /// Starts the workload (stdin /dev/null, stdout and stderr to a file) and
    /// waits until it prints READY.
    pub fn start(dir: &TestDir, spec: &Spec) -> Result<Self> {
        Self::start_with(dir, spec, &[])
    }

    /// [`Workload::start`] with `extra` arguments after the spec's (known
    /// only at run time: a path the test made).
    pub fn start_with(dir: &TestDir, spec: &Spec, extra: &[&str]) -> Result<Self> {
        let bin = workload_bin(spec.name)?;
        let output = dir.path().join("output.txt");
        let out = File::create(&output)?;
        let child = Command::new(&bin)
            .arg(dir.path().join("files"))
            .args(spec.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut w = Workload {
            name: spec.name,
            child,
            child_reaped: false,
            restored: None,
            restored_reaped: false,
            output,
            descendants: Vec::new(),
        };
        w.wait_ready()?;
        Ok(w)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            let out = self.output()?;
            if out.contains("READY") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                self.child_reaped = true;
                bail!(
                    "{} exited ({status}) before READY; output:\n{out}",
                    self.name
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "{} not READY after {READY_TIMEOUT:?}; output:\n{out}",
                    self.name
                );
            }
            sleep(POLL);
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Records the workload's descendants, to be cleaned up with it.
    pub fn record_descendants(&mut self) {
        for pid in descendants(self.pid()) {
            if !self.descendants.contains(&pid) {
                self.descendants.push(pid);
            }
        }
    }

    pub fn output(&self) -> Result<String> {
        Ok(fs::read_to_string(&self.output)?)
    }

    /// Waits for the original process to end and returns its status.
    pub fn wait_original(&mut self) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.child_reaped = true;
                return Ok(status);
            }
            ensure!(
                start.elapsed() < EXIT_TIMEOUT,
                "{} (pid {}) still alive after {EXIT_TIMEOUT:?}",
                self.name,
                self.pid()
            );
            sleep(POLL);
        }
    }

    /// Reaps the original after a checkpoint that should have SIGKILLed it
    /// (and its descendants, reaped too).
    pub fn reap_checkpointed(&mut self) -> Result<()> {
        let status = self.wait_original()?;
        ensure!(
            status.signal() == Some(Signal::SIGKILL as i32),
            "after checkpoint the original ended with {status}, expected SIGKILL"
        );
        kill_and_reap(&self.descendants);
        Ok(())
    }

    /// SIGKILLs the original and its descendants and reaps them.
    pub fn kill_original(&mut self) -> Result<()> {
        self.child.kill()?;
        self.wait_original()?;
        kill_and_reap(&self.descendants);
        Ok(())
    }

    /// Takes responsibility for a restored process (killed on drop).
    pub fn adopt(&mut self, pid: Pid) {
        self.restored = Some(pid);
        self.restored_reaped = false;
    }

    /// The restored process if there is one, else the original.
    fn current(&self) -> Pid {
        self.restored.unwrap_or_else(|| self.pid())
    }

    pub fn signal(&self, sig: Signal) -> Result<()> {
        kill(self.current(), sig).with_context(|| format!("kill({}, {sig})", self.current()))
    }

    /// Waits for the restored process (our child as subreaper) to exit.
    fn wait_restored(&mut self, pid: Pid) -> Result<WaitStatus> {
        let start = Instant::now();
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.restored_reaped = true;
                    return Ok(status);
                }
                Ok(_) => {}
                // Not (yet) reparented to us: keep polling until the timeout.
                Err(nix::errno::Errno::ECHILD) => {}
                Err(err) => return Err(err).context(format!("waitpid({pid})")),
            }
            ensure!(
                start.elapsed() < EXIT_TIMEOUT,
                "{} (pid {pid}) did not exit within {EXIT_TIMEOUT:?} of SIGTERM \
                 (or is not our child: is the test a child subreaper?)",
                self.name
            );
            sleep(POLL);
        }
    }

    /// Sends SIGUSR1 first if the spec wants it, then SIGTERM; the process
    /// must exit 0 having printed exactly READY then PASS.
    pub fn finish(&mut self, spec: &Spec) -> Result<()> {
        if spec.usr1 {
            self.signal(Signal::SIGUSR1)?;
            sleep(Duration::from_millis(50));
        }
        self.signal(Signal::SIGTERM)?;
        let (exited_0, exit) = match self.restored {
            Some(pid) => match self.wait_restored(pid)? {
                WaitStatus::Exited(_, 0) => (true, "exit code 0".to_string()),
                other => (false, format!("{other:?}")),
            },
            None => {
                let status = self.wait_original()?;
                (status.success(), status.to_string())
            }
        };
        let out = self.output()?;
        ensure!(
            out == "READY\nPASS\n",
            "{} ended with {exit}; expected READY then PASS, output:\n{out}",
            self.name
        );
        ensure!(exited_0, "{} printed PASS but ended with {exit}", self.name);
        Ok(())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // The descendants (whichever incarnation runs, they are the same
        // PIDs) die with the root and are reparented to us, reaped below.
        let current = self.restored.unwrap_or_else(|| self.pid());
        let root_reaped = match self.restored {
            Some(_) => self.restored_reaped,
            None => self.child_reaped,
        };
        let mut family = Vec::new();
        if !root_reaped {
            family = descendants(current);
            for &pid in family.iter().chain([&current]) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        family.extend(self.descendants.iter().copied());
        if let (Some(pid), false) = (self.restored, self.restored_reaped) {
            let _ = kill(pid, Signal::SIGKILL);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => sleep(POLL),
                    _ => break,
                }
            }
        }
        if !self.child_reaped {
            let _ = self.child.kill();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                match self.child.try_wait() {
                    Ok(None) => sleep(POLL),
                    _ => break,
                }
            }
        }
        kill_and_reap(&family);
    }
}

/// What one migrate-agent run printed.
pub struct AgentRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl AgentRun {
    /// Fails unless the command succeeded; returns its --json output.
    pub fn json(&self) -> Result<Value> {
        ensure!(
            self.status.success(),
            "migrate-agent failed ({}):\n{}{}",
            self.status,
            self.stderr,
            self.stdout
        );
        serde_json::from_str(self.stdout.trim())
            .with_context(|| format!("migrate-agent --json printed:\n{}", self.stdout))
    }

    /// Fails unless the command succeeded.
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.status.success(),
            "migrate-agent failed ({}):\n{}{}",
            self.status,
            self.stderr,
            self.stdout
        );
        Ok(())
    }

    /// Fails unless the command failed; returns its stderr.
    pub fn refusal(&self) -> Result<&str> {
        ensure!(
            !self.status.success(),
            "migrate-agent succeeded where it should have refused:\n{}{}",
            self.stdout,
            self.stderr
        );
        ensure!(
            !self.stderr.trim().is_empty(),
            "migrate-agent failed without a message"
        );
        Ok(&self.stderr)
    }
}

/// Runs migrate-agent with its stdout/stderr in files of the test dir.
pub fn agent(dir: &TestDir, args: &[&str]) -> Result<AgentRun> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let base = dir.path().join(format!("agent-{n}-{}", args[0]));
    let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
    let mut child = Command::new(agent_bin()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .context("spawning migrate-agent")?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > AGENT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("migrate-agent {args:?} still running after {AGENT_TIMEOUT:?}; killed");
        }
        sleep(POLL);
    };
    Ok(AgentRun {
        status,
        stdout: fs::read_to_string(out_path)?,
        stderr: fs::read_to_string(err_path)?,
    })
}

/// Runs `checkpoint PID --dir IMAGE --json` on process `pid`, which
/// must be refused; returns the refusal (migrate-agent's stderr).
pub fn checkpoint_refusal(dir: &TestDir, pid: Pid) -> Result<String> {
    let pid = pid.to_string();
    let image = dir.image();
    let run = agent(
        dir,
        &["checkpoint", &pid, "--dir", path_str(&image)?, "--json"],
    )?;
    Ok(run.refusal()?.to_string())
}

/// Checks a migration's `downtime` (--json): its four parts add up to
/// its total, and the source stayed frozen at least that long (a check of
/// the accounting, not of speed).
pub fn check_downtime(downtime: &Value) -> Result<()> {
    let total = field(downtime, "total_ms")?;
    let mut sum = 0.0;
    for part in ["freeze_ms", "final_transfer_ms", "restore_ms", "resume_ms"] {
        let ms = field(downtime, part)?;
        ensure!(ms >= 0.0, "a negative {part}: {downtime}");
        sum += ms;
    }
    ensure!(
        (sum - total).abs() < 0.01,
        "the downtime's parts add up to {sum} ms, not its total {total} ms: {downtime}"
    );
    let frozen = field(downtime, "frozen_ms")?;
    ensure!(
        frozen + 1.0 >= total,
        "the source was frozen {frozen} ms, less than the {total} ms downtime: {downtime}"
    );
    eprintln!("downtime: {downtime}");
    Ok(())
}

/// A numeric field of a --json object.
pub fn field(json: &Value, name: &str) -> Result<f64> {
    json.get(name)
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow!("no numeric \"{name}\" in {json}"))
}

/// `checkpoint PID --dir DIR/image [--leave-running] --json`, checking the statistics.
pub fn checkpoint(dir: &TestDir, w: &Workload, spec: &Spec, mode: Mode) -> Result<Value> {
    let pid = w.pid().to_string();
    let image = dir.image();
    let mut args = vec!["checkpoint", &pid, "--dir", path_str(&image)?, "--json"];
    if mode == Mode::LeaveRunning {
        args.push("--leave-running");
    }
    let extra = Spec::with_pid(spec.checkpoint_args, w.pid());
    args.extend(extra.iter().map(String::as_str));
    let stats = agent(dir, &args)?.json().context("checkpoint")?;
    ensure!(
        field(&stats, "pid")? == f64::from(w.pid().as_raw()),
        "checkpoint stats for the wrong pid: {stats}"
    );
    for name in ["frozen_ms", "dump_ms", "zero_pages"] {
        field(&stats, name)?;
    }
    let written = field(&stats, "pages_written")?;
    ensure!(
        written >= spec.min_pages_written as f64,
        "pages_written {written} < {}: {stats}",
        spec.min_pages_written
    );
    ensure!(
        written <= spec.max_pages_written as f64,
        "pages_written {written} > {}: {stats}",
        spec.max_pages_written
    );
    ensure!(
        field(&stats, "pages_scanned")? >= written,
        "pages_scanned < pages_written: {stats}"
    );
    ensure!(field(&stats, "image_bytes")? > 0.0, "empty image: {stats}");
    Ok(stats)
}

/// `restore --dir DIR/image --pidfile ... --json`; returns the run and the
/// pidfile's PID if there is one (adopt it before checking anything else).
pub fn restore(dir: &TestDir) -> Result<(AgentRun, Option<Pid>)> {
    restore_with(dir, &[])
}

/// [`restore`] with `extra` arguments.
fn restore_with(dir: &TestDir, extra: &[String]) -> Result<(AgentRun, Option<Pid>)> {
    let pidfile = dir.path().join("restored.pid");
    let image = dir.image();
    let mut args = vec![
        "restore",
        "--dir",
        path_str(&image)?,
        "--pidfile",
        path_str(&pidfile)?,
        "--json",
    ];
    args.extend(extra.iter().map(String::as_str));
    let run = agent(dir, &args)?;
    let pid = match fs::read_to_string(&pidfile) {
        Ok(text) => Some(Pid::from_raw(
            text.trim()
                .parse()
                .with_context(|| format!("pidfile holds {text:?}"))?,
        )),
        Err(_) => None,
    };
    Ok((run, pid))
}

/// Restores the workload's image and checks it came back with its own PID.
pub fn restore_workload(dir: &TestDir, w: &mut Workload) -> Result<()> {
    restore_workload_with(dir, w, &[])
}

/// [`restore_workload`] with `extra` arguments of `restore`.
pub fn restore_workload_with(dir: &TestDir, w: &mut Workload, extra: &[String]) -> Result<()> {
    let (run, pid) = restore_with(dir, extra)?;
    if let Some(pid) = pid {
        w.adopt(pid);
    }
    let stats = run.json().context("restore")?;
    let pid = pid.ok_or_else(|| anyhow!("restore succeeded but wrote no pidfile"))?;
    ensure!(
        pid == w.pid(),
        "restored as pid {pid}, original was {}",
        w.pid()
    );
    ensure!(
        field(&stats, "pid")? == f64::from(pid.as_raw()),
        "restore stats for the wrong pid: {stats}"
    );
    field(&stats, "restore_ms")?;
    ensure!(
        field(&stats, "pages_restored")? > 0.0,
        "no pages restored: {stats}"
    );
    Ok(())
}

pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", path.display()))
}

/// The state letter of /proc/PID/stat and the TracerPid of /proc/PID/status.
pub fn proc_state(pid: Pid) -> Result<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The state follows the comm, which is in parentheses and may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .ok_or_else(|| anyhow!("cannot parse /proc/{pid}/stat: {stat}"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let tracer = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no TracerPid in /proc/{pid}/status"))?;
    Ok((state, tracer))
}

/// The process is alive, neither stopped nor traced, now and 200 ms later.
pub fn check_running(w: &mut Workload, after: &str) -> Result<()> {
    for _ in 0..2 {
        if let Some(status) = w.child.try_wait()? {
            w.child_reaped = true;
            bail!(
                "{} died ({status}) {after}; output:\n{}",
                w.name,
                w.output()?
            );
        }
        let (state, tracer) = proc_state(w.pid())?;
        ensure!(
            !matches!(state, 't' | 'T' | 'Z' | 'X'),
            "{} is in state {state} {after}",
            w.name
        );
        ensure!(
            tracer == 0,
            "{} is still traced by {tracer} {after}",
            w.name
        );
        sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The fd numbers a process holds and how many of its mappings are
/// registered for userfaultfd write-protect tracking ("uw" in smaps).
fn attachments(pid: Pid) -> Result<(Vec<String>, usize)> {
    let mut fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    fds.sort();
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let tracked = smaps
        .lines()
        .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw"))
        .count();
    Ok((fds, tracked))
}

/// The zdtm cycle: start, checkpoint, restore with the same PID, verify.
/// With --leave-running, the original must also be left as it was: no
/// tracer, no write tracking, no fd of ferry's.
pub fn zdtm(test: &str, spec: &Spec, mode: Mode) {
    run_test(test, |dir| {
        let mut w = Workload::start(dir, spec)?;
        sleep(Duration::from_millis(200));
        let (fds_before, _) = attachments(w.pid())?;
        w.record_descendants();
        checkpoint(dir, &w, spec, mode)?;
        match mode {
            Mode::Kill => w.reap_checkpointed()?,
            Mode::LeaveRunning => {
                check_running(&mut w, "after checkpoint --leave-running")?;
                let (fds_after, tracked) = attachments(w.pid())?;
                ensure!(
                    tracked == 0,
                    "{tracked} mappings of {} are still write-tracked after the checkpoint",
                    w.name
                );
                ensure!(
                    fds_after == fds_before,
                    "the checkpoint changed the fds of {}: {fds_before:?} -> {fds_after:?}",
                    w.name
                );
                w.kill_original()?;
            }
        }
        let extra = Spec::with_pid(spec.restore_args, w.pid());
        restore_workload_with(dir, &mut w, &extra)?;
        sleep(Duration::from_millis(200));
        w.finish(spec)
    });
}

/// No checkpoint: the workload passes its own check, also after being
/// stopped for a while (as a checkpoint would) with SIGSTOP/SIGCONT.
pub fn standalone(spec: &Spec) {
    run_test(&format!("standalone-{}", spec.name), |dir| {
        let mut w = Workload::start(dir, spec)?;
        sleep(Duration::from_millis(100));
        w.signal(Signal::SIGSTOP)?;
        sleep(Duration::from_millis(300));
        w.signal(Signal::SIGCONT)?;
        sleep(Duration::from_millis(100));
        w.finish(spec)
            .with_context(|| format!("workload {} on its own", spec.name))
    });
}

/// On drop, removes the SysV segments that sysv_shm.c left behind when a
/// test failed before the workload could remove them (killed by the
/// harness): segments with its key prefix (0x5f......), attached by no
/// one, whose creator is gone. A live workload's segments are attached or
/// have a live creator, so parallel tests keep theirs.
pub struct SysvShmCleanup;

impl Drop for SysvShmCleanup {
    fn drop(&mut self) {
        let Ok(text) = fs::read_to_string("/proc/sysvipc/shm") else {
            return;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(key), Some(shmid), Some(cpid), Some(nattch)) = (
                f.first().and_then(|k| k.parse::<i32>().ok()),
                f.get(1).and_then(|s| s.parse::<i32>().ok()),
                f.get(4),
                f.get(6),
            ) else {
                continue;
            };
            let ours = (key as u32) >> 24 == 0x5f;
            let creator_gone = !Path::new(&format!("/proc/{cpid}")).exists();
            if ours && *nattch == "0" && creator_gone {
                let _ = Command::new("ipcrm")
                    .args(["-m", &shmid.to_string()])
                    .status();
            }
        }
    }
}
