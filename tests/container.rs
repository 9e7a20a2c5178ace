//! Live migration of a runc container between the two testbed hosts: a
//! busybox counter (scripts/container-bundle.sh: `echo $i` every second
//! into /out/counter.txt, /out being a directory of the test bind-mounted
//! into the container) moves from host A to host B and keeps counting with
//! no gap, repeat or reset; B's runc then manages it.
//!
//! Each host gets what separate machines would have: its own runc state
//! (a tmpfs on /run/runc in the host's mount namespace) and its own cgroups
//! (the bundle's cgroupsPath is relative, and each host's agent and runc
//! run in a cgroup of the host's), removed at the end.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::keepalive::{Exchange, KeepAliveClient, KeepAliveReport};
use common::testbed::{Host, Hosts, Testbed, HOST_B};
use common::{agent, path_str, run_test, TestDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// Runs a container test, or skips it where runc is missing.
fn runc_test(name: &str, test: impl FnOnce(&TestDir) -> Result<()>) {
    if !have_runc() {
        eprintln!("SKIPPED: runc is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test(name, test);
}

fn have_runc() -> bool {
    Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A cgroup of each hierarchy for one testbed host, under the test's own
/// cgroups; removed (with what runc left under it) when dropped.
struct HostCgroups {
    dirs: Vec<PathBuf>,
}

impl HostCgroups {
    fn create(name: &str) -> Result<Self> {
        let mut dirs = Vec::new();
        for line in fs::read_to_string("/proc/self/cgroup")?.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let mount = match ctrls {
                "" => "unified".to_string(),
                c => c
                    .trim_start_matches("name=")
                    .split(',')
                    .next()
                    .unwrap_or(c)
                    .to_string(),
            };
            let parent = Path::new("/sys/fs/cgroup")
                .join(mount)
                .join(path.trim_start_matches('/'));
            if !parent.join("cgroup.procs").exists() {
                continue;
            }
            let dir = parent.join(name);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(parent.join(f)) {
                    let _ = fs::write(dir.join(f), v.trim());
                }
            }
            dirs.push(dir);
        }
        ensure!(
            dirs.iter().any(|d| d.starts_with("/sys/fs/cgroup/freezer")
                || d.starts_with("/sys/fs/cgroup/unified")),
            "no freezer hierarchy found"
        );
        Ok(HostCgroups { dirs })
    }

    /// Moves process `pid` into every one of these cgroups.
    fn enter(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            fs::write(d.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("moving {pid} into {}", d.display()))?;
        }
        Ok(())
    }

    /// A shell command that mounts the cgroup hierarchies at
    /// /sys/fs/cgroup inside a host (`ip netns exec` gave it a sysfs of
    /// its own, without them); the cgroup2 one only `with_unified`.
    fn mount_script(&self, with_unified: bool) -> String {
        let mut script = String::from("mount -t tmpfs ferry-cgroups /sys/fs/cgroup;");
        for d in &self.dirs {
            let Ok(rel) = d.strip_prefix("/sys/fs/cgroup") else {
                continue;
            };
            let Some(name) = rel.iter().next().and_then(|n| n.to_str()) else {
                continue;
            };
            if name == "unified" && !with_unified {
                continue;
            }
            let mount = match name {
                "unified" => "mount -t cgroup2 cgroup2".to_string(),
                "systemd" => "mount -t cgroup -o none,name=systemd cgroup".to_string(),
                c => format!("mount -t cgroup -o {c} cgroup"),
            };
            script += &format!(" mkdir -p /sys/fs/cgroup/{name} && {mount} /sys/fs/cgroup/{name};");
        }
        script
    }

    /// A shell command that moves the shell into these cgroups.
    fn enter_script(&self) -> String {
        self.dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs;", d.display()))
            .collect()
    }
}

impl Drop for HostCgroups {
    fn drop(&mut self) {
        // The host's processes (ended with the testbed) may take a moment
        // to leave.
        let start = Instant::now();
        for d in &self.dirs {
            loop {
                // Leaves first: what runc created below.
                if let Ok(entries) = fs::read_dir(d) {
                    for e in entries.flatten() {
                        if e.path().is_dir() {
                            let _ = fs::remove_dir(e.path());
                        }
                    }
                }
                if fs::remove_dir(d).is_ok() || !d.exists() || start.elapsed() > WAIT {
                    break;
                }
                sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The counter's lines once it has printed at least `n`.
fn wait_lines(path: &Path, n: usize) -> Result<Vec<u64>> {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        let lines: Vec<u64> = complete
            .lines()
            .map(|l| {
                l.trim()
                    .parse::<u64>()
                    .with_context(|| format!("line {l:?}"))
            })
            .collect::<Result<_>>()?;
        if lines.len() >= n {
            return Ok(lines);
        }
        ensure!(
            start.elapsed() < WAIT,
            "the counter printed {} lines, not {n}, in {WAIT:?}",
            lines.len()
        );
        sleep(Duration::from_millis(100));
    }
}

/// The counter printed at least `more` lines beyond its current ones, and
/// every line is its index: no gap, no repeat, no reset.
fn counts_on(path: &Path, more: usize) -> Result<Vec<u64>> {
    let now = wait_lines(path, 0)?.len();
    let after = wait_lines(path, now + more)?;
    for (i, v) in after.iter().enumerate() {
        ensure!(
            *v == i as u64,
            "line {i} of {} is {v}: the count broke ({after:?})",
            path.display()
        );
    }
    Ok(after)
}

fn runc_list(bed: &Testbed, host: Host) -> Result<String> {
    runtime_list(bed, host, "runc")
}

fn runtime_list(bed: &Testbed, host: Host, runtime: &str) -> Result<String> {
    let (ok, out) = bed.host_exec(host, &[runtime, "list"])?;
    ensure!(ok, "{runtime} list on {host:?} failed: {out}");
    Ok(out)
}

/// Two hosts, each with its runc state and cgroups, and the counter
/// container running on A. Dropping it deletes the container on both
/// hosts (by ID), brings the testbed down, then removes the cgroups.
struct Env {
    bed: Testbed,
    cgroups_a: HostCgroups,
    _cgroups_b: HostCgroups,
    id: String,
    counter: PathBuf,
    bundle: PathBuf,
    /// The OCI runtime: runc or crun.
    runtime: &'static str,
}

impl Drop for Env {
    fn drop(&mut self) {
        for host in [Host::A, Host::B] {
            let _ = self
                .bed
                .host_exec(host, &[self.runtime, "delete", "-f", &self.id]);
        }
    }
}

/// What the test container runs, and on which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The busybox counter, in its host's network namespace.
    Counter,
    /// The busybox counter, in a network namespace of its own
    /// ([`CONTAINER_NETWORK`]).
    CounterOwnNet,
    /// The Node.js request counter on [`NODE_URL`], in a network namespace
    /// of its own.
    Node,
    /// The Node.js request counter on [`LINK_URL`]: its own network
    /// namespace, its address on the testbed's link, so that the client
    /// host C reaches it wherever it runs.
    NodeOnLink,
    /// The busybox counter without CAP_SYS_PTRACE (which post-copy needs).
    CounterWithoutPtrace,
    /// Debian's redis-server on [`LINK_ADDR`] (its own network namespace,
    /// its address on the link), nothing saved to disk.
    RedisOnLink,
    /// tests/workloads/tcp_stream.c on [`LINK_ADDR`] (its own network
    /// namespace, its address on the link), rewriting this many MiB of
    /// memory every second.
    StreamOnLink(u32),
}

/// The container's own network when it has one: what the source host's
/// network hook (scripts/container-net.sh, also each agent's) gives it.
const CONTAINER_NETWORK: &str = r#"{"interfaces":[{"name":"eth0","addresses":["10.232.0.2/24"]}],"routes":[{"dst":"default","gateway":"10.232.0.1","dev":"eth0"}]}"#;
/// Where the Node.js container answers.
const NODE_URL: &str = "http://10.232.0.2:8080/";
/// The network of a container whose address is on the testbed's link
/// (10.231.0.0/24): the hosts answer ARP for it and route to it, so peers
/// on the link reach it without a route of their own.
const LINK_NETWORK: &str =
    r#"{"interfaces":[{"name":"eth0","addresses":["10.231.0.100/24"]}],"routes":[]}"#;
/// The address of the Node.js container on the link.
const LINK_IP: &str = "10.231.0.100";
/// Where the Node.js container on the link answers.
const LINK_ADDR: &str = "10.231.0.100:8080";

impl Env {
    fn start(dir: &TestDir, name: &str) -> Result<Self> {
        Self::start_kind(dir, name, Kind::Counter)
    }

    fn start_kind(dir: &TestDir, name: &str, kind: Kind) -> Result<Self> {
        let env = Self::prepare_kind(dir, name, kind, "runc")?;
        env.run_kind(kind)?;
        Ok(env)
    }

    /// The hosts and the counter's bundle, the container not started yet.
    fn prepare(dir: &TestDir, name: &str) -> Result<Self> {
        Self::prepare_kind(dir, name, Kind::Counter, "runc")
    }

    /// The hosts and the bundle of `kind` for `runtime`, the container not
    /// started yet; crun's hosts get no cgroup2 hierarchy (crun 1.8
    /// refuses a hybrid layout whose cgroup2 has controllers, as this
    /// host's has).
    fn prepare_kind(dir: &TestDir, name: &str, kind: Kind, runtime: &'static str) -> Result<Self> {
        Self::prepare_on(dir, name, (kind, runtime), &Hosts::default())
    }

    /// [`Env::prepare_kind`] on hosts brought up as `hosts` says.
    fn prepare_on(
        dir: &TestDir,
        name: &str,
        (kind, runtime): (Kind, &'static str),
        hosts: &Hosts,
    ) -> Result<Self> {
        let id = format!("ferry-{name}-{}", std::process::id());
        let cgroups_a = HostCgroups::create(&format!("{id}-host-a"))?;
        let cgroups_b = HostCgroups::create(&format!("{id}-host-b"))?;
        let bed = Testbed::up_with(dir, hosts)?;
        cgroups_a.enter(bed.agent_pid(Host::A)?)?;
        cgroups_b.enter(bed.agent_pid(Host::B)?)?;
        let bundle = dir.path().join("bundle");
        let out_dir = dir.path().join("out");
        let env = Env {
            bed,
            cgroups_a,
            _cgroups_b: cgroups_b,
            id,
            counter: out_dir.join("counter.txt"),
            bundle: bundle.clone(),
            runtime,
        };
        for host in [Host::A, Host::B] {
            let setup = format!(
                "set -e; mkdir -p /run/{runtime}; mount -t tmpfs ferry-{runtime} /run/{runtime}; {}",
                env.cgroups_a.mount_script(runtime == "runc")
            );
            let (ok, out) = env.bed.host_exec(host, &["sh", "-c", &setup])?;
            ensure!(
                ok,
                "giving host {host:?} its own /run/{runtime} and cgroups failed: {out}"
            );
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let server = repo.join("tests/workloads/counter_server.js");
        let node = |addr: &str| -> Result<Vec<String>> {
            let script = path_str(&server)?;
            Ok(["--own-netns", "--node", script, addr, "8080"]
                .map(String::from)
                .to_vec())
        };
        let on_link = |binary: &Path, args: String| -> Result<Vec<String>> {
            Ok(vec![
                "--own-netns".into(),
                "--run".into(),
                path_str(binary)?.into(),
                args,
            ])
        };
        let (link_ip, link_port) = LINK_ADDR.split_once(':').context("LINK_ADDR has no port")?;
        let mut options = match kind {
            Kind::Counter | Kind::CounterWithoutPtrace => vec![],
            Kind::CounterOwnNet => vec!["--own-netns".into()],
            Kind::Node => node("10.232.0.2")?,
            Kind::NodeOnLink => node(LINK_IP)?,
            Kind::RedisOnLink => on_link(
                Path::new("/usr/bin/redis-server"),
                format!(
                    "--bind {link_ip} --port {link_port} --save '' --appendonly no --protected-mode no"
                ),
            )?,
            Kind::StreamOnLink(mib) => on_link(
                &common::workload_bin("tcp_stream")?,
                format!("{link_ip} {link_port} {mib}"),
            )?,
        };
        options
            .extend([path_str(&bundle)?, path_str(&out_dir)?, "ferry-counter"].map(String::from));
        let made = Command::new("bash")
            .arg(repo.join("scripts/container-bundle.sh"))
            .args(&options)
            .output()?;
        ensure!(
            made.status.success(),
            "container-bundle.sh failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        if kind == Kind::CounterWithoutPtrace {
            let config = bundle.join("config.json");
            let mut spec: serde_json::Value = serde_json::from_str(&fs::read_to_string(&config)?)?;
            for set in spec["process"]["capabilities"]
                .as_object_mut()
                .context("no process.capabilities in config.json")?
                .values_mut()
            {
                if let Some(caps) = set.as_array_mut() {
                    caps.retain(|c| c != "CAP_SYS_PTRACE");
                }
            }
            fs::write(&config, serde_json::to_string(&spec)?)?;
        }
        Ok(env)
    }

    /// Starts the container of `kind` on host A.
    fn run_kind(&self, kind: Kind) -> Result<()> {
        if matches!(kind, Kind::Counter | Kind::CounterWithoutPtrace) {
            return self.run_on_a();
        }
        // The network is configured between create and start, as a
        // runtime hook would: node binds its address at once.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let network = match kind {
            Kind::NodeOnLink | Kind::RedisOnLink | Kind::StreamOnLink(_) => LINK_NETWORK,
            _ => CONTAINER_NETWORK,
        };
        let run = format!(
            "set -e; {} runc create --bundle {} {id}; FERRY_NETWORK='{network}' bash {} {id} $(runc state {id} | jq .pid); runc start {id}",
            self.cgroups_a.enter_script(),
            self.bundle.display(),
            repo.join("scripts/container-net.sh").display(),
            id = self.id,
        );
        let (ok, out) = self.bed.host_exec(Host::A, &["sh", "-c", &run])?;
        ensure!(ok, "runc run on host A failed: {out}");
        Ok(())
    }

    /// Starts the container on host A.
    fn run_on_a(&self) -> Result<()> {
        let run = format!(
            "{} exec {} run -d --bundle {} {}",
            self.cgroups_a.enter_script(),
            self.runtime,
            self.bundle.display(),
            self.id
        );
        let (ok, out) = self.bed.host_exec(Host::A, &["sh", "-c", &run])?;
        ensure!(ok, "{} run on host A failed: {out}", self.runtime);
        Ok(())
    }

    /// Migrates the container from A to B in `mode` (precopy, postcopy or
    /// hybrid).
    /// `dry-run --container` of the container to host B through A's
    /// agent (it freezes the container once for a few milliseconds):
    /// checks that it can move, as a container of `kind` ("container",
    /// "container_with_network"), with a prediction per mode.
    fn dry_run(&self, dir: &TestDir, kind: &str) -> Result<()> {
        let sock = self.bed.control_socket(Host::A);
        let args = [
            "dry-run",
            "--container",
            &self.id,
            "--runtime",
            self.runtime,
            "--to",
            HOST_B,
            "--control-socket",
            path_str(&sock)?,
            "--duration",
            "1s",
            "--json",
        ];
        let report = agent(dir, &args)?.json()?;
        ensure!(
            report["can_move"] == true
                && report["kind"] == kind
                && report["container"] == format!("container {}", self.id),
            "the dry run of container {} is not that of a {kind} that can move: {report}",
            self.id
        );
        let predictions = report["predictions"].as_array().map_or(0, Vec::len);
        ensure!(
            predictions == 3,
            "the dry run predicted {predictions} modes: {report}"
        );
        Ok(())
    }

    fn migrate(&self, dir: &TestDir, mode: &str) -> Result<common::AgentRun> {
        self.migrate_with(dir, &["--mode", mode])
    }

    fn migrate_with(&self, dir: &TestDir, extra: &[&str]) -> Result<common::AgentRun> {
        let sock = self.bed.control_socket(Host::A);
        let mut args = vec![
            "migrate",
            "--container",
            &self.id,
            "--to",
            HOST_B,
            "--control-socket",
            path_str(&sock)?,
            "--runtime",
            self.runtime,
        ];
        args.extend_from_slice(extra);
        agent(dir, &args)
    }

    /// Gives host B its own copy of the bundle (as it is now) at the same
    /// path, bind-mounted in B's mount namespace; returns the copy's path.
    fn copy_bundle_to_b(&self) -> Result<PathBuf> {
        let copy = self.bundle.with_file_name("bundle-b");
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&self.bundle)
            .arg(&copy)
            .status()?;
        ensure!(cp.success(), "copying the bundle failed");
        self.bind_on_b(&copy, &self.bundle)?;
        Ok(copy)
    }

    /// Bind-mounts `what` on `at` inside host B only.
    fn bind_on_b(&self, what: &Path, at: &Path) -> Result<()> {
        let (ok, out) = self.bed.host_exec(
            Host::B,
            &["mount", "--bind", path_str(what)?, path_str(at)?],
        )?;
        ensure!(ok, "bind-mounting {} on B failed: {out}", what.display());
        Ok(())
    }

    /// Fails unless the container runs on A and B does not know it.
    fn still_on_a(&self) -> Result<()> {
        let list_a = runc_list(&self.bed, Host::A)?;
        ensure!(
            list_a
                .lines()
                .any(|l| l.starts_with(self.id.as_str()) && l.contains("running")),
            "the container is not running on A:\n{list_a}"
        );
        let list_b = runc_list(&self.bed, Host::B)?;
        ensure!(
            !list_b.contains(self.id.as_str()),
            "B kept the container:\n{list_b}"
        );
        Ok(())
    }
}

fn container_migrates(dir: &TestDir, mode: &str, kind: Kind) -> Result<()> {
    migrates_with(dir, "runc", mode, kind)
}

fn migrates_with(dir: &TestDir, runtime: &'static str, mode: &str, kind: Kind) -> Result<()> {
    let name = match runtime {
        "runc" => mode.to_string(),
        _ => format!("{runtime}-{mode}"),
    };
    let env = Env::prepare_kind(dir, &name, kind, runtime)?;
    env.run_kind(kind)?;
    let (bed, id, counter) = (&env.bed, &env.id, &env.counter);
    let before = wait_lines(counter, 3)?;
    if mode == "precopy" && kind == Kind::Counter {
        // The dry run's freeze leaves the count whole (checked below).
        env.dry_run(dir, "container")?;
    }

    let migrated = env.migrate(dir, mode)?;
    if let Err(e) = migrated.check() {
        bail!(
            "{e}\nagent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        );
    }
    let list_b = runtime_list(bed, Host::B, runtime)?;
    ensure!(
        list_b
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("running")),
        "{runtime} list on B does not show {id} running:\n{list_b}"
    );
    let list_a = runtime_list(bed, Host::A, runtime)?;
    ensure!(
        !list_a.contains(id.as_str()),
        "the container is still known on A:\n{list_a}"
    );
    if kind == Kind::CounterOwnNet {
        // B's network hook gave the new namespace the recorded address.
        let show = format!(
            "nsenter --net=/proc/$(runc state {id} | jq .pid)/ns/net ip -o -4 addr show eth0"
        );
        let (ok, out) = bed.host_exec(Host::B, &["sh", "-c", &show])?;
        ensure!(
            ok && out.contains("10.232.0.2/24"),
            "the container on B lacks its address 10.232.0.2/24: {out}"
        );
    }
    // Counting continues on B: no gap, no repeat, no reset.
    let after = wait_lines(counter, before.len() + 4)?;
    for (i, v) in after.iter().enumerate() {
        ensure!(
            *v == i as u64,
            "line {i} of the counter is {v}: the count broke across the migration ({after:?})"
        );
    }
    let (ok, out) = bed.host_exec(Host::B, &[runtime, "delete", "-f", id])?;
    ensure!(ok, "{runtime} delete -f on B failed: {out}");
    let list_b = runtime_list(bed, Host::B, runtime)?;
    ensure!(
        !list_b.contains(id.as_str()),
        "{runtime} delete left {id}:\n{list_b}"
    );
    Ok(())
}

#[test]
fn busybox_counter_container_migrates_between_hosts() {
    runc_test("container_migrates", |dir| {
        container_migrates(dir, "precopy", Kind::Counter)
    });
}

/// The same in post-copy mode: the container runs on B at once, its
/// memory following from A (the same checks).
#[test]
fn busybox_counter_container_migrates_in_postcopy_mode() {
    runc_test("container_postcopy", |dir| {
        container_migrates(dir, "postcopy", Kind::Counter)
    });
}

/// And in hybrid mode: pre-copy rounds, then post-copy.
#[test]
fn busybox_counter_container_migrates_in_hybrid_mode() {
    runc_test("container_hybrid", |dir| {
        container_migrates(dir, "hybrid", Kind::Counter)
    });
}

/// B cannot create the container (its runc state directory is read-only):
/// the migration fails after the freeze, and the container keeps running
/// on A, thawed, counting on, and nothing is left on B.
fn failed_restore_leaves_it_running(dir: &TestDir) -> Result<()> {
    let env = Env::start(dir, "kept")?;
    let (bed, id, counter) = (&env.bed, &env.id, &env.counter);
    wait_lines(counter, 2)?;
    let (ok, out) = bed.host_exec(Host::B, &["mount", "-o", "remount,ro", "/run/runc"])?;
    ensure!(ok, "making B's /run/runc read-only failed: {out}");
    let migrated = env.migrate(dir, "precopy")?;
    ensure!(
        migrated.check().is_err(),
        "the migration succeeded although B cannot create containers"
    );
    env.still_on_a()?;
    counts_on(counter, 2)?;
    let (ok, out) = bed.host_exec(Host::A, &["runc", "delete", "-f", id])?;
    ensure!(ok, "runc delete -f on A failed: {out}");
    Ok(())
}

#[test]
fn failed_container_restore_leaves_it_running_on_the_source() {
    runc_test("container_restore_fails", failed_restore_leaves_it_running);
}

/// The agent of `dead` dies at the two-phase commit's moment `fault`
/// (`FERRY_FAULT`) of a pre-copy and is started again a second later,
/// each copy held frozen in the container's own cgroup meanwhile. The
/// agent started again settles its copy by its record, and the container
/// runs on `survivor` alone: the count goes on with no gap and no repeat
/// (two copies would write the counter twice).
fn held_container_survives(
    dir: &TestDir,
    name: &str,
    (dead, fault): (Host, &'static str),
    survivor: Host,
) -> Result<()> {
    let hosts = Hosts {
        lasting: true,
        restart_agents: true,
        a_fault: (dead == Host::A).then_some(fault),
        b_fault: (dead == Host::B).then_some(fault),
        ..Hosts::default()
    };
    let env = Env::prepare_on(dir, name, (Kind::Counter, "runc"), &hosts)?;
    env.run_kind(Kind::Counter)?;
    let (bed, id, counter) = (&env.bed, &env.id, &env.counter);
    wait_lines(counter, 3)?;
    // The CLI's answer depends on the moment: the copies say the rest.
    let _ = env.migrate(dir, "precopy")?;
    let logs = || {
        format!(
            "agent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        )
    };
    counts_on(counter, 6).with_context(logs)?;
    let other = if survivor == Host::A {
        Host::B
    } else {
        Host::A
    };
    ensure!(
        running_on(bed, survivor, id)? && !running_on(bed, other, id)?,
        "the container does not run on {survivor:?} alone:\n{}",
        logs()
    );
    Ok(())
}

/// B's agent dies once the container it restored is held, before it told
/// A Prepared: A aborts and resumes its container; B's agent started
/// again kills the held copy, which never ran.
#[test]
fn held_container_of_a_destination_killed_before_prepared_never_runs() {
    runc_test("container_held_dest_killed", |dir| {
        held_container_survives(dir, "held", (Host::B, "after-hold"), Host::A)
    });
}

/// A's agent dies right after it recorded Committed, before it sent
/// Commit: its container stays frozen until the agent started again kills
/// it, and B, asking A for the decision, lets its held copy run.
#[test]
fn held_container_of_a_source_killed_after_commit_runs_on_the_destination() {
    runc_test("container_held_src_killed", |dir| {
        held_container_survives(dir, "held-src", (Host::A, "after-commit"), Host::B)
    });
}

/// Migrates `env`'s container with `args` while `kill`, run beside it,
/// waits for its moment and kills B's agent; fails unless the migration
/// failed.
fn migrate_while_b_dies(
    env: &Env,
    dir: &TestDir,
    args: &[&str],
    kill: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let migrated = std::thread::scope(|s| -> Result<common::AgentRun> {
        let migration = s.spawn(|| env.migrate_with(dir, args));
        let killed = kill();
        let migrated = migration
            .join()
            .map_err(|_| anyhow::anyhow!("the migration thread panicked"))?;
        killed?;
        migrated
    })?;
    ensure!(
        migrated.check().is_err(),
        "the migration succeeded although B's agent was killed"
    );
    Ok(())
}

/// B's agent creates the container when the offer arrives, long before
/// the freeze; killed during the rounds (slowed to 256 KB/s) and started
/// again, it deletes that container, which never ran: the migration
/// fails, the container counts on on A, and B's runtime no longer knows
/// it.
fn created_container_of_a_dead_destination_goes(dir: &TestDir) -> Result<()> {
    let hosts = Hosts {
        lasting: true,
        restart_agents: true,
        ..Hosts::default()
    };
    let env = Env::prepare_on(dir, "created", (Kind::Counter, "runc"), &hosts)?;
    env.run_kind(Kind::Counter)?;
    let (bed, id, counter) = (&env.bed, &env.id, &env.counter);
    wait_lines(counter, 3)?;
    let args = ["--mode", "precopy", "--bandwidth-limit", "256K"];
    migrate_while_b_dies(&env, dir, &args, || {
        common::testbed::wait_for(&bed.agent_log_path(Host::B), "offer accepted")?;
        ensure!(
            runc_list(bed, Host::B)?.contains(id.as_str()),
            "B did not create the container at the offer"
        );
        bed.kill_agent(Host::B)
    })?;
    // B's agent is started again a second later and settles what its
    // dead run left.
    let deadline = Instant::now() + Duration::from_secs(20);
    while runc_list(bed, Host::B)?.contains(id.as_str()) {
        ensure!(
            Instant::now() < deadline,
            "B's agent started again kept the container it created:\n{}\nagent B:\n{}",
            runc_list(bed, Host::B)?,
            bed.agent_log(Host::B)
        );
        sleep(Duration::from_millis(100));
    }
    ensure!(
        running_on(bed, Host::A, id)?,
        "the container does not run on A"
    );
    counts_on(counter, 3)?;
    Ok(())
}

#[test]
fn container_created_for_a_destination_killed_during_the_rounds_is_deleted() {
    runc_test("container_created_dest_killed", |dir| {
        created_container_of_a_dead_destination_goes(dir)
    });
}

/// The counter in a network namespace of its own, moved in post-copy mode:
/// B's agent runs its network hook, and the container there has the
/// address recorded on A.
#[test]
fn container_with_its_own_network_namespace_migrates() {
    runc_test("container_netns", |dir| {
        container_migrates(dir, "postcopy", Kind::CounterOwnNet)
    });
}

/// Seed scenario 2 as a container: the Node.js request counter listens on
/// the container's own address; it answers N on host A, and N+1 at the
/// same address on host B after the migration in `mode`.
fn node_container_migrates(dir: &TestDir, mode: &str) -> Result<()> {
    let env = Env::start_kind(dir, &format!("node-{mode}"), Kind::Node)?;
    let (bed, id) = (&env.bed, &env.id);
    let log = env.counter.with_file_name("node.log");
    common::testbed::wait_for(&log, "READY")?;
    let mut n = 0;
    for _ in 0..3 {
        n = bed.http_get(Host::A, NODE_URL)?.parse::<u64>()?;
    }
    ensure!(n == 3, "the server on A counted {n} requests, not 3");
    if mode == "precopy" {
        // Its network hook counts: the dry run sees its own addresses.
        env.dry_run(dir, "container_with_network")?;
    }
    let migrated = env.migrate(dir, mode)?;
    if let Err(e) = migrated.check() {
        bail!(
            "{e}\nagent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        );
    }
    let after = bed.http_get(Host::B, NODE_URL)?;
    ensure!(
        after == (n + 1).to_string(),
        "the server on B answered {after:?}, not {}",
        n + 1
    );
    let list_b = runc_list(bed, Host::B)?;
    ensure!(
        list_b
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("running")),
        "runc list on B does not show {id} running:\n{list_b}"
    );
    let (ok, out) = bed.host_exec(Host::B, &["runc", "delete", "-f", id])?;
    ensure!(ok, "runc delete -f on B failed: {out}");
    Ok(())
}

#[test]
fn node_counter_container_keeps_counting_at_its_address() {
    runc_test("container_node", |dir| {
        node_container_migrates(dir, "precopy")
    });
}

/// The same in post-copy mode: node's heap follows from A after it runs
/// on B.
#[test]
fn node_counter_container_keeps_counting_after_postcopy() {
    runc_test("container_node_postcopy", |dir| {
        node_container_migrates(dir, "postcopy")
    });
}

/// Starts `n` clients on host C, each with one TCP connection to the
/// container's [`LINK_ADDR`], making `exchange` every `interval`.
fn clients_on_c(
    bed: &Testbed,
    exchange: Exchange,
    n: usize,
    interval: Duration,
) -> Result<Vec<KeepAliveClient>> {
    (0..n)
        .map(|_| {
            KeepAliveClient::start(
                &bed.netns_path(Host::C),
                LINK_ADDR.parse()?,
                exchange,
                interval,
            )
        })
        .collect()
}

/// Moves the container from A to B in `mode` while `clients` keep
/// exchanging with it (300 ms before and after too), then stops them;
/// prints each client's answers and longest gap between two (not
/// asserted) with the agent's downtime line, and returns their reports
/// (not checked yet). A failed migration fails with both agents' logs.
fn migrate_under_clients(
    env: &Env,
    dir: &TestDir,
    mode: &str,
    clients: Vec<KeepAliveClient>,
) -> Result<Vec<KeepAliveReport>> {
    let bed = &env.bed;
    sleep(Duration::from_millis(300));
    let migrated = env.migrate(dir, mode);
    sleep(Duration::from_millis(300));
    let reports = clients
        .into_iter()
        .map(KeepAliveClient::stop)
        .collect::<Result<Vec<_>>>()?;
    let migrated = match migrated.and_then(|m| m.check().map(|()| m)) {
        Ok(m) => m,
        Err(e) => bail!(
            "{e}\nagent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        ),
    };
    let downtime = migrated
        .stdout
        .lines()
        .find(|l| l.contains("downtime"))
        .unwrap_or("(no downtime line)");
    for report in &reports {
        eprintln!(
            "{mode}: {:?}: {} answers on one connection from {:?}, longest gap between answers {:?}",
            report.exchange,
            report.answers.len(),
            report.local,
            report.longest_gap(),
        );
    }
    eprintln!("{mode}: the agent: {}", downtime.trim());
    ensure!(
        running_on(bed, Host::B, &env.id)?,
        "runc list on B does not show {} running (the clients' errors: {:?})",
        env.id,
        reports
            .iter()
            .filter_map(|r| r.error.as_deref())
            .collect::<Vec<_>>()
    );
    Ok(reports)
}

/// Issue 14's live case: the Node.js counter container on the link, a
/// keep-alive client on host C sending a GET every 10 ms over one TCP
/// connection while the container moves from A to B in `mode`. The client
/// sees no error, no reset, every count once and in order, the same local
/// port throughout; C's neighbour entry for the address is B's (B announced
/// it); the server's next count (a new connection from C) follows the
/// client's last. The longest gap between answers is printed,
/// not asserted.
fn node_keeps_its_client(dir: &TestDir, mode: &str) -> Result<()> {
    let env = Env::start_kind(dir, &format!("live-{mode}"), Kind::NodeOnLink)?;
    let bed = &env.bed;
    common::testbed::wait_for(&env.counter.with_file_name("node.log"), "READY")?;
    let clients = clients_on_c(bed, Exchange::Http, 1, Duration::from_millis(10))?;
    let reports = migrate_under_clients(&env, dir, mode, clients)?;
    // B announced the address (gratuitous ARP): C sends to B at once,
    // where without it the client's own traffic, forwarded by A, would
    // keep C's entry on A.
    let (neighbour, mac_b) = (bed.neighbour(Host::C, LINK_IP)?, bed.link_mac(Host::B)?);
    ensure!(
        neighbour.as_deref() == Some(mac_b.as_str()),
        "C reaches {LINK_IP} at {neighbour:?}, not at B's {mac_b} (A's is {})",
        bed.link_mac(Host::A)?
    );
    reports[0].check(40)?;
    let last = reports[0].answers.last().map_or(0, |a| a.0);
    let next = bed.http_get(Host::C, &format!("http://{LINK_ADDR}/"))?;
    ensure!(
        next == (last + 1).to_string(),
        "the server on B answered {next:?} after the client's last count {last}"
    );
    Ok(())
}

#[test]
fn node_container_keeps_its_keepalive_client_in_precopy() {
    runc_test("container_live_precopy", |dir| {
        node_keeps_its_client(dir, "precopy")
    });
}

#[test]
fn node_container_keeps_its_keepalive_client_in_postcopy() {
    runc_test("container_live_postcopy", |dir| {
        node_keeps_its_client(dir, "postcopy")
    });
}

/// Issue 14's redis case: Debian's redis-server in a container on the link,
/// four clients on host C, each with one connection, sending an INCR of
/// one key every 10 ms while the container moves from A to B in `mode`.
/// No client sees an error or a reset, each sees the value go up on the
/// same connection, and a new connection's INCR on B gives exactly one
/// more than every INCR answered: none lost, none applied twice.
fn redis_keeps_its_clients(dir: &TestDir, mode: &str) -> Result<()> {
    let env = Env::start_kind(dir, &format!("redis-{mode}"), Kind::RedisOnLink)?;
    let bed = &env.bed;
    common::testbed::wait_for(
        &env.counter.with_file_name("workload.log"),
        "Ready to accept connections",
    )?;
    let clients = clients_on_c(bed, Exchange::RedisIncr, 4, Duration::from_millis(10))?;
    let reports = migrate_under_clients(&env, dir, mode, clients)?;
    // Four clients share redis's event loop: fewer answers each than
    // the node client's 40.
    for report in &reports {
        report.check(20)?;
    }
    let answered: usize = reports.iter().map(|r| r.answers.len()).sum();
    let last = clients_on_c(bed, Exchange::RedisIncr, 1, Duration::from_secs(1))?
        .remove(0)
        .stop()?;
    let next = last.answers.first().map(|a| a.0);
    ensure!(
        next == Some(answered as u64 + 1),
        "redis on B counted {next:?} after {answered} INCRs answered: not one more"
    );
    Ok(())
}

#[test]
fn redis_container_keeps_its_clients_in_precopy() {
    runc_test("container_redis_precopy", |dir| {
        redis_keeps_its_clients(dir, "precopy")
    });
}

#[test]
fn redis_container_keeps_its_clients_in_postcopy() {
    runc_test("container_redis_postcopy", |dir| {
        redis_keeps_its_clients(dir, "postcopy")
    });
}

/// SIGTERMs tests/workloads/tcp_stream.c in the container on `host` and
/// waits for its verdict: PASS if every counter the client sent came in
/// order.
fn stream_passes(env: &Env, host: Host) -> Result<()> {
    let (ok, out) = env
        .bed
        .host_exec(host, &["runc", "kill", &env.id, "TERM"])?;
    ensure!(ok, "runc kill on {host:?} failed: {out}");
    let log = env.counter.with_file_name("workload.log");
    let out = common::testbed::wait_for(&log, "PASS").or_else(|e| {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("FAIL") {
            bail!("the stream's workload failed: {text}")
        }
        Err(e)
    })?;
    ensure!(
        out == "READY\nPASS\n",
        "the stream's workload printed {out:?}"
    );
    Ok(())
}

/// Issue 14's stream case: tests/workloads/tcp_stream.c in a container on
/// the link sends its counter every millisecond to a client on host C,
/// which sends its own back, while the container moves from A to B in
/// `mode`. The client reads every counter once and in order on the same
/// connection, with no error; the workload on B checks the client's
/// counters the same way.
fn stream_keeps_its_client(dir: &TestDir, mode: &str) -> Result<()> {
    let env = Env::start_kind(dir, &format!("stream-{mode}"), Kind::StreamOnLink(0))?;
    common::testbed::wait_for(&env.counter.with_file_name("workload.log"), "READY")?;
    let clients = clients_on_c(&env.bed, Exchange::Stream, 1, Duration::ZERO)?;
    let reports = migrate_under_clients(&env, dir, mode, clients)?;
    reports[0].check(200)?;
    stream_passes(&env, Host::B)
}

#[test]
fn stream_container_keeps_its_client_in_precopy() {
    runc_test("container_stream_precopy", |dir| {
        stream_keeps_its_client(dir, "precopy")
    });
}

#[test]
fn stream_container_keeps_its_client_in_postcopy() {
    runc_test("container_stream_postcopy", |dir| {
        stream_keeps_its_client(dir, "postcopy")
    });
}

/// Issue 14's failure case: the stream container rewrites 128 MiB every
/// second, so that a pre-copy limited to one round at 32 MB/s spends
/// seconds sending memory once frozen; B's agent is killed then. The
/// migration fails, the container resumes on A with its connection: the
/// client on C sees no error and every counter in order, and the workload
/// on A gets every counter of the client.
fn stream_survives_a_dead_destination(dir: &TestDir) -> Result<()> {
    let env = Env::start_kind(dir, "stream-dest-killed", Kind::StreamOnLink(128))?;
    let bed = &env.bed;
    common::testbed::wait_for(&env.counter.with_file_name("workload.log"), "READY")?;
    let client = clients_on_c(bed, Exchange::Stream, 1, Duration::ZERO)?.remove(0);
    let args = [
        "--mode",
        "precopy",
        "--max-rounds",
        "1",
        "--bandwidth-limit",
        "32M",
    ];
    migrate_while_b_dies(&env, dir, &args, || {
        common::testbed::wait_for(&bed.agent_log_path(Host::A), "switching over")?;
        bed.kill_agent(Host::B)
    })?;
    sleep(Duration::from_millis(500));
    let report = client.stop()?;
    eprintln!(
        "destination killed: {} answers on one connection from {:?}, longest gap between answers {:?}",
        report.answers.len(),
        report.local,
        report.longest_gap()
    );
    report.check(200)?;
    ensure!(
        running_on(bed, Host::A, &env.id)?,
        "the container does not run on A after the failed migration"
    );
    stream_passes(&env, Host::A)
}

#[test]
fn stream_container_keeps_its_client_when_the_destination_dies_frozen() {
    runc_test(
        "container_stream_dest_killed",
        stream_survives_a_dead_destination,
    );
}

/// A container without CAP_SYS_PTRACE cannot be restored with lazy memory:
/// a post-copy migration is refused before anything is frozen, naming the
/// capability, and the container counts on on A; B has nothing.
fn postcopy_without_ptrace_is_refused(dir: &TestDir) -> Result<()> {
    let env = Env::start_kind(dir, "noptrace", Kind::CounterWithoutPtrace)?;
    let counter = &env.counter;
    wait_lines(counter, 2)?;
    let refused = env.migrate(dir, "postcopy")?;
    let why = refused.refusal()?;
    ensure!(
        why.contains("CAP_SYS_PTRACE"),
        "the refusal does not name CAP_SYS_PTRACE: {why}"
    );
    env.still_on_a()?;
    counts_on(counter, 2)?;
    Ok(())
}

#[test]
fn postcopy_of_a_container_without_cap_sys_ptrace_is_refused() {
    runc_test("container_noptrace", postcopy_without_ptrace_is_refused);
}

/// The lines of a file of numbers written one per line.
fn numbers(path: &Path) -> Result<Vec<u64>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|l| l.trim().parse().with_context(|| format!("line {l:?}")))
        .collect()
}

/// With --sync-rootfs, what the container wrote in its rootfs on A (a new
/// file, an appended one, a removal, and a log it appends to every second,
/// up to the freeze) is in B's own copy of the bundle after the migration,
/// and the container goes on appending there with no gap.
fn rootfs_follows(dir: &TestDir) -> Result<()> {
    let env = Env::prepare(dir, "rootfs")?;
    let rootfs = env.bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("etc"))?;
    fs::write(rootfs.join("etc/greeting"), "hello\n")?;
    fs::write(rootfs.join("doomed"), "to be removed\n")?;
    let config_path = env.bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(&config_path)?)?;
    config["root"]["readonly"] = false.into();
    let script = "echo written-by-container > /made.txt; echo more >> /etc/greeting; rm /doomed; \
        exec >>/out/counter.txt 2>&1 </dev/null; i=0; \
        while true; do echo $i; echo $i >> /log.txt; i=$(expr $i + 1); sleep 1; done";
    config["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let copy = env.copy_bundle_to_b()?;
    env.run_on_a()?;
    wait_lines(&env.counter, 3)?;

    // Slow pages: the log grows between the first rootfs pass and the
    // freeze, so only the frozen pass can bring its last lines.
    let migrated = env.migrate_with(
        dir,
        &["--sync-rootfs", "--json", "--bandwidth-limit", "32K"],
    )?;
    let stats = match migrated.json() {
        Ok(v) => v,
        Err(e) => bail!(
            "{e}\nagent A:\n{}\nagent B:\n{}",
            env.bed.agent_log(Host::A),
            env.bed.agent_log(Host::B)
        ),
    };
    ensure!(
        stats["rootfs"]["precopy"]["changes"].as_u64() >= Some(3),
        "the first rootfs pass sent too little: {stats}"
    );
    ensure!(
        stats["rootfs"]["frozen"]["changes"].as_u64() >= Some(1),
        "the frozen rootfs pass sent nothing although log.txt grew: {stats}"
    );
    eprintln!("rootfs sync: {}", stats["rootfs"]);
    let on_b = copy.join("rootfs");
    ensure!(
        fs::read_to_string(on_b.join("made.txt"))? == "written-by-container\n",
        "made.txt did not arrive on B"
    );
    ensure!(
        fs::read_to_string(on_b.join("etc/greeting"))? == "hello\nmore\n",
        "the appended greeting did not arrive on B"
    );
    ensure!(
        !on_b.join("doomed").exists(),
        "the removed file is still on B"
    );
    // A's rootfs stopped where the container left it; the log goes on on
    // B with no gap: the lines written on A after the first pass came
    // with the frozen pass.
    let log_a = numbers(&rootfs.join("log.txt"))?;
    let after = wait_lines(&env.counter, log_a.len() + 2)?;
    let log = numbers(&on_b.join("log.txt"))?;
    ensure!(
        log.len() > log_a.len() && log.len() + 1 >= after.len(),
        "B's log.txt has {} lines, A's {}, the counter {}",
        log.len(),
        log_a.len(),
        after.len()
    );
    for (i, v) in log.iter().enumerate() {
        ensure!(*v == i as u64, "line {i} of B's log.txt is {v} ({log:?})");
    }
    Ok(())
}

#[test]
fn container_rootfs_changes_follow_it_with_sync_rootfs() {
    runc_test("container_rootfs_sync", rootfs_follows);
}

/// B lacks the bundle, then its runc cannot run: each migration is
/// refused by B before anything is frozen, and the container counts on,
/// on A.
fn refused_before_freezing(dir: &TestDir) -> Result<()> {
    let env = Env::start(dir, "refused")?;
    wait_lines(&env.counter, 2)?;
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty)?;
    env.bind_on_b(&empty, &env.bundle)?;
    let no_bundle = env.migrate(dir, "precopy")?;
    let why = no_bundle.refusal()?;
    ensure!(
        why.contains("refused") && why.contains("no config.json"),
        "a migration to a host without the bundle was not refused up front: {why}"
    );
    env.still_on_a()?;
    let (ok, out) = env
        .bed
        .host_exec(Host::B, &["umount", path_str(&env.bundle)?])?;
    ensure!(ok, "umount on B failed: {out}");
    let runc = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v runc"])
            .output()?
            .stdout,
    )?;
    env.bind_on_b(Path::new("/dev/null"), Path::new(runc.trim()))?;
    let no_runc = env.migrate(dir, "precopy")?;
    let why = no_runc.refusal()?;
    ensure!(
        why.contains("refused") && why.contains("runtime runc cannot run"),
        "a migration to a host whose runc cannot run was not refused up front: {why}"
    );
    let (ok, out) = env.bed.host_exec(Host::B, &["umount", runc.trim()])?;
    ensure!(ok, "umount on B failed: {out}");
    env.still_on_a()?;
    counts_on(&env.counter, 2)?;
    Ok(())
}

#[test]
fn missing_bundle_or_runtime_on_the_destination_is_refused_before_freezing() {
    runc_test("container_refused", refused_before_freezing);
}

/// Without CAP_CHECKPOINT_RESTORE and CAP_SYS_ADMIN, a container
/// checkpoint is refused at once, naming what is missing.
#[test]
fn container_checkpoint_without_capabilities_is_refused() {
    run_test("container_caps", |dir| {
        let bin = common::agent_bin()?;
        let image = dir.path().join("image");
        let cmd = format!(
            "{} checkpoint --container ferry-nonexistent --dir {}",
            bin.display(),
            image.display()
        );
        let out = Command::new("capsh")
            .args([
                "--drop=cap_checkpoint_restore,cap_sys_admin",
                "--",
                "-c",
                &cmd,
            ])
            .output()
            .context("running capsh (libcap2-bin)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN)"),
            "expected a refusal naming the capabilities, got: {stderr}"
        );
        Ok(())
    });
}

/// Another counter container on host A, from a bundle of its own;
/// deleted on both hosts when dropped.
struct Extra<'a> {
    bed: &'a Testbed,
    id: String,
    counter: PathBuf,
}

impl Drop for Extra<'_> {
    fn drop(&mut self) {
        for host in [Host::A, Host::B] {
            let _ = self
                .bed
                .host_exec(host, &["runc", "delete", "-f", &self.id]);
        }
    }
}

impl Env {
    fn add_container(&self, name: &str) -> Result<Extra<'_>> {
        let bundle = self.bundle.with_file_name(format!("bundle-{name}"));
        let out = self.bundle.with_file_name(format!("out-{name}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/container-bundle.sh");
        // A cgroup of its own (relative: under the host's).
        let cgroup = format!("ferry-counter-{name}");
        let made = Command::new("bash")
            .arg(&script)
            .args([path_str(&bundle)?, path_str(&out)?, &cgroup])
            .output()?;
        ensure!(
            made.status.success(),
            "container-bundle.sh failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let extra = Extra {
            bed: &self.bed,
            id: format!("{}-{name}", self.id),
            counter: out.join("counter.txt"),
        };
        let run = format!(
            "{} exec runc run -d --bundle {} {}",
            self.cgroups_a.enter_script(),
            bundle.display(),
            extra.id
        );
        let (ok, out) = self.bed.host_exec(Host::A, &["sh", "-c", &run])?;
        ensure!(ok, "runc run of {} on host A failed: {out}", extra.id);
        Ok(extra)
    }
}

fn running_on(bed: &Testbed, host: Host, id: &str) -> Result<bool> {
    Ok(runc_list(bed, host)?
        .lines()
        .any(|l| l.split_whitespace().next() == Some(id) && l.contains("running")))
}

/// `drain` moves every running container of A to B, one after the other,
/// and goes on after one that cannot move (a process started beside its
/// init with `runc exec`): that one keeps running on A, the summary names
/// it, and the exit code says a container failed.
fn drain_moves_every_container(dir: &TestDir) -> Result<()> {
    let env = Env::start(dir, "drain")?;
    let second = env.add_container("second")?;
    let stuck = env.add_container("stuck")?;
    let bed = &env.bed;
    let (ok, out) = bed.host_exec(Host::A, &["runc", "exec", "-d", &stuck.id, "sleep", "1000"])?;
    ensure!(ok, "runc exec on A failed: {out}");
    let before = wait_lines(&env.counter, 2)?.len();
    let before_second = wait_lines(&second.counter, 2)?.len();
    let sock = bed.control_socket(Host::A);
    let drained = bed.agent_in(
        Host::A,
        &[
            "drain",
            "--to",
            HOST_B,
            "--control-socket",
            path_str(&sock)?,
            "--json",
        ],
    )?;
    ensure!(
        !drained.status.success(),
        "drain succeeded although {} cannot move: {}",
        stuck.id,
        drained.stdout
    );
    let summary: serde_json::Value = serde_json::from_str(drained.stdout.trim())
        .with_context(|| format!("drain printed {}{}", drained.stdout, drained.stderr))?;
    ensure!(
        summary["migrated"] == 2 && summary["failed"] == 1,
        "unexpected drain summary: {summary}\nagent A:\n{}",
        bed.agent_log(Host::A)
    );
    for c in summary["containers"].as_array().into_iter().flatten() {
        let failed = c["id"] == stuck.id.as_str();
        ensure!(
            c["ok"] == !failed && (failed || c["downtime_ms"].as_f64().is_some()),
            "unexpected entry {c}"
        );
        if failed {
            let error = c["error"].as_str().unwrap_or_default();
            ensure!(
                error.contains("runc exec") || error.contains("exec"),
                "{error}"
            );
        }
    }
    for id in [&env.id, &second.id] {
        ensure!(running_on(bed, Host::B, id)?, "{id} does not run on B");
        ensure!(!running_on(bed, Host::A, id)?, "{id} still runs on A");
    }
    ensure!(running_on(bed, Host::A, &stuck.id)?, "{} left A", stuck.id);
    for (counter, n) in [(&env.counter, before), (&second.counter, before_second)] {
        let after = wait_lines(counter, n + 3)?;
        for (i, v) in after.iter().enumerate() {
            ensure!(*v == i as u64, "line {i} of {} is {v}", counter.display());
        }
    }
    Ok(())
}

#[test]
fn drain_moves_every_running_container_and_reports_each() {
    runc_test("container_drain", drain_moves_every_container);
}

#[test]
fn busybox_counter_crun_container_migrates_between_hosts() {
    let have_crun = Command::new("crun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_crun {
        eprintln!("SKIPPED: crun is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test("crun_container_migrates", |dir| {
        migrates_with(dir, "crun", "precopy", Kind::Counter)
    });
}

/// Makes the process of the bundle at `bundle` `sh -c script`.
fn set_script(bundle: &Path, script: &str) -> Result<()> {
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_str(&fs::read_to_string(&config)?)?;
    spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    fs::write(&config, serde_json::to_string(&spec)?)?;
    Ok(())
}

/// A container started by the test with `runc run -d` on a runc state
/// directory of the test's own (no testbed), its cgroups under
/// `cgroups`; deleted when dropped.
struct LocalContainer {
    root: PathBuf,
    bundle: PathBuf,
    id: String,
    cgroups: HostCgroups,
}

impl Drop for LocalContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "-f", &self.id])
            .output();
    }
}

impl LocalContainer {
    /// The counter bundle, its process replaced by `sh -c script`.
    fn prepare(dir: &TestDir, name: &str, script: &str) -> Result<Self> {
        let id = format!("ferry-{name}-{}", std::process::id());
        let cgroups = HostCgroups::create(&format!("{id}-host"))?;
        let bundle = dir.path().join("bundle");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let made = Command::new("bash")
            .arg(repo.join("scripts/container-bundle.sh"))
            .args([
                path_str(&bundle)?,
                path_str(&dir.path().join("out"))?,
                "ferry-counter",
            ])
            .output()?;
        ensure!(
            made.status.success(),
            "container-bundle.sh failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        set_script(&bundle, script)?;
        let root = dir.path().join("runc-root");
        fs::create_dir_all(&root)?;
        Ok(LocalContainer {
            root,
            bundle,
            id,
            cgroups,
        })
    }

    /// A command that runs `program ARGS` inside the container's host
    /// cgroups (where runc puts the container's relative cgroups).
    fn in_cgroups(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "{} exec \"$0\" \"$@\"",
                self.cgroups.enter_script()
            ))
            .arg(program)
            .args(args);
        command
    }

    /// `runc run -d` of the container, with `stdio` as the container's
    /// stdin, stdout and stderr.
    fn run(&self, stdio: [std::process::Stdio; 3]) -> Result<std::process::Child> {
        let [stdin, stdout, stderr] = stdio;
        let root = path_str(&self.root)?;
        let bundle = path_str(&self.bundle)?;
        self.in_cgroups(
            Path::new("runc"),
            &["--root", root, "run", "-d", "--bundle", bundle, &self.id],
        )
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("spawning runc run")
    }
}

/// The lines read from a pipe until its end of file, by a thread of their
/// own.
struct PipeLines {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl PipeLines {
    fn read(pipe: impl std::io::Read + Send + 'static) -> Self {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                into.lock().unwrap().push(line);
            }
        });
        PipeLines { lines, reader }
    }

    /// The numbers after `prefix` of the lines that are `prefix` and a
    /// number (migrate-agent's own messages share the pipes).
    fn counts(&self, prefix: &str) -> Vec<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .collect()
    }

    /// Waits until at least `n` counts after `prefix` have arrived.
    fn wait_counts(&self, prefix: &str, n: usize) -> Result<Vec<u64>> {
        let start = Instant::now();
        loop {
            let counts = self.counts(prefix);
            if counts.len() >= n {
                return Ok(counts);
            }
            ensure!(
                start.elapsed() < WAIT,
                "only {counts:?} after {WAIT:?}; read: {:?}",
                self.lines.lock().unwrap()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the end of file (every writer gone); returns every line.
    fn finish(self) -> Result<Vec<String>> {
        let start = Instant::now();
        while !self.reader.is_finished() {
            ensure!(
                start.elapsed() < WAIT,
                "the pipe still has a writer after {WAIT:?}"
            );
            sleep(Duration::from_millis(50));
        }
        let _ = self.reader.join();
        let lines = self.lines.lock().unwrap().clone();
        Ok(lines)
    }
}

/// The container's stdout and stderr as the shell that runs it (as
/// containerd's shim) holds them: the read ends of two pipes.
fn piped_stdio() -> [std::process::Stdio; 3] {
    use std::process::Stdio;
    [Stdio::null(), Stdio::piped(), Stdio::piped()]
}

/// The init counts on its stdout (fd 1, with a dup of it at fd 5), and a
/// child counts on its stderr, through its inherited fd 2 and a dup at
/// fd 6: every fd on the two pipes the test holds.
const STDIO_COUNTERS: &str = "exec 5>&1; \
    (exec 6>&2; j=0; while true; do echo e$j >&6; j=$((j+1)); sleep 0.2; done) & \
    i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done";

/// The container's stdio pipes, held by the test as a shim holds them,
/// follow a local checkpoint and restore: `restore --container` gives the
/// new container its own stdio (pipes the test holds anew), and both
/// counts continue there with no gap or repeat.
fn stdio_follows_restore(dir: &TestDir) -> Result<()> {
    let c = LocalContainer::prepare(dir, "stdio", STDIO_COUNTERS)?;
    let mut run = c.run(piped_stdio())?;
    let (old_out, old_err) = (
        PipeLines::read(run.stdout.take().context("runc's stdout")?),
        PipeLines::read(run.stderr.take().context("runc's stderr")?),
    );
    ensure!(run.wait()?.success(), "runc run -d failed");
    old_out.wait_counts("", 3)?;
    old_err.wait_counts("e", 3)?;
    let image = dir.image();
    let root = path_str(&c.root)?;
    let checkpointed = agent(
        dir,
        &[
            "checkpoint",
            "--container",
            &c.id,
            "--runtime-root",
            root,
            "--dir",
            path_str(&image)?,
        ],
    )?;
    checkpointed.check()?;
    // The checkpointed processes are gone: the old pipes end.
    let before_out: Vec<String> = old_out.finish()?;
    let before_err: Vec<String> = old_err.finish()?;
    let shown = agent(dir, &["image", "show", path_str(&image)?])?;
    shown.check()?;
    ensure!(
        shown.stdout.contains("the container's stdio fd 1"),
        "image show does not name the external stdio:\n{}",
        shown.stdout
    );
    let mut restore = c
        .in_cgroups(
            &common::agent_bin()?,
            &[
                "restore",
                "--container",
                &c.id,
                "--runtime-root",
                root,
                "--bundle",
                path_str(&c.bundle)?,
                "--dir",
                path_str(&image)?,
            ],
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let (new_out, new_err) = (
        PipeLines::read(restore.stdout.take().context("the restore's stdout")?),
        PipeLines::read(restore.stderr.take().context("the restore's stderr")?),
    );
    let restored = restore.wait()?;
    ensure!(
        restored.success(),
        "restore --container failed: {:?} {:?}",
        new_out.lines.lock().unwrap(),
        new_err.lines.lock().unwrap()
    );
    let count = |lines: &[String], prefix: &str| -> Vec<u64> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .collect()
    };
    for (before, new, prefix) in [
        (count(&before_out, ""), &new_out, ""),
        (count(&before_err, "e"), &new_err, "e"),
    ] {
        let after = new.wait_counts(prefix, 3)?;
        let all: Vec<u64> = before.iter().chain(&after).copied().collect();
        for (i, v) in all.iter().enumerate() {
            ensure!(
                *v == i as u64,
                "count {i} is {v}: {before:?} before the checkpoint, {after:?} after the restore"
            );
        }
    }
    let state = Command::new("runc")
        .args(["--root", root, "state", &c.id])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&state.stdout).contains("\"running\""),
        "runc does not see the restored container running: {}",
        String::from_utf8_lossy(&state.stdout)
    );
    Ok(())
}

#[test]
fn container_stdio_pipes_follow_checkpoint_and_restore() {
    runc_test("container_stdio", stdio_follows_restore);
}

/// A pipe held outside the tree that is not the container's stdio (fd 3,
/// passed with --preserve-fds) is still refused, and the container keeps
/// running.
fn other_pipe_refused(dir: &TestDir) -> Result<()> {
    let c = LocalContainer::prepare(
        dir,
        "stdio-refused",
        "i=0; while true; do echo $i >&3; i=$((i+1)); sleep 0.2; done",
    )?;
    let root = path_str(&c.root)?;
    // fd 3 of runc (and of the container) is the test's pipe; its stdio
    // is /dev/null.
    let mut run = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} exec 3>&1 >/dev/null; exec runc --root {root} run -d --preserve-fds 1 --bundle {} {}",
            c.cgroups.enter_script(),
            path_str(&c.bundle)?,
            c.id
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let held = PipeLines::read(run.stdout.take().context("the pipe")?);
    ensure!(run.wait()?.success(), "runc run -d failed");
    // Its process runs (runc's init has exec'd it).
    held.wait_counts("", 2)?;
    let refused = agent(
        dir,
        &[
            "checkpoint",
            "--container",
            &c.id,
            "--runtime-root",
            root,
            "--dir",
            path_str(&dir.image())?,
        ],
    )?;
    let stderr = refused.refusal()?;
    ensure!(
        stderr.contains(
            "holds fd 3, a pipe whose read end is held outside the checkpointed process tree"
        ),
        "unexpected refusal: {stderr}"
    );
    let state = Command::new("runc")
        .args(["--root", root, "state", &c.id])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&state.stdout).contains("\"running\""),
        "the container does not run any more: {}",
        String::from_utf8_lossy(&state.stdout)
    );
    drop(c);
    held.finish()?;
    Ok(())
}

#[test]
fn container_pipe_held_outside_that_is_not_its_stdio_is_refused() {
    runc_test("container_stdio_refused", other_pipe_refused);
}

/// A live migration between agents refuses, before freezing, a container
/// whose stdout is a pipe held outside it (nobody would hold it on the
/// destination), naming the fd and the stream; the container keeps
/// running on A.
fn migrate_refuses_external_stdio(dir: &TestDir) -> Result<()> {
    let env = Env::prepare(dir, "stdio-migrate")?;
    set_script(
        &env.bundle,
        "i=0; while true; do echo $i; echo $i >>/out/counter.txt; i=$((i+1)); sleep 0.2; done",
    )?;
    // cat, outside the container, holds the read end of its stdout.
    let run = format!(
        "{} runc run -d --bundle {} {} </dev/null 2>/dev/null | cat >/dev/null 2>&1 &",
        env.cgroups_a.enter_script(),
        env.bundle.display(),
        env.id
    );
    let (ok, out) = env.bed.host_exec(Host::A, &["sh", "-c", &run])?;
    ensure!(ok, "runc run on host A failed: {out}");
    wait_lines(&env.counter, 2)?;
    let migrated = env.migrate(dir, "precopy")?;
    let refusal = migrated.refusal()?;
    ensure!(
        refusal.contains(
            "holds fd 1, a pipe whose read end is held outside the checkpointed process tree"
        ) && refusal.contains("the container's stdout"),
        "unexpected refusal: {refusal}"
    );
    env.still_on_a()?;
    counts_on(&env.counter, 2)?;
    Ok(())
}

#[test]
fn container_stdio_pipe_is_refused_by_a_live_migration() {
    runc_test("container_stdio_migrate", migrate_refuses_external_stdio);
}
