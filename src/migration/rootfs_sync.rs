//! `--sync-rootfs` on the control stream: the source asks for the
//! destination's manifest of the container's rootfs, sends what differs
//! while the container runs, and once it is frozen sends what changed
//! since; the destination applies each batch below its own rootfs
//! (src/container/rootfs.rs refuses what could leave it).

use super::error::MigrationError;
use super::protocol::{RootfsReply, RootfsRequest, ToDestination, ToSource};
use crate::container::rootfs::{self, Entry, PassStats, Target};
use crate::transport::Session;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::runtime::Handle;

/// The source's side: its rootfs and what it looked like at the last pass.
pub(super) struct SourceRootfs {
    root: PathBuf,
    snapshot: Vec<Entry>,
    stats: super::stats::RootfsSyncStats,
}

impl SourceRootfs {
    /// The figures so far.
    pub(super) fn stats(&self) -> super::stats::RootfsSyncStats {
        self.stats
    }
}

/// The first pass, while the container runs: fetches the destination's
/// manifest, then sends every difference.
pub(super) fn first_pass(
    rt: &Handle,
    session: &mut Session,
    bundle: &Path,
) -> Result<SourceRootfs, MigrationError> {
    let root = rootfs::rootfs_of(bundle).map_err(MigrationError::local)?;
    rt.block_on(session.send(&ToDestination::Rootfs(RootfsRequest::Query)))?;
    let mut theirs = Vec::new();
    loop {
        match rt.block_on(session.recv::<ToSource>()) {
            Ok(ToSource::Rootfs(RootfsReply::Manifest { entries, last })) => {
                if entries.len() > rootfs::MAX_MANIFEST_CHUNK
                    || theirs.len() + entries.len() > rootfs::MAX_ENTRIES
                {
                    return Err(MigrationError::protocol(format!(
                        "the destination's rootfs manifest is too large ({} entries so far, {} in one message)",
                        theirs.len() + entries.len(),
                        entries.len()
                    )));
                }
                theirs.extend(entries);
                if last {
                    break;
                }
            }
            Ok(ToSource::Failed { reason }) => return Err(MigrationError::refused("", reason)),
            Ok(other) => {
                return Err(MigrationError::protocol(format!(
                    "the destination answered {other:?} to the rootfs query"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let snapshot = rootfs::walk(&root).map_err(MigrationError::local)?;
    let plan = rootfs::plan(&snapshot, &theirs, false);
    let precopy = send_changes(rt, session, &root, plan)?;
    tracing::info!(
        root = %root.display(),
        changes = precopy.changes,
        bytes = precopy.bytes,
        "rootfs synced while the container runs"
    );
    Ok(SourceRootfs {
        root,
        snapshot,
        stats: super::stats::RootfsSyncStats {
            precopy,
            ..Default::default()
        },
    })
}

/// The pass while frozen: what changed since the last walk.
pub(super) fn frozen_pass(
    rt: &Handle,
    session: &mut Session,
    src: &mut SourceRootfs,
) -> Result<(), MigrationError> {
    let started = Instant::now();
    let now = rootfs::walk(&src.root).map_err(MigrationError::local)?;
    let plan = rootfs::plan(&now, &src.snapshot, true);
    src.stats.frozen = send_changes(rt, session, &src.root, plan)?;
    src.snapshot = now;
    src.stats.frozen_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(())
}

fn send_changes(
    rt: &Handle,
    session: &mut Session,
    root: &Path,
    plan: Vec<rootfs::Change>,
) -> Result<PassStats, MigrationError> {
    // send_plan (the container's) speaks in sentences: the link's error
    // is kept aside, so that its kind survives.
    let mut link_error = None;
    let stats = rootfs::send_plan(root, plan, &mut |changes| {
        rt.block_on(session.send(&ToDestination::Rootfs(RootfsRequest::Changes {
            changes,
            last: false,
        })))
        .map_err(|e| {
            let why = e.to_string();
            link_error = Some(MigrationError::from(e));
            why
        })
    })
    .map_err(|why| {
        link_error
            .take()
            .unwrap_or_else(|| MigrationError::local(why))
    })?;
    rt.block_on(session.send(&ToDestination::Rootfs(RootfsRequest::Changes {
        changes: Vec::new(),
        last: true,
    })))?;
    match rt.block_on(session.recv::<ToSource>()) {
        Ok(ToSource::Rootfs(RootfsReply::Synced { .. })) => Ok(stats),
        Ok(ToSource::Failed { reason }) => Err(MigrationError::refused("", reason)),
        Ok(other) => Err(MigrationError::protocol(format!(
            "the destination answered {other:?} to rootfs changes"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The destination's side: the container's rootfs here, opened on the
/// first rootfs message, and the changes applied in the current pass.
#[derive(Default)]
pub(super) struct DestinationRootfs {
    target: Option<Target>,
    applied: u64,
}

impl DestinationRootfs {
    async fn target(&mut self, bundle: Option<&str>) -> Result<Target, MigrationError> {
        if let Some(t) = self.target.take() {
            return Ok(t);
        }
        let Some(bundle) = bundle else {
            return Err(MigrationError::protocol(
                "rootfs changes arrived for a migration that is not a container's",
            ));
        };
        let bundle = PathBuf::from(bundle);
        tokio::task::spawn_blocking(move || {
            let root = rootfs::rootfs_of(&bundle)?;
            Target::open(&root)
        })
        .await
        .map_err(MigrationError::local)?
        .map_err(MigrationError::local)
    }

    /// Answers one message of the rootfs conversation.
    pub(super) async fn answer(
        &mut self,
        session: &mut Session,
        bundle: Option<&str>,
        request: RootfsRequest,
    ) -> Result<(), MigrationError> {
        match request {
            RootfsRequest::Query => self.answer_query(session, bundle).await,
            RootfsRequest::Changes { changes, last } => {
                self.apply(session, bundle, changes, last).await
            }
        }
    }

    /// Answers a [`RootfsRequest::Query`] with this rootfs's manifest.
    async fn answer_query(
        &mut self,
        session: &mut Session,
        bundle: Option<&str>,
    ) -> Result<(), MigrationError> {
        let target = self.target(bundle).await?;
        let (target, manifest) = tokio::task::spawn_blocking(move || {
            let m = target.manifest();
            (target, m)
        })
        .await
        .map_err(MigrationError::local)?;
        self.target = Some(target);
        let manifest = manifest.map_err(MigrationError::local)?;
        let mut chunks = manifest.chunks(rootfs::MAX_MANIFEST_CHUNK).peekable();
        if chunks.peek().is_none() {
            let empty = ToSource::Rootfs(RootfsReply::Manifest {
                entries: Vec::new(),
                last: true,
            });
            return Ok(session.send(&empty).await?);
        }
        while let Some(chunk) = chunks.next() {
            let message = ToSource::Rootfs(RootfsReply::Manifest {
                entries: chunk.to_vec(),
                last: chunks.peek().is_none(),
            });
            session.send(&message).await?;
        }
        Ok(())
    }

    /// Applies a batch of [`RootfsRequest::Changes`]; after the last one
    /// of a pass, answers [`RootfsReply::Synced`].
    async fn apply(
        &mut self,
        session: &mut Session,
        bundle: Option<&str>,
        changes: Vec<rootfs::Change>,
        last: bool,
    ) -> Result<(), MigrationError> {
        if changes.len() > rootfs::MAX_BATCH_CHANGES {
            return Err(MigrationError::protocol(format!(
                "a batch of {} rootfs changes arrived (at most {})",
                changes.len(),
                rootfs::MAX_BATCH_CHANGES
            )));
        }
        let mut target = self.target(bundle).await?;
        let n = changes.len() as u64;
        let (target, result) = tokio::task::spawn_blocking(move || {
            let result = changes.into_iter().try_for_each(|c| target.apply(c));
            (target, result)
        })
        .await
        .map_err(MigrationError::local)?;
        self.target = Some(target);
        result.map_err(MigrationError::local)?;
        self.applied += n;
        if last {
            let synced = ToSource::Rootfs(RootfsReply::Synced {
                changes: std::mem::take(&mut self.applied),
            });
            session.send(&synced).await?;
        }
        Ok(())
    }
}
