//! The image directory format: manifest (written last), pages file, index.
