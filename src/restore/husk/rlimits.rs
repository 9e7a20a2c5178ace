//! Resource limits.

use super::process::Husk;
use crate::kernel;
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Sets every resource limit of the image (prlimit from here).
    pub(super) fn restore_rlimits(&mut self) -> Result<(), RestoreError> {
        for l in &self.image.rlimits {
            kernel::prlimit_set(self.pid, l.resource, l.soft, l.hard).map_err(|errno| {
                RestoreError::Injected {
                    pid: self.image.pid,
                    call: format!(
                        "prlimit of resource {} to {}/{}",
                        l.resource, l.soft, l.hard
                    ),
                    errno,
                }
            })?;
        }
        Ok(())
    }
}
