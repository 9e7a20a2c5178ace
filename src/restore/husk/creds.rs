//! Credentials and capabilities: user and group IDs, supplementary
//! groups, capability sets, securebits, no_new_privs.

use super::process::{Husk, STRUCT_OFF, STR_OFF};
use crate::image::PAGE_SIZE;
use crate::kernel::abi::{CapData, CapHeader, IntoBytes, LINUX_CAPABILITY_VERSION_3};
use crate::proc;
use crate::restore::error::RestoreError;

/// SECBIT_NO_SETUID_FIXUP: UID changes leave the capability sets alone.
pub(super) const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;

/// SECBIT_KEEP_CAPS: capabilities survive a switch from UID 0 (execve
/// clears it).
pub(super) const SECBIT_KEEP_CAPS: i64 = 1 << 4;

impl<'a> Husk<'a> {
    /// Sets user and group IDs, the bounding and ambient capability sets,
    /// no_new_privs and securebits in every thread (the raw system calls act
    /// on the calling thread only); done late, since dropping privileges
    /// would forbid what came before. The thread keeps the husk's permitted
    /// and effective capabilities until [`Self::restore_capabilities`].
    pub(super) fn restore_credentials(&mut self) -> Result<(), RestoreError> {
        let c = &self.image.creds;
        let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        if groups.len() > PAGE_SIZE as usize {
            return Err(RestoreError::Unsupported {
                pid: self.image.pid,
                why: format!("{} supplementary groups", c.groups.len()),
            });
        }
        let last_cap = proc::cap_last_cap()?;
        for idx in 0..self.threads.len() {
            let tid = self.image.threads[idx].tid;
            let want = self.image.threads[idx].privileges;
            let had = proc::read_thread_status(self.pid.as_raw(), self.threads[idx].tid.as_raw())?;
            if self.credentials_match(idx, &had)? {
                // Nothing to change (a container's init and its clones
                // have the container's credentials already, and lack the
                // capabilities to set them).
                continue;
            }
            // UID changes then leave the capability sets alone: they are
            // set explicitly below.
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_SECUREBITS, &[SECBIT_NO_SETUID_FIXUP]),
                || format!("prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) of thread {tid}"),
            )?;
            let addr = self.put(STR_OFF, &groups)?;
            let count = c.groups.len() as u64;
            self.sys(
                idx,
                |r| r.syscall(libc::SYS_setgroups, &[count, addr]),
                || "setgroups".into(),
            )?;
            // Group IDs first: setting them needs the capability that
            // dropping the user IDs may take away.
            for (kind, setres, setfs, ids) in [
                ("gid", libc::SYS_setresgid, libc::SYS_setfsgid, c.gids),
                ("uid", libc::SYS_setresuid, libc::SYS_setfsuid, c.uids),
            ] {
                let [real, effective, saved, fs] = ids.map(u64::from);
                self.sys(
                    idx,
                    |r| r.syscall(setres, &[real, effective, saved]),
                    || format!("setres{kind}({:?}) of thread {tid}", &ids[..3]),
                )?;
                self.sys(
                    idx,
                    |r| r.syscall(setfs, &[fs]),
                    || format!("setfs{kind}({fs}) of thread {tid}"),
                )?;
            }
            // The inheritable set first: it may hold capabilities that the
            // bounding set no longer does.
            self.capset(
                idx,
                had.caps.permitted,
                had.caps.permitted,
                want.inheritable,
            )?;
            for cap in 0..=last_cap {
                let bit = 1u64 << cap;
                if want.bounding & bit == 0 && had.caps.bounding & bit != 0 {
                    self.sys(
                        idx,
                        |r| r.prctl(libc::PR_CAPBSET_DROP, &[u64::from(cap)]),
                        || format!("prctl(PR_CAPBSET_DROP, {cap}) of thread {tid}"),
                    )?;
                }
                if want.ambient & bit != 0 {
                    let raise = libc::PR_CAP_AMBIENT_RAISE as u64;
                    self.sys(
                        idx,
                        |r| r.prctl(libc::PR_CAP_AMBIENT, &[raise, u64::from(cap)]),
                        || format!("prctl(PR_CAP_AMBIENT_RAISE, {cap}) of thread {tid}"),
                    )?;
                }
            }
            if want.no_new_privs {
                self.sys(
                    idx,
                    |r| r.prctl(libc::PR_SET_NO_NEW_PRIVS, &[1]),
                    || format!("prctl(PR_SET_NO_NEW_PRIVS) of thread {tid}"),
                )?;
            }
            // Needs CAP_SETPCAP, which the thread still has.
            let securebits = u64::from(want.securebits);
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_SECUREBITS, &[securebits]),
                || {
                    format!(
                        "prctl(PR_SET_SECUREBITS, {:#x}) of thread {tid}",
                        want.securebits
                    )
                },
            )?;
        }
        Ok(())
    }

    /// Whether thread `idx` (whose status is `had`) already has the image's
    /// IDs, groups, capability sets, securebits and no_new_privs.
    pub(super) fn credentials_match(
        &mut self,
        idx: usize,
        had: &proc::Status,
    ) -> Result<bool, RestoreError> {
        let c = &self.image.creds;
        let want = self.image.threads[idx].privileges;
        let caps = had.caps;
        let same = had.uids == c.uids
            && had.gids == c.gids
            && had.groups == c.groups
            && caps.effective == want.effective
            && caps.permitted == want.permitted
            && caps.inheritable == want.inheritable
            && caps.bounding == want.bounding
            && caps.ambient == want.ambient
            && had.no_new_privs == want.no_new_privs;
        if !same {
            return Ok(false);
        }
        let bits = self.sys(
            idx,
            |r| r.prctl(libc::PR_GET_SECUREBITS, &[]),
            || "prctl(PR_GET_SECUREBITS)".into(),
        )?;
        let want_bits = i64::from(want.securebits);
        // An OCI runtime's init waiting for its start (crun's) may still
        // have keep_caps, which its execve would have cleared; clearing it
        // needs no privilege.
        if bits != want_bits && bits & !SECBIT_KEEP_CAPS == want_bits {
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_KEEPCAPS, &[0]),
                || "prctl(PR_SET_KEEPCAPS, 0)".into(),
            )?;
            return Ok(true);
        }
        Ok(bits == want_bits)
    }

    /// Lowers every thread's effective, permitted and inheritable
    /// capabilities to the image's: the last change of privileges.
    pub(super) fn restore_capabilities(&mut self) -> Result<(), RestoreError> {
        for (idx, t) in self.image.threads.iter().enumerate() {
            let p = t.privileges;
            self.capset(idx, p.effective, p.permitted, p.inheritable)?;
        }
        Ok(())
    }

    /// Sets the process's dumpable flag as it was: changing its IDs reset
    /// it (to the fs.suid_dumpable sysctl), which would lock its own user
    /// out of its /proc files. The value 2 (root only) cannot be set
    /// with prctl: the reset leaves the sysctl's value then.
    pub(super) fn restore_dumpable(&mut self) -> Result<(), RestoreError> {
        let dumpable = self.image.creds.dumpable;
        if dumpable > 1 {
            return Ok(());
        }
        self.sys(
            0,
            |r| r.prctl(libc::PR_SET_DUMPABLE, &[u64::from(dumpable)]),
            || format!("prctl(PR_SET_DUMPABLE, {dumpable})"),
        )?;
        Ok(())
    }

    /// capset (version 3, 64-bit sets) of thread `idx`.
    pub(super) fn capset(
        &mut self,
        idx: usize,
        effective: u64,
        permitted: u64,
        inheritable: u64,
    ) -> Result<(), RestoreError> {
        let hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let hdr_addr = self.put(STRUCT_OFF, hdr.as_bytes())?;
        let data = CapData::halves(effective, permitted, inheritable);
        let data_addr = self.put(STRUCT_OFF + 64, data.as_bytes())?;
        let tid = self.image.threads[idx].tid;
        self.sys(
            idx,
            |r| r.syscall(libc::SYS_capset, &[hdr_addr, data_addr]),
            || format!("capset of thread {tid} to effective {effective:#x}, permitted {permitted:#x}, inheritable {inheritable:#x}"),
        )?;
        Ok(())
    }
}
