//! The network lock (src/netlock/) on real connections: two network
//! namespaces this test makes, joined by a veth pair, the "workload" side
//! (a) holding connections to a peer (b). A lock on one connection drops
//! its packets both ways (the peer's data stays unacknowledged and is
//! retransmitted, no reset reaches it, the local side's data never leaves)
//! while another connection in the same namespace is untouched; released,
//! the retransmissions go through and the connection works. A prepared
//! lock drops nothing until armed. A sweep
//! removes a crashed owner's tables, and only that owner's, and an
//! agent's start sweeps what its killed run left. Every
//! namespace (and with it every table) the test makes is removed, even on
//! failure; the tests check that no table of theirs is left before that.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::testbed::{Host, Testbed};
use ferry::image::TcpFlow;
use ferry::netlock::{self, NetNs, Owner};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two network namespaces joined by a veth pair, removed on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    /// Namespaces named after the test and this process (unique among
    /// concurrent runs), a at .1 and b at .2 of 10.77.0.0/24 and
    /// fd77::/64 (private to the pair: the namespaces have nothing else).
    fn up(test: &str) -> Result<Pair> {
        let id = std::process::id();
        let pair = Pair {
            a: format!("ferry-nl-{test}-{id}-a"),
            b: format!("ferry-nl-{test}-{id}-b"),
        };
        for ns in [&pair.a, &pair.b] {
            run("ip", &["netns", "add", ns])?;
        }
        // Created inside a with its peer moved to b: the link names live
        // only in these namespaces.
        run(
            "ip",
            &[
                "-n", &pair.a, "link", "add", "nla", "type", "veth", "peer", "name", "nlb",
                "netns", &pair.b,
            ],
        )?;
        for (ns, dev, n) in [(&pair.a, "nla", 1), (&pair.b, "nlb", 2)] {
            // IPv6 without duplicate address detection: usable at once.
            for (addr, flags) in [
                (format!("10.77.0.{n}/24"), &[][..]),
                (format!("fd77::{n}/64"), &["nodad"][..]),
            ] {
                let args = [&["-n", ns, "addr", "add", &addr, "dev", dev][..], flags].concat();
                run("ip", &args)?;
            }
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// A handle on namespace `ns` (one of the pair's).
    fn netns(ns: &str) -> Result<NetNs> {
        Ok(NetNs::at(Path::new(&format!("/run/netns/{ns}")))?)
    }

    /// The inet tables of `ns` that start with ferry_.
    fn ferry_tables(ns: &str) -> Result<Vec<String>> {
        let out = run("ip", &["netns", "exec", ns, "nft", "list", "tables"])?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("table inet "))
            .filter(|t| t.starts_with("ferry_"))
            .map(str::to_string)
            .collect())
    }

    /// Fails if either namespace still holds a table of ferry's.
    fn check_clean(&self) -> Result<()> {
        for ns in [&self.a, &self.b] {
            let left = Pair::ferry_tables(ns)?;
            ensure!(left.is_empty(), "tables left in {ns}: {left:?}");
        }
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth and its tables.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// Runs a command and returns its stdout; fails with its stderr.
fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a thread that joined namespace `ns`: the sockets it makes
/// belong to that namespace.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in {ns} panicked"))?
    })
}

/// The client end (in a) and the server end (in b) of a connection.
struct Conn {
    client: TcpStream,
    server: TcpStream,
}

impl Conn {
    fn open(pair: &Pair, listener: &TcpListener) -> Result<Conn> {
        let to = listener.local_addr()?;
        let client = in_ns(&pair.a, || Ok(TcpStream::connect(to)?))?;
        let (server, _) = listener.accept()?;
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.set_nodelay(true)?;
        }
        Ok(Conn { client, server })
    }

    fn flow(&self) -> Result<TcpFlow> {
        Ok(TcpFlow {
            local: self.client.local_addr()?,
            remote: self.client.peer_addr()?,
        })
    }

    /// Sends one message each way and checks both arrive within `within`.
    fn exchange(&mut self, tag: &str, within: Duration) -> Result<()> {
        self.client.write_all(format!("c{tag}").as_bytes())?;
        self.server.write_all(format!("s{tag}").as_bytes())?;
        expect(&mut self.server, &format!("c{tag}"), within)?;
        expect(&mut self.client, &format!("s{tag}"), within)
    }
}

/// Reads exactly `text` from `s` within `within`.
fn expect(s: &mut TcpStream, text: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < text.len() {
        ensure!(
            Instant::now() < deadline,
            "{text:?} did not arrive within {within:?} (got {:?})",
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut buf) {
            Ok(0) => bail!("the connection was closed while waiting for {text:?}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => bail!("reading {text:?}: {e}"),
        }
    }
    ensure!(got == text.as_bytes(), "expected {text:?}, got {got:?}");
    Ok(())
}

/// Fails if anything arrives on `s` during `period`.
fn expect_silence(s: &mut TcpStream, period: Duration) -> Result<()> {
    let deadline = Instant::now() + period;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => bail!("the connection was closed (a reset or FIN got through)"),
            Ok(n) => bail!(
                "{:?} got through the lock",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => bail!("the connection failed under the lock: {e}"),
        }
    }
    Ok(())
}

/// What `ss -tin` in `ns` says of the connection from local port `port`:
/// its state line and info line.
fn ss_info(ns: &str, local: SocketAddr, remote: SocketAddr) -> Result<String> {
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "ss",
            "-tinH",
            "state",
            "all",
            "src",
            &local.to_string(),
            "dst",
            &remote.to_string(),
        ],
    )?;
    ensure!(
        !out.trim().is_empty(),
        "no socket {local} -> {remote} in {ns}: it was reset"
    );
    Ok(out)
}

/// A lock on one connection of a (IPv4 or IPv6: `server` is b's address)
/// and what the peer, the locked side and an unlocked connection see.
fn lock_one_connection(test: &str, server: &str) -> Result<()> {
    let pair = Pair::up(test)?;
    let listener = in_ns(&pair.b, || Ok(TcpListener::bind(server)?))?;
    let mut locked = Conn::open(&pair, &listener)?;
    let mut other = Conn::open(&pair, &listener)?;
    locked.exchange("0", Duration::from_secs(5))?;
    other.exchange("0", Duration::from_secs(5))?;
    let flow = locked.flow()?;
    let peer_side = (flow.remote, flow.local);

    let owner = Owner::of_dir(Path::new(&format!("/tmp/{}", pair.a)));
    let lock = netlock::engage(owner, "test", Pair::netns(&pair.a)?, &[flow])?;
    ensure!(
        Pair::ferry_tables(&pair.a)? == [lock.name().to_string()],
        "the lock's table is not the only ferry table of {}",
        pair.a
    );
    let result = (|| {
        // Both sides send; nothing crosses, no reset comes back.
        locked.server.write_all(b"from peer")?;
        locked.client.write_all(b"from workload")?;
        expect_silence(&mut locked.client, Duration::from_millis(1500))?;
        expect_silence(&mut locked.server, Duration::from_millis(100))?;
        // The peer's socket is still established, with its data
        // unacknowledged and retransmitted.
        let ss = ss_info(&pair.b, peer_side.0, peer_side.1)?;
        ensure!(
            ss.starts_with("ESTAB"),
            "the peer's socket left ESTABLISHED: {ss}"
        );
        ensure!(
            ss.contains("unacked:"),
            "the peer's data was acknowledged: {ss}"
        );
        ensure!(ss.contains("retrans:"), "the peer did not retransmit: {ss}");
        // The other connection of the namespace is untouched meanwhile.
        other.exchange("1", Duration::from_secs(2))
    })();
    lock.release()?;
    result?;
    ensure!(
        Pair::ferry_tables(&pair.a)?.is_empty(),
        "the table is still there after release"
    );
    // The retransmissions go through; the connection works both ways.
    expect(&mut locked.client, "from peer", Duration::from_secs(10))?;
    expect(&mut locked.server, "from workload", Duration::from_secs(10))?;
    locked.exchange("2", Duration::from_secs(5))?;
    other.exchange("2", Duration::from_secs(5))?;
    pair.check_clean()
}

#[test]
fn a_locked_ipv4_connection_is_silent_until_released() -> Result<()> {
    lock_one_connection("v4", "10.77.0.2:7000")
}

#[test]
fn a_locked_ipv6_connection_is_silent_until_released() -> Result<()> {
    lock_one_connection("v6", "[fd77::2]:7000")
}

/// A prepared lock (made while the workload still runs) drops nothing;
/// armed, it silences the connections it was prepared with and those the
/// arming adds (here one of the other family, whose set was empty).
#[test]
fn a_prepared_lock_is_silent_only_once_armed() -> Result<()> {
    let pair = Pair::up("arm")?;
    let v4 = in_ns(&pair.b, || Ok(TcpListener::bind("10.77.0.2:7000")?))?;
    let v6 = in_ns(&pair.b, || Ok(TcpListener::bind("[fd77::2]:7000")?))?;
    let mut known = Conn::open(&pair, &v4)?;
    let mut added = Conn::open(&pair, &v6)?;
    let owner = Owner::of_dir(Path::new(&format!("/tmp/{}", pair.a)));
    let mut lock = netlock::prepare(owner, "test", Pair::netns(&pair.a)?, &[known.flow()?])?;
    let result = (|| -> Result<()> {
        known.exchange("0", Duration::from_secs(5))?;
        added.exchange("0", Duration::from_secs(5))?;
        lock.arm(&[known.flow()?, added.flow()?])?;
        for conn in [&mut known, &mut added] {
            conn.server.write_all(b"x")?;
            expect_silence(&mut conn.client, Duration::from_millis(500))?;
        }
        Ok(())
    })();
    lock.release()?;
    result?;
    for conn in [&mut known, &mut added] {
        expect(&mut conn.client, "x", Duration::from_secs(10))?;
        conn.exchange("1", Duration::from_secs(5))?;
    }
    pair.check_clean()
}

/// A lock whose owner "crashes" is never released; the test process
/// keeps its namespace handle open until it exits.
#[test]
fn a_sweep_removes_its_owners_stale_locks_only() -> Result<()> {
    let pair = Pair::up("sweep")?;
    let flow = TcpFlow {
        local: "10.77.0.1:1234".parse()?,
        remote: "10.77.0.2:80".parse()?,
    };
    let crashed = Owner::of_dir(Path::new(&format!("/tmp/{}-crashed", pair.a)));
    let other = Owner::of_dir(Path::new(&format!("/tmp/{}-other", pair.a)));
    // Owners that "crash": their locks are never released.
    let stale = netlock::engage(crashed, "1", Pair::netns(&pair.a)?, &[flow])?.keep();
    let foreign = netlock::engage(other, "2", Pair::netns(&pair.a)?, &[flow])?.keep();
    let result = (|| {
        let netns = Pair::netns(&pair.a)?;
        // A third owner finds nothing of its own.
        let third = Owner::of_dir(Path::new(&format!("/tmp/{}-third", pair.a)));
        ensure!(netlock::sweep(third, &netns)?.is_empty());
        // The crashed owner's next start removes its table, not the other's.
        ensure!(netlock::sweep(crashed, &netns)? == std::slice::from_ref(&stale));
        ensure!(Pair::ferry_tables(&pair.a)? == std::slice::from_ref(&foreign));
        ensure!(netlock::sweep(crashed, &netns)?.is_empty());
        // Releasing a table already gone is not an error.
        netlock::release_table(&netns, &stale)?;
        // A name ferry does not make is never touched.
        ensure!(netlock::release_table(&netns, "filter").is_err());
        ensure!(netlock::sweep(other, &netns)? == std::slice::from_ref(&foreign));

        // A lock in another namespace (a container's), its owner killed
        // without releasing it: the owner's journal leads its next start
        // there; another owner's journal does not.
        let lock = netlock::engage(crashed, "3", Pair::netns(&pair.b)?, &[flow])?;
        let in_b = lock.name().to_string();
        std::mem::forget(lock);
        ensure!(netlock::sweep_journaled(other)?.is_empty());
        ensure!(Pair::ferry_tables(&pair.b)? == std::slice::from_ref(&in_b));
        ensure!(netlock::sweep_journaled(crashed)? == std::slice::from_ref(&in_b));
        ensure!(netlock::sweep_journaled(crashed)?.is_empty());
        Ok(())
    })();
    // Whatever failed above, nothing of the test is left.
    for ns in [&pair.a, &pair.b] {
        let netns = Pair::netns(ns)?;
        for owner in [crashed, other] {
            netlock::sweep(owner, &netns)?;
        }
    }
    result?;
    pair.check_clean()
}

/// Kills and reaps a child on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_trees_connections_are_listed_from_its_own_namespace() -> Result<()> {
    let pair = Pair::up("flows")?;
    let listener = in_ns(&pair.b, || Ok(TcpListener::bind("10.77.0.2:7001")?))?;
    // A process in a holding a connection to b (and a listener, which has
    // no peer); `ip netns exec` execs python, so the child is the holder.
    let script = "import socket,time\n\
l=socket.socket(); l.bind(('10.77.0.1',7002)); l.listen()\n\
s=socket.create_connection(('10.77.0.2',7001))\n\
print(s.getsockname()[1], flush=True)\n\
time.sleep(60)\n";
    let mut child = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &pair.a, "python3", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()?,
    );
    let mut line = String::new();
    let stdout = child.0.stdout.take().context("no stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let port: u16 = line
        .trim()
        .parse()
        .with_context(|| format!("port {line:?}"))?;
    let (_server, _) = listener.accept()?;
    let flows = netlock::tree_flows(&[child.0.id() as i32])?;
    let expected = TcpFlow {
        local: SocketAddr::new("10.77.0.1".parse()?, port),
        remote: "10.77.0.2:7001".parse()?,
    };
    ensure!(flows == [expected], "{flows:?}");
    drop(child);
    pair.check_clean()
}

/// The testbed's host A, with a lock its agent's killed run "left" and
/// one of another owner in its namespace: a second start of the same
/// agent (same config, same work directory) sweeps before it binds its
/// port (taken by the running agent, so it stops there), and removes its
/// own lock only. (Killing the running agent would end the host: its init
/// waits for it.)
#[test]
fn an_agents_start_sweeps_what_its_killed_run_left() {
    common::run_test("netlock_agent_sweep", |dir| {
        let bed = Testbed::up(dir)?;
        let config = dir.path().join("testbed/a.toml");
        let owner = Owner::of_dir(&dir.path().join("testbed/a/work"));
        let stranger = Owner::of_dir(&dir.path().join("stranger"));
        let agent = bed.agent_pid(Host::A)?;
        let flow = TcpFlow {
            local: "10.231.0.1:1234".parse()?,
            remote: "10.231.0.3:80".parse()?,
        };
        let ns = NetNs::of_process(agent)?;
        let stale = netlock::engage(owner, "stale", NetNs::of_process(agent)?, &[flow])?.keep();
        let foreign =
            netlock::engage(stranger, "foreign", NetNs::of_process(agent)?, &[flow])?.keep();
        let result = (|| {
            let bin = common::agent_bin()?;
            let args = ["timeout", "5", common::path_str(&bin)?, "serve", "--config"];
            let args = [&args[..], &[common::path_str(&config)?]].concat();
            let (_, out) = bed.host_exec(Host::A, &args)?;
            let (_, tables) = bed.host_exec(Host::A, &["nft", "list", "tables"])?;
            ensure!(
                !tables.contains(&stale),
                "the stale lock survived the agent's start: {tables}\n{out}"
            );
            ensure!(
                tables.contains(&foreign),
                "another owner's lock was removed: {tables}\n{out}"
            );
            ensure!(out.contains("stale network locks removed"), "{out}");
            Ok(())
        })();
        for o in [owner, stranger] {
            netlock::sweep(o, &ns)?;
        }
        result
    });
}
