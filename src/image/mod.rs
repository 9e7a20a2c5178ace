//! The checkpoint model and its on-disk directory format.

pub mod format;
pub mod model;
pub mod show;
pub mod sink;
#[cfg(test)]
pub(crate) mod testutil;

pub use format::{
    sync_image, ImageError, ImageReader, ImageSummary, ImageWriter, PageData, PageRun,
    IMAGE_FORMAT_VERSION,
};
pub use model::*;
pub use sink::{ms, ImageSink, NextStep, RoundReport};
