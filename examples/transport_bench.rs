//! Transport throughput on loopback, for scripts/bench.sh: moves MIB MiB
//! with ferry's QUIC page streams (mutual TLS, several connections), over
//! raw TCP, and over TLS on TCP (rustls, same certificates and provider),
//! and prints one line per mode: `NAME MIB MB/s VALUE`.
//!
//!     cargo run --release --example transport_bench -- [MIB] [quinn|tcp|tls]...

use anyhow::{Context, Result};
use ferry::transport::certs::{self, CA_CERT_FILE, CERT_FILE, KEY_FILE};
use ferry::transport::frame::PAGE_SIZE;
use ferry::transport::tls::rustls_configs;
use ferry::transport::{Settings, TlsFiles, Transport, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Bytes per write: 256 pages, one full page frame.
const CHUNK: usize = 1 << 20;
/// Page streams of the QUIC run (spread over the default bulk connections).
const STREAMS: usize = 4;

fn settings(dir: &Path, name: &str) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        agent_name: name.to_string(),
        tls: TlsFiles {
            ca: dir.join("ca").join(CA_CERT_FILE),
            cert: dir.join(name).join(CERT_FILE),
            key: dir.join(name).join(KEY_FILE),
        },
        allowed_peers: None,
        bulk_connections: ferry::transport::DEFAULT_BULK_CONNECTIONS,
        protocol_version: PROTOCOL_VERSION,
    }
}

async fn quinn_run(dir: &Path, total: usize) -> Result<f64> {
    let server = Arc::new(Transport::bind(settings(dir, "host-b")).await?);
    let client = Transport::bind(settings(dir, "host-a")).await?;
    let addr = server.local_addr()?;
    let acceptor = {
        let server = server.clone();
        tokio::spawn(async move { server.accept().await })
    };
    let mut c = client.connect(addr, "host-b").await?;
    let mut s = acceptor.await??;
    let receiver = tokio::spawn(async move {
        let mut tasks = Vec::new();
        let mut incoming = s.take_incoming_pages();
        for _ in 0..STREAMS {
            let mut rx = incoming.next().await.context("a page stream")?;
            tasks.push(tokio::spawn(async move {
                let mut bytes = 0usize;
                while let Some(frame) = rx.next().await? {
                    bytes += frame.data.len();
                }
                anyhow::Ok(bytes)
            }));
        }
        let mut bytes = 0;
        for t in tasks {
            bytes += t.await??;
        }
        s.send(&bytes).await?;
        anyhow::Ok(s)
    });
    let data = Arc::new(vec![0x5au8; CHUNK]);
    let per_stream = total / STREAMS;
    let start = Instant::now();
    let mut senders = Vec::new();
    for i in 0..STREAMS {
        let mut tx = c.open_pages().await?;
        let data = data.clone();
        senders.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < per_stream {
                tx.send_pages(i as i32, 0, sent as u64, &data).await?;
                sent += CHUNK;
            }
            tx.finish().await?;
            anyhow::Ok(())
        }));
    }
    for s in senders {
        s.await??;
    }
    let received: usize = c.recv().await?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        received == per_stream * STREAMS,
        "received {received} bytes"
    );
    if std::env::var_os("FERRY_BENCH_STATS").is_some() {
        eprintln!("{:#?}", c.bulk_stats());
    }
    c.close("done");
    drop(receiver.await??);
    Ok(received as f64 / secs / 1e6)
}

/// Moves `total` bytes over one TCP connection, through `wrap` on each side
/// (identity for raw TCP, a rustls stream for TLS).
fn tcp_run<R, W>(
    total: usize,
    server_side: impl FnOnce(TcpStream) -> Result<R> + Send + 'static,
    client_side: impl FnOnce(TcpStream) -> Result<W>,
) -> Result<f64>
where
    R: Read,
    W: Write,
{
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> Result<usize> {
        let (sock, _) = listener.accept()?;
        let mut r = server_side(sock)?;
        let mut buf = vec![0u8; CHUNK];
        let mut bytes = 0;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(bytes);
            }
            bytes += n;
        }
    });
    let data = vec![0x5au8; CHUNK];
    let start = Instant::now();
    {
        let mut w = client_side(TcpStream::connect(addr)?)?;
        let mut sent = 0;
        while sent < total {
            w.write_all(&data)?;
            sent += CHUNK;
        }
        w.flush()?;
    }
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(received == total, "received {received} of {total} bytes");
    Ok(received as f64 / secs / 1e6)
}

/// A rustls client stream that sends close_notify when dropped, so the
/// reader sees a clean end.
struct TlsWriter(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Write for TlsWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for TlsWriter {
    fn drop(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
        // Reads what the server sent (session tickets) until it closes, so
        // closing here does not reset the connection under unread data.
        let _ = self.0.sock.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut self.0.sock, &mut std::io::sink());
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().as_deref().unwrap_or("2048").parse()?;
    let mut modes: Vec<String> = args.collect();
    if modes.is_empty() {
        modes = vec!["quinn".into(), "tcp".into(), "tls".into()];
    }
    let total = mib << 20;
    anyhow::ensure!(
        total % (CHUNK * STREAMS) == 0,
        "MIB must be a multiple of 4"
    );
    assert_eq!(CHUNK % PAGE_SIZE, 0);
    let dir = tempfile::tempdir()?;
    certs::init_ca(&dir.path().join("ca"), "bench CA")?;
    for name in ["host-a", "host-b"] {
        certs::issue(&dir.path().join("ca"), name, None, &dir.path().join(name))?;
    }
    for mode in modes {
        let mbps = match mode.as_str() {
            "quinn" => tokio::runtime::Runtime::new()?.block_on(quinn_run(dir.path(), total))?,
            "tcp" => tcp_run(total, Ok, Ok)?,
            "tls" => {
                let server = rustls_configs(&TlsFiles {
                    ca: dir.path().join("ca").join(CA_CERT_FILE),
                    cert: dir.path().join("host-b").join(CERT_FILE),
                    key: dir.path().join("host-b").join(KEY_FILE),
                })?
                .server;
                let client = rustls_configs(&TlsFiles {
                    ca: dir.path().join("ca").join(CA_CERT_FILE),
                    cert: dir.path().join("host-a").join(CERT_FILE),
                    key: dir.path().join("host-a").join(KEY_FILE),
                })?
                .client;
                tcp_run(
                    total,
                    move |sock| {
                        let conn = rustls::ServerConnection::new(server)?;
                        Ok(rustls::StreamOwned::new(conn, sock))
                    },
                    move |sock| {
                        let conn = rustls::ClientConnection::new(client, "host-b".try_into()?)?;
                        Ok(TlsWriter(rustls::StreamOwned::new(conn, sock)))
                    },
                )?
            }
            other => anyhow::bail!("unknown mode {other}: quinn, tcp or tls"),
        };
        println!("transport_{mode} {mib} MB/s {mbps:.0}");
    }
    Ok(())
}
