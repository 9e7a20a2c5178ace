//! A test-only fault hook: tests/fault_matrix.rs makes a destination's
//! restore fail on purpose, at the real restore's place, to check that
//! the source then resumes its copy and nothing runs twice. It is read
//! from the agent's environment, `FERRY_FAULT=restore-fail` (the testbed
//! sets it on one host's agent: `FERRY_TESTBED_FAULT_B`); unset or empty,
//! as on every real host, it does nothing. Nothing else reads it.

/// The environment variable that names the injected fault.
pub const FAULT_VAR: &str = "FERRY_FAULT";

/// The one fault the hook knows: the destination's restore fails.
pub const RESTORE_FAIL: &str = "restore-fail";

/// Why a restore was refused by the test-only fault hook.
#[derive(Debug, thiserror::Error)]
#[error("the restore failed on purpose: {FAULT_VAR}={RESTORE_FAIL} is set in this agent's environment (a test-only fault hook)")]
pub struct InjectedRestoreFailure;

/// Fails when the agent was started with `FERRY_FAULT=restore-fail`:
/// called once, before a destination restores a workload.
pub fn check_restore() -> Result<(), InjectedRestoreFailure> {
    match std::env::var(FAULT_VAR) {
        Ok(fault) if fault == RESTORE_FAIL => Err(InjectedRestoreFailure),
        _ => Ok(()),
    }
}
