//! The agent's side of `migrate-agent dry-run --to` (and of any dry run
//! of a container): the whole dry run
//! (inspect, measure, probe the destination, assess) in the agent's view
//! of the PIDs, as for a migration, refined by the agent's past
//! migrations (kept in its work directory). The CLI stops it early by closing its
//! writing half of the control connection (Ctrl-C) or by going away.

use crate::container::docker::Docker;
use crate::migration::dryrun::{self, DestinationReport, DryRunReport, ProbeReport};
use crate::migration::dryrun_job::{DryRunRequest, ProbeTarget};
use crate::migration::history;
use crate::transport::Transport;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// Runs `req`; while it measures, a read of `stream` that ends (the CLI
/// closed its side) stops the measurement, which then reports what it saw.
/// A Docker container named without a socket runs on `dockerd`. The error
/// is a sentence for the CLI.
pub(super) async fn run(
    req: DryRunRequest,
    transport: &Transport,
    stream: &mut UnixStream,
    work_dir: &Path,
    dockerd: &Docker,
) -> Result<DryRunReport, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let job = tokio::task::spawn_blocking({
        let (req, stop, dockerd) = (req.clone(), stop.clone(), dockerd.clone());
        move || req.inspect_and_measure(&stop, &dockerd)
    });
    tokio::pin!(job);
    let measured = tokio::select! {
        measured = &mut job => measured,
        _ = stream.read_u8() => {
            stop.store(true, Ordering::SeqCst);
            job.await
        }
    };
    let what = req.describe();
    let measured = match measured {
        Ok(Ok(measured)) => measured,
        Ok(Err(e)) => return Err(format!("the dry run of {what} failed: {e}")),
        Err(e) => return Err(format!("the dry run of {what} ended: {e}")),
    };
    let destination = match &req.destination {
        Some(target) if !measured.measurement.interrupted && !stop.load(Ordering::SeqCst) => {
            let outcome = probe(transport, measured.subject.pid, target).await;
            Some(DestinationReport::from_probe(&target.address, outcome))
        }
        _ => None,
    };
    Ok(req.report(measured, destination, &history::load(work_dir)))
}

/// Connects to the destination of a probe and runs it; nothing is kept on
/// either side and the workload is not touched.
async fn probe(
    transport: &Transport,
    pid: i32,
    target: &ProbeTarget,
) -> Result<ProbeReport, String> {
    let failed = |e: String| {
        format!(
            "probing {} failed: {e}; process {pid} was not touched",
            target.to
        )
    };
    let mut session = transport
        .connect(target.to, &target.server_name)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let result = dryrun::probe(&mut session, pid, dryrun::PROBE_TRANSFER_BYTES).await;
    session.close("probe finished");
    result.map_err(|e| failed(e.to_string()))
}
