//! The capabilities the restore needs in the container's init while it
//! rebuilds the checkpointed processes in it: CAP_SYS_ADMIN (clone3 with
//! set_tid for the children's PIDs, the executable in PR_SET_MM_MAP, a
//! seccomp filter without no_new_privs) and CAP_SYS_PTRACE (userfaultfd).
//! Docker's default set has neither, and Docker 20.10 cannot grant
//! CAP_CHECKPOINT_RESTORE. As CRIU restores with full privileges and
//! drops them at the end, ferry-runc creates the init with these added
//! (bundle config.json rewritten for `runc create`, then put back as it
//! was), and the restore ends by setting the checkpointed capability
//! sets, bounding set included: the container runs with exactly the
//! capabilities it had. Processes `docker exec` starts later get theirs
//! from their own process spec.

use std::path::{Path, PathBuf};

/// What the restore needs, as config.json names them.
const RESTORE_CAPS: &[&str] = &["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"];

/// The sets of process.capabilities the init needs them in.
const SETS: &[&str] = &["bounding", "effective", "permitted"];

/// A bundle whose config.json was rewritten; put it back with
/// [`WidenedBundle::put_back`] (also done when dropped).
#[derive(Debug)]
pub struct WidenedBundle {
    config: PathBuf,
    original: Option<Vec<u8>>,
}

impl WidenedBundle {
    /// Writes config.json back as it was.
    pub fn put_back(mut self) -> Result<(), String> {
        self.write_back()
    }

    fn write_back(&mut self) -> Result<(), String> {
        match self.original.take() {
            Some(bytes) => std::fs::write(&self.config, bytes)
                .map_err(|e| format!("putting back {}: {e}", self.config.display())),
            None => Ok(()),
        }
    }
}

impl Drop for WidenedBundle {
    fn drop(&mut self) {
        if let Err(e) = self.write_back() {
            eprintln!("ferry-runc: {e}");
        }
    }
}

/// Adds what the restore needs to the capabilities of the bundle's
/// process when some are missing; None when it has them all.
pub fn widen(bundle: &Path) -> Result<Option<WidenedBundle>, String> {
    let config = bundle.join("config.json");
    let original =
        std::fs::read(&config).map_err(|e| format!("reading {}: {e}", config.display()))?;
    let mut spec: serde_json::Value = serde_json::from_slice(&original)
        .map_err(|e| format!("{} is not JSON: {e}", config.display()))?;
    if !add_caps(&mut spec) {
        return Ok(None);
    }
    let widened = WidenedBundle {
        config: config.clone(),
        original: Some(original),
    };
    let text = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
    std::fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))?;
    Ok(Some(widened))
}

/// Adds the missing capabilities to `spec`'s process; whether any was.
fn add_caps(spec: &mut serde_json::Value) -> bool {
    let Some(process) = spec.get_mut("process").and_then(|p| p.as_object_mut()) else {
        return false;
    };
    let caps = process
        .entry("capabilities")
        .or_insert_with(|| serde_json::json!({}));
    let Some(caps) = caps.as_object_mut() else {
        return false;
    };
    let mut added = false;
    for set in SETS {
        let list = caps
            .entry(set.to_string())
            .or_insert_with(|| serde_json::json!([]));
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        for cap in RESTORE_CAPS {
            if !list.iter().any(|c| c == cap) {
                list.push(serde_json::Value::from(*cap));
                added = true;
            }
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_caps_are_added_and_the_original_put_back() {
        let tmp = tempfile::tempdir().unwrap();
        let original = r#"{"process":{"capabilities":{"bounding":["CAP_CHOWN"],"effective":["CAP_CHOWN"],"permitted":["CAP_CHOWN"],"inheritable":[]}},"root":{"path":"/r"}}"#;
        std::fs::write(tmp.path().join("config.json"), original).unwrap();
        let w = widen(tmp.path()).unwrap().expect("caps were missing");
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap())
                .unwrap();
        for set in SETS {
            let list = spec["process"]["capabilities"][set].as_array().unwrap();
            assert!(list.iter().any(|c| c == "CAP_SYS_ADMIN"), "{set}");
            assert!(list.iter().any(|c| c == "CAP_CHOWN"), "{set}");
        }
        assert_eq!(
            spec["process"]["capabilities"]["inheritable"],
            serde_json::json!([])
        );
        w.put_back().unwrap();
        let back = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn a_process_with_the_caps_is_left_alone() {
        let mut spec = serde_json::json!({"process": {"capabilities": {
            "bounding": RESTORE_CAPS, "effective": RESTORE_CAPS, "permitted": RESTORE_CAPS}}});
        assert!(!add_caps(&mut spec));
    }
}
