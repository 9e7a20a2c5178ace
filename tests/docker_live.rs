//! Live migration between two Docker hosts (issue 15): a dockerd in each
//! host of the testbed (tests/common/docker.rs), ferry-runc their default
//! runtime, and `migrate-agent migrate --docker NAME` moves the seed's
//! busybox counter from A's dockerd to B's with Docker's defaults (no
//! added capability, Docker's seccomp profile). On B `docker ps` shows it
//! Up, `docker logs` counts on, `docker exec` and `docker stop` work; on
//! A it is gone (or stopped with --keep-stopped). Refusals (image missing
//! on B, name taken on B, dockerd unreachable) leave the source
//! untouched.

mod common;

use anyhow::{ensure, Context, Result};
use common::docker::{docker_test, DockerHost};
use common::testbed::{Host, Testbed, HOST_B};
use common::{agent, path_str, AgentRun, TestDir};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The seed's counter, verbatim.
const LOOPER: &str = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done";

/// The testbed and a dockerd in each of its hosts, an image (busybox, or
/// the Node.js counter's) imported into A's (and B's, when asked).
/// Dropped in order: the dockerds before the testbed.
struct TwoDockers {
    a: DockerHost,
    b: DockerHost,
    bed: Testbed,
}

/// The images the tests run.
#[derive(Clone, Copy)]
enum Image {
    /// busybox, for the seed's counter.
    Busybox,
    /// node-counter: the Node.js request counter.
    Node,
}

impl Image {
    /// The image's name and the tarball its import leaves in the work
    /// directory.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Image::Busybox => ("busybox", "busybox.tar"),
            Image::Node => ("node-counter", "node.tar"),
        }
    }

    /// Builds the image in `work` and imports it into `host`.
    fn import(self, host: &DockerHost, work: &std::path::Path) -> Result<()> {
        let (name, _) = self.names();
        match self {
            Image::Busybox => host.import_busybox(work, name),
            Image::Node => host.import_node(work, name),
        }
    }

    /// Imports the image built in `work` into another host: the same
    /// files, as hosts pulling one image have.
    fn import_again(self, host: &DockerHost, work: &std::path::Path) -> Result<()> {
        let (name, tar) = self.names();
        host.import_tar(&work.join(tar), name)
    }
}

/// Host A's dockerd in the testbed, whatever B has: what a migration
/// from A needs.
struct TwoDockersRef<'a> {
    a: &'a DockerHost,
    bed: &'a Testbed,
}

impl TwoDockers {
    fn up(dir: &TestDir, image: Image, on_b: bool) -> Result<Self> {
        let bed = Testbed::up(dir)?;
        let a = DockerHost::in_testbed(&bed, Host::A)?;
        let b = DockerHost::in_testbed(&bed, Host::B)?;
        image.import(&a, dir.path())?;
        if on_b {
            image.import_again(&b, dir.path())?;
        }
        Ok(TwoDockers { a, b, bed })
    }

    fn source(&self) -> TwoDockersRef<'_> {
        TwoDockersRef {
            a: &self.a,
            bed: &self.bed,
        }
    }

    /// The agents' logs, for a failure's message.
    fn logs(&self) -> String {
        format!(
            "agent A's log:\n{}\nagent B's log:\n{}\ndockerd B:{}",
            self.bed.agent_log(Host::A),
            self.bed.agent_log(Host::B),
            self.b.runtime_log_tail()
        )
    }
}

impl TwoDockersRef<'_> {
    /// `migrate-agent migrate --docker NAME --to B` through A's agent.
    fn migrate(&self, dir: &TestDir, name: &str, extra: &[&str]) -> Result<AgentRun> {
        self.to_b(dir, "migrate", name, extra)
    }

    /// `migrate-agent dry-run --docker NAME --to B` through A's agent (it
    /// freezes the container once for a few milliseconds).
    fn dry_run(&self, dir: &TestDir, name: &str) -> Result<AgentRun> {
        self.to_b(dir, "dry-run", name, &["--duration", "1s"])
    }

    /// `migrate-agent COMMAND --docker NAME --to B EXTRA`, through A's
    /// agent.
    fn to_b(&self, dir: &TestDir, command: &str, name: &str, extra: &[&str]) -> Result<AgentRun> {
        let control = self.bed.control_socket(Host::A);
        let host = self.a.host_url()?;
        let mut args = vec![
            command,
            "--docker",
            name,
            "--docker-host",
            &host,
            "--to",
            HOST_B,
            "--control-socket",
            path_str(&control)?,
            "--json",
        ];
        args.extend_from_slice(extra);
        agent(dir, &args)
    }
}

/// The numbers `docker logs looper` shows.
fn numbers(host: &DockerHost, name: &str) -> Result<Vec<u64>> {
    let text = host.docker(&["logs", name])?;
    text.lines()
        .map(|l| {
            l.parse()
                .with_context(|| format!("docker logs shows {l:?}: {text:?}"))
        })
        .collect()
}

/// Checks the numbers follow each other with no gap or repeat.
fn consecutive(n: &[u64]) -> Result<()> {
    ensure!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "the count skips or repeats: {n:?}"
    );
    Ok(())
}

/// Waits until `name` on `host` has written more than `past` numbers.
fn wait_numbers(host: &DockerHost, name: &str, past: usize) -> Result<Vec<u64>> {
    let start = Instant::now();
    loop {
        let n = numbers(host, name)?;
        if n.len() > past {
            return Ok(n);
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "{name} stays at {} lines (wanted more than {past})",
            n.len()
        );
        sleep(Duration::from_millis(200));
    }
}

/// The status `docker ps -a` gives container `name` (None: no such
/// container).
fn status(host: &DockerHost, name: &str) -> Result<Option<String>> {
    let out = host.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^/{name}$"),
        "--format",
        "{{.Status}}",
    ])?;
    Ok(out.lines().next().map(str::to_string))
}

/// Moves the busybox counter from A to B in `mode` and checks it on both
/// sides: Up on B, counting on from where A stopped, `docker exec` and
/// `docker stop` working; on A removed, or stopped with `keep_stopped`
/// (whose logs then end right before B's begin).
fn busybox_moves(dir: &TestDir, mode: &str, keep_stopped: bool) -> Result<()> {
    let d = TwoDockers::up(dir, Image::Busybox, true)?;
    d.a.docker(&[
        "run", "-d", "--name", "looper", "busybox", "/bin/sh", "-c", LOOPER,
    ])?;
    let before = wait_numbers(&d.a, "looper", 2)?;
    consecutive(&before)?;
    if mode == "precopy" {
        // The dry run's freeze leaves the count whole (checked below).
        let report = d
            .source()
            .dry_run(dir, "looper")?
            .json()
            .with_context(|| d.logs())?;
        ensure!(
            report["can_move"] == true
                && report["kind"] == "docker"
                && report["container"] == "Docker container looper",
            "the dry run of Docker container looper is not that of one that can move: {report}"
        );
    }
    let mut extra = vec!["--mode", mode];
    if keep_stopped {
        extra.push("--keep-stopped");
    }
    let run = d.source().migrate(dir, "looper", &extra)?;
    let stats = run.json().with_context(|| d.logs())?;
    eprintln!(
        "docker {mode}: downtime {} ms (freeze {}, final transfer {}, restore {}, resume {}), total {} ms",
        stats["downtime"]["total_ms"],
        stats["downtime"]["freeze_ms"],
        stats["downtime"]["final_transfer_ms"],
        stats["downtime"]["restore_ms"],
        stats["downtime"]["resume_ms"],
        stats["total_ms"]
    );

    let up = status(&d.b, "looper")?.context("B has no container looper")?;
    ensure!(up.starts_with("Up"), "docker ps on B: looper is {up:?}");
    let first = numbers(&d.b, "looper")?;
    let after = wait_numbers(&d.b, "looper", first.len() + 1)?;
    consecutive(&after)?;
    ensure!(
        after.first() > before.last(),
        "B's count {after:?} does not go on from A's {before:?}"
    );
    match status(&d.a, "looper")? {
        None => ensure!(
            !keep_stopped,
            "A's container was removed: --keep-stopped keeps it"
        ),
        Some(s) => {
            ensure!(keep_stopped, "A still has looper ({s})");
            ensure!(s.starts_with("Exited"), "A's looper is {s:?}, not stopped");
            let mut both = numbers(&d.a, "looper")?;
            both.extend(&after);
            consecutive(&both).context("A's logs followed by B's")?;
        }
    }

    let hello = d.b.docker(&["exec", "looper", "echo", "hello from B"])?;
    ensure!(
        hello.trim() == "hello from B",
        "docker exec printed {hello:?}"
    );
    d.b.docker(&["stop", "-t", "1", "looper"])?;
    let stopped = status(&d.b, "looper")?.context("looper vanished on docker stop")?;
    ensure!(
        stopped.starts_with("Exited"),
        "after docker stop: {stopped:?}"
    );
    d.b.docker(&["rm", "looper"])?;
    Ok(())
}

/// Moves the Node.js counter, which answered 3 requests on A, to B in
/// `mode`: the next request, at its address on B's bridge, answers 4. It
/// listens on 0.0.0.0, so the address B's dockerd gives it (its default
/// bridge) serves; `docker exec` and `docker stop` work there.
fn node_moves(dir: &TestDir, mode: &str) -> Result<()> {
    let d = TwoDockers::up(dir, Image::Node, true)?;
    d.a.run_node_counter()?;
    let url = d.a.counter_url()?;
    for i in 1..=3 {
        let n = d.bed.http_get(Host::A, &url)?;
        ensure!(n.trim() == i.to_string(), "request {i} on A answered {n:?}");
    }
    let run = d.source().migrate(dir, "counter", &["--mode", mode])?;
    let stats = run.json().with_context(|| d.logs())?;
    eprintln!(
        "node {mode}: downtime {} ms, total {} ms",
        stats["downtime"]["total_ms"], stats["total_ms"]
    );
    let up = status(&d.b, "counter")?.context("B has no container counter")?;
    ensure!(up.starts_with("Up"), "docker ps on B: counter is {up:?}");
    let next = d.bed.http_get(Host::B, &d.b.counter_url()?)?;
    ensure!(
        next.trim() == "4",
        "the moved counter answered {next:?}, not 4"
    );
    ensure!(status(&d.a, "counter")?.is_none(), "A still has counter");
    let hello =
        d.b.docker(&["exec", "counter", "/app/node", "-e", "console.log(6*7)"])?;
    ensure!(hello.trim() == "42", "docker exec printed {hello:?}");
    d.b.docker(&["stop", "-t", "1", "counter"])?;
    let stopped = status(&d.b, "counter")?.context("counter vanished on docker stop")?;
    ensure!(
        stopped.starts_with("Exited"),
        "after docker stop: {stopped:?}"
    );
    Ok(())
}

#[test]
fn docker_node_precopy() {
    docker_test("docker_node_precopy", |dir| node_moves(dir, "precopy"));
}

#[test]
fn docker_node_postcopy() {
    docker_test("docker_node_postcopy", |dir| node_moves(dir, "postcopy"));
}

#[test]
fn docker_busybox_precopy() {
    docker_test("docker_busybox_precopy", |dir| {
        busybox_moves(dir, "precopy", false)
    });
}

#[test]
fn docker_busybox_postcopy() {
    docker_test("docker_busybox_postcopy", |dir| {
        busybox_moves(dir, "postcopy", true)
    });
}

/// A destination whose dockerd is not reachable, lacks the image, or
/// has a container of that name refuses before anything is frozen: the
/// migration fails with the reason, and the container runs on A as
/// before, its count unbroken.
#[test]
fn docker_refusals_leave_the_source_untouched() {
    docker_test("docker_refusals_leave_the_source_untouched", |dir| {
        let bed = Testbed::up(dir)?;
        let a = DockerHost::in_testbed(&bed, Host::A)?;
        Image::Busybox.import(&a, dir.path())?;
        a.docker(&[
            "run", "-d", "--name", "looper", "busybox", "/bin/sh", "-c", LOOPER,
        ])?;
        wait_numbers(&a, "looper", 1)?;
        let refused = |d: &TwoDockersRef<'_>, wanted: &str| -> Result<()> {
            let run = d.migrate(dir, "looper", &[])?;
            let why = run.refusal()?;
            ensure!(
                why.contains(wanted),
                "refused, but not for {wanted:?}: {why}"
            );
            ensure!(
                why.contains("keeps running here"),
                "the refusal does not say the container stays: {why}"
            );
            let up = status(&a, "looper")?.context("A lost looper")?;
            ensure!(up.starts_with("Up"), "A's looper is {up:?} after a refusal");
            Ok(())
        };
        let d = TwoDockersRef { a: &a, bed: &bed };
        refused(&d, "dockerd is not reachable")?;
        let b = DockerHost::in_testbed(&bed, Host::B)?;
        refused(
            &d,
            "the image busybox of container looper is not on the dockerd",
        )?;
        Image::Busybox.import_again(&b, dir.path())?;
        b.docker(&["create", "--name", "looper", "busybox", "true"])?;
        refused(&d, "has a container named looper already")?;
        ensure!(
            status(&b, "looper")?.is_some_and(|s| s.starts_with("Created")),
            "B's own looper was touched"
        );
        let n = numbers(&a, "looper")?;
        let later = wait_numbers(&a, "looper", n.len() + 1)?;
        consecutive(&later)?;
        ensure!(later.first() == Some(&0), "A's count restarted: {later:?}");
        Ok(())
    });
}

/// `drain --docker` moves every running container of A's dockerd to B.
#[test]
fn docker_drain() {
    docker_test("docker_drain", |dir| {
        let d = TwoDockers::up(dir, Image::Busybox, true)?;
        for name in ["looper", "looper2"] {
            d.a.docker(&[
                "run", "-d", "--name", name, "busybox", "/bin/sh", "-c", LOOPER,
            ])?;
        }
        wait_numbers(&d.a, "looper2", 1)?;
        let control = d.bed.control_socket(Host::A);
        let host = d.a.host_url()?;
        let run = agent(
            dir,
            &[
                "drain",
                "--docker",
                &host,
                "--to",
                HOST_B,
                "--control-socket",
                path_str(&control)?,
                "--json",
            ],
        )?;
        let summary = run.json().with_context(|| d.logs())?;
        ensure!(summary["migrated"] == 2, "drain: {summary}");
        for name in ["looper", "looper2"] {
            let up = status(&d.b, name)?.with_context(|| format!("B has no {name}"))?;
            ensure!(up.starts_with("Up"), "docker ps on B: {name} is {up:?}");
            ensure!(status(&d.a, name)?.is_none(), "A still has {name}");
            let n = numbers(&d.b, name)?;
            consecutive(&wait_numbers(&d.b, name, n.len())?)?;
        }
        Ok(())
    });
}
