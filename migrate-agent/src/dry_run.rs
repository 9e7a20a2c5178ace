//! `migrate-agent dry-run`: lists what would stop a workload from moving,
//! measures how fast it writes (tracking removed afterwards, also on
//! Ctrl-C), probes the destination through the local agent if asked, and
//! prints the predicted downtime and duration per mode with advice.

use crate::container::WorkloadArgs;
use crate::migrate::{host_part, mib, parse_duration_ms, parse_rate, resolve, SwitchOverArgs};
use anyhow::Context;
use ferry::agent::{self, ControlEvent, ControlRequest};
use ferry::container::docker::Docker;
use ferry::migration::dryrun::{self, DestinationReport, DryRunReport, Mode, ModePrediction};
use ferry::migration::dryrun_job::{ContainerTarget, DryRunRequest, ProbeTarget, SAMPLE_INTERVAL};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Exit code when the report says the workload would not move.
const CANNOT_MOVE: u8 = 3;
/// Exit code when a signal cut the measurement short (128 + SIGINT).
const INTERRUPTED: u8 = 130;

/// `dry-run`'s options.
#[derive(clap::Args, Debug)]
pub struct DryRunArgs {
    /// The workload: with --to, or for a container (with or without
    /// --to), the local agent runs the whole dry run, as it runs
    /// `migrate`; a container's prediction includes what the destination
    /// does around its restore.
    #[command(flatten)]
    workload: WorkloadArgs,
    /// How long to measure the workload's writes, a duration with its unit
    /// (10s, 1500ms; a bare number is refused).
    #[arg(long, default_value = "10s")]
    duration: String,
    /// The destination agent, HOST:PORT (UDP), to check and measure the
    /// bandwidth to, through this host's agent.
    #[arg(long)]
    to: Option<String>,
    /// Name the destination's certificate must carry (default: the HOST
    /// part of --to).
    #[arg(long, requires = "to")]
    server_name: Option<String>,
    /// The local agent's control socket (with --to).
    #[arg(long, default_value = ferry::config::DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    /// The switch-over the pre-copy prediction assumes.
    #[command(flatten)]
    switch_over: SwitchOverArgs,
    /// Bandwidth to predict with when there is no --to, in bytes per
    /// second: 100M or 100MiB/s (1024-based), 100MB/s (1000-based);
    /// default 1G.
    #[arg(long)]
    bandwidth: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Do not freeze the workload (once, for a few milliseconds) to
    /// measure its freeze and state read: estimate them per process and
    /// per thread instead.
    #[arg(long)]
    no_freeze: bool,
}

/// Runs the dry run and prints its report.
pub fn run(args: DryRunArgs) -> anyhow::Result<ExitCode> {
    let duration_ms = parse_duration_ms("--duration", &args.duration)?;
    let limits = args.switch_over.limits()?;
    let bandwidth = args
        .bandwidth
        .as_deref()
        .map(|b| parse_rate("--bandwidth", b))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|to| resolve(to).map(|addr| (to, addr)))
        .transpose()?;
    let stop = ferry::kernel::catch_termination_signals()
        .context("installing the SIGINT/SIGTERM handler")?;

    let named = &args.workload;
    let container = match (named.container.container()?, &named.docker.docker) {
        (_, Some(name)) => Some(ContainerTarget::Docker {
            name: name.clone(),
            socket: named
                .docker
                .docker_host
                .as_deref()
                .map(|h| Docker::from_host(h).socket().to_path_buf()),
        }),
        (Some(c), None) => Some(ContainerTarget::Runtime {
            runtime: c.runtime,
            root: Some(c.root),
            id: c.id,
        }),
        (None, None) => None,
    };
    let request = DryRunRequest {
        pid: named.pid.unwrap_or(0),
        container,
        duration_ms,
        destination: to.map(|(text, to)| ProbeTarget {
            address: text.to_string(),
            to,
            server_name: args
                .server_name
                .clone()
                .unwrap_or_else(|| host_part(text).to_string()),
        }),
        bandwidth,
        limits,
        no_freeze: args.no_freeze,
    };
    let report = if request.destination.is_some() || request.container.is_some() {
        through_agent(&args.control_socket, request, stop)?
    } else {
        // No container named: no dockerd is asked.
        let dockerd = Docker::new(std::path::Path::new(
            ferry::container::docker::DEFAULT_SOCKET,
        ));
        let measured = request.inspect_and_measure(stop, &dockerd)?;
        request.report(measured, None, &[])
    };
    let interrupted = stop.load(Ordering::SeqCst);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if interrupted {
        ExitCode::from(INTERRUPTED)
    } else if report.can_move {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CANNOT_MOVE)
    })
}

/// Has the local agent run the dry run (the PID is the agent's); a
/// SIGINT or SIGTERM ends its measurement early, and the report of what it
/// saw until then still comes back.
fn through_agent(
    socket: &std::path::Path,
    request: DryRunRequest,
    stop: &'static std::sync::atomic::AtomicBool,
) -> anyhow::Result<DryRunReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let interrupt = async {
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let what = request.describe();
    let request = ControlRequest::DryRun(request);
    match runtime.block_on(agent::request_until(socket, &request, |_| {}, interrupt)) {
        Ok(ControlEvent::DryRun(report)) => Ok(*report),
        Ok(ControlEvent::Failed { error }) => Err(anyhow::anyhow!(error)),
        Ok(other) => Err(anyhow::anyhow!(
            "the agent answered {other:?} to the dry run of {what}"
        )),
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

fn print_report(r: &DryRunReport) {
    let m = &r.measurement;
    let what = match &r.container {
        Some(c) => format!("{c} (init {})", r.pid),
        None => format!("process {}", r.pid),
    };
    println!(
        "dry run of {} ({} process{}, tracker {}): {}",
        what,
        m.processes.len(),
        if m.processes.len() == 1 { "" } else { "es" },
        m.backend.as_str(),
        if r.can_move {
            "it can move"
        } else {
            "it cannot move"
        }
    );
    if m.interrupted {
        println!(
            "  interrupted after {:.1} s: the figures cover that time only",
            m.duration_ms / 1000.0
        );
    }
    if r.blockers.is_empty() {
        println!("blockers: none");
    } else {
        println!("blockers ({}):", r.blockers.len());
        for b in &r.blockers {
            println!("  process {} {}: {}", b.pid, b.resource, b.reason);
        }
    }
    if !r.connections.is_empty() {
        println!("TCP connections carried ({}):", r.connections.len());
        for c in &r.connections {
            println!("  {c}");
        }
    }
    println!(
        "memory: {} with data ({} anonymous)",
        mib(m.memory_bytes as f64),
        mib(m.anonymous_bytes as f64)
    );
    let peak = m
        .samples
        .iter()
        .map(|s| s.dirty_bytes_per_sec)
        .fold(0.0, f64::max);
    println!(
        "dirty rate: {}/s ± {}/s (peak {}/s); working set {} over {:.1} s",
        mib(m.dirty_bytes_per_sec),
        mib(m.dirty_stddev_bytes_per_sec),
        mib(peak),
        mib(m.working_set_bytes as f64),
        m.duration_ms / 1000.0
    );
    if !m.samples.is_empty() {
        println!(
            "  {}  (0 .. {}/s, one bar per {} ms)",
            sparkline(m.samples.iter().map(|s| s.dirty_bytes_per_sec), peak),
            mib(peak),
            SAMPLE_INTERVAL.as_millis()
        );
    }
    for t in &m.top_mappings {
        println!(
            "  process {} {:#x}-{:#x} {:<10} {:>12}/s, working set {}",
            t.pid,
            t.start,
            t.end,
            t.name,
            mib(t.dirty_bytes_per_sec),
            mib(t.working_set_bytes as f64)
        );
    }
    for u in &m.untracked {
        println!("  not tracked: {u}");
    }
    if !m.ended.is_empty() {
        println!(
            "  {} process(es) of the tree ended while measured (their writes until then are counted)",
            m.ended.len()
        );
    }
    if let Some(cpu) = m.cpu {
        println!(
            "workload CPU: {:.0} ms/s before tracking, {:.0} ms/s while tracked",
            cpu.before_ms_per_sec, cpu.during_ms_per_sec
        );
    }
    println!("freeze: {}", m.freeze_note);
    if let Some(d) = &r.destination {
        print_destination(d);
    }
    println!(
        "bandwidth: {}/s ({})",
        mib(r.bandwidth_bytes_per_sec),
        match r.bandwidth_source {
            dryrun::BandwidthSource::Measured => "measured",
            dryrun::BandwidthSource::Given => "--bandwidth",
            dryrun::BandwidthSource::Default => "default estimate; give --to or --bandwidth",
        }
    );
    println!(
        "{:<9} {:>28} {:>22} {:>12} {:>7}",
        "mode", "downtime ms (low/exp/high)", "total s (low/exp/high)", "sent", "rounds"
    );
    for p in &r.predictions {
        print_prediction(p);
    }
    if let Some(pre) = r.predictions.iter().find(|p| p.mode == Mode::Precopy) {
        let (d, t) = (pre.downtime_ms, pre.total_ms);
        println!(
            "pre-copy downtime: freeze {:.1} + final transfer {:.1} + restore {:.1} + resume {:.1} ms; total adds rounds {:.0} and session {:.0} ms; band width {:.0}% (downtime), {:.0}% (total)",
            pre.parts.freeze_ms,
            pre.parts.final_transfer_ms,
            pre.parts.restore_ms,
            pre.parts.resume_ms,
            pre.parts.rounds_ms,
            pre.parts.session_ms,
            d.width_pct,
            t.width_pct
        );
    }
    let rec = &r.recommendation;
    match (rec.mode, rec.max_downtime_ms) {
        (Some(mode), Some(limit)) => println!(
            "recommendation: {} with --max-downtime {limit}ms: {}",
            mode.as_str(),
            rec.why
        ),
        _ => println!("recommendation: do not migrate yet: {}", rec.why),
    }
}

fn print_destination(d: &DestinationReport) {
    match &d.probe {
        Some(p) => println!(
            "destination {} (agent {}): reachable, {}; {} available for {}; {}/s ({} in {:.0} ms)",
            d.address,
            p.agent,
            match &p.refusal {
                None => "compatible".to_string(),
                Some(why) => format!("would refuse: {why}"),
            },
            mib(p.memory_available_bytes as f64),
            mib(p.memory_bytes as f64),
            mib(p.bandwidth_bytes_per_sec),
            mib(p.transfer_bytes as f64),
            p.transfer_ms
        ),
        None => println!(
            "destination {}: unreachable: {}",
            d.address,
            d.error.as_deref().unwrap_or("no answer")
        ),
    }
}

fn print_prediction(p: &ModePrediction) {
    let d = p.downtime_ms;
    let t = p.total_ms;
    println!(
        "{:<9} {:>28} {:>22} {:>12} {:>7}",
        p.mode.as_str(),
        format!("{:.1}/{:.1}/{:.1}", d.low, d.expected, d.high),
        format!(
            "{:.2}/{:.2}/{:.2}",
            t.low / 1000.0,
            t.expected / 1000.0,
            t.high / 1000.0
        ),
        mib(p.bytes_sent as f64),
        p.rounds.map_or("-".to_string(), |r| r.to_string())
    );
}

/// One block character per value, scaled to `peak`.
fn sparkline(values: impl Iterator<Item = f64>, peak: f64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .map(|v| {
            let level = if peak > 0.0 { v / peak * 7.0 } else { 0.0 };
            BARS[(level.round() as usize).min(7)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_peak() {
        assert_eq!(sparkline([0.0, 50.0, 100.0].into_iter(), 100.0), "▁▅█");
        assert_eq!(sparkline([0.0].into_iter(), 0.0), "▁");
    }
}
