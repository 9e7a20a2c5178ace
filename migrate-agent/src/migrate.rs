//! `migrate-agent migrate`: asks the local agent to move a workload to
//! another agent, shows the rounds as they go and the statistics at the end.

use crate::container::{ContainerArgs, DockerArgs, WorkloadArgs};
use anyhow::{bail, Context};
use ferry::agent::{self, ControlEvent, ControlRequest, MigrateRequest};
use ferry::migration::policy::Limits;
use ferry::migration::source::MigrationMode;
use ferry::migration::stats::{MigrationStats, Phase};
use indicatif::{ProgressBar, ProgressStyle};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

/// `--to HOST:PORT [--server-name NAME] [--control-socket PATH]`: the
/// destination agent and the local agent that talks to it (migrate, drain).
#[derive(clap::Args, Debug, Clone)]
pub struct DestinationArgs {
    /// The destination agent, HOST:PORT (UDP).
    #[arg(long)]
    pub to: String,
    /// Name the destination's certificate must carry (default: the HOST
    /// part of --to).
    #[arg(long)]
    pub server_name: Option<String>,
    /// The local agent's control socket.
    #[arg(long, default_value = ferry::config::DEFAULT_CONTROL_SOCKET)]
    pub control_socket: PathBuf,
}

/// `--max-downtime`, `--max-rounds`: when pre-copy switches over (migrate,
/// drain, and the dry run's prediction).
#[derive(clap::Args, Debug, Clone)]
pub struct SwitchOverArgs {
    /// Longest acceptable freeze, a duration with its unit (50ms, 1s; a
    /// bare number is refused):
    /// pre-copy switches over once the pages still dirty fit in it at the
    /// measured bandwidth.
    #[arg(long, default_value = "50ms")]
    pub max_downtime: String,
    /// Pre-copy rounds at most before switching over anyway.
    #[arg(long, default_value_t = 30)]
    pub max_rounds: u32,
}

impl SwitchOverArgs {
    /// The parsed limits.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        Ok(Limits {
            max_downtime_ms: parse_duration_ms("--max-downtime", &self.max_downtime)?,
            max_rounds: self.max_rounds.max(1),
        })
    }
}

/// How memory moves (migrate, drain).
#[derive(clap::Args, Debug, Clone)]
pub struct TransferArgs {
    #[command(flatten)]
    switch_over: SwitchOverArgs,
    /// Cap on page bandwidth in bytes per second, e.g. 100M or 100MiB/s
    /// (1024-based) or 100MB/s (1000-based).
    #[arg(long)]
    bandwidth_limit: Option<String>,
    /// How memory moves. precopy: copy while running, then freeze for
    /// the rest (safe: the source keeps a whole copy until the end).
    /// postcopy: freeze at once, run on the destination within
    /// milliseconds, pages follow on demand and in the background
    /// (until they are all there, losing the source loses the
    /// workload). hybrid: pre-copy rounds, then post-copy for the rest.
    #[arg(long, default_value = "precopy")]
    mode: MigrationMode,
    /// Containers only: bring the destination's copy of the bundle's
    /// rootfs up to date, so that files the container wrote arrive too:
    /// the differences are sent while it runs, what changed since while
    /// it is frozen (directories, files, symlinks, removals).
    #[arg(long)]
    sync_rootfs: bool,
}

/// `migrate`'s options.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Leave the Docker container stopped here once it runs on the
    /// destination, instead of removing it.
    #[arg(long, requires = "docker")]
    keep_stopped: bool,
    #[command(flatten)]
    destination: DestinationArgs,
    #[command(flatten)]
    transfer: TransferArgs,
    /// Print statistics as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Runs the migration through the local agent and prints its summary.
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let named = &args.workload;
    if args.transfer.sync_rootfs && named.container.container.is_none() {
        bail!("--sync-rootfs needs a --container");
    }
    let workload = Workload {
        pid: named.pid.unwrap_or(0),
        container: &named.container,
        docker: &named.docker,
        keep_stopped: args.keep_stopped,
    };
    let stats = execute(&workload, &args.destination, &args.transfer, args.json)?;
    if args.json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        let what = named.describe();
        print_summary(&what, &args.destination.to, &stats);
    }
    Ok(ExitCode::SUCCESS)
}

/// What to migrate: a process, a container of a runtime, or a Docker
/// container.
pub(crate) struct Workload<'a> {
    /// The process (when no container is named).
    pub pid: i32,
    /// `--container`.
    pub container: &'a ContainerArgs,
    /// `--docker`.
    pub docker: &'a DockerArgs,
    /// `--keep-stopped`.
    pub keep_stopped: bool,
}

/// Asks the local agent to migrate, showing a progress bar unless
/// `quiet`; the statistics once the workload runs on the destination.
pub(crate) fn execute(
    workload: &Workload<'_>,
    destination: &DestinationArgs,
    transfer: &TransferArgs,
    quiet: bool,
) -> anyhow::Result<MigrationStats> {
    let to = resolve(&destination.to)?;
    let server_name = destination
        .server_name
        .clone()
        .unwrap_or_else(|| host_part(&destination.to).to_string());
    let limits = transfer.switch_over.limits()?;
    let request = ControlRequest::Migrate(MigrateRequest {
        pid: workload.pid,
        to,
        server_name,
        max_downtime_ms: limits.max_downtime_ms,
        max_rounds: transfer.switch_over.max_rounds,
        bandwidth_limit: transfer
            .bandwidth_limit
            .as_deref()
            .map(|r| parse_rate("--bandwidth-limit", r))
            .transpose()?,
        container: workload
            .container
            .container()?
            .map(|c| (c.runtime, Some(c.root), c.id)),
        mode: transfer.mode,
        sync_rootfs: transfer.sync_rootfs,
        docker: workload.docker.request(workload.keep_stopped),
    });
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime
        .block_on(agent::request(
            &destination.control_socket,
            &request,
            |event| {
                if let ControlEvent::Progress(p) = event {
                    bar.set_length(p.memory_bytes.max(p.bytes_sent));
                    bar.set_position(p.bytes_sent);
                    bar.set_message(match p.phase {
                        Phase::Precopy => format!(
                            "round {} | remaining ~{} | dirty {}/s | {}/s",
                            p.round,
                            mib(p.remaining_bytes as f64),
                            mib(p.dirty_bytes_per_sec),
                            mib(p.throughput_bytes_per_sec)
                        ),
                        Phase::Frozen => "frozen: final transfer".to_string(),
                        Phase::Done => "done".to_string(),
                    });
                }
            },
        ))
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    match outcome {
        ControlEvent::Migrated(stats) => Ok(stats),
        ControlEvent::Failed { error } => bail!("{error}"),
        ControlEvent::Progress(_) => bail!("the agent ended with a progress report"),
        ControlEvent::DryRun(_) => bail!("the agent answered a migration with a dry-run report"),
        ControlEvent::Status(_) => bail!("the agent answered a migration with its status"),
    }
}

fn print_summary(what: &str, to: &str, s: &MigrationStats) {
    if s.unacknowledged {
        println!("committed the migration of {what} to {to}, which has not acknowledged it yet: its copy, held frozen there, runs once it learns the decision; the copy here is gone");
    } else {
        println!("migrated {what} to {to}: it runs there now");
    }
    println!(
        "  memory {}, sent {} ({:.2}x) in {} pre-copy rounds + final, at {}/s",
        mib(s.memory_bytes as f64),
        mib(s.bytes_sent as f64),
        s.bytes_sent as f64 / s.memory_bytes.max(1) as f64,
        s.rounds.len(),
        mib(s.throughput_bytes_per_sec)
    );
    for r in &s.rounds {
        println!(
            "  round {:>2}: {:>8} pages {:>10} {:>9.1} ms, {} dirty pages before it",
            r.round,
            r.pages,
            mib(r.bytes as f64),
            r.duration_ms,
            r.dirty_pages
        );
    }
    println!(
        "  final:    {:>8} pages {:>10}; switch-over: {}",
        s.final_round.pages,
        mib(s.final_round.bytes as f64),
        s.switch_reason
            .map_or("-".to_string(), |r| format!("{r:?}"))
    );
    let d = &s.downtime;
    println!(
        "  downtime {:.1} ms = freeze {:.1} + final transfer {:.1} + restore {:.1} + resume {:.1}; total {:.0} ms",
        d.total_ms, d.freeze_ms, d.final_transfer_ms, d.restore_ms, d.resume_ms, s.total_ms
    );
    if let Some(r) = &s.rootfs {
        println!(
            "  rootfs: {} changes ({}) while running, {} ({}) while frozen in {:.1} ms",
            r.precopy.changes,
            mib(r.precopy.bytes as f64),
            r.frozen.changes,
            mib(r.frozen.bytes as f64),
            r.frozen_ms
        );
    }
    if let Some(p) = &s.postcopy {
        println!(
            "  post-copy: running {:.1} ms after the freeze; {} pages stayed on the source: {} faulted in ({} faults, {} zero, latency p50 {:.0} us, p99 {:.0} us), {} pushed; all local {:.0} ms after running",
            p.freeze_to_running_ms,
            p.remote_pages,
            p.pages_faulted,
            p.faults,
            p.zero_faults,
            p.fault_latency_p50_us,
            p.fault_latency_p99_us,
            p.pages_pushed,
            p.all_local_ms
        );
    }
}

pub(crate) fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

pub(crate) fn host_part(to: &str) -> &str {
    let host = to.rsplit_once(':').map_or(to, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

pub(crate) fn resolve(to: &str) -> anyhow::Result<SocketAddr> {
    to.to_socket_addrs()
        .with_context(|| format!("--to {to}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--to {to}: the name has no address"))
}

/// Parses the value of option `flag`: "50ms" or "1.5s". A bare number is
/// refused with a hint: whether `--duration 4` meant seconds or
/// milliseconds is exactly the mistake a user must not make silently.
pub(crate) fn parse_duration_ms(flag: &str, text: &str) -> anyhow::Result<f64> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if t.parse::<f64>().is_ok() {
        bail!("{flag} {text}: a bare number has no unit: write {t}s or {t}ms")
    } else {
        (t, f64::NAN)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && scale.is_finite() => Ok(v * scale),
        _ => bail!("{flag} {text}: expected a duration such as 50ms or 1s"),
    }
}

/// Parses the value of option `flag`, a byte rate: "100M", "1.5G/s",
/// "512KiB/s" (K, M, G, KiB, MiB, GiB: 1024-based), "500MB/s" (KB, MB,
/// GB: 1000-based, as the SI prefixes say), or a bare number of bytes per
/// second.
pub(crate) fn parse_rate(flag: &str, text: &str) -> anyhow::Result<u64> {
    let t = text.trim().trim_end_matches("/s");
    let (t, binary) = match t.strip_suffix("iB") {
        Some(rest) => (rest, true),
        None => match t.strip_suffix('B') {
            Some(rest) => (rest, false),
            None => (t, true),
        },
    };
    let base: u64 = if binary { 1024 } else { 1000 };
    let (num, scale) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], base),
        Some('M' | 'm') => (&t[..t.len() - 1], base.pow(2)),
        Some('G' | 'g') => (&t[..t.len() - 1], base.pow(3)),
        _ => (t, 1),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok((v * scale as f64) as u64),
        _ => bail!("{flag} {text}: expected a rate such as 100M, 1GiB/s or 500MB/s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_parse() {
        assert_eq!(parse_duration_ms("-", "50ms").unwrap(), 50.0);
        assert_eq!(parse_duration_ms("-", "1.5s").unwrap(), 1500.0);
        assert!(parse_duration_ms("-", "fast").is_err());
        let bare = parse_duration_ms("--duration", "4")
            .unwrap_err()
            .to_string();
        assert!(bare.contains("write 4s or 4ms"), "{bare}");
        assert_eq!(parse_rate("-", "500MB/s").unwrap(), 500_000_000);
        assert_eq!(parse_rate("-", "500MiB/s").unwrap(), 500 << 20);
        assert_eq!(parse_rate("-", "100M").unwrap(), 100 << 20);
        assert_eq!(parse_rate("-", "1G/s").unwrap(), 1 << 30);
        assert_eq!(parse_rate("-", "512KiB/s").unwrap(), 512 << 10);
        assert!(parse_rate("-", "-1").is_err());
        assert_eq!(host_part("10.0.0.2:7000"), "10.0.0.2");
        assert_eq!(host_part("[::1]:7000"), "::1");
    }
}
