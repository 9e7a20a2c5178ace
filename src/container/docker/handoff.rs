//! The handoff between ferry-runc and the local agent that keeps Docker's
//! own start path for a migrated container: the agent starts the
//! container on its dockerd from a checkpoint directory holding only a
//! [`Marker`]; `docker start --checkpoint` makes containerd's shim call
//! ferry-runc's `restore`, which creates the container's init as always
//! (the shim's stdio, its reaping, Docker's network hook) and, seeing the
//! marker, hands that waiting init to the agent ([`HuskReady`]) instead
//! of restoring an image itself. The agent restores the migrated state
//! into it when the source's final state arrives and answers
//! ([`HandoffReply`]); ferry-runc then writes the PID file and returns,
//! and `docker start` returns with the container Up.
//!
//! One JSON line each way on the Unix socket the marker names.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The marker's file name in a checkpoint directory.
pub const MARKER: &str = "ferry-handoff.json";

/// What the checkpoint directory of a handoff holds instead of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The agent's socket for this container.
    pub socket: PathBuf,
}

/// ferry-runc to the agent: the container's init waits, created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HuskReady {
    /// The init's PID, as this host sees it.
    pub pid: i32,
    /// runc's state directory (the shim's `--root`).
    pub root: PathBuf,
    /// The runtime's container ID.
    pub id: String,
}

/// The agent to ferry-runc: the state is restored into the init, or why
/// not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffReply {
    /// Why the restore failed (None: the container runs).
    pub error: Option<String>,
}

/// The marker in the checkpoint directory `image_path`, if it is a
/// handoff's.
pub fn read_marker(image_path: &Path) -> Option<Marker> {
    let bytes = std::fs::read(image_path.join(MARKER)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// ferry-runc's half: tells the agent at `marker` that the init waits,
/// and waits (as long as the agent takes) for its answer.
pub fn hand_over(marker: &Marker, ready: &HuskReady) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        format!(
            "ferry-runc restore: handing the container's init to the agent at {} failed: {e}",
            marker.socket.display()
        )
    };
    let mut stream = UnixStream::connect(&marker.socket).map_err(fail)?;
    let mut line = serde_json::to_string(ready).map_err(|e| e.to_string())?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(fail)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(fail)?;
    let reply: HandoffReply = serde_json::from_str(&answer).map_err(|_| {
        format!(
            "ferry-runc restore: the agent at {} closed the handoff without restoring the container (its migration failed or was aborted)",
            marker.socket.display()
        )
    })?;
    match reply.error {
        None => Ok(()),
        Some(e) => Err(format!(
            "ferry-runc restore: the agent's restore failed: {e}"
        )),
    }
}

/// The agent's half: the socket ferry-runc connects to.
#[derive(Debug)]
pub struct HandoffSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// A waiting init ferry-runc handed over, and the connection to answer on.
#[derive(Debug)]
pub struct HandedOver {
    /// What ferry-runc said.
    pub husk: HuskReady,
    stream: UnixStream,
}

impl HandoffSocket {
    /// Listens at `path` (replacing a stale socket file).
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(HandoffSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path (for the marker).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `within` for ferry-runc's connection and reads what it
    /// hands over; `gone` says, while it waits, why it never will (the
    /// start failed).
    pub fn accept(
        &self,
        within: Duration,
        gone: impl Fn() -> Option<String>,
    ) -> Result<HandedOver, String> {
        let deadline = Instant::now() + within;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(why) = gone() {
                        return Err(why);
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "ferry-runc did not hand the container's init over within {within:?} (is the container's runtime ferry-runc?)"
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(format!("accepting on {}: {e}", self.path.display())),
            }
        };
        let read = |e: std::io::Error| format!("reading ferry-runc's handoff: {e}");
        stream.set_nonblocking(false).map_err(read)?;
        stream.set_read_timeout(Some(within)).map_err(read)?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).map_err(read)?;
        let husk = serde_json::from_str(&line)
            .map_err(|e| format!("ferry-runc's handoff {line:?} is not readable: {e}"))?;
        Ok(HandedOver { husk, stream })
    }
}

impl Drop for HandoffSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl HandedOver {
    /// Answers ferry-runc: restored, or why not.
    pub fn reply(mut self, error: Option<String>) {
        let mut line = serde_json::to_string(&HandoffReply { error }).unwrap_or_default();
        line.push('\n');
        if let Err(e) = self.stream.write_all(line.as_bytes()) {
            tracing::warn!(%e, "answering ferry-runc's handoff failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_is_handed_over_and_answered() {
        let dir = tempfile::tempdir().unwrap();
        let socket = HandoffSocket::bind(&dir.path().join("h.sock")).unwrap();
        let marker = Marker {
            socket: socket.path().to_path_buf(),
        };
        std::fs::write(
            dir.path().join(MARKER),
            serde_json::to_vec(&marker).unwrap(),
        )
        .unwrap();
        let read = read_marker(dir.path()).unwrap();
        let runtime = std::thread::spawn(move || {
            let ready = HuskReady {
                pid: 42,
                root: "/r".into(),
                id: "c1".into(),
            };
            hand_over(&read, &ready)
        });
        let got = socket.accept(Duration::from_secs(5), || None).unwrap();
        assert_eq!((got.husk.pid, got.husk.id.as_str()), (42, "c1"));
        got.reply(Some("no state".into()));
        let e = runtime.join().unwrap().unwrap_err();
        assert!(e.contains("no state"), "{e}");
    }
}
