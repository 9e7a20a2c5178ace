//! ferry-runc: an OCI runtime with runc's command line whose `checkpoint`
//! and `restore` run ferry's engine, so that Docker (through containerd's
//! shim) and Podman (through conmon) checkpoint and restore containers
//! with ferry instead of CRIU. Every other command is runc's: ferry-runc
//! becomes runc (same arguments, stdio and environment).
//!
//! Nothing here asks for CRIU: the "CRIU version check" Docker reports
//! without it is runc's own (libcontainer's checkpoint and restore),
//! never reached since those two commands do not go to runc.

mod args;
mod criu_files;
pub mod criu_version;
mod criu_wire;
mod help;
mod husk_caps;
mod log;

pub use args::{parse, CheckpointArgs, GlobalFlags, Invocation, RestoreArgs};
pub use log::RuntimeLog;

use super::{Container, ContainerError, CreateOptions, InitStdio, Runtime};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs ferry-runc with `argv` (the program's name first): what the
/// binary's `main` is.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let rest = argv.get(1..).unwrap_or_default();
    let words: Vec<String> = rest
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (global, invocation) = parse(&words);
    let log = RuntimeLog::new(&global);
    let done = match invocation {
        Ok(Invocation::PassThrough) => Err(exec_runc(rest)),
        Ok(Invocation::Help) => {
            print!("{}", help::MAIN);
            Ok(())
        }
        Ok(Invocation::CommandHelp(text)) => {
            print!("{text}");
            Ok(())
        }
        Ok(Invocation::Checkpoint(a)) => checkpoint(&global, &a, &log)
            .inspect_err(|e| work_log(a.work_path.as_deref(), "dump.log", e)),
        Ok(Invocation::Restore(a)) => restore(&global, &a, &log)
            .inspect_err(|e| work_log(a.work_path.as_deref(), "restore.log", e)),
        Err(refused) => Err(refused),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            log.error(&msg);
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// Becomes runc with `args`; returns only why that failed.
fn exec_runc(args: &[OsString]) -> String {
    let runc = match find_runc() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let err = std::process::Command::new(&runc)
        .arg0("runc")
        .args(args)
        .exec();
    format!("ferry-runc: cannot execute {}: {err}", runc.display())
}

/// The first `runc` on PATH that is not this program.
fn find_runc() -> Result<PathBuf, String> {
    let me = std::env::current_exe().and_then(std::fs::canonicalize).ok();
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("runc"))
        .find(|p| p.is_file() && std::fs::canonicalize(p).ok() != me)
        .ok_or_else(|| "ferry-runc: no runc on PATH (other than ferry-runc itself): every command but checkpoint and restore is runc's".to_string())
}

/// The container the command names, every runc call given the global
/// flags.
fn container(global: &GlobalFlags, id: &str) -> Container {
    Container::new(Runtime::Runc, global.root.as_deref(), id).with_flags(global.runtime_flags())
}

/// `checkpoint`: thaws a container its caller paused (containerd pauses
/// before it asks for a checkpoint, and resumes after), checkpoints it
/// with ferry's engine, and pauses it again if it stays, so that the
/// caller's resume finds it as it left it.
fn checkpoint(global: &GlobalFlags, a: &CheckpointArgs, log: &RuntimeLog) -> Result<(), String> {
    let c = container(global, &a.id);
    let paused = c.state().map_err(|e| e.to_string())?.status == "paused";
    if paused {
        log.debug("thawing the paused container for the checkpoint");
        c.resume().map_err(|e| e.to_string())?;
    }
    log.debug(&format!(
        "checkpointing container {} into {}",
        a.id,
        a.image_path.display()
    ));
    let done = super::checkpoint(&c, &a.image_path, a.leave_running);
    if paused && (a.leave_running || done.is_err()) {
        if let Err(e) = c.pause() {
            log.error(&format!("pausing container {} again failed: {e}", a.id));
        }
    }
    let stats = done.map_err(|e| e.to_string())?;
    log.debug(&format!(
        "checkpointed {} processes, frozen {:.1} ms",
        stats.processes, stats.frozen_ms
    ));
    let work = a.work_path.as_deref().unwrap_or(&a.image_path);
    if let Err(e) = criu_files::write_dump_stats(work, &stats) {
        log.error(&e);
    }
    criu_files::write_inventory(&a.image_path)
}

/// `restore`: creates the container from its bundle with this process's
/// stdio (what the shim gave the runtime), restores the image into its
/// init (or, when the checkpoint directory holds a live migration's
/// handoff marker, hands the init to the local agent, which restores the
/// migrated state into it: `crate::container::docker::handoff`), and
/// writes the PID file.
fn restore(global: &GlobalFlags, a: &RestoreArgs, log: &RuntimeLog) -> Result<(), String> {
    let c = container(global, &a.id);
    super::check_capabilities().map_err(|e| e.to_string())?;
    super::check_runtime(Runtime::Runc).map_err(|e| e.to_string())?;
    log.debug(&format!(
        "creating container {} from {}",
        a.id,
        a.bundle.display()
    ));
    let opts = CreateOptions {
        stdio: InitStdio::Inherit,
        args: a.create_args.clone(),
    };
    let widened = husk_caps::widen(&a.bundle)?;
    if widened.is_some() {
        log.debug("the bundle's process lacks CAP_SYS_ADMIN or CAP_SYS_PTRACE: created with them, dropped by the restore");
    }
    let created = c.create_with(&a.bundle, &opts);
    if let Some(Err(e)) = widened.map(husk_caps::WidenedBundle::put_back) {
        if created.is_ok() {
            let _ = c.delete();
        }
        return Err(e);
    }
    let st = created.map_err(|e| e.to_string())?;
    let done = match super::docker::handoff::read_marker(&a.image_path) {
        Some(marker) => hand_over(&c, st.pid, &marker, log)?,
        None => {
            log.debug(&format!(
                "restoring {} into init {}",
                a.image_path.display(),
                st.pid
            ));
            let (stats, _) = super::restore_created(&c, st.pid, &a.image_path, Default::default())
                .map_err(|e: ContainerError| e.to_string())?;
            let work = a.work_path.as_deref().unwrap_or(&a.image_path);
            if let Err(e) = criu_files::write_restore_stats(work, &stats) {
                log.error(&e);
            }
            format!(
                "restored {} processes in {:.1} ms",
                stats.processes, stats.restore_ms
            )
        }
    };
    if let Some(path) = &a.pid_file {
        if let Err(e) = super::write_pid_file(path, st.pid) {
            let _ = c.delete();
            return Err(format!(
                "container {} was restored but writing its PID file {} failed ({e}); it was deleted",
                a.id,
                path.display()
            ));
        }
    }
    log.debug(&done);
    Ok(())
}

/// A live migration's restore (the checkpoint directory holds a handoff
/// marker, not an image): hands the created init `pid` to the local
/// agent, which restores the migrated state into it, and waits for its
/// answer. On failure the container is deleted.
fn hand_over(
    c: &Container,
    pid: i32,
    marker: &super::docker::handoff::Marker,
    log: &RuntimeLog,
) -> Result<String, String> {
    log.debug(&format!(
        "handing init {pid} to the agent at {}",
        marker.socket.display()
    ));
    let ready = super::docker::handoff::HuskReady {
        pid,
        root: c.root.clone(),
        id: c.id.clone(),
    };
    super::docker::handoff::hand_over(marker, &ready)
        .map(|()| format!("the agent restored the migrated state into init {pid}"))
        .inspect_err(|_| {
            let _ = c.delete();
        })
}

/// Leaves the failure in the work directory as `name` (a shim copies
/// work/dump.log beside the bundle for the user).
fn work_log(work: Option<&Path>, name: &str, msg: &String) {
    if let Some(dir) = work {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(name), format!("{msg}\n"));
    }
}
