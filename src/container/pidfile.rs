//! The PID file a runtime writes for whoever started the container: a
//! shim (containerd's, conmon) reads the init's host PID from it to wait
//! for and signal the container, so a restore must write it as runc does.

use std::io;
use std::path::Path;

/// Writes `pid` (as this host sees it) into `path` the way runc does: the
/// number alone, without a newline, into a file beside it renamed over
/// `path`, so that a reader never sees it half written.
pub fn write_pid_file(path: &Path, pid: i32) -> io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "pid".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.ferry-{}", std::process::id()));
    std::fs::write(&tmp, pid.to_string())?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_holds_the_number_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("init.pid");
        std::fs::write(&path, "old").unwrap();
        write_pid_file(&path, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
