//! The files of CRIU's that a checkpoint's caller reads, written by
//! ferry-runc beside ferry's own image in CRIU's image format (magic numbers, then
//! each entry a 32-bit length and a protobuf message), so that Podman
//! treats a ferry checkpoint as it treats CRIU's:
//! - `inventory.img` in the image directory: Podman restores only a
//!   checkpoint directory that has one ("a complete checkpoint for this
//!   container cannot be found"). It holds CRIU's inventory entry with
//!   the image version alone; what is restored is ferry's image beside it.
//! - `stats-dump` and `stats-restore` in the work directory: the figures
//!   `podman container checkpoint/restore --print-stats` shows, and that
//!   Podman's export puts in the archive (it logs an error without them).

use super::criu_wire::{put_bytes_field, put_varint_field};
use crate::dump::CheckpointStats;
use crate::restore::RestoreStats;
use std::path::Path;

/// CRIU's INVENTORY_MAGIC (the one image without the common magic).
const INVENTORY_MAGIC: u32 = 0x5831_3116;
/// CRIU's IMG_SERVICE_MAGIC, heading the stats files.
const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// CRIU's STATS_MAGIC.
const STATS_MAGIC: u32 = 0x5709_3306;
/// CRIU's image version in inventory_entry.img_version (CRTOOLS_IMAGES_V1_1).
const IMAGES_V1_1: u64 = 2;

/// Writes `image/inventory.img`, which marks the image directory as a
/// complete checkpoint.
pub fn write_inventory(image: &Path) -> Result<(), String> {
    let mut inventory = Vec::new();
    put_varint_field(&mut inventory, 1, IMAGES_V1_1);
    write(&image.join("inventory.img"), &[INVENTORY_MAGIC], &inventory)
}

/// Writes `work/stats-dump` for a checkpoint (creating `work`, as CRIU
/// does).
pub fn write_dump_stats(work: &Path, stats: &CheckpointStats) -> Result<(), String> {
    write_stats(work, "stats-dump", 1, &dump_stats(stats))
}

/// Writes `work/stats-restore` for a restore.
pub fn write_restore_stats(work: &Path, stats: &RestoreStats) -> Result<(), String> {
    write_stats(work, "stats-restore", 2, &restore_stats(stats))
}

/// Microseconds, as CRIU's stats count time (uint32, saturated).
fn micros(ms: f64) -> u64 {
    (ms * 1000.0).clamp(0.0, f64::from(u32::MAX)) as u64
}

/// dump_stats_entry: ferry's freeze is `frozen_time`, its whole checkpoint
/// (pre-copy while the tree ran included) `memdump_time`; what CRIU
/// counts apart and ferry does not (freezing, writing, parent images,
/// lazy pages) is 0.
fn dump_stats(s: &CheckpointStats) -> Vec<u8> {
    let mut e = Vec::new();
    put_varint_field(&mut e, 1, 0);
    put_varint_field(&mut e, 2, micros(s.frozen_ms));
    put_varint_field(&mut e, 3, micros(s.dump_ms));
    put_varint_field(&mut e, 4, 0);
    put_varint_field(&mut e, 5, s.pages_scanned);
    put_varint_field(&mut e, 6, 0);
    put_varint_field(&mut e, 7, s.pages_written);
    put_varint_field(&mut e, 9, 0);
    e
}

/// restore_stats_entry: ferry's whole restore is `restore_time`.
fn restore_stats(s: &RestoreStats) -> Vec<u8> {
    let mut e = Vec::new();
    put_varint_field(&mut e, 1, 0);
    put_varint_field(&mut e, 2, 0);
    put_varint_field(&mut e, 3, 0);
    put_varint_field(&mut e, 4, micros(s.restore_ms));
    put_varint_field(&mut e, 5, s.pages_restored);
    e
}

/// The stats file `work/name`: stats_entry with `entry` as its field
/// `field` (1 dump, 2 restore).
fn write_stats(work: &Path, name: &str, field: u64, entry: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(work)
        .map_err(|e| format!("ferry-runc: creating {} failed: {e}", work.display()))?;
    let mut stats = Vec::new();
    put_bytes_field(&mut stats, field, entry);
    write(&work.join(name), &[IMG_SERVICE_MAGIC, STATS_MAGIC], &stats)
}

/// Writes a CRIU image file: the magic numbers, then one entry.
fn write(path: &Path, magics: &[u32], entry: &[u8]) -> Result<(), String> {
    let mut bytes: Vec<u8> = magics.iter().flat_map(|m| m.to_le_bytes()).collect();
    let len = u32::try_from(entry.len()).map_err(|_| format!("{} is too big", path.display()))?;
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(entry);
    std::fs::write(path, bytes)
        .map_err(|e| format!("ferry-runc: writing {} failed: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_criu_images() {
        let dir = std::env::temp_dir().join(format!("ferry-criu-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stats = CheckpointStats {
            frozen_ms: 1.5,
            dump_ms: 2.0,
            pages_scanned: 3,
            pages_written: 2,
            ..Default::default()
        };
        write_inventory(&dir).unwrap();
        write_dump_stats(&dir.join("work"), &stats).unwrap();
        let inventory = std::fs::read(dir.join("inventory.img")).unwrap();
        assert_eq!(inventory, [0x16, 0x31, 0x31, 0x58, 2, 0, 0, 0, 0x08, 0x02]);
        let dump = std::fs::read(dir.join("work/stats-dump")).unwrap();
        assert_eq!(
            &dump[..8],
            &[0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57]
        );
        // stats_entry { dump: { 1: 0, 2: 1500, 3: 2000, 4: 0, 5: 3, 6: 0, 7: 2, 9: 0 } }
        let entry = [
            0x0a, 18, 0x08, 0, 0x10, 0xdc, 0x0b, 0x18, 0xd0, 0x0f, 0x20, 0, 0x28, 3, 0x30, 0, 0x38,
            2, 0x48, 0,
        ];
        assert_eq!(&dump[8..12], &(entry.len() as u32).to_le_bytes());
        assert_eq!(&dump[12..], &entry);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
