//! Why a Docker operation failed: one type for the client, the source's
//! resolution and the destination's prepared start, in a file of its own
//! so that they share it without importing each other.

use std::path::PathBuf;

/// Why a Docker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// dockerd does not answer on its socket.
    #[error("dockerd is not reachable at {}: {why}", socket.display())]
    Unreachable {
        /// The socket.
        socket: PathBuf,
        /// Why.
        why: String,
    },
    /// dockerd's answer could not be read.
    #[error("dockerd's answer to {what} cannot be read: {why}")]
    BadAnswer {
        /// The request.
        what: String,
        /// Why.
        why: String,
    },
    /// dockerd refused a request.
    #[error("dockerd refused {what} (HTTP {status}): {message}")]
    Api {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// dockerd's message.
        message: String,
    },
    /// The container is not running.
    #[error("Docker container {name} is {status}, not running")]
    NotRunning {
        /// The container.
        name: String,
        /// Its status.
        status: String,
    },
    /// The destination's dockerd lacks the container's image.
    #[error("the image {image} of container {name} is not on the dockerd at {} (docker load or import it there first)", socket.display())]
    ImageMissing {
        /// The image.
        image: String,
        /// The container.
        name: String,
        /// That dockerd's socket.
        socket: PathBuf,
    },
    /// The destination's dockerd has a container of that name already.
    #[error("the dockerd at {} has a container named {name} already ({id})", socket.display())]
    NameTaken {
        /// The name.
        name: String,
        /// The container holding it.
        id: String,
        /// That dockerd's socket.
        socket: PathBuf,
    },
    /// The destination's dockerd does not know the container's runtime.
    #[error("the dockerd at {} has no runtime {runtime:?}, which container {name} runs with (register ferry-runc under that name in its daemon.json)", socket.display())]
    RuntimeMissing {
        /// The runtime's name.
        runtime: String,
        /// The container.
        name: String,
        /// That dockerd's socket.
        socket: PathBuf,
    },
    /// The runc record of a container's init could not be found.
    #[error("the runc state of Docker container {id} (init {pid}) cannot be found: {why}")]
    Layout {
        /// The container.
        id: String,
        /// Its init.
        pid: i32,
        /// Why.
        why: String,
    },
    /// Preparing or finishing the start of a migrated container failed.
    #[error("starting Docker container {name} here failed: {why}")]
    Start {
        /// The container.
        name: String,
        /// Why.
        why: String,
    },
}
