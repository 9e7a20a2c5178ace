//! How a probe says what it found: a detail when the mechanism works, or
//! why it does not (absent from this kernel, or failed for another reason).

use super::feature::Feature;
use super::report::{ProbeResult, ProbeStatus};
use nix::errno::Errno;

/// Why a probe did not find its mechanism working.
#[derive(Debug)]
pub(super) struct NotWorking {
    /// Absent or Failed.
    pub(super) status: ProbeStatus,
    /// The sentence that explains it.
    pub(super) detail: String,
}

/// A probe's outcome: the detail of a working mechanism, or why it is not.
pub(super) type Finding = Result<String, NotWorking>;

/// The mechanism is missing from this kernel or host.
pub(super) fn absent(detail: impl Into<String>) -> NotWorking {
    NotWorking {
        status: ProbeStatus::Absent,
        detail: detail.into(),
    }
}

/// The mechanism could not be used for a reason other than its absence.
pub(super) fn failed(detail: impl Into<String>) -> NotWorking {
    NotWorking {
        status: ProbeStatus::Failed,
        detail: detail.into(),
    }
}

/// Turns the error of `action` into Absent when it is one of the errnos by
/// which a kernel says it lacks the mechanism, and Failed otherwise.
pub(super) fn errno_outcome(action: &str, err: Errno, absent_when: &[Errno]) -> NotWorking {
    let detail = format!("{action} failed with {err}");
    if absent_when.contains(&err) {
        absent(detail)
    } else {
        failed(detail)
    }
}

/// `action` failed with an I/O error: named by its errno, as nix does.
pub(super) fn io_failed(action: impl std::fmt::Display, err: std::io::Error) -> NotWorking {
    match err.raw_os_error() {
        Some(raw) => failed(format!("{action} failed with {}", Errno::from_raw(raw))),
        None => failed(format!("{action} failed: {err}")),
    }
}

/// Packs a finding into the reported result.
pub(super) fn result(feature: Feature, required: bool, finding: Finding) -> ProbeResult {
    let (status, detail) = match finding {
        Ok(detail) => (ProbeStatus::Present, detail),
        Err(not) => (not.status, not.detail),
    };
    ProbeResult {
        feature,
        status,
        required,
        detail,
    }
}
