//! Docker containers through the Docker Engine API on dockerd's Unix
//! socket: what a live migration between two Docker hosts needs of each
//! dockerd. The source resolves a container (its init, its runc record,
//! what creates it again: [`DockerSpec`]) and removes it once it runs
//! elsewhere; the destination checks its dockerd (reachable, image
//! present, name free, runtime known), creates the container and starts
//! it through ferry-runc's handoff ([`handoff`], [`PreparedStart`]), all
//! before the source freezes anything.

mod api;
mod error;
pub mod handoff;
mod http;
mod prepared;

pub use api::{runc_container, Docker, DockerSpec, Inspected, DEFAULT_SOCKET};
pub use error::DockerError;
pub use prepared::PreparedStart;
