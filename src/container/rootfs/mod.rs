//! `--sync-rootfs`: carries the files a container wrote in its bundle's
//! root filesystem to the destination's copy of the bundle. The source
//! walks its rootfs and compares it with the destination's manifest (what
//! it has: type, size, mtime, mode, owner, symlink target), sends what
//! differs while the container runs, and, once it is frozen, sends again
//! only what changed since that first walk (by size, mtime and ctime).
//!
//! The destination trusts nothing it receives: every path is relative,
//! made of plain components (no `..`, `.`, empty or NUL), bounded in
//! length, and resolved below its rootfs without following any symlink
//! (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS for the parent, then
//! *at calls that do not follow the last component); file data arrives in
//! bounded chunks, in order.
//!
//! Carried: directories, regular files (contents, mode, owner, mtime) and
//! symlinks; entries the destination has and the source does not are
//! removed. Not carried: hard links (each name becomes a file of its own),
//! device nodes, FIFOs and sockets (skipped), extended attributes, and
//! anything on another filesystem mounted inside the rootfs.
//!
//! Files: `manifest` (what a manifest lists, the bounds every message
//! keeps, and the walk that lists a tree), `diff` (what the source sends:
//! the plan and its bounded batches), `apply` (the destination's confined
//! changes), `error`.

mod apply;
mod diff;
mod error;
mod manifest;

pub use apply::{check_path, Target};
pub use diff::{plan, send_plan};
pub use error::RootfsError;
pub use manifest::{
    rootfs_of, walk, Change, Entry, Kind, Meta, PassStats, MAX_BATCH_BYTES, MAX_BATCH_CHANGES,
    MAX_CHUNK, MAX_ENTRIES, MAX_MANIFEST_CHUNK, MAX_NAME, MAX_PATH,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    fn sync(src: &Path, dst: &Path, have: &[Entry], trust_ctime: bool) -> Vec<Entry> {
        let now = walk(src).unwrap();
        let mut target = Target::open(dst).unwrap();
        let plan = plan(&now, have, trust_ctime);
        send_plan(src, plan, &mut |batch| {
            batch
                .into_iter()
                .try_for_each(|c| target.apply(c))
                .map_err(|e| e.to_string())
        })
        .unwrap();
        now
    }

    /// What must match after a sync: everything but ctimes and directory
    /// mtimes.
    fn comparable(root: &Path) -> Vec<Entry> {
        walk(root)
            .unwrap()
            .into_iter()
            .map(|mut e| {
                e.ctime = (0, 0);
                if e.kind == Kind::Dir {
                    e.meta.mtime = (0, 0);
                }
                e
            })
            .collect()
    }

    #[test]
    fn a_rootfs_is_copied_then_only_its_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(src.join("etc/sub")).unwrap();
        fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::write(src.join("big"), vec![7u8; MAX_CHUNK * 2 + 5]).unwrap();
        fs::write(src.join("gone"), "x").unwrap();
        symlink("/bin/busybox", src.join("sh")).unwrap();
        fs::create_dir_all(dst.join("old/deep")).unwrap();
        fs::write(dst.join("old/deep/f"), "stale").unwrap();
        fs::write(dst.join("etc"), "a file where a directory must be").unwrap();

        let manifest = Target::open(&dst).unwrap().manifest().unwrap();
        let first = sync(&src, &dst, &manifest, false);
        assert_eq!(comparable(&src), comparable(&dst));

        // The container goes on: a new file, a changed one, a removal, a
        // file turned into a directory, a new symlink target.
        fs::write(src.join("etc/new"), "new").unwrap();
        fs::write(src.join("etc/hosts"), "10.0.0.1 other\n").unwrap();
        fs::remove_file(src.join("big")).unwrap();
        fs::remove_file(src.join("gone")).unwrap();
        fs::create_dir(src.join("gone")).unwrap();
        fs::remove_file(src.join("sh")).unwrap();
        symlink("busybox", src.join("sh")).unwrap();
        let now = walk(&src).unwrap();
        let changes = plan(&now, &first, true);
        assert_eq!(changes.len(), 5, "{changes:?}");
        sync(&src, &dst, &first, true);
        assert_eq!(comparable(&src), comparable(&dst));
        assert_eq!(
            fs::read(dst.join("etc/hosts")).unwrap(),
            b"10.0.0.1 other\n"
        );
        // Nothing changed: nothing to send.
        let again = walk(&src).unwrap();
        assert!(plan(&again, &now, true).is_empty());
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"../escape",
            b"a/../../escape",
            b"a//b",
            b"a/./b",
            b"a\0b",
            b"a/",
        ] {
            assert!(check_path(bad).is_err(), "{:?} was accepted", bad);
        }
        assert!(check_path(&vec![b'a'; MAX_PATH + 1]).is_err());
        assert!(check_path(&vec![b'a'; MAX_NAME + 1]).is_err());
        assert_eq!(check_path(b"a/b/c").unwrap(), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(check_path(b"c").unwrap(), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn changes_never_leave_the_rootfs_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(outside.join("d")).unwrap();
        fs::write(outside.join("keep"), "mine").unwrap();
        let mut target = Target::open(&root).unwrap();
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
        };
        // The peer first plants a symlink pointing out, then writes,
        // removes and creates through it.
        target
            .apply(Change::Symlink {
                path: b"esc".to_vec(),
                target: outside.as_os_str().as_bytes().to_vec(),
                meta,
            })
            .unwrap();
        let file = |path: &[u8]| Change::File {
            path: path.to_vec(),
            meta,
            offset: 0,
            data: b"pwned".to_vec(),
            last: true,
        };
        assert!(target.apply(file(b"esc/keep")).is_err());
        assert!(target.apply(file(b"esc/new")).is_err());
        assert!(target
            .apply(Change::Remove {
                path: b"esc/keep".to_vec()
            })
            .is_err());
        assert!(target
            .apply(Change::Dir {
                path: b"esc/d/sub".to_vec(),
                meta
            })
            .is_err());
        assert!(target
            .apply(Change::Meta {
                path: b"esc/keep".to_vec(),
                kind: Kind::File,
                meta: Meta {
                    mode: 0o777,
                    ..meta
                }
            })
            .is_err());
        // Writing the symlink itself replaces the link, not its target.
        target.apply(file(b"esc")).unwrap();
        assert_eq!(fs::read(root.join("esc")).unwrap(), b"pwned");
        // Removing a directory symlink removes the link only.
        target
            .apply(Change::Symlink {
                path: b"l".to_vec(),
                target: outside.as_os_str().as_bytes().to_vec(),
                meta,
            })
            .unwrap();
        target
            .apply(Change::Remove {
                path: b"l".to_vec(),
            })
            .unwrap();
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"mine");
        assert!(outside.join("d").is_dir());
        assert!(!outside.join("new").exists());
        assert_eq!(
            fs::metadata(outside.join("keep")).unwrap().mode() & 0o777,
            0o644
        );
        // A chunk that does not follow the previous one is refused.
        let chunk = |offset| Change::File {
            path: b"f".to_vec(),
            meta,
            offset,
            data: vec![1; 10],
            last: false,
        };
        target.apply(chunk(0)).unwrap();
        assert!(target.apply(chunk(1 << 40)).is_err());
        let huge = Change::File {
            path: b"f".to_vec(),
            meta,
            offset: 0,
            data: vec![0; MAX_CHUNK + 1],
            last: true,
        };
        assert!(target.apply(huge).is_err());
    }
}
