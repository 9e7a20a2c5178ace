//! Resource limits.

use super::process::{Husk, STRUCT_OFF};
use crate::kernel::abi::{IntoBytes, Rlimit64};
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Sets every resource limit of the image by prlimit64(0, ...) run
    /// inside the husk, which needs no right over another process (from
    /// outside, a process of another user needs CAP_SYS_RESOURCE). Done
    /// after the fds, signals and timers, so that a lowered RLIMIT_NOFILE
    /// or RLIMIT_SIGPENDING does not refuse what the process already held,
    /// and before the credentials, while the husk may still raise a limit
    /// the restorer may.
    pub(super) fn restore_rlimits(&mut self) -> Result<(), RestoreError> {
        for l in &self.image.rlimits {
            let new = Rlimit64 {
                cur: l.soft,
                max: l.hard,
            };
            let addr = self.put(STRUCT_OFF, new.as_bytes())?;
            let resource = u64::from(l.resource);
            self.sys(
                0,
                |r| r.syscall(libc::SYS_prlimit64, &[0, resource, addr, 0]),
                || {
                    format!(
                        "prlimit of resource {} to {}/{}",
                        l.resource, l.soft, l.hard
                    )
                },
            )?;
        }
        Ok(())
    }
}
