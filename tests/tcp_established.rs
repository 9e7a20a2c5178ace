//! An established TCP connection between a workload and a peer outside
//! its tree (this test, on loopback) survives a checkpoint: killed and
//! restored (CRIU's --tcp-established case), the peer goes on reading and
//! writing on its original socket, with no reset and no byte lost or
//! repeated; left running, the connection keeps working in the original.
//!
//! No network lock is needed here: the peer stays quiet (sends nothing)
//! from the checkpoint until the restore is done.

mod common;

use anyhow::{ensure, Context, Result};
use common::{Mode, Spec, TestDir, Workload};
use nix::sys::socket::{
    bind, connect, getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog,
    SockFlag, SockType, SockaddrIn,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::thread::sleep;
use std::time::{Duration, Instant};

const SPEC: Spec = Spec::new("tcp_outside");
/// The same, shutting down writing with its counter queued unsent.
const FIN: Spec = Spec::new("tcp_outside").args(&["fin"]);
/// The same, the peer (this test) shutting down its side first.
const PEER_FIN: Spec = Spec::new("tcp_outside").args(&["peer_fin"]);
/// The same, also connecting a multipath TCP socket to a listener whose
/// queue is full.
const MPTCP: Spec = Spec::new("tcp_outside").args(&["mptcp"]);
/// The sizes tcp_outside.c uses.
const TOTAL: usize = 4 << 20;
const QUEUED: usize = 1000;
const AFTER: usize = 20000;
const REPLY: usize = 30000;

fn pattern(i: usize, seed: usize) -> u8 {
    (i * 7 + seed + i / 251) as u8
}

fn bytes(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(i, seed)).collect()
}

/// Connects to the workload's port (written to files/port) with a small
/// receive buffer, so that the workload's counter stays queued on its side.
fn connect_to(dir: &TestDir) -> Result<TcpStream> {
    let file = dir.path().join("files").join("port");
    let started = Instant::now();
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(p) = text.trim().parse() {
                break p;
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "no port in {}",
            file.display()
        );
        sleep(Duration::from_millis(10));
    };
    let sock = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&sock, sockopt::RcvBuf, &4096)?;
    let addr = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr).context("connecting")?;
    Ok(TcpStream::from(sock))
}

/// Starts the workload and connects to it, its QUEUED bytes sent.
fn connected(dir: &TestDir, spec: &Spec) -> Result<(Workload, TcpStream)> {
    let w = Workload::start(dir, spec)?;
    let mut s = connect_to(dir)?;
    s.write_all(&bytes(QUEUED, 2))?;
    // Let the workload fill its send queue and see the bytes.
    sleep(Duration::from_millis(300));
    Ok((w, s))
}

/// After the checkpoint: sends AFTER bytes (unless the peer_fin spec sent
/// them before), stops the workload, and checks that everything it wrote
/// arrives, in order, then end of file.
fn converse(dir: &TestDir, w: &mut Workload, spec: &Spec, mut s: TcpStream) -> Result<()> {
    let fin = spec.args == ["fin"];
    if spec.args != ["peer_fin"] {
        s.write_all(&bytes(AFTER, 3))?;
    }
    let reader = std::thread::spawn(move || -> Result<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .context("reading from the workload")?;
        Ok(got)
    });
    w.finish(spec)?;
    let got = reader.join().expect("the reader panicked")?;
    let expected = if fin {
        // What the kernel took before the FIN.
        let sent = std::fs::read_to_string(dir.path().join("files").join("sent"))?;
        bytes(sent.trim().parse()?, 1)
    } else {
        let mut all = bytes(TOTAL, 1);
        all.extend(bytes(REPLY, 4));
        all
    };
    ensure!(
        got.len() == expected.len(),
        "read {} bytes, expected {}",
        got.len(),
        expected.len()
    );
    if let Some(at) = got.iter().zip(&expected).position(|(a, b)| a != b) {
        anyhow::bail!("byte {at} of the stream is wrong");
    }
    Ok(())
}

#[test]
fn a_connection_to_an_outside_peer_survives_kill_and_restore() {
    common::run_test("tcp_outside_kill", |dir| {
        let (mut w, s) = connected(dir, &SPEC)?;
        common::checkpoint(dir, &w, &SPEC, Mode::Kill)?;
        w.reap_checkpointed()?;
        common::restore_workload(dir, &mut w)?;
        converse(dir, &mut w, &SPEC, s)
    });
}

/// The workload shut down writing while its counter still waited, unsent,
/// for the peer's window (FIN_WAIT1, the FIN queued behind the data): after
/// kill and restore the peer reads the whole counter, then end of file.
#[test]
fn a_fin_queued_behind_unsent_data_survives_kill_and_restore() {
    common::run_test("tcp_outside_fin", |dir| {
        let (mut w, s) = connected(dir, &FIN)?;
        common::checkpoint(dir, &w, &FIN, Mode::Kill)?;
        w.reap_checkpointed()?;
        common::restore_workload(dir, &mut w)?;
        converse(dir, &mut w, &FIN, s)
    });
}

#[test]
fn a_connection_to_an_outside_peer_works_after_leave_running() {
    common::run_test("tcp_outside_leave_running", |dir| {
        let (mut w, s) = connected(dir, &SPEC)?;
        common::checkpoint(dir, &w, &SPEC, Mode::LeaveRunning)?;
        converse(dir, &mut w, &SPEC, s)
    });
}

/// The peer shut down its side (after its AFTER bytes): the workload's end
/// is in CLOSE_WAIT. After kill and restore the workload reads the bytes,
/// then end of file (the restore gave the restored socket the peer's FIN
/// again: the peer, its FIN acknowledged, never sends it again), and its
/// whole counter and reply reach the peer.
#[test]
fn a_connection_the_outside_peer_half_closed_survives_kill_and_restore() {
    common::run_test("tcp_outside_close_wait", |dir| {
        let (mut w, mut s) = connected(dir, &PEER_FIN)?;
        s.write_all(&bytes(AFTER, 3))?;
        s.shutdown(Shutdown::Write)?;
        sleep(Duration::from_millis(100));
        common::checkpoint(dir, &w, &PEER_FIN, Mode::Kill)?;
        w.reap_checkpointed()?;
        common::restore_workload(dir, &mut w)?;
        converse(dir, &mut w, &PEER_FIN, s)
    });
}

/// The workload also holds a multipath TCP socket (still connecting: its
/// SYN dropped by a listener of this test whose queue is full), which
/// TCP_REPAIR cannot read: refused before anything is frozen, naming it;
/// the workload runs on. (A plain TCP socket still connecting, SYN_SENT,
/// is carried: socket_tcp_syn_sent.c in tests/zdtm.rs.)
#[test]
fn a_multipath_tcp_connection_is_refused() {
    common::run_test("tcp_outside_mptcp", |dir| {
        let (mut w, _s) = connected(dir, &MPTCP)?;
        let listener = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(
            listener.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
        )?;
        listen(&listener, Backlog::new(0)?)?;
        let addr: SockaddrIn = getsockname(listener.as_raw_fd())?;
        // One connection fills the queue: later SYNs are dropped.
        let _queued = TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port()))?;
        std::fs::write(
            dir.path().join("files").join("connect"),
            format!("{}\n", addr.port()),
        )?;
        sleep(Duration::from_millis(300));
        let err = common::checkpoint_refusal(dir, w.pid())?;
        ensure!(err.contains("multipath TCP"), "unclear refusal: {err}");
        common::check_running(&mut w, "after the refused checkpoint")
    });
}
