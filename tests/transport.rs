//! The transport between agents over real QUIC on loopback: sessions with
//! mutual TLS, control messages, page streams over several connections,
//! and the refusals (certificate from another CA, a name not allowed, a
//! protocol version mismatch, hostile frames). Certificates are made by the
//! library into a temporary directory removed at the end.

use anyhow::{Context, Result};
use ferry::transport::certs;
use ferry::transport::frame::{
    self, PageHeader, FLAG_ALL_ZERO, MAX_CONTROL_LEN, MAX_FRAME_PAGES, PAGE_SIZE,
};
use ferry::transport::{
    AcceptError, ConnectError, PageReceiver, RecvError, Session, Settings, TlsFiles, Transport,
    PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

/// A site CA with host-a and host-b, and a foreign CA that also issued a
/// "host-a".
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Result<Pki> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        certs::init_ca(&d.join("ca"), "ferry test CA")?;
        certs::issue(&d.join("ca"), "host-a", None, &d.join("host-a"))?;
        certs::issue(
            &d.join("ca"),
            "host-b",
            Some("127.0.0.1".parse()?),
            &d.join("host-b"),
        )?;
        certs::init_ca(&d.join("other-ca"), "another CA")?;
        certs::issue(&d.join("other-ca"), "host-a", None, &d.join("rogue"))?;
        Ok(Pki { dir })
    }

    /// Settings for host `name` with certificate directory `certdir`,
    /// trusting the site CA.
    fn settings(&self, name: &str, certdir: &str) -> Settings {
        let d = self.dir.path();
        Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            agent_name: name.to_string(),
            tls: TlsFiles {
                ca: d.join("ca").join(certs::CA_CERT_FILE),
                cert: d.join(certdir).join(certs::CERT_FILE),
                key: d.join(certdir).join(certs::KEY_FILE),
            },
            allowed_peers: None,
            bulk_connections: ferry::transport::DEFAULT_BULK_CONNECTIONS,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Msg {
    State {
        pid: i32,
        fds: Vec<u32>,
        note: String,
    },
    Done {
        streams: u32,
    },
}

/// Binds a server and a client, and opens a session between them; returns
/// the client's and the server's result.
async fn open(
    server: Settings,
    client: Settings,
) -> Result<(
    Arc<Transport>,
    Transport,
    Result<Session, ConnectError>,
    Result<Session, AcceptError>,
)> {
    let server = Arc::new(Transport::bind(server).await?);
    let client = Transport::bind(client).await?;
    let addr = server.local_addr()?;
    let acceptor = {
        let server = server.clone();
        tokio::spawn(async move { server.accept().await })
    };
    let connected = client.connect(addr, "host-b").await;
    let accepted = acceptor.await?;
    Ok((server, client, connected, accepted))
}

#[tokio::test]
async fn handshake_and_control_messages_round_trip() -> Result<()> {
    let pki = Pki::new()?;
    let (_s, client, connected, accepted) = open(
        pki.settings("host-b", "host-b"),
        pki.settings("host-a", "host-a"),
    )
    .await?;
    let mut c = connected?;
    let mut s = accepted?;
    assert_eq!(c.peer_agent(), "host-b");
    assert_eq!(s.peer_agent(), "host-a");
    assert_eq!(s.peer_addr(), client.local_addr()?);
    assert_eq!(c.bulk_connections(), 2);
    assert_eq!(s.bulk_connections(), 2);

    let msg = Msg::State {
        pid: 1234,
        fds: (0..10_000).collect(),
        note: "héllo".into(),
    };
    c.send(&msg).await?;
    assert_eq!(s.recv::<Msg>().await?, msg);
    s.send(&Msg::Done { streams: 0 }).await?;
    assert_eq!(c.recv::<Msg>().await?, Msg::Done { streams: 0 });
    Ok(())
}

/// Deterministic page content: each 8-byte word names stream, page, word.
fn pattern(stream: u64, npages: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(npages * PAGE_SIZE);
    for word in 0..npages * PAGE_SIZE / 8 {
        v.extend_from_slice(&(stream << 48 | word as u64).to_le_bytes());
    }
    v
}

#[tokio::test]
async fn page_frames_round_trip_over_several_streams_and_connections() -> Result<()> {
    const STREAMS: u64 = 6;
    // More than one frame's worth, not a multiple of MAX_FRAME_PAGES.
    let npages = MAX_FRAME_PAGES as usize * 3 + 17;
    let base = 0x7f12_3450_0000u64;
    let pki = Pki::new()?;
    let mut client = pki.settings("host-a", "host-a");
    client.bulk_connections = 3;
    let (_s, _c, connected, accepted) = open(pki.settings("host-b", "host-b"), client).await?;
    let mut c = connected?;
    let mut s = accepted?;
    assert_eq!(s.bulk_connections(), 3);

    let mut senders = Vec::new();
    for stream in 0..STREAMS {
        let mut tx = c.open_pages().await?;
        let data = pattern(stream, npages);
        senders.push(tokio::spawn(async move {
            tx.send_pages(stream as i32, 1, base, &data).await?;
            tx.send_zero(stream as i32, 2, base + (npages * PAGE_SIZE) as u64, 1000)
                .await?;
            tx.finish().await?;
            anyhow::Ok(())
        }));
    }

    let mut receivers = Vec::new();
    let mut incoming = s.take_incoming_pages();
    for _ in 0..STREAMS {
        let mut rx = incoming.next().await.context("a page stream")?;
        receivers.push(tokio::spawn(async move {
            let mut pid = None;
            let mut got = Vec::new();
            let mut zero_pages = 0u64;
            while let Some(frame) = rx.next().await? {
                let h = frame.header;
                anyhow::ensure!(pid.is_none_or(|p| p == h.pid), "pids mixed on one stream");
                pid = Some(h.pid);
                if h.is_zero() {
                    assert_eq!(h.round, 2);
                    assert!(frame.data.is_empty());
                    zero_pages += u64::from(h.npages);
                } else {
                    assert_eq!(h.round, 1);
                    assert_eq!(h.vaddr, base + got.len() as u64);
                    got.extend_from_slice(frame.data);
                }
            }
            anyhow::Ok((pid.context("no frame")?, got, zero_pages))
        }));
    }
    for sender in senders {
        sender.await??;
    }
    let mut seen = Vec::new();
    for receiver in receivers {
        let (pid, got, zero_pages) = receiver.await??;
        assert_eq!(zero_pages, 1000);
        assert!(
            got == pattern(pid as u64, npages),
            "pages of stream {pid} differ"
        );
        seen.push(pid);
    }
    seen.sort();
    assert_eq!(seen, (0..STREAMS as i32).collect::<Vec<_>>());
    // Every byte is here: tell the sender so it may close.
    s.send(&Msg::Done {
        streams: STREAMS as u32,
    })
    .await?;
    assert_eq!(
        c.recv::<Msg>().await?,
        Msg::Done {
            streams: STREAMS as u32
        }
    );
    c.close("done");
    Ok(())
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() -> Result<()> {
    let pki = Pki::new()?;
    let (_s, client, connected, accepted) = open(
        pki.settings("host-b", "host-b"),
        pki.settings("host-a", "rogue"),
    )
    .await?;
    let client_addr = client.local_addr()?;
    let err = accepted
        .err()
        .context("the server accepted a foreign certificate")?;
    let text = err.to_string();
    assert!(matches!(err, AcceptError::Connection { .. }), "{text}");
    assert!(text.contains(&client_addr.to_string()), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let err = connected.err().context("the client got a session")?;
    assert!(err.to_string().contains("certificate"), "{err}");
    Ok(())
}

#[tokio::test]
async fn server_certificate_from_another_ca_is_refused_by_the_client() -> Result<()> {
    let pki = Pki::new()?;
    let server = Transport::bind(pki.settings("host-b", "host-b")).await?;
    // The client trusts only the other CA.
    let mut settings = pki.settings("host-a", "rogue");
    settings.tls.ca = pki.dir.path().join("other-ca").join(certs::CA_CERT_FILE);
    let client = Transport::bind(settings).await?;
    let addr = server.local_addr()?;
    let err = client
        .connect(addr, "host-b")
        .await
        .err()
        .context("connected to an untrusted server")?;
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("UnknownIssuer"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn peer_not_in_the_allow_list_is_refused_on_both_sides() -> Result<()> {
    let pki = Pki::new()?;
    // The server allows only host-c.
    let mut server = pki.settings("host-b", "host-b");
    server.allowed_peers = Some(vec!["host-c".into()]);
    let (_s, client, connected, accepted) = open(server, pki.settings("host-a", "host-a")).await?;
    let err = accepted.err().context("the server accepted host-a")?;
    let text = err.to_string();
    assert!(
        text.contains(&client.local_addr()?.to_string())
            && text.contains("not allowed")
            && text.contains("host-a"),
        "{text}"
    );
    let err = connected.err().context("the client got a session")?;
    assert!(err.to_string().contains("not allowed"), "{err}");

    // The client allows only host-c: the server host-b is refused by it.
    let mut client = pki.settings("host-a", "host-a");
    client.allowed_peers = Some(vec!["host-c".into()]);
    let server = Transport::bind(pki.settings("host-b", "host-b")).await?;
    let client = Transport::bind(client).await?;
    let addr = server.local_addr()?;
    let err = client
        .connect(addr, "host-b")
        .await
        .err()
        .context("the client accepted host-b")?;
    let text = err.to_string();
    assert!(
        matches!(err, ConnectError::PeerName(_))
            && text.contains(&addr.to_string())
            && text.contains("host-b"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn protocol_version_mismatch_is_a_clear_error_on_both_sides() -> Result<()> {
    let pki = Pki::new()?;
    let mut client = pki.settings("host-a", "host-a");
    client.protocol_version = PROTOCOL_VERSION + 98;
    let (_s, _c, connected, accepted) = open(pki.settings("host-b", "host-b"), client).await?;
    let theirs = (PROTOCOL_VERSION + 98).to_string();
    let err = accepted.err().context("the server accepted version 99")?;
    let text = err.to_string();
    assert!(
        matches!(err, AcceptError::Version(_)) && text.contains(&theirs),
        "{text}"
    );
    let err = connected.err().context("the client got a session")?;
    let text = err.to_string();
    assert!(
        matches!(err, ConnectError::Refused { .. })
            && text.contains("protocol version")
            && text.contains(&theirs),
        "{text}"
    );
    Ok(())
}

/// The agent name in a Hello must be one the peer's certificate carries,
/// on both sides: it is what authorises a post-copy resume.
#[tokio::test]
async fn a_hello_in_another_agents_name_is_refused_on_both_sides() -> Result<()> {
    let pki = Pki::new()?;
    // The client says host-c with host-a's certificate.
    let (_s, _c, connected, accepted) = open(
        pki.settings("host-b", "host-b"),
        pki.settings("host-c", "host-a"),
    )
    .await?;
    let expected = "calls itself \"host-c\" in its Hello, but its certificate names [\"host-a\"]";
    let text = accepted
        .err()
        .context("the server accepted host-c")?
        .to_string();
    assert!(text.contains(expected), "{text}");
    let text = connected
        .err()
        .context("the client got a session")?
        .to_string();
    assert!(text.contains(expected), "{text}");
    // The server says host-c with host-b's certificate.
    let (_s, _c, connected, accepted) = open(
        pki.settings("host-c", "host-b"),
        pki.settings("host-a", "host-a"),
    )
    .await?;
    let text = connected
        .err()
        .context("the client took host-c")?
        .to_string();
    let expected = "calls itself \"host-c\" in its Hello, but its certificate names [\"host-b\"]";
    assert!(text.contains(expected), "{text}");
    assert!(
        accepted.is_err(),
        "the server kept a session its peer refused"
    );
    Ok(())
}

fn peer() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

#[tokio::test]
async fn hostile_control_frames_are_refused_before_allocation() {
    // 4 GiB announced, nothing follows.
    let mut r: &[u8] = &u32::MAX.to_le_bytes();
    let err = frame::read_message::<_, Msg>(&mut r, peer())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RecvError::TooLarge { len: u32::MAX, .. }),
        "{err}"
    );
    let mut r: &[u8] = &(MAX_CONTROL_LEN + 1).to_le_bytes();
    let err = frame::read_message::<_, Msg>(&mut r, peer())
        .await
        .unwrap_err();
    assert!(matches!(err, RecvError::TooLarge { .. }), "{err}");
    // Garbage that is not a Msg.
    let mut bytes = 3u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[9, 9, 9]);
    let err = frame::read_message::<_, Msg>(&mut bytes.as_slice(), peer())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RecvError::Malformed { .. }) && err.to_string().contains("malformed"),
        "{err}"
    );
    // Cut short inside the body.
    let mut bytes = 100u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 10]);
    let err = frame::read_message::<_, Msg>(&mut bytes.as_slice(), peer())
        .await
        .unwrap_err();
    assert!(matches!(err, RecvError::Io { .. }), "{err}");
    // Nothing at all: the peer closed.
    let err = frame::read_message::<_, Msg>(&mut &[][..], peer())
        .await
        .unwrap_err();
    assert!(matches!(err, RecvError::Closed { .. }), "{err}");
}

async fn first_frame_error(bytes: Vec<u8>) -> String {
    let mut rx = PageReceiver::new(bytes.as_slice(), peer());
    match rx.next().await {
        Ok(frame) => panic!("accepted a hostile frame: {frame:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn hostile_page_headers_are_refused_before_allocation() {
    let good = PageHeader {
        round: 0,
        pid: 77,
        flags: 0,
        vaddr: 0x1000,
        npages: 1,
    };
    let too_many = PageHeader {
        npages: u32::MAX,
        ..good
    };
    let text = first_frame_error(too_many.encode().to_vec()).await;
    assert!(
        text.contains("4294967295 pages") && text.contains("77"),
        "{text}"
    );
    let unaligned = PageHeader {
        vaddr: 0x1234,
        ..good
    };
    let text = first_frame_error(unaligned.encode().to_vec()).await;
    assert!(
        text.contains("0x1234") && text.contains("not page-aligned"),
        "{text}"
    );
    let text = first_frame_error(vec![0xAB; 32]).await;
    assert!(text.contains("magic"), "{text}");
    // A header cut short, then a payload cut short.
    let text = first_frame_error(good.encode()[..10].to_vec()).await;
    assert!(text.contains("ended 10 bytes into"), "{text}");
    let mut bytes = good.encode().to_vec();
    bytes.extend_from_slice(&[1; 100]);
    let text = first_frame_error(bytes).await;
    assert!(text.contains("could not read pages"), "{text}");
    // A well-formed zero frame and end of stream are fine.
    let zero = PageHeader {
        flags: FLAG_ALL_ZERO,
        npages: MAX_FRAME_PAGES,
        ..good
    };
    let bytes = zero.encode().to_vec();
    let mut rx = PageReceiver::new(bytes.as_slice(), peer());
    assert_eq!(rx.next().await.unwrap().unwrap().header, zero);
    assert!(rx.next().await.unwrap().is_none());
}

#[test]
fn certificate_keys_are_private_and_files_are_never_overwritten() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new()?;
    let d = pki.dir.path();
    for key in [d.join("ca/ca.key"), d.join("host-a/key.pem")] {
        let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let err = certs::init_ca(&d.join("ca"), "again")
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    let err = certs::issue(Path::new("/nonexistent"), "x", None, &d.join("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    Ok(())
}

#[tokio::test]
async fn an_agent_config_file_binds_a_transport_and_bad_tls_files_are_named() -> Result<()> {
    use ferry::config::AgentConfig;
    let pki = Pki::new()?;
    let d = pki.dir.path();
    let path = d.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"host-a\"\nlisten = \"127.0.0.1:0\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nallowed_peers = [\"host-b\"]\n",
            d.join("ca/ca.pem").display(),
            d.join("host-a/cert.pem").display(),
            d.join("host-a/key.pem").display()
        ),
    )?;
    let config = AgentConfig::load(&path)?;
    let settings = Settings::from_config(&config);
    assert_eq!(settings.allowed_peers, Some(vec!["host-b".to_string()]));
    let transport = Transport::bind(settings.clone()).await?;
    assert_ne!(transport.local_addr()?.port(), 0);

    let mut missing = settings.clone();
    missing.tls.key = d.join("nowhere/key.pem");
    let err = Transport::bind(missing)
        .await
        .err()
        .context("bound without a key")?;
    let text = err.to_string();
    assert!(
        text.contains("private key") && text.contains("nowhere/key.pem"),
        "{text}"
    );
    // A certificate where the key should be.
    let mut swapped = settings;
    swapped.tls.key = d.join("host-a/cert.pem");
    let err = Transport::bind(swapped)
        .await
        .err()
        .context("bound with a certificate as key")?;
    assert!(err.to_string().contains("private key"), "{err}");
    Ok(())
}

/// The two hosts of scripts/testbed.sh under a prefix of this test's own;
/// deleted on drop, whether the test passed or not.
struct Netns {
    prefix: String,
}

fn testbed(action: &str, prefix: &str) -> Result<()> {
    let out = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed.sh"))
        .args([action, "--name-prefix", prefix])
        .stdin(std::process::Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "testbed.sh {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Netns {
    fn up() -> Result<Netns> {
        let netns = Netns {
            prefix: format!("fx{}", std::process::id() % 100_000),
        };
        testbed("up", &netns.prefix)?;
        Ok(netns)
    }

    /// Runs `body` on a thread of its own inside host `letter`'s network
    /// namespace, with a tokio runtime there (sockets stay in the namespace
    /// they were made in).
    fn run<T: Send + 'static>(
        &self,
        letter: &str,
        body: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        let path = format!("/run/netns/{}-{letter}", self.prefix);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).with_context(|| path.clone())?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            body()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = testbed("down", &self.prefix) {
            eprintln!("{e:#}");
        }
    }
}

#[test]
fn pages_cross_a_veth_link_between_two_network_namespaces() -> Result<()> {
    let pki = Arc::new(Pki::new()?);
    let netns = Netns::up()?;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let npages = 1000;
    let server = {
        let pki = pki.clone();
        netns.run("b", move || {
            tokio::runtime::Runtime::new()?.block_on(async move {
                let mut settings = pki.settings("host-b", "host-b");
                settings.listen = "10.231.0.2:0".parse()?;
                settings.allowed_peers = Some(vec!["host-a".into()]);
                let server = Transport::bind(settings).await?;
                addr_tx.send(server.local_addr()?)?;
                let mut s = server.accept().await?;
                let mut incoming = s.take_incoming_pages();
                let mut rx = incoming.next().await.context("a page stream")?;
                let mut got = Vec::new();
                while let Some(frame) = rx.next().await? {
                    got.extend_from_slice(frame.data);
                }
                anyhow::ensure!(got == pattern(9, npages), "pages differ");
                s.send(&Msg::Done { streams: 1 }).await?;
                // Wait for the client to close.
                let _ = s.recv::<Msg>().await;
                anyhow::Ok(s.peer_addr())
            })
        })
    };
    let client = {
        let pki = pki.clone();
        netns.run("a", move || {
            let addr: SocketAddr = addr_rx.recv()?;
            tokio::runtime::Runtime::new()?.block_on(async move {
                let mut settings = pki.settings("host-a", "host-a");
                settings.listen = "10.231.0.1:0".parse()?;
                let client = Transport::bind(settings).await?;
                let mut c = client.connect(addr, "host-b").await?;
                let mut tx = c.open_pages().await?;
                tx.send_pages(9, 0, 0x10000, &pattern(9, npages)).await?;
                tx.finish().await?;
                anyhow::ensure!(c.recv::<Msg>().await? == Msg::Done { streams: 1 });
                c.close("done");
                client.shutdown().await;
                anyhow::Ok(())
            })
        })
    };
    let client_result = client.join().expect("client thread");
    let server_result = server.join().expect("server thread");
    client_result?;
    let peer = server_result?;
    assert_eq!(peer.ip().to_string(), "10.231.0.1");
    drop(netns);
    Ok(())
}
