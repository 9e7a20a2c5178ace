//! ferry-runc's help texts: the program's, and `checkpoint --help` and
//! `restore --help`, which Podman runs to learn whether the runtime can
//! checkpoint (it needs them to succeed).

/// `ferry-runc --help`.
pub const MAIN: &str = "\
ferry-runc: an OCI runtime with runc's command line whose checkpoint and
restore are ferry's engine instead of CRIU.

USAGE: ferry-runc [GLOBAL FLAGS] COMMAND [FLAGS] [ID]

Every command but checkpoint and restore is runc's: ferry-runc executes
the first `runc` on PATH (other than itself) with the same arguments,
stdio and environment. Install it under its own name, not as `runc`.

  checkpoint [--image-path DIR] [--work-path DIR] [--leave-running] ID
      Checkpoints the container's init and its descendants into DIR
      (default ./checkpoint) as `migrate-agent checkpoint --container`
      does, then deletes the container, or with --leave-running lets it
      run. A paused container (Docker pauses before a checkpoint) is
      thawed for it and paused again when it stays.
  restore --detach [--bundle B] [--image-path DIR] [--pid-file F] ID
      Creates the container from bundle B (`runc create`, with this
      process's stdio; the init gets CAP_SYS_ADMIN and CAP_SYS_PTRACE for
      the restore, which ends with the checkpointed capabilities) and
      restores DIR into its init as `migrate-agent restore --container`
      does; F gets the init's PID as this host sees it.

Global flags taken and given on to every runc call: --root, --log,
--log-format json|text (errors go to the log file as runc writes them),
--debug (the steps are logged), --systemd-cgroup, --rootless. --criu is
ignored. Also taken: --work-path, --tcp-established and --file-locks
(ferry carries established connections and file locks anyway),
-no-subreaper (ferry-runc never is one), --no-pivot and --console-socket
(given to `runc create`).
Refused, with the reason: --pre-dump, --parent-path, --lazy-pages,
--page-server, --status-fd, --ext-unix-sk, --shell-job,
--manage-cgroups-mode, --empty-ns, --auto-dedup, --lsm-profile,
--lsm-mount-context, and restore without --detach.

Docker: in daemon.json, \"runtimes\": {\"ferry\": {\"path\": \"/path/to/ferry-runc\"}}
(and \"default-runtime\": \"ferry\"), dockerd --experimental; then
`docker checkpoint create` and `docker start --checkpoint` run ferry.
Podman: podman --runtime /path/to/ferry-runc ..., with ferry-criu on
Podman's PATH as `criu` (Podman asks a criu for its version before a
checkpoint or restore; ferry-criu answers that and nothing else).
";

/// `ferry-runc checkpoint --help`.
pub const CHECKPOINT: &str = "\
ferry-runc checkpoint [--image-path DIR] [--work-path DIR] [--leave-running]
                      [--tcp-established] [--file-locks] ID

Checkpoints container ID with ferry's engine into DIR (default
./checkpoint), then deletes it, or with --leave-running lets it run.
";

/// `ferry-runc restore --help`.
pub const RESTORE: &str = "\
ferry-runc restore --detach [--bundle B] [--image-path DIR] [--pid-file F]
                   [--work-path DIR] [--console-socket S] [--no-pivot]
                   [-no-subreaper] [--tcp-established] [--file-locks] ID

Creates container ID from bundle B (default: the working directory) and
restores the image in DIR (default ./checkpoint) into its init with
ferry's engine; F gets the init's PID.
";
