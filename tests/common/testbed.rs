//! Two hosts on one machine for live-migration tests, and a client on the
//! same link: scripts/testbed.sh makes network namespaces joined by a
//! bridge and starts an agent on hosts A and B, in a PID namespace of its own (so that a workload keeps its PID on
//! the other host while the source copy still exists). Workloads are
//! started inside host A with nsenter. Dropping the testbed stops both
//! agents and everything in their PID namespaces, and deletes the network
//! namespaces, whether the test passed or not.

use super::{agent_bin, path_str, workload_bin, AgentRun, TestDir};
use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Host A's address and agent port.
pub const HOST_A: &str = "10.231.0.1:7420";
/// Host B's address and agent port.
pub const HOST_B: &str = "10.231.0.2:7420";
const WAIT: Duration = Duration::from_secs(20);

/// One host of the testbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    A,
    B,
    /// The client (10.231.0.3): no agent, only a network namespace on the
    /// link, from which a container's address on the link is reachable
    /// wherever the container runs.
    C,
}

impl Host {
    fn letter(self) -> &'static str {
        match self {
            Host::A => "a",
            Host::B => "b",
            Host::C => "c",
        }
    }
}

/// How the hosts of a testbed are brought up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hosts {
    /// Each host's PID namespace outlives its agent.
    pub lasting: bool,
    /// A dead agent is started again a second later, as a service manager
    /// would (its host and processes stay meanwhile).
    pub restart_agents: bool,
    /// The test-only fault hook of host A's agent (`FERRY_FAULT`).
    pub a_fault: Option<&'static str>,
    /// The test-only fault hook of host B's agent (`FERRY_FAULT`).
    pub b_fault: Option<&'static str>,
    /// The agents' log filter (`RUST_LOG`), instead of their configured
    /// level.
    pub log_filter: Option<&'static str>,
}

/// The two hosts and their agents.
pub struct Testbed {
    prefix: String,
    dir: PathBuf,
    /// The hosts' PID namespaces (as /proc/PID/ns/pid names them), read
    /// at the start: what the test may kill at its end, even once a
    /// host's init is gone.
    pid_namespaces: Vec<PathBuf>,
}

fn testbed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed.sh")
}

impl Testbed {
    /// Brings up both hosts with their agents (files in DIR/testbed).
    pub fn up(dir: &TestDir) -> Result<Self> {
        Self::up_with(dir, &Hosts::default())
    }

    /// Brings up both hosts as [`Testbed::up`] does, each host's PID
    /// namespace outliving its agent (a killed agent leaves its host and
    /// the processes in it running, as on a real host).
    pub fn up_lasting(dir: &TestDir) -> Result<Self> {
        Self::up_with(
            dir,
            &Hosts {
                lasting: true,
                ..Hosts::default()
            },
        )
    }

    /// Brings up both hosts as [`Testbed::up`] does, as `hosts` says.
    pub fn up_with(dir: &TestDir, hosts: &Hosts) -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "ft{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut bed = Testbed {
            prefix,
            dir: dir.path().join("testbed"),
            pid_namespaces: Vec::new(),
        };
        let out = Command::new("bash")
            .arg(testbed_script())
            .args(["up", "--name-prefix", &bed.prefix, "--agents"])
            .arg(&bed.dir)
            .env("FERRY_AGENT_BIN", agent_bin()?)
            .env(
                "FERRY_TESTBED_LASTING_HOSTS",
                if hosts.lasting { "1" } else { "" },
            )
            .env(
                "FERRY_TESTBED_RESTART_AGENTS",
                if hosts.restart_agents { "1" } else { "" },
            )
            .env("FERRY_TESTBED_FAULT_A", hosts.a_fault.unwrap_or(""))
            .env("FERRY_TESTBED_FAULT_B", hosts.b_fault.unwrap_or(""))
            .envs(hosts.log_filter.map(|f| ("RUST_LOG", f)))
            .stdin(Stdio::null())
            .output()
            .context("running scripts/testbed.sh up")?;
        ensure!(
            out.status.success(),
            "testbed.sh up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bed.pid_namespaces = [Host::A, Host::B]
            .into_iter()
            .filter_map(|h| bed.init_pid(h).ok())
            .filter_map(|p| fs::read_link(format!("/proc/{p}/ns/pid")).ok())
            .collect();
        Ok(bed)
    }

    /// The directory of the agents' files (DIR of `testbed.sh --agents
    /// DIR`): a host's in DIR/a and DIR/b.
    pub fn agents_dir(&self) -> &Path {
        &self.dir
    }

    /// The control socket of a host's agent.
    pub fn control_socket(&self, host: Host) -> PathBuf {
        self.dir.join(host.letter()).join("agent.sock")
    }

    /// The agent's log file on a host.
    pub fn agent_log_path(&self, host: Host) -> PathBuf {
        self.dir.join(host.letter()).join("agent.log")
    }

    /// The agent's log on a host.
    pub fn agent_log(&self, host: Host) -> String {
        fs::read_to_string(self.agent_log_path(host)).unwrap_or_default()
    }

    fn netns(&self, host: Host) -> String {
        format!("{}-{}", self.prefix, host.letter())
    }

    /// The MAC address of a host's link interface (veth-a, veth-b, veth-c).
    pub fn link_mac(&self, host: Host) -> Result<String> {
        let dev = format!("veth-{}", host.letter());
        let out = Command::new("ip")
            .args(["-n", &self.netns(host), "-br", "link", "show", &dev])
            .output()?;
        ensure!(out.status.success(), "ip link show {dev} failed");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(2)
            .map(str::to_string)
            .with_context(|| format!("no MAC in {text:?}"))
    }

    /// The MAC address a host's neighbour table gives `addr`, if any.
    pub fn neighbour(&self, host: Host, addr: &str) -> Result<Option<String>> {
        let out = Command::new("ip")
            .args(["-n", &self.netns(host), "neigh", "show", addr])
            .output()?;
        ensure!(out.status.success(), "ip neigh show {addr} failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        Ok(words
            .by_ref()
            .position(|w| w == "lladdr")
            .and_then(|_| words.next())
            .map(str::to_string))
    }

    /// The path of a host's network namespace (to enter it from a thread).
    pub fn netns_path(&self, host: Host) -> String {
        format!("/var/run/netns/{}", self.netns(host))
    }

    /// Kills a host's agent (SIGKILL, by PID): the daemon dies, the host
    /// and its processes stay.
    pub fn kill_agent(&self, host: Host) -> Result<()> {
        kill(Pid::from_raw(self.agent_pid(host)?), Signal::SIGKILL)?;
        Ok(())
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) a host's agent, by PID: a
    /// stalled daemon.
    pub fn pause_agent(&self, host: Host, paused: bool) -> Result<()> {
        let signal = if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        kill(Pid::from_raw(self.agent_pid(host)?), signal)?;
        Ok(())
    }

    /// The root-namespace PID of a host's agent.
    pub fn agent_pid(&self, host: Host) -> Result<i32> {
        let init = self.init_pid(host)?;
        let children = fs::read_to_string(format!("/proc/{init}/task/{init}/children"))?;
        for pid in children.split_whitespace() {
            // A child may end meanwhile (a lasting host's init runs sleep).
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "migrate-agent" {
                return Ok(pid.parse()?);
            }
        }
        bail!("no agent found on host {host:?}")
    }

    /// Runs a command inside a host (its network, PID, mount and IPC
    /// namespaces) to its end; returns whether it succeeded and what it
    /// printed (through a file: a container it starts keeps its stdio).
    pub fn host_exec(&self, host: Host, args: &[&str]) -> Result<(bool, String)> {
        let init = self.init_pid(host)?;
        let log = self.dir.join(format!("exec-{}.out", host.letter()));
        let out = File::create(&log)?;
        let status = Command::new("nsenter")
            .args(["-t", &init.to_string(), "-n", "-p", "-m", "-i", "--"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .context("running nsenter")?;
        Ok((
            status.success(),
            fs::read_to_string(&log).unwrap_or_default(),
        ))
    }

    /// Takes PID `ns_pid` on a host with a sleeping process (which dies
    /// with the testbed).
    pub fn take_pid(&self, host: Host, ns_pid: i32) -> Result<HostProcess> {
        let script = format!(
            "echo {} > /proc/sys/kernel/ns_last_pid; sleep 600 & wait",
            ns_pid - 1
        );
        let sink = self.dir.join("squatter.out");
        let p = self.spawn(host, Path::new("/bin/sh"), &["-c", &script], &sink)?;
        let start = Instant::now();
        while self.find(host, ns_pid)?.is_none() {
            ensure!(
                start.elapsed() < WAIT,
                "could not take PID {ns_pid} on host {host:?}"
            );
            sleep(Duration::from_millis(10));
        }
        Ok(p)
    }

    /// One HTTP GET from inside `from` ([`http_get_in`]); returns the body.
    pub fn http_get(&self, from: Host, url: &str) -> Result<String> {
        http_get_in(&self.netns_path(from), url)
    }

    /// Brings host A's end of the link down or up.
    pub fn set_link(&self, up: bool) -> Result<()> {
        let status = Command::new("ip")
            .args(["-n", &self.netns(Host::A), "link", "set", "veth-a"])
            .arg(if up { "up" } else { "down" })
            .status()?;
        ensure!(status.success(), "ip link set failed");
        Ok(())
    }

    /// Starts, in a host's network namespace, an agent on `port` whose
    /// certificate comes from a CA of its own (not the testbed's).
    pub fn rogue_agent(&self, dir: &TestDir, host: Host, port: u16) -> Result<Daemon> {
        let rogue = dir.path().join("rogue");
        let bin = agent_bin()?;
        let addr = match host {
            Host::A => "10.231.0.1",
            Host::B => "10.231.0.2",
            Host::C => "10.231.0.3",
        };
        for args in [
            vec!["certs", "init", "--dir", path_str(&rogue.join("ca"))?],
            vec![
                "certs",
                "issue",
                "--ca",
                path_str(&rogue.join("ca"))?,
                "--name",
                "rogue",
                "--ip",
                addr,
                "--out",
                path_str(&rogue)?,
            ],
        ] {
            super::agent(dir, &args)?.check()?;
        }
        let config = rogue.join("agent.toml");
        fs::write(
            &config,
            format!(
                "name = \"rogue\"\nlisten = \"{addr}:{port}\"\ncontrol_socket = \"{r}/agent.sock\"\n\
                 ca = \"{r}/ca/ca.pem\"\ncert = \"{r}/cert.pem\"\nkey = \"{r}/key.pem\"\nwork_dir = \"{r}/work\"\n",
                r = rogue.display()
            ),
        )?;
        let log = rogue.join("agent.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns(host)])
            .arg(&bin)
            .args(["serve", "--config", path_str(&config)?])
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::create(rogue.join("agent.err"))?)
            .spawn()?;
        let daemon = Daemon { child };
        let sock = rogue.join("agent.sock");
        let start = Instant::now();
        while !sock.exists() {
            ensure!(start.elapsed() < WAIT, "the rogue agent did not start");
            sleep(Duration::from_millis(10));
        }
        Ok(daemon)
    }

    /// Starts `migrate` in the background (see [`Testbed::migrate`]).
    pub fn spawn_migrate(
        &self,
        dir: &TestDir,
        ns_pid: i32,
        to: &str,
        extra: &[&str],
    ) -> Result<Running> {
        let socket = self.control_socket(Host::A);
        let out = dir.path().join("migrate.out");
        let err = dir.path().join("migrate.err");
        let child = Command::new(agent_bin()?)
            .args([
                "migrate",
                &ns_pid.to_string(),
                "--to",
                to,
                "--control-socket",
            ])
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?)
            .spawn()?;
        Ok(Running { child, out, err })
    }

    /// PID (in the root namespace) of the init of a host's PID namespace.
    pub fn init_pid(&self, host: Host) -> Result<i32> {
        let path = self.dir.join(host.letter()).join("init.pid");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.trim().parse()?)
    }

    /// Starts a command inside host A (its network, PID, mount and IPC
    /// namespaces) with stdout and stderr to `output`.
    pub fn spawn(
        &self,
        host: Host,
        program: &Path,
        args: &[&str],
        output: &Path,
    ) -> Result<HostProcess> {
        let init = self.init_pid(host)?;
        let out = File::create(output)?;
        // bash closes the fds this test inherited (cargo's jobserver pipe,
        // which a checkpoint would rightly refuse) before running the program.
        let child = Command::new("nsenter")
            .args(["-t", &init.to_string(), "-n", "-p", "-m", "-i", "--"])
            .args([
                "bash",
                "-c",
                "for fd in /proc/$$/fd/*; do fd=${fd##*/}; \
                 if [ \"$fd\" -gt 2 ]; then eval \"exec $fd>&-\"; fi; done 2>/dev/null; \
                 exec \"$@\"",
                "bash",
            ])
            .arg(program)
            .args(args)
            // libuv's io_uring backend holds an io_uring fd, which ferry
            // does not carry yet.
            .env("UV_USE_IO_URING", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning nsenter")?;
        let start = Instant::now();
        let pid = loop {
            let children =
                fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                break pid.parse::<i32>()?;
            }
            ensure!(
                start.elapsed() < WAIT,
                "nsenter did not start {}",
                program.display()
            );
            sleep(Duration::from_millis(5));
        };
        let ns_pid = ns_pid(pid)?;
        Ok(HostProcess {
            nsenter: child,
            ns_pid,
        })
    }

    /// Starts tests/workloads/<name> on host A with `args` after the files
    /// directory, and waits for READY.
    pub fn start_workload(&self, dir: &TestDir, name: &str, args: &[&str]) -> Result<HostProcess> {
        let bin = workload_bin(name)?;
        let files = dir.path().join("files");
        let mut all = vec![path_str(&files)?];
        all.extend_from_slice(args);
        let output = dir.path().join("output.txt");
        let p = self.spawn(Host::A, &bin, &all, &output)?;
        wait_for(&output, "READY")?;
        Ok(p)
    }

    /// `migrate-agent migrate NS_PID --to B` through host A's agent, with
    /// `extra` arguments.
    pub fn migrate(
        &self,
        dir: &TestDir,
        ns_pid: i32,
        to: &str,
        extra: &[&str],
    ) -> Result<AgentRun> {
        let pid = ns_pid.to_string();
        let socket = self.control_socket(Host::A);
        let mut args = vec![
            "migrate",
            &pid,
            "--to",
            to,
            "--control-socket",
            path_str(&socket)?,
        ];
        args.extend_from_slice(extra);
        super::agent(dir, &args)
    }

    /// Runs migrate-agent with `args` inside a host (its network, PID and
    /// mount namespaces, where it sees the host's PIDs as its agent does)
    /// and waits for it to end.
    pub fn agent_in(&self, host: Host, args: &[&str]) -> Result<AgentRun> {
        let init = self.init_pid(host)?;
        let out = Command::new("nsenter")
            .args(["-t", &init.to_string(), "-n", "-p", "-m", "-i", "--"])
            .arg(agent_bin()?)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running migrate-agent in a host")?;
        Ok(AgentRun {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// The root-namespace PID of the process that has PID `ns_pid` in a
    /// host's PID namespace, if any.
    pub fn find(&self, host: Host, ns_pid: i32) -> Result<Option<i32>> {
        let ns = fs::read_link(format!("/proc/{}/ns/pid", self.init_pid(host)?))?;
        for entry in fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            if ns_pid_opt(pid) == Some(ns_pid) && !is_zombie(pid) {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.kill_held_copies();
        let _ = Command::new("bash")
            .arg(testbed_script())
            .args(["down", "--name-prefix", &self.prefix, "--agents"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// ferry's transient freezer cgroups (a held copy's, `ferry/incoming-*`
/// and `ferry/outgoing-*`).
const HOLDS: &str = "/sys/fs/cgroup/freezer/ferry";

impl Testbed {
    /// Kills the copies that agents of this testbed left held frozen (an
    /// agent killed for good, or the test ending first): a frozen process
    /// takes SIGKILL only once thawed, so bringing the hosts down would
    /// leave them. Only a cgroup whose every task lives in one of this
    /// testbed's PID namespaces is touched.
    fn kill_held_copies(&self) {
        let namespaces = &self.pid_namespaces;
        let Ok(entries) = fs::read_dir(HOLDS) else {
            return;
        };
        for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let tasks = cgroup_tasks(&dir);
            let ours = !tasks.is_empty()
                && tasks.iter().all(|t| {
                    fs::read_link(format!("/proc/{t}/ns/pid"))
                        .is_ok_and(|ns| namespaces.contains(&ns))
                });
            if ours {
                kill_frozen_cgroup(&dir);
            }
        }
    }
}

/// The tasks of the cgroup directory `dir`.
fn cgroup_tasks(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("tasks"))
        .unwrap_or_default()
        .lines()
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

/// Kills every task of the v1 freezer cgroup `dir` (a test's own held
/// copy), thaws it so that they die, waits for them and removes it.
pub fn kill_frozen_cgroup(dir: &Path) {
    for task in cgroup_tasks(dir) {
        let _ = kill(Pid::from_raw(task), Signal::SIGKILL);
    }
    let _ = fs::write(dir.join("freezer.state"), "THAWED");
    let start = Instant::now();
    while !cgroup_tasks(dir).is_empty() && start.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(20));
    }
    let _ = fs::remove_dir(dir);
}

/// A daemon started by a test, killed (by PID) when dropped.
pub struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `migrate-agent migrate` running in the background.
pub struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    /// Whether the command has ended.
    pub fn ended(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// How the command ended, in a line: its exit status and the last line
    /// it printed (or that it still runs).
    pub fn outcome(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let err = fs::read_to_string(&self.err).unwrap_or_default();
                let out = fs::read_to_string(&self.out).unwrap_or_default();
                let last = err
                    .lines()
                    .chain(out.lines())
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string();
                format!("{status}: {last}")
            }
            _ => "still running".to_string(),
        }
    }

    /// Waits (at most a minute) for the command to end.
    pub fn wait(mut self) -> Result<AgentRun> {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("migrate still running after a minute");
            }
            sleep(Duration::from_millis(10));
        };
        Ok(AgentRun {
            status,
            stdout: fs::read_to_string(&self.out)?,
            stderr: fs::read_to_string(&self.err)?,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process started in a host: the nsenter parent and the process's PID
/// inside the host.
pub struct HostProcess {
    nsenter: Child,
    /// PID inside the host's PID namespace (what its agent is given).
    pub ns_pid: i32,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        // nsenter ends with its child; the child itself dies with the
        // testbed's PID namespace.
        let _ = self.nsenter.kill();
        let _ = self.nsenter.wait();
    }
}

fn ns_pid_opt(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

fn ns_pid(pid: i32) -> Result<i32> {
    ns_pid_opt(pid).with_context(|| format!("no NSpid for process {pid}"))
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Waits until `path` contains `text`.
pub fn wait_for(path: &Path, text: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let out = fs::read_to_string(path).unwrap_or_default();
        if out.contains(text) {
            return Ok(out);
        }
        if start.elapsed() > WAIT {
            bail!("no {text:?} in {} after {WAIT:?}:\n{out}", path.display());
        }
        sleep(Duration::from_millis(10));
    }
}

/// Where a test's workload writes its output.
pub fn output(dir: &TestDir) -> PathBuf {
    dir.path().join("output.txt")
}

/// SIGTERMs the workload on `host` and checks that it printed READY then PASS.
pub fn finish_on(bed: &Testbed, dir: &TestDir, host: Host, w: &HostProcess) -> Result<()> {
    let pid = bed
        .find(host, w.ns_pid)?
        .with_context(|| format!("process {} is not running on host {host:?}", w.ns_pid))?;
    kill(Pid::from_raw(pid), Signal::SIGTERM)?;
    let out = wait_for(&output(dir), "\n").and_then(|_| wait_for_end(&output(dir)))?;
    ensure!(
        out == "READY\nPASS\n",
        "expected READY then PASS, got:\n{out}"
    );
    Ok(())
}

/// Waits (at most 30 s) until the workload printed PASS or FAIL.
fn wait_for_end(path: &Path) -> Result<String> {
    for _ in 0..3000 {
        let out = fs::read_to_string(path)?;
        if out.contains("PASS") || out.contains("FAIL") {
            return Ok(out);
        }
        sleep(Duration::from_millis(10));
    }
    bail!("the workload did not finish after SIGTERM")
}

/// One HTTP GET from inside the network namespace at `netns` (a path such
/// as /var/run/netns/NAME), on a thread that enters it (and ends with it);
/// returns the body.
pub fn http_get_in(netns: &str, url: &str) -> Result<String> {
    let netns = File::open(netns).with_context(|| format!("opening {netns}"))?;
    let rest = url
        .strip_prefix("http://")
        .context("expected an http:// URL")?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (addr, path) = (addr.to_string(), format!("/{path}"));
    std::thread::spawn(move || -> Result<String> {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut s =
            std::net::TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        let body = reply
            .split_once("\r\n\r\n")
            .map_or(reply.as_str(), |(_, b)| b);
        Ok(body.trim().to_string())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the GET thread panicked"))?
}
