//! The destination's side of a Docker container's move, made when the
//! offer arrives so that Docker's slow start path stays out of the
//! downtime: the container created on this dockerd, a checkpoint
//! directory holding only the handoff marker, and `docker start
//! --checkpoint` under way in a thread of its own, until ferry-runc has
//! handed its init over, which then waits for the migrated state.

use super::api::{Docker, DockerSpec};
use super::error::DockerError;
use super::handoff::{HandedOver, HandoffSocket, Marker, MARKER};
use crate::container::{Container, Runtime};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The checkpoint's name in the container's checkpoints directory.
const CHECKPOINT: &str = "ferry-handoff";

/// How long ferry-runc may take to hand the init over, and `docker
/// start` to return once it is restored (or refused).
const WITHIN: Duration = Duration::from_secs(60);

/// A container created and being started here, its init waiting for the
/// migrated state. Removed from dockerd (whatever runs in it killed)
/// when the last clone is dropped, unless [`PreparedStart::keep`] was
/// called.
#[derive(Debug, Clone)]
pub struct PreparedStart {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    docker: Docker,
    name: String,
    id: String,
    checkpoint_dir: PathBuf,
    socket: Mutex<Option<HandoffSocket>>,
    handed: Mutex<Option<HandedOver>>,
    /// The init ferry-runc handed over, and the container as runc knows
    /// it.
    husk: Mutex<Option<(i32, Container)>>,
    started: Mutex<StartOutcome>,
    kept: AtomicBool,
}

/// Where `docker start` is.
#[derive(Debug)]
enum StartOutcome {
    /// Under way: its result comes on this channel.
    Pending(Receiver<Result<(), DockerError>>),
    /// Returned (the error's text).
    Done(Result<(), String>),
}

impl PreparedStart {
    /// Checks `docker` can take the container `spec` describes, creates
    /// it, and starts it through ferry-runc's handoff on a socket at
    /// `socket` (a path this dockerd's runtime calls can reach), until
    /// ferry-runc hands the created init over. Refused before anything is
    /// made when the dockerd cannot take it; what was made is removed on
    /// a later failure.
    pub fn prepare(docker: &Docker, spec: &DockerSpec, socket: &Path) -> Result<Self, DockerError> {
        docker.check_target(spec)?;
        let root = docker.root_dir()?;
        let id = docker.create(spec)?;
        let fail = |why: String| DockerError::Start {
            name: spec.name.clone(),
            why,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let checkpoint_dir = root.join("containers").join(&id).join("checkpoints");
        let prepared = PreparedStart {
            inner: Arc::new(Inner {
                docker: docker.clone(),
                name: spec.name.clone(),
                id: id.clone(),
                checkpoint_dir: checkpoint_dir.join(CHECKPOINT),
                socket: Mutex::new(None),
                handed: Mutex::new(None),
                husk: Mutex::new(None),
                started: Mutex::new(StartOutcome::Pending(rx)),
                kept: AtomicBool::new(false),
            }),
        };
        // From here on, a failure removes the container (drop).
        let listening = HandoffSocket::bind(socket)
            .map_err(|e| fail(format!("listening on {}: {e}", socket.display())))?;
        let marker = Marker {
            socket: socket.to_path_buf(),
        };
        let dir = &prepared.inner.checkpoint_dir;
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                std::fs::write(
                    dir.join(MARKER),
                    serde_json::to_vec(&marker).unwrap_or_default(),
                )
            })
            .map_err(|e| fail(format!("writing the handoff into {}: {e}", dir.display())))?;
        *lock(&prepared.inner.socket) = Some(listening);
        let starter = docker.clone();
        std::thread::Builder::new()
            .name("docker-start".into())
            .spawn(move || {
                let _ = tx.send(starter.start_from_checkpoint(&id, CHECKPOINT));
            })
            .map_err(|e| fail(format!("cannot start a thread: {e}")))?;
        prepared.accept()?;
        Ok(prepared)
    }

    /// The container's ID on this dockerd.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The container's init, handed over by ferry-runc (its PID), and the
    /// container as runc knows it.
    pub fn husk(&self) -> Result<(i32, Container), DockerError> {
        lock(&self.inner.husk)
            .clone()
            .ok_or_else(|| DockerError::Start {
                name: self.inner.name.clone(),
                why: "ferry-runc has not handed its init over".into(),
            })
    }

    /// Waits for ferry-runc to hand the container's init over.
    fn accept(&self) -> Result<(), DockerError> {
        let inner = &self.inner;
        let fail = |why: String| DockerError::Start {
            name: inner.name.clone(),
            why,
        };
        let handed = {
            let socket = lock(&inner.socket);
            let socket = socket
                .as_ref()
                .ok_or_else(|| fail("the handoff is over already".into()))?;
            socket
                .accept(WITHIN, || match inner.start_result(None) {
                    Some(Err(e)) => Some(format!("docker start failed: {e}")),
                    Some(Ok(())) => Some("docker start returned without a handoff".into()),
                    None => None,
                })
                .map_err(fail)?
        };
        let husk = &handed.husk;
        let container = Container::new(Runtime::Runc, Some(&husk.root), &husk.id);
        *lock(&inner.husk) = Some((husk.pid, container));
        *lock(&inner.handed) = Some(handed);
        Ok(())
    }

    /// Once the state is restored into the init: tells ferry-runc, and
    /// waits for `docker start` to return (the container Up).
    pub fn finish(&self) -> Result<(), DockerError> {
        let inner = &self.inner;
        if let Some(h) = lock(&inner.handed).take() {
            h.reply(None);
        }
        let done = inner.start_result(Some(WITHIN));
        let _ = std::fs::remove_dir_all(&inner.checkpoint_dir);
        match done {
            Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(DockerError::Start {
                name: inner.name.clone(),
                why: format!("docker start failed: {why}"),
            }),
            None => Err(DockerError::Start {
                name: inner.name.clone(),
                why: format!("docker start did not return within {WITHIN:?}"),
            }),
        }
    }

    /// The container stays: nothing is removed when this is dropped.
    pub fn keep(&self) {
        self.inner.kept.store(true, Ordering::Release);
    }

    /// Removes the container (the migration failed): ferry-runc is told,
    /// `docker start` awaited, then `docker rm -f`.
    pub fn remove(&self) {
        self.inner.remove();
    }
}

impl Inner {
    /// `docker start`'s result: at once (None while under way), or
    /// waiting up to `wait`.
    fn start_result(&self, wait: Option<Duration>) -> Option<Result<(), String>> {
        let mut started = lock(&self.started);
        if let StartOutcome::Pending(rx) = &*started {
            let got = match wait {
                None => rx.try_recv().map_err(|e| e == TryRecvError::Empty),
                Some(w) => rx
                    .recv_timeout(w)
                    .map_err(|e| e == RecvTimeoutError::Timeout),
            };
            let result = match got {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(true) => return None,
                Err(false) => Err("the start thread is gone".to_string()),
            };
            *started = StartOutcome::Done(result);
        }
        match &*started {
            StartOutcome::Done(r) => Some(r.clone()),
            StartOutcome::Pending(_) => None,
        }
    }

    fn remove(&self) {
        if let Some(h) = lock(&self.handed).take() {
            h.reply(Some("the migration failed".into()));
        }
        lock(&self.socket).take();
        self.start_result(Some(WITHIN));
        if let Err(e) = self.docker.remove(&self.id) {
            tracing::error!(id = %self.id, %e, "removing the Docker container of a failed migration failed");
        }
        self.kept.store(true, Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.kept.load(Ordering::Acquire) {
            self.remove();
        }
    }
}

/// A mutex's content, also after a panic elsewhere.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
