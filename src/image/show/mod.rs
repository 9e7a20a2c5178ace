//! A person-readable description of an image (`migrate-agent image show`),
//! so that what a checkpoint captured can be inspected without a debugger:
//! the role CRIU's crit plays for CRIU images.

mod fields;
mod process;
#[cfg(test)]
mod tests;

use crate::image::format::{ImageReader, PageRun};
use crate::kernel::cpu::xsave_component_names;
pub(crate) use fields::utc_time;
use process::write_process;
use std::fmt::{self, Write};

/// Describes the image for a person: header, process, threads, signals,
/// files and a table of mappings with how many of their pages the image
/// holds.
pub fn describe(reader: &ImageReader) -> String {
    let mut out = String::new();
    write_description(&mut out, reader).expect("writing to a String cannot fail");
    out
}

fn write_description(out: &mut String, reader: &ImageReader) -> fmt::Result {
    let manifest = reader.manifest();
    let ck = &manifest.checkpoint;
    let host = &ck.host;

    writeln!(out, "ferry image {}", reader.dir().display())?;
    writeln!(
        out,
        "  format version {}, written by ferry {} at {}",
        crate::image::IMAGE_FORMAT_VERSION,
        manifest.ferry_version,
        utc_time(manifest.created_unix_secs)
    )?;
    writeln!(out, "  host kernel {}", host.kernel_release)?;
    writeln!(
        out,
        "  XCR0 {:#x} ({}), xstate {} bytes",
        host.xcr0,
        xsave_component_names(host.xcr0).join(" "),
        host.xstate_size
    )?;
    writeln!(
        out,
        "  vdso {} bytes, xxh3 {:#018x}",
        host.vdso_len, host.vdso_hash
    )?;
    writeln!(
        out,
        "  {} processes, {} zombies, {} open file descriptions",
        ck.processes.len(),
        ck.zombies.len(),
        ck.files.len()
    )?;
    for z in &ck.zombies {
        writeln!(
            out,
            "  zombie {} (parent {}, group {}, session {}) wait status {:#x}",
            z.pid, z.ppid, z.pgid, z.sid, z.wait_status
        )?;
    }
    for s in &ck.sysv_shm {
        writeln!(
            out,
            "  SysV shm {} key {:#x}, {} bytes, mode {:03o}, owner {}:{}{}",
            s.shmid,
            s.key,
            s.size,
            s.mode,
            s.uid,
            s.gid,
            if s.removed {
                ", marked for removal"
            } else {
                ""
            }
        )?;
    }
    for f in &ck.tcp_flows {
        writeln!(
            out,
            "  TCP {} -> {} (locked while frozen)",
            f.local, f.remote
        )?;
    }
    if let Some(table) = &ck.network_lock {
        writeln!(out, "  network lock {table} engaged until restore")?;
    }
    match &ck.network_namespace {
        crate::image::NetworkNamespace::Shared => {}
        crate::image::NetworkNamespace::Own(n) => writeln!(
            out,
            "  own network namespace: lo {}{}{}, {} iptables-legacy, {} ip6tables-legacy, {} nftables lines",
            if n.loopback_up { "up" } else { "down" },
            if n.loopback_addresses.is_empty() { "" } else { " with " },
            n.loopback_addresses.join(", "),
            n.iptables.lines().count(),
            n.ip6tables.lines().count(),
            n.nftables.lines().count(),
        )?,
        crate::image::NetworkNamespace::External => writeln!(
            out,
            "  network namespace left outside: restore joins one (--join-netns)"
        )?,
    }
    for p in &ck.processes {
        let runs: Vec<PageRun> = reader
            .runs()
            .iter()
            .filter(|r| r.pid == p.pid)
            .copied()
            .collect();
        write_process(out, ck, p, &runs)?;
    }
    Ok(())
}
