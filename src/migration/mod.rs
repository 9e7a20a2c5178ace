//! Live migration: the source and destination state machines, the
//! switch-over policy and the statistics of a migration. The source drives
//! the checkpoint engine with a sink that streams to the destination; the
//! destination stores the rounds as an image and restores it.

pub mod destination;
mod destination_shared;
pub mod dryrun;
pub mod error;
mod page_store;
pub mod policy;
pub mod postcopy;
mod postcopy_destination;
pub mod protocol;
mod rootfs_sync;
pub mod source;
pub mod stats;
