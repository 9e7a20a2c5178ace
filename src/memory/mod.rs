//! Which pages of a running process changed: dirty-page tracking behind one
//! trait, so that pre-copy (in checkpoint now, in live migration next) does
//! not care which kernel mechanism finds the written pages.

mod backend;
mod error;
mod runs;
mod softdirty;
mod tracker;
mod uffdwp;

pub use backend::DirtyBackend;
pub use error::DirtyTrackingError;
pub use runs::{push_page, ranges_cover, PageRuns};
pub use softdirty::SoftDirtyTracker;
pub use tracker::{is_trackable, DirtyTracker};
pub use uffdwp::UffdWpTracker;
