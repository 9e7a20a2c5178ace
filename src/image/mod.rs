//! The checkpoint model and its on-disk directory format.

pub mod format;
pub mod model;
pub mod show;

pub use format::{ImageError, ImageReader, ImageSummary, ImageWriter, PageData, PageRun};
pub use model::*;
