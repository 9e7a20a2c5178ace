//! A peer with a valid certificate that does not play by the protocol,
//! against a real agent (host B of the testbed; the hostile peer runs in
//! host C with a certificate of the testbed's CA): sessions opened and
//! never completed, bad Hellos, offers and page frames beyond what the
//! offer allows, a round end whose frames never come, a session that goes
//! silent. Each is refused with a clear error, in bounded time, frees
//! what it held (image directory, fds), and a real migration from A still
//! succeeds meanwhile or afterwards. Also: a restarted agent removes what
//! its dead run left, never what a live agent holds.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::testbed::{finish_on, Host, Testbed, HOST_B};
use common::{path_str, run_test, TestDir};
use ferry::migration::protocol::{Offer, Opening, ToDestination, ToSource};
use ferry::transport::{certs, Settings, TlsFiles, Transport, PROTOCOL_VERSION};
use quinn::{Connection, RecvStream};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The hostile peer's agent name (its certificate's).
const HOSTILE: &str = "hostile";
/// Host C's address.
const HOST_C: &str = "10.231.0.3";
/// A PID free on host B, for offers that must be accepted.
const FREE_PID: i32 = 30_000;

/// The transport's handshake messages, as the agent encodes them.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    magic: u32,
    version: u32,
    agent: String,
    session: u64,
    bulk_connections: u32,
}

#[derive(Debug, Serialize, Deserialize)]
enum Opener {
    Hello(Hello),
    Join { session: u64, index: u32 },
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Welcome(Hello),
    Refused { reason: String },
}

fn hello(agent: &str, session: u64) -> Opener {
    Opener::Hello(Hello {
        magic: ferry::transport::HELLO_MAGIC,
        version: PROTOCOL_VERSION,
        agent: agent.to_string(),
        session,
        bulk_connections: 2,
    })
}

/// Issues the hostile peer's certificate from the testbed's CA.
fn hostile_tls(dir: &TestDir) -> Result<TlsFiles> {
    let ca = dir.path().join("testbed/ca");
    let out = dir.path().join("hostile");
    certs::issue(&ca, HOSTILE, Some(HOST_C.parse()?), &out)?;
    Ok(TlsFiles {
        ca: ca.join(certs::CA_CERT_FILE),
        cert: out.join(certs::CERT_FILE),
        key: out.join(certs::KEY_FILE),
    })
}

/// Runs `body` on a thread inside host C's network namespace, in a tokio
/// runtime of its own.
fn in_host_c<T, F>(
    bed: &Testbed,
    body: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<Result<T>>
where
    T: Send + 'static,
    F: Future<Output = Result<T>>,
{
    let netns = bed.netns_path(Host::C);
    std::thread::spawn(move || {
        let ns = File::open(&netns).with_context(|| format!("opening {netns}"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(body())
    })
}

fn join<T>(thread: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the hostile peer's thread panicked"))?
}

fn agent_b() -> SocketAddr {
    HOST_B.parse().expect("host B's address")
}

/// A raw QUIC endpoint with the hostile certificate: for what the
/// transport itself would never send.
fn raw_endpoint(tls: &TlsFiles) -> Result<quinn::Endpoint> {
    let configs = ferry::transport::tls::rustls_configs(tls)?;
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(configs.client)?;
    let mut endpoint = quinn::Endpoint::client(format!("{HOST_C}:0").parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(client)));
    Ok(endpoint)
}

async fn raw_connect(endpoint: &quinn::Endpoint) -> Result<Connection> {
    let b = agent_b();
    Ok(endpoint.connect(b, &b.ip().to_string())?.await?)
}

/// Writes one frame: `len` as the u32 LE length, then `body`.
async fn write_raw(send: &mut quinn::SendStream, len: u32, body: &[u8]) -> Result<()> {
    send.write_all(&len.to_le_bytes()).await?;
    send.write_all(body).await?;
    Ok(())
}

/// The agent's answer to a Hello: "welcome", a refusal's reason, or the
/// reason it closed the connection with.
async fn answer(conn: &Connection, recv: &mut RecvStream) -> String {
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        ferry::transport::read_bounded::<_, Reply>(recv, "agent B", 1 << 16),
    )
    .await;
    match read {
        Ok(Ok(Reply::Welcome(_))) => "welcome".into(),
        Ok(Ok(Reply::Refused { reason })) => reason,
        Ok(Err(_)) => match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
                String::from_utf8_lossy(&close.reason).into_owned()
            }
            Ok(other) => other.to_string(),
            Err(_) => "no answer".into(),
        },
        Err(_) => "no answer within 20 s".into(),
    }
}

/// Sends a Hello (its postcard bytes followed by `trailing`) and returns
/// the agent's answer, with the connection (kept open by the caller).
async fn send_hello(
    endpoint: &quinn::Endpoint,
    opener: &Opener,
    trailing: &[u8],
) -> Result<(String, Connection)> {
    let conn = raw_connect(endpoint).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut body = postcard::to_stdvec(opener)?;
    body.extend_from_slice(trailing);
    write_raw(&mut send, body.len() as u32, &body).await?;
    let answer = answer(&conn, &mut recv).await;
    Ok((answer, conn))
}

/// Starts the counters workload on A and migrates it to B: it must arrive
/// and verify itself there. Returns how long the migration took.
fn real_migration(bed: &Testbed, dir: &TestDir) -> Result<Duration> {
    let w = bed.start_workload(dir, "counters", &[])?;
    let started = Instant::now();
    let run = bed.migrate(dir, w.ns_pid, HOST_B, &["--json"])?;
    let took = started.elapsed();
    run.json().with_context(|| {
        format!(
            "the real migration failed; agent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        )
    })?;
    finish_on(bed, dir, Host::B, &w)?;
    Ok(took)
}

/// One peer opens sessions and never completes them (a Hello answered,
/// no bulk connection; connections that never say Hello), past its
/// session cap: the sessions beyond the cap are refused saying so, and a
/// real migration opened meanwhile goes through without waiting for them
/// to time out.
#[test]
fn stalled_handshakes_do_not_block_a_real_migration() {
    run_test("hostile_stalled_handshakes", |dir| {
        let bed = Testbed::up(dir)?;
        let tls = hostile_tls(dir)?;
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let hostile = in_host_c(&bed, move || async move {
            let endpoint = raw_endpoint(&tls)?;
            let mut held = Vec::new();
            // Connections that finish TLS and say nothing.
            for _ in 0..20 {
                held.push(raw_connect(&endpoint).await?);
            }
            let cap = ferry::transport::MAX_SESSIONS_PER_PEER;
            let mut answers = Vec::new();
            for session in 0..cap as u64 + 2 {
                let (answer, conn) = send_hello(&endpoint, &hello(HOSTILE, session), &[]).await?;
                answers.push(answer);
                held.push(conn);
            }
            let _ = opened_tx.send(());
            // Held until the agent's handshake timeout ends them.
            tokio::time::sleep(ferry::transport::HANDSHAKE_TIMEOUT).await;
            Ok(answers)
        });
        opened_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the hostile peer did not open its sessions")?;
        let took = real_migration(&bed, dir)?;
        let answers = join(hostile)?;
        let cap = ferry::transport::MAX_SESSIONS_PER_PEER;
        ensure!(
            answers[..cap].iter().all(|a| a == "welcome"),
            "the first {cap} sessions were not welcomed: {answers:?}"
        );
        for refused in &answers[cap..] {
            ensure!(
                refused.contains(&format!("already has {cap} sessions open or opening here")),
                "a session over the cap got: {refused}"
            );
        }
        ensure!(
            took < ferry::transport::HANDSHAKE_TIMEOUT,
            "the real migration took {took:?}: it waited for the stalled handshakes"
        );
        Ok(())
    });
}

/// Hellos the agent must refuse, each with its reason: a name the
/// certificate does not carry (the name authorises a post-copy resume),
/// trailing bytes after the Hello, a Hello announcing 1 MiB. A real
/// migration succeeds afterwards.
#[test]
fn bad_hellos_are_refused_with_their_reason() {
    run_test("hostile_bad_hellos", |dir| {
        let bed = Testbed::up(dir)?;
        let tls = hostile_tls(dir)?;
        let answers = join(in_host_c(&bed, move || async move {
            let endpoint = raw_endpoint(&tls)?;
            let (impostor, _c1) = send_hello(&endpoint, &hello("host-a", 1), &[]).await?;
            let (trailing, _c2) = send_hello(&endpoint, &hello(HOSTILE, 2), &[0, 0, 0]).await?;
            let conn = raw_connect(&endpoint).await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            write_raw(&mut send, 1 << 20, &[]).await?;
            let huge = answer(&conn, &mut recv).await;
            Ok([impostor, trailing, huge])
        }))?;
        let [impostor, trailing, huge] = &answers;
        ensure!(
            impostor.contains("calls itself \"host-a\" in its Hello")
                && impostor.contains("[\"hostile\"]"),
            "a Hello in another agent's name got: {impostor}"
        );
        ensure!(
            trailing.contains("3 trailing bytes"),
            "a Hello with trailing bytes got: {trailing}"
        );
        ensure!(
            huge.contains("1048576-byte control message, over the 65536-byte limit"),
            "a 1 MiB Hello got: {huge}"
        );
        real_migration(&bed, dir)?;
        Ok(())
    });
}

/// An offer the agent B would take (a free PID, this CPU), `memory_bytes`
/// of memory.
fn offer(id: &str, memory_bytes: u64) -> Offer {
    Offer {
        id: id.to_string(),
        pid: FREE_PID,
        tids: vec![FREE_PID],
        xcr0: ferry::kernel::cpu::xcr0(),
        xstate_size: ferry::kernel::cpu::xsave_size(),
        memory_bytes,
        page_streams: 1,
        container: None,
        tcp_flows: vec![],
    }
}

/// Opens a session from host C with the transport itself (a complete
/// handshake) and offers `offer`; returns the session and the answer.
async fn offered(
    transport: &Transport,
    offer: Offer,
) -> Result<(ferry::transport::Session, ToSource)> {
    let b = agent_b();
    let mut session = transport.connect(b, &b.ip().to_string()).await?;
    session.send(&Opening::Migrate(offer)).await?;
    let answer = tokio::time::timeout(Duration::from_secs(30), session.recv::<ToSource>())
        .await
        .context("no answer to the offer within 30 s")??;
    Ok((session, answer))
}

/// The destination's failure message that ends a session (within `within`).
async fn failure(session: &mut ferry::transport::Session, within: Duration) -> Result<String> {
    match tokio::time::timeout(within, session.recv::<ToSource>()).await {
        Ok(Ok(ToSource::Failed { reason })) => Ok(reason),
        Ok(other) => bail!("expected the destination's failure, got {other:?}"),
        Err(_) => bail!("no failure within {within:?}"),
    }
}

fn accepted(answer: &ToSource) -> Result<()> {
    ensure!(
        matches!(answer, ToSource::Accepted),
        "the offer was not accepted: {answer:?}"
    );
    Ok(())
}

/// Host B's work directory.
fn work_dir_b(dir: &TestDir) -> PathBuf {
    dir.path().join("testbed/b/work")
}

/// Waits (at most `within`) until `path` is gone.
fn wait_gone(path: &Path, within: Duration) -> Result<()> {
    let start = Instant::now();
    while path.exists() {
        ensure!(
            start.elapsed() < within,
            "{} is still there after {within:?}",
            path.display()
        );
        sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The fds of host B's agent that point into an incoming image of its
/// work directory.
fn agent_fds_in(bed: &Testbed, work: &Path) -> Result<Vec<String>> {
    let pid = bed.agent_pid(Host::B)?;
    let mut held = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        if let Ok(target) = fs::read_link(entry?.path()) {
            // The agent's own lock file lies in the work directory itself;
            // an incoming image is a directory of it.
            if target.starts_with(work) && target.parent() != Some(work) {
                held.push(target.display().to_string());
            }
        }
    }
    Ok(held)
}

/// Offers and page frames beyond what the offer allows, a round end whose
/// frames never come followed by a disconnect, and a session that stays
/// silent: each refused with a sentence carrying the values, in bounded
/// time, its image directory and fds freed; a real migration succeeds
/// while they run.
#[test]
fn hostile_offers_and_frames_are_refused_and_freed() {
    run_test("hostile_offers_and_frames", |dir| {
        let bed = Testbed::up(dir)?;
        let tls = hostile_tls(dir)?;
        let work = work_dir_b(dir);
        let work_in_thread = work.clone();
        let hostile = in_host_c(&bed, move || async move {
            let work = work_in_thread;
            let transport = Transport::bind(Settings {
                listen: format!("{HOST_C}:0").parse()?,
                agent_name: HOSTILE.into(),
                tls,
                allowed_peers: None,
                bulk_connections: 1,
                protocol_version: PROTOCOL_VERSION,
            })
            .await?;
            let mut found = Vec::new();

            // Silent after the offer: given up after 60 s of no progress.
            let (mut silent, answer) = offered(&transport, offer("hostile-silent", 4096)).await?;
            accepted(&answer)?;
            let silent_started = Instant::now();

            // 4,000,000 thread IDs, twice at once: refused at once.
            let tids: Vec<i32> = (1..=4_000_000).collect();
            let huge = Offer {
                tids,
                ..offer("hostile-tids", 4096)
            };
            let started = Instant::now();
            let (a, b) = tokio::join!(offered(&transport, huge.clone()), offered(&transport, huge));
            let took = started.elapsed();
            for (_, answer) in [a?, b?] {
                let ToSource::Refused { reason } = answer else {
                    bail!("an offer of 4000000 threads got {answer:?}");
                };
                found.push(reason);
            }
            ensure!(
                took < Duration::from_secs(20),
                "refusing the offers took {took:?}"
            );

            // Zero frames past the round's quota (4 KiB of memory offered).
            let (mut quota, answer) = offered(&transport, offer("hostile-quota", 4096)).await?;
            accepted(&answer)?;
            let mut pages = quota.open_pages().await?;
            for i in 0..530_000u64 {
                if pages
                    .send_zero(FREE_PID, 0, 0x1000_0000 + i * 0x2000, 1)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = pages.finish().await;
            found.push(failure(&mut quota, Duration::from_secs(60)).await?);

            // A frame of a future round.
            let (mut future, answer) = offered(&transport, offer("hostile-future", 4096)).await?;
            accepted(&answer)?;
            let mut pages = future.open_pages().await?;
            pages
                .send_pages(FREE_PID, 5, 0x1000_0000, &[0x55; 4096])
                .await?;
            let _ = pages.finish().await;
            found.push(failure(&mut future, Duration::from_secs(30)).await?);

            // A round end announcing 10 frames after 1, then a disconnect.
            let (mut liar, answer) = offered(&transport, offer("hostile-liar", 4096)).await?;
            accepted(&answer)?;
            let mut pages = liar.open_pages().await?;
            pages
                .send_pages(FREE_PID, 0, 0x1000_0000, &[0x55; 4096])
                .await?;
            pages.finish().await?;
            liar.send(&ToDestination::RoundEnd {
                round: 0,
                frames: 10,
            })
            .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            ensure!(
                work.join("hostile-liar").exists(),
                "the liar's image is not in {}",
                work.display()
            );
            liar.close("gone");
            drop(liar);
            let liar_dir = work.join("hostile-liar");
            tokio::task::spawn_blocking(move || wait_gone(&liar_dir, Duration::from_secs(15)))
                .await??;

            found.push(failure(&mut silent, Duration::from_secs(90)).await?);
            let silent_took = silent_started.elapsed();
            ensure!(
                silent_took < Duration::from_secs(80),
                "the silent session ended after {silent_took:?}"
            );
            transport.shutdown().await;
            Ok(found)
        });
        // A real migration while the hostile peer does all this.
        real_migration(&bed, dir)?;
        let found = join(hostile)?;
        let [tids_a, tids_b, quota, future, silent] = &found[..] else {
            bail!("the hostile peer found {found:?}");
        };
        for tids in [tids_a, tids_b] {
            ensure!(
                tids.contains("the offer names 4000000 threads, more than this host can run"),
                "an offer of 4000000 threads was refused with: {tids}"
            );
        }
        ensure!(
            quota.contains("over what the offer allows a round"),
            "frames past the quota ended with: {quota}"
        );
        ensure!(
            future.contains("a page frame of round 5 arrived while round 0 is open"),
            "a frame of a future round ended with: {future}"
        );
        ensure!(
            silent.contains("the source sent nothing in round 0 for 60s"),
            "a silent session ended with: {silent}"
        );
        let log = bed.agent_log(Host::B);
        ensure!(
            log.contains(
                "the source left with round 0 incomplete (1 of the 10 frames it announced stored)"
            ),
            "agent B's log does not say the liar left mid-round:\n{log}"
        );
        for name in [
            "hostile-silent",
            "hostile-quota",
            "hostile-future",
            "hostile-liar",
        ] {
            wait_gone(&work.join(name), Duration::from_secs(10))?;
        }
        let fds = agent_fds_in(&bed, &work)?;
        ensure!(fds.is_empty(), "agent B still holds {fds:?}");
        Ok(())
    });
}

/// An agent started on its own (loopback, a CA of its own), killed by
/// PID when dropped.
struct SoloAgent {
    child: Child,
    log: PathBuf,
}

impl SoloAgent {
    /// Runs `serve` with `config`; waits for its control socket when
    /// `ready` is given.
    fn start(dir: &Path, config: &Path, run: &str, ready: Option<&Path>) -> Result<Self> {
        let log = dir.join(format!("{run}.log"));
        let out = File::create(&log)?;
        if let Some(socket) = ready {
            // A killed agent's socket stays: wait for this one's.
            let _ = fs::remove_file(socket);
        }
        let child = Command::new(common::agent_bin()?)
            .args(["serve", "--config", path_str(config)?])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let agent = SoloAgent { child, log };
        if let Some(socket) = ready {
            let start = Instant::now();
            while !socket.exists() {
                ensure!(
                    start.elapsed() < Duration::from_secs(20),
                    "the agent did not start:\n{}",
                    agent.log()
                );
                sleep(Duration::from_millis(20));
            }
        }
        Ok(agent)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SoloAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A destination agent killed mid-migration leaves its incoming image; the
/// next agent on the same work directory removes it and says so, while a
/// second agent started beside a live one refuses to start and touches
/// nothing of it.
#[test]
fn a_restarted_agent_removes_what_its_dead_run_left() {
    run_test("hostile_restarted_agent", |dir| {
        let d = dir.path();
        certs::init_ca(&d.join("ca"), "solo CA")?;
        certs::issue(
            &d.join("ca"),
            "solo",
            Some("127.0.0.1".parse()?),
            &d.join("solo"),
        )?;
        let work = d.join("work");
        let socket = d.join("run/agent.sock");
        let config = d.join("agent.toml");
        fs::write(
            &config,
            format!(
                "name = \"solo\"\nlisten = \"127.0.0.1:0\"\ncontrol_socket = \"{s}\"\n\
                 ca = \"{d}/ca/ca.pem\"\ncert = \"{d}/solo/cert.pem\"\nkey = \"{d}/solo/key.pem\"\nwork_dir = \"{w}\"\n",
                s = socket.display(),
                d = d.display(),
                w = work.display(),
            ),
        )?;
        // What a destination killed while receiving leaves.
        let left = work.join("host-1234-99");
        fs::create_dir_all(&left)?;
        fs::write(left.join("pages.img"), [0u8; 4096])?;
        let notes = work.join("notes.txt");
        fs::write(&notes, "not an image")?;

        let first = SoloAgent::start(d, &config, "first", Some(&socket))?;
        ensure!(
            !left.exists(),
            "the first agent left {}:\n{}",
            left.display(),
            first.log()
        );
        ensure!(
            notes.exists(),
            "the first agent removed a file that is no image"
        );
        let log = first.log();
        ensure!(
            log.contains("removed 1 incoming images a dead run of this agent left")
                && log.contains("host-1234-99"),
            "the first agent's log does not say what it found:\n{log}"
        );

        // A live agent's image, and a second agent on the same directory.
        fs::create_dir_all(&left)?;
        let mut second = SoloAgent::start(d, &config, "second", None)?;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = second.child.try_wait()? {
                break status;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(20),
                "a second agent on a live agent's work directory still runs:
{}",
                second.log()
            );
            sleep(Duration::from_millis(20));
        };
        let log = second.log();
        ensure!(
            !status.success(),
            "a second agent started on a live agent's work directory:\n{log}"
        );
        ensure!(
            log.contains(&format!(
                "belongs to a live agent (agent pid {},",
                first.child.id()
            )),
            "the second agent's refusal does not name the live one:\n{log}"
        );
        ensure!(
            left.exists(),
            "the second agent removed a live agent's image"
        );

        drop(first);
        let third = SoloAgent::start(d, &config, "third", Some(&socket))?;
        ensure!(
            !left.exists(),
            "the restarted agent left {}:\n{}",
            left.display(),
            third.log()
        );
        Ok(())
    });
}
