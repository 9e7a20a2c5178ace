//! The image directory format: manifest (written last), pages file, index.
//! (Temporary stand-in with the final API while the real format lands.)
#![allow(missing_docs, dead_code, unused_variables)]

use super::Checkpoint;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image format not ready")]
    NotReady,
}
pub struct ImageWriter;
impl ImageWriter {
    pub fn create(dir: &Path) -> Result<Self, ImageError> { todo!() }
    pub fn write_pages(&mut self, vaddr: u64, data: &[u8]) -> Result<(), ImageError> { todo!() }
    pub fn write_zero_pages(&mut self, vaddr: u64, npages: u64) -> Result<(), ImageError> { todo!() }
    pub fn commit(self, checkpoint: &Checkpoint) -> Result<ImageSummary, ImageError> { todo!() }
}
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ImageSummary { pub pages_written: u64, pub zero_pages: u64, pub image_bytes: u64 }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun { pub vaddr: u64, pub npages: u64, pub offset: u64, pub zero: bool }
pub enum PageData<'a> { Bytes(&'a [u8]), Zero }
pub struct ImageReader;
impl ImageReader {
    pub fn open(dir: &Path) -> Result<Self, ImageError> { todo!() }
    pub fn checkpoint(&self) -> &Checkpoint { todo!() }
    pub fn runs(&self) -> &[PageRun] { todo!() }
    pub fn dir(&self) -> &Path { todo!() }
    pub fn read_pages<E: From<ImageError>>(&self, sink: impl FnMut(u64, PageData<'_>) -> Result<(), E>) -> Result<u64, E> { todo!() }
}
