//! A long-lived client, as a real service's client is: over ONE TCP
//! connection from inside a network namespace (a thread that enters it),
//! it makes an [`Exchange`] every `interval` (a keep-alive HTTP GET, a
//! redis INCR, or a step of a two-way counter stream), reads each answer (a
//! count) and records when it came. It stops at its first error (a reset, a
//! timeout, an early end), and never reconnects: whatever it saw is in its
//! [`KeepAliveReport`].

use anyhow::{bail, ensure, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

/// How long one answer may take before the client counts it an error.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// What the client sends and reads, once per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// A keep-alive HTTP GET, answered by a count that goes up by one.
    Http,
    /// A redis `INCR` of the key [`REDIS_KEY`], answered by its new value:
    /// it only goes up on one connection, since others increment it too.
    RedisIncr,
    /// The workload sends a counter (a little-endian u64) at its own pace
    /// (tests/workloads/tcp_stream.c): the client reads the next one, which
    /// goes up by one, and sends back its own, which goes up by one too.
    Stream,
}

/// The key [`Exchange::RedisIncr`] increments.
pub const REDIS_KEY: &str = "ferry-live";

/// A client running on its thread until [`KeepAliveClient::stop`].
pub struct KeepAliveClient {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<KeepAliveReport>>,
}

/// What the client saw, in order.
#[derive(Debug)]
pub struct KeepAliveReport {
    /// What the client exchanged.
    pub exchange: Exchange,
    /// The connection's local address when it connected.
    pub local: Option<SocketAddr>,
    /// Its local address after the last answer (the same connection).
    pub local_at_end: Option<SocketAddr>,
    /// Each answer's body (a count) and when it arrived.
    pub answers: Vec<(u64, Instant)>,
    /// The error that stopped the client, if one did.
    pub error: Option<String>,
}

impl KeepAliveReport {
    /// The longest time between two answers in a row.
    pub fn longest_gap(&self) -> Duration {
        self.answers
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default()
    }

    /// Fails unless the client saw no error, at least `min` answers, counts
    /// going up by one each time (none repeated or skipped; for
    /// [`Exchange::RedisIncr`], going up) and the same local port
    /// throughout.
    pub fn check(&self, min: usize) -> Result<()> {
        if let Some(e) = &self.error {
            bail!(
                "the client failed after {} answers: {e}",
                self.answers.len()
            );
        }
        ensure!(
            self.answers.len() >= min,
            "the client got {} answers, expected at least {min}",
            self.answers.len()
        );
        for w in self.answers.windows(2) {
            let by_one = w[1].0 == w[0].0 + 1;
            ensure!(
                by_one || (self.exchange == Exchange::RedisIncr && w[1].0 > w[0].0),
                "count {} followed {}: repeated or skipped",
                w[1].0,
                w[0].0
            );
        }
        ensure!(
            self.local.is_some() && self.local == self.local_at_end,
            "the connection's local address changed: {:?} then {:?}",
            self.local,
            self.local_at_end
        );
        Ok(())
    }
}

impl KeepAliveClient {
    /// Connects from network namespace `netns` (a path such as
    /// /var/run/netns/NAME) to `addr` and starts its exchanges, one every
    /// `interval` (zero: as fast as the answers come).
    pub fn start(
        netns: &str,
        addr: SocketAddr,
        exchange: Exchange,
        interval: Duration,
    ) -> Result<Self> {
        let netns = File::open(netns).with_context(|| format!("opening {netns}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut report = KeepAliveReport {
                exchange,
                local: None,
                local_at_end: None,
                answers: Vec::new(),
                error: None,
            };
            if let Err(e) = run(&netns, addr, interval, &stopping, &ready_tx, &mut report) {
                report.error = Some(format!("{e:#}"));
            }
            let _ = ready_tx.send(());
            report
        });
        ready_rx
            .recv_timeout(ANSWER_TIMEOUT)
            .context("the client got no first answer")?;
        Ok(KeepAliveClient {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the client after its current request and returns what it saw.
    pub fn stop(mut self) -> Result<KeepAliveReport> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().context("stopped twice")?;
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the client thread panicked"))
    }
}

impl Drop for KeepAliveClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    netns: &File,
    addr: SocketAddr,
    interval: Duration,
    stop: &AtomicBool,
    ready: &std::sync::mpsc::Sender<()>,
    report: &mut KeepAliveReport,
) -> Result<()> {
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let stream = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_nodelay(true)?;
    report.local = Some(stream.local_addr()?);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let count = match report.exchange {
            Exchange::Http => {
                write!(
                    writer,
                    "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\r\n"
                )
                .context("sending a request")?;
                parse_count(&read_answer(&mut reader)?)?
            }
            Exchange::RedisIncr => {
                write!(writer, "INCR {REDIS_KEY}\r\n").context("sending INCR")?;
                let mut line = String::new();
                ensure!(
                    reader
                        .read_line(&mut line)
                        .context("reading INCR's answer")?
                        > 0,
                    "the server closed the connection"
                );
                let value = line.trim_end().strip_prefix(':');
                parse_count(value.with_context(|| format!("INCR answered {line:?}"))?)?
            }
            Exchange::Stream => {
                let mut counter = [0; 8];
                reader
                    .read_exact(&mut counter)
                    .context("reading the workload's counter")?;
                writer
                    .write_all(&(report.answers.len() as u64).to_le_bytes())
                    .context("sending the client's counter")?;
                u64::from_le_bytes(counter)
            }
        };
        report.answers.push((count, Instant::now()));
        report.local_at_end = Some(writer.local_addr()?);
        if report.answers.len() == 1 {
            let _ = ready.send(());
        }
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            sleep(wait);
        } else {
            next = Instant::now();
        }
    }
    if report.exchange == Exchange::Stream {
        // The workload sends on its own: a close with its bytes unread
        // would be a reset. Writing ended, the workload ends its side
        // too (tcp_stream.c), and what it sent meanwhile is read to the
        // end first.
        writer.shutdown(Shutdown::Write)?;
        std::io::copy(&mut reader, &mut std::io::sink()).context("reading the stream's end")?;
    }
    Ok(())
}

fn parse_count(text: &str) -> Result<u64> {
    text.trim()
        .parse::<u64>()
        .with_context(|| format!("the answer {text:?} is not a count"))
}

/// Reads one HTTP/1.1 answer (Content-Length or chunked) and returns its
/// body; fails on any status but 200 and on a connection the server ends.
fn read_answer(reader: &mut BufReader<TcpStream>) -> Result<String> {
    let mut line = String::new();
    ensure!(
        reader.read_line(&mut line).context("reading the status")? > 0,
        "the server closed the connection"
    );
    ensure!(line.contains(" 200 "), "the server answered {line:?}");
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        ensure!(
            reader.read_line(&mut line)? > 0,
            "the connection ended in the headers"
        );
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            ensure!(
                !value.trim().eq_ignore_ascii_case("close"),
                "the server closes the connection after this answer"
            );
        }
    }
    let mut body = Vec::new();
    if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16)?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        bail!("an answer with neither Content-Length nor chunks");
    }
    Ok(String::from_utf8(body)?)
}
