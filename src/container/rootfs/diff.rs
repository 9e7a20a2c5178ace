//! The source's side: what to send to bring the destination's rootfs to
//! the source's, and the bounded batches it is sent in.

use super::manifest::{
    Change, Entry, Kind, PassStats, MAX_BATCH_BYTES, MAX_BATCH_CHANGES, MAX_CHUNK,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What to send to bring the destination from `have` to `now`: removals
/// first (parents before their contents), then every entry of `now` that
/// `have` lacks or holds differently, parents first. With `trust_ctime`
/// (`have` is an earlier walk of the same tree) a changed ctime also
/// counts; against another host's manifest only size and mtime tell a
/// file's contents apart, and mode and owner alone give a metadata change.
pub fn plan(now: &[Entry], have: &[Entry], trust_ctime: bool) -> Vec<Change> {
    let now_paths: HashMap<&[u8], &Entry> = now.iter().map(|e| (e.path.as_slice(), e)).collect();
    let have_paths: HashMap<&[u8], &Entry> = have.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut changes: Vec<Change> = have
        .iter()
        .filter(|e| !now_paths.contains_key(e.path.as_slice()))
        .map(|e| Change::Remove {
            path: e.path.clone(),
        })
        .collect();
    for e in now {
        let old = have_paths.get(e.path.as_slice());
        let same_kind = old.filter(|o| o.kind == e.kind);
        let full = match same_kind {
            None => true,
            Some(o) => match e.kind {
                Kind::Dir => false,
                Kind::File => {
                    o.size != e.size
                        || o.meta.mtime != e.meta.mtime
                        || (trust_ctime && o.ctime != e.ctime)
                }
                Kind::Symlink => o.target != e.target,
            },
        };
        let meta_differs = same_kind.is_some_and(|o| {
            o.meta.uid != e.meta.uid
                || o.meta.gid != e.meta.gid
                || (e.kind != Kind::Symlink && o.meta.mode != e.meta.mode)
        });
        let path = e.path.clone();
        changes.push(match (e.kind, full, meta_differs) {
            (_, false, false) => continue,
            // The data is read when the batch is made.
            (Kind::File, true, _) => Change::File {
                path,
                meta: e.meta,
                offset: 0,
                data: Vec::new(),
                last: false,
            },
            (Kind::File, false, true) => Change::Meta {
                path,
                kind: Kind::File,
                meta: e.meta,
            },
            (Kind::Dir, ..) => Change::Dir { path, meta: e.meta },
            (Kind::Symlink, ..) => Change::Symlink {
                path,
                target: e.target.clone(),
                meta: e.meta,
            },
        });
    }
    changes
}

/// Turns a plan into bounded batches, reading each file's contents from
/// `root` in chunks of at most [`MAX_CHUNK`] as it goes, and hands every
/// batch to `send`. A file that vanished since the walk is sent as a
/// removal (the frozen pass settles it). Returns what was sent.
pub fn send_plan(
    root: &Path,
    plan: Vec<Change>,
    send: &mut dyn FnMut(Vec<Change>) -> Result<(), String>,
) -> Result<PassStats, String> {
    let mut stats = PassStats::default();
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    let mut flush = |batch: &mut Vec<Change>, bytes: &mut usize, force: bool| {
        if !batch.is_empty()
            && (force || batch.len() >= MAX_BATCH_CHANGES || *bytes >= MAX_BATCH_BYTES)
        {
            *bytes = 0;
            send(std::mem::take(batch))
        } else {
            Ok(())
        }
    };
    for change in plan {
        stats.changes += 1;
        let Change::File { path, meta, .. } = change else {
            batch.push(change);
            flush(&mut batch, &mut batch_bytes, false)?;
            continue;
        };
        let full = root.join(OsStr::from_bytes(&path));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&full);
        let mut file = match file {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %full.display(), %e, "a file to sync is gone");
                batch.push(Change::Remove { path });
                flush(&mut batch, &mut batch_bytes, false)?;
                continue;
            }
        };
        let mut offset = 0u64;
        loop {
            let mut data = Vec::with_capacity(MAX_CHUNK);
            (&mut file)
                .take(MAX_CHUNK as u64)
                .read_to_end(&mut data)
                .map_err(|e| format!("reading {}: {e}", full.display()))?;
            let last = data.len() < MAX_CHUNK;
            let len = data.len();
            stats.bytes += len as u64;
            batch_bytes += len;
            batch.push(Change::File {
                path: path.clone(),
                meta,
                offset,
                data,
                last,
            });
            flush(&mut batch, &mut batch_bytes, false)?;
            offset += len as u64;
            if last {
                break;
            }
        }
    }
    flush(&mut batch, &mut batch_bytes, true)?;
    Ok(stats)
}
