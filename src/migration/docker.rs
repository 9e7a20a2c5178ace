//! A Docker container's live move between two dockerds, around the
//! container migration the runc target does: the source resolves the
//! container through its dockerd and removes it once it runs elsewhere;
//! the destination creates and starts it on its own dockerd when the
//! offer arrives, through ferry-runc's handoff
//! ([`crate::container::docker::PreparedStart`]), so that the restore
//! into its init is all the downtime holds.

use super::error::MigrationError;
use super::options::DockerSource;
use super::protocol::Offer;
use crate::container::docker::{self, Docker, DockerError, PreparedStart};
use crate::container::Container;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The Docker container `name` (a name or an ID) running on `docker`, as
/// the source migrates it: its runc record, and what moves with it.
pub fn resolve(
    docker: &Docker,
    name: &str,
    keep_stopped: bool,
) -> Result<(Container, DockerSource), DockerError> {
    let inspected = docker.inspect_running(name)?;
    let container = docker::runc_container(&inspected.id, inspected.pid)?;
    Ok((
        container,
        DockerSource {
            docker: docker.clone(),
            id: inspected.id,
            spec: inspected.spec,
            keep_stopped,
        },
    ))
}

/// Once the container runs on the destination (its processes here are
/// gone): waits for dockerd to see it stopped, then removes it unless it
/// is to stay stopped. Only logged, whatever happens.
pub(super) fn leave(d: &DockerSource) {
    let done = d.docker.wait_stopped(&d.id).and_then(|()| {
        if d.keep_stopped {
            Ok(())
        } else {
            d.docker.remove(&d.id)
        }
    });
    if let Err(e) = done {
        tracing::warn!(id = %d.id, %e, "removing the migrated Docker container here failed");
    }
}

/// For an offer of a Docker container, before the source freezes
/// anything: checks this host's dockerd can take it, creates it and
/// starts it through ferry-runc's handoff (a socket in `work_dir`).
/// Blocking.
pub(super) fn prepare(
    offer: &Offer,
    dockerd: &Docker,
    work_dir: &Path,
) -> Result<Option<PreparedStart>, MigrationError> {
    let Some(spec) = offer.container.as_ref().and_then(|c| c.docker.as_ref()) else {
        return Ok(None);
    };
    static N: AtomicU32 = AtomicU32::new(0);
    // Short: a socket path must fit a sun_path.
    let socket = work_dir.join(format!(
        "handoff-{}.sock",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    PreparedStart::prepare(dockerd, spec, &socket)
        .map(Some)
        .map_err(MigrationError::local)
}
