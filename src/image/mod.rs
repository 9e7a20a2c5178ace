//! The checkpoint model and its on-disk directory format.

pub mod format;
pub mod model;
pub mod show;

pub use model::*;
