//! The agent's claim on its work directory: a lock file held (flock) as
//! long as the agent lives, so that a starting agent knows whether what it
//! finds there belongs to a live agent (it then refuses to start: two
//! agents must not share one) or to a dead run of its own, whose incoming
//! images it removes and reports. Several agents may run on one machine,
//! each with a work directory of its own: nothing outside that directory
//! is touched. The kernel drops a flock when its holder dies, however it
//! dies, so a dead owner is proven, not guessed from a PID.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name: no migration's directory can have it (a
/// migration's name has no dot).
const LOCK_FILE: &str = ".agent.lock";

/// Why the work directory could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another live agent holds the lock.
    #[error("the work directory {dir} belongs to a live agent ({holder}, holding {lock}); give each agent a work directory of its own")]
    InUse {
        /// The work directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// What the lock file says of its holder.
        holder: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock the work directory with {lock}: {source}")]
    Lock {
        /// The lock file.
        lock: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
}

/// This agent's hold on its work directory, released when dropped (or
/// when the agent dies).
pub struct WorkDirClaim {
    _lock: Flock<File>,
}

/// Locks `dir` for this agent, then removes the incoming images a dead
/// run of it left there (a retried migration would be refused as "already
/// in progress"), saying in the log what it found.
pub fn claim(dir: &Path) -> Result<WorkDirClaim, ClaimError> {
    let lock = dir.join(LOCK_FILE);
    let err = |source| ClaimError::Lock {
        lock: lock.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(err)?;
    let mut held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => held,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(ClaimError::InUse {
                dir: dir.to_path_buf(),
                lock,
                holder: match holder.trim() {
                    "" => "unknown process".to_string(),
                    h => h.to_string(),
                },
            });
        }
        Err((_, errno)) => return Err(err(errno.into())),
    };
    held.set_len(0).map_err(err)?;
    held.rewind().map_err(err)?;
    writeln!(held, "agent pid {}", std::process::id()).map_err(err)?;
    remove_left_images(dir);
    Ok(WorkDirClaim { _lock: held })
}

/// Removes the incoming images in `dir` (their owner is dead: this agent
/// holds the lock) and logs what it found.
fn remove_left_images(dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), %e, "cannot list the work directory for what an earlier run left");
            return;
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !crate::migration::destination::is_incoming_dir_name(&name) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => found.push(name),
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), %e, "cannot remove an incoming image an earlier run left")
            }
        }
    }
    if found.is_empty() {
        tracing::info!(dir = %dir.display(), "the work directory holds nothing an earlier run left");
    } else {
        tracing::info!(
            dir = %dir.display(),
            images = ?found,
            "removed {} incoming images a dead run of this agent left (migrations it was receiving when it died)",
            found.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::agent::workdir::*;

    #[test]
    fn a_claimed_directory_is_refused_and_a_dead_claims_images_go() {
        let dir = tempfile::tempdir().unwrap();
        let left = dir.path().join("host-42-7");
        std::fs::create_dir(&left).unwrap();
        std::fs::write(left.join("pages.img"), b"x").unwrap();
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, b"kept").unwrap();
        let claim1 = claim(dir.path()).unwrap();
        assert!(!left.exists());
        assert!(other.exists());
        std::fs::create_dir(&left).unwrap();
        let refused = claim(dir.path()).err().unwrap().to_string();
        assert!(
            refused.contains(&format!("agent pid {}", std::process::id())),
            "{refused}"
        );
        assert!(left.exists(), "a live agent's image was removed");
        drop(claim1);
        let _claim2 = claim(dir.path()).unwrap();
        assert!(!left.exists());
    }
}
