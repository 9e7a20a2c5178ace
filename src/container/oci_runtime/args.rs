//! runc's command line as ferry-runc reads it: the global flags (which
//! every runtime call ferry-runc makes passes on), then `checkpoint` or
//! `restore` with their flags, each flag either taken, or refused with the
//! reason; any other command is runc's and left alone.
//!
//! Flags are spelled as runc's CLI library takes them: one or two dashes,
//! the value after `=` or as the next word.

use std::path::PathBuf;

/// runc's global flags (before the command).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalFlags {
    /// `--root`: the runtime's state directory.
    pub root: Option<PathBuf>,
    /// `--log`: the file runc's log lines go to (a shim reads the last
    /// error from it).
    pub log: Option<PathBuf>,
    /// `--log-format json` (else text).
    pub log_json: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// `--rootless VALUE`.
    pub rootless: Option<String>,
}

impl GlobalFlags {
    /// The flags, `--root` apart, for the runc calls ferry-runc makes.
    pub fn runtime_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(log) = &self.log {
            flags.extend(["--log".to_string(), log.display().to_string()]);
            flags.extend(["--log-format".to_string()]);
            flags.push(if self.log_json { "json" } else { "text" }.to_string());
        }
        if self.debug {
            flags.push("--debug".into());
        }
        if self.systemd_cgroup {
            flags.push("--systemd-cgroup".into());
        }
        if let Some(r) = &self.rootless {
            flags.push(format!("--rootless={r}"));
        }
        flags
    }
}

/// `checkpoint`'s flags ferry-runc takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointArgs {
    /// The container ID.
    pub id: String,
    /// `--image-path` (runc's default: ./checkpoint).
    pub image_path: PathBuf,
    /// `--work-path`: where ferry-runc leaves dump.log on failure, for the
    /// shim to show (runc's default: the image path).
    pub work_path: Option<PathBuf>,
    /// `--leave-running`.
    pub leave_running: bool,
}

/// `restore`'s flags ferry-runc takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreArgs {
    /// The container ID.
    pub id: String,
    /// `--bundle` (runc's default: the working directory).
    pub bundle: PathBuf,
    /// `--image-path` (runc's default: ./checkpoint).
    pub image_path: PathBuf,
    /// `--work-path`, as for the checkpoint.
    pub work_path: Option<PathBuf>,
    /// `--pid-file`: gets the restored init's PID.
    pub pid_file: Option<PathBuf>,
    /// Flags given on to `runc create` (`--console-socket S`, `--no-pivot`).
    pub create_args: Vec<String>,
}

/// What ferry-runc was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Anything but checkpoint and restore: runc does it, unchanged.
    PassThrough,
    /// `ferry-runc --help` with no command.
    Help,
    /// `checkpoint --help` or `restore --help` (Podman's probe).
    CommandHelp(&'static str),
    /// A checkpoint by ferry's engine.
    Checkpoint(CheckpointArgs),
    /// A restore by ferry's engine.
    Restore(RestoreArgs),
}

/// Global flags runc takes with a value.
const GLOBAL_VALUE_FLAGS: &[&str] = &["root", "log", "log-format", "criu", "rootless"];

/// Splits `-name`, `--name` or `--name=value`; None for a word that is not
/// a flag.
fn split_flag(word: &str) -> Option<(&str, Option<&str>)> {
    let name = word.strip_prefix("--").or_else(|| word.strip_prefix('-'))?;
    if name.is_empty() {
        return None;
    }
    Some(match name.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    })
}

/// A boolean flag's value (`--flag` or `--flag=false`).
fn truth(inline: Option<&str>) -> bool {
    !matches!(inline, Some("false" | "0"))
}

/// Reads `words` (the arguments after the program's name): the global
/// flags, always (to log a refusal where runc would), and what to do or
/// why it is refused.
pub fn parse(words: &[String]) -> (GlobalFlags, Result<Invocation, String>) {
    let mut global = GlobalFlags::default();
    let mut i = 0;
    while let Some((name, inline)) = words.get(i).and_then(|w| split_flag(w)) {
        let value = if GLOBAL_VALUE_FLAGS.contains(&name) {
            match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    match words.get(i) {
                        Some(v) => Some(v.clone()),
                        None => return (global, Ok(Invocation::PassThrough)),
                    }
                }
            }
        } else {
            None
        };
        match (name, value) {
            ("root", Some(v)) => global.root = Some(v.into()),
            ("log", Some(v)) => global.log = Some(v.into()),
            ("log-format", Some(v)) => global.log_json = v == "json",
            ("rootless", Some(v)) => global.rootless = Some(v),
            ("debug", _) => global.debug = truth(inline),
            ("systemd-cgroup", _) => global.systemd_cgroup = truth(inline),
            ("help" | "h", _) if words.len() == i + 1 => return (global, Ok(Invocation::Help)),
            // --criu names CRIU, which ferry-runc's checkpoint and restore
            // do not run; --version and unknown flags are runc's.
            _ => {}
        }
        i += 1;
    }
    let parsed = match words.get(i).map(String::as_str) {
        Some("checkpoint") => parse_checkpoint(&words[i + 1..]),
        Some("restore") => parse_restore(&words[i + 1..]),
        _ => Ok(Invocation::PassThrough),
    };
    (global, parsed)
}

/// A command's flags, each with its value, and its other words.
struct CommandWords {
    flags: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

/// Splits a command's words; `value_flags` take a value.
fn command_words(words: &[String], value_flags: &[&str]) -> Result<CommandWords, String> {
    let mut out = CommandWords {
        flags: Vec::new(),
        positional: Vec::new(),
    };
    let mut i = 0;
    while i < words.len() {
        match split_flag(&words[i]) {
            Some((name, inline)) => {
                let value = if value_flags.contains(&name) {
                    match inline {
                        Some(v) => Some(v.to_string()),
                        None => {
                            i += 1;
                            let v = words
                                .get(i)
                                .ok_or(format!("flag needs an argument: --{name}"))?;
                            Some(v.clone())
                        }
                    }
                } else {
                    inline.map(str::to_string)
                };
                out.flags.push((name.to_string(), value));
            }
            None => out.positional.push(words[i].clone()),
        }
        i += 1;
    }
    Ok(out)
}

/// Why ferry-runc refuses a flag runc knows, or None when it takes it.
fn refused(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "pre-dump" | "parent-path" => "ferry-runc makes no pre-dumps: ferry copies memory while the container runs within the one checkpoint, and `migrate-agent migrate` moves a container live",
        "lazy-pages" | "page-server" | "status-fd" => "ferry-runc serves no lazy pages: post-copy is `migrate-agent migrate --mode postcopy` between agents",
        "ext-unix-sk" => "ferry refuses unix sockets connected outside the container",
        "shell-job" => "ferry does not carry a terminal the container shares with its caller",
        "manage-cgroups-mode" => "ferry-runc leaves cgroups to runc (the restored container gets the cgroups `runc create` gives it)",
        "empty-ns" => "ferry-runc does not leave namespaces out of a checkpoint",
        "auto-dedup" => "ferry-runc does not deduplicate images",
        "lsm-profile" | "lsm-mount-context" => "the restored container keeps the LSM settings of its bundle",
        _ => return None,
    })
}

/// The usual refusal message for a flag.
fn refusal(command: &str, flag: &str, why: &str) -> String {
    format!("ferry-runc {command}: --{flag} is not supported: {why}")
}

/// The one container ID a command names.
fn one_id(command: &str, positional: Vec<String>) -> Result<String, String> {
    match <[String; 1]>::try_from(positional) {
        Ok([id]) => Ok(id),
        Err(words) => Err(format!(
            "ferry-runc {command}: name exactly one container ID (got {words:?})"
        )),
    }
}

fn default_image_path() -> PathBuf {
    std::env::current_dir()
        .unwrap_or_else(|_| PathBuf::from("."))
        .join("checkpoint")
}

/// `checkpoint [flags] ID`.
fn parse_checkpoint(words: &[String]) -> Result<Invocation, String> {
    let w = command_words(
        words,
        &[
            "image-path",
            "work-path",
            "parent-path",
            "status-fd",
            "page-server",
            "manage-cgroups-mode",
            "empty-ns",
        ],
    )?;
    let mut a = CheckpointArgs {
        image_path: default_image_path(),
        ..Default::default()
    };
    for (flag, value) in w.flags {
        match (flag.as_str(), value) {
            ("help" | "h", _) => return Ok(Invocation::CommandHelp(super::help::CHECKPOINT)),
            ("image-path", Some(v)) => a.image_path = v.into(),
            ("work-path", Some(v)) => a.work_path = Some(v.into()),
            ("leave-running", v) => a.leave_running = truth(v.as_deref()),
            // ferry carries established TCP connections and file locks
            // whether asked or not.
            ("tcp-established" | "file-locks", _) => {}
            (f, _) => {
                let why = refused(f).unwrap_or("runc has no such flag");
                return Err(refusal("checkpoint", f, why));
            }
        }
    }
    a.id = one_id("checkpoint", w.positional)?;
    Ok(Invocation::Checkpoint(a))
}

/// `restore [flags] ID`.
fn parse_restore(words: &[String]) -> Result<Invocation, String> {
    let w = command_words(
        words,
        &[
            "console-socket",
            "image-path",
            "work-path",
            "manage-cgroups-mode",
            "bundle",
            "b",
            "pid-file",
            "empty-ns",
            "lsm-profile",
            "lsm-mount-context",
        ],
    )?;
    let mut a = RestoreArgs {
        image_path: default_image_path(),
        bundle: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        ..Default::default()
    };
    let mut detach = false;
    for (flag, value) in w.flags {
        match (flag.as_str(), value) {
            ("help" | "h", _) => return Ok(Invocation::CommandHelp(super::help::RESTORE)),
            ("image-path", Some(v)) => a.image_path = v.into(),
            ("work-path", Some(v)) => a.work_path = Some(v.into()),
            ("bundle" | "b", Some(v)) => a.bundle = v.into(),
            ("pid-file", Some(v)) => a.pid_file = Some(v.into()),
            ("console-socket", Some(v)) => a.create_args.extend(["--console-socket".into(), v]),
            ("no-pivot", v) if truth(v.as_deref()) => a.create_args.push("--no-pivot".into()),
            ("detach" | "d", v) => detach = truth(v.as_deref()),
            // ferry-runc never makes itself a subreaper: the restored init
            // is the shim's child either way.
            ("no-subreaper" | "no-pivot" | "tcp-established" | "file-locks", _) => {}
            (f, _) => {
                let why = refused(f).unwrap_or("runc has no such flag");
                return Err(refusal("restore", f, why));
            }
        }
    }
    a.id = one_id("restore", w.positional)?;
    if !detach {
        return Err("ferry-runc restore: only --detach is supported: ferry-runc does not stay in the foreground as the restored container's parent".into());
    }
    Ok(Invocation::Restore(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn dockers_checkpoint_is_read() {
        let (g, inv) = parse(&words("--root /var/run/docker/runtime-runc/moby --log /b/log.json --log-format json checkpoint --image-path /tmp/ctd-checkpoint1 --work-path /b/work/criu-work --leave-running c1"));
        assert_eq!(
            g.root.as_deref(),
            Some(std::path::Path::new("/var/run/docker/runtime-runc/moby"))
        );
        assert!(g.log_json);
        assert_eq!(
            g.runtime_flags(),
            words("--log /b/log.json --log-format json")
        );
        let Ok(Invocation::Checkpoint(a)) = inv else {
            panic!("{inv:?}")
        };
        assert_eq!(a.id, "c1");
        assert!(a.leave_running);
        assert_eq!(a.image_path, PathBuf::from("/tmp/ctd-checkpoint1"));
    }

    #[test]
    fn dockers_restore_is_read() {
        let (_, inv) = parse(&words("--root /r --log /b/log.json --log-format json restore --image-path /tmp/ctrd-checkpoint2 --work-path /b/work --detach --pid-file /b/init.pid -no-subreaper --bundle /b c1"));
        let Ok(Invocation::Restore(a)) = inv else {
            panic!("{inv:?}")
        };
        assert_eq!(
            (a.id.as_str(), a.bundle.to_str(), a.pid_file.as_deref()),
            ("c1", Some("/b"), Some(std::path::Path::new("/b/init.pid")))
        );
        assert!(a.create_args.is_empty());
    }

    #[test]
    fn other_commands_and_probes_pass_or_help() {
        assert_eq!(
            parse(&words("--root /r pause c1")).1,
            Ok(Invocation::PassThrough)
        );
        assert_eq!(parse(&words("--version")).1, Ok(Invocation::PassThrough));
        assert_eq!(parse(&words("--help")).1, Ok(Invocation::Help));
        assert!(matches!(
            parse(&words("checkpoint --help")).1,
            Ok(Invocation::CommandHelp(_))
        ));
    }

    #[test]
    fn unsupported_flags_are_refused_with_the_reason() {
        for line in [
            "checkpoint --pre-dump c1",
            "checkpoint --lazy-pages --page-server 1.2.3.4:5 c1",
            "checkpoint --parent-path ../p c1",
            "restore --detach --lazy-pages c1",
            "restore c1",
        ] {
            let (_, inv) = parse(&words(line));
            let e = inv.unwrap_err();
            assert!(e.starts_with("ferry-runc "), "{line}: {e}");
        }
        let e = parse(&words("checkpoint --pre-dump c1")).1.unwrap_err();
        assert!(e.contains("--pre-dump is not supported"), "{e}");
    }
}
