//! `migrate-agent image show`.

use ferry::image::show::describe;
use ferry::image::ImageReader;
use std::path::Path;
use std::process::ExitCode;

/// Prints a person-readable description of the image in `dir`.
pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    let reader = ImageReader::open(dir)?;
    print!("{}", describe(&reader));
    Ok(ExitCode::SUCCESS)
}
