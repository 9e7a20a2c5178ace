//! Where each engaged lock is, so that the next start of its owner finds
//! a lock a killed run left in a network namespace other than its own (a
//! container's): one file per lock under /run (a tmpfs, emptied at boot
//! like the tables themselves), in a directory per owner, naming a path
//! that reaches the namespace (/proc/PID/ns/net of a process in it, or a
//! bound name) and the namespace's nsfs name, which tells whether that
//! path still leads to the same namespace.

use std::path::{Path, PathBuf};

/// The journal's root.
const ROOT: &str = "/run/ferry/netlocks";

/// The directory of the owner whose tables start with `prefix`.
fn owner_dir(prefix: &str) -> PathBuf {
    Path::new(ROOT).join(prefix.trim_end_matches('_'))
}

/// The entry of `table`, whose name starts with its owner's prefix
/// (ferry_<tag>_), so the entry is found from the name alone.
fn entry(table: &str) -> Option<PathBuf> {
    let tag_end = table.match_indices('_').nth(1)?.0;
    Some(owner_dir(&table[..=tag_end]).join(table))
}

/// Records lock `table`, in the namespace reached by `path` and named
/// `netns`. A failure is logged: the lock itself holds.
pub fn record(table: &str, path: &str, netns: &str) {
    let Some(file) = entry(table) else { return };
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&file, format!("{path}\n{netns}\n")));
    if let Err(err) = written {
        tracing::warn!(table, %err, "the network lock is not journaled: a killed agent's next start will not find it outside its own namespace");
    }
}

/// Forgets lock `table` (released, or handed to a restore).
pub fn forget(table: &str) {
    if let Some(file) = entry(table) {
        let _ = std::fs::remove_file(&file);
        // The owner's directory goes with its last entry.
        if let Some(dir) = file.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The namespaces where the owner with table prefix `prefix` recorded
/// locks (each path with the nsfs name it led to), each once; every
/// entry is forgotten.
pub fn take_namespaces(prefix: &str) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(owner_dir(prefix)) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for file in entries.flatten().map(|e| e.path()) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let _ = std::fs::remove_file(&file);
        let mut lines = text.lines();
        let (Some(path), Some(name)) = (lines.next(), lines.next()) else {
            continue;
        };
        let recorded = (path.to_string(), name.to_string());
        if !paths.contains(&recorded) {
            paths.push(recorded);
        }
    }
    let _ = std::fs::remove_dir(owner_dir(prefix));
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_found_from_the_table_name() {
        assert_eq!(
            entry("ferry_00ab_123_1f"),
            Some(PathBuf::from(
                "/run/ferry/netlocks/ferry_00ab/ferry_00ab_123_1f"
            ))
        );
        assert_eq!(entry("nounderscore"), None);
    }
}
