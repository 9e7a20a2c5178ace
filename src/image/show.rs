//! A person-readable description of an image (`migrate-agent image show`).
