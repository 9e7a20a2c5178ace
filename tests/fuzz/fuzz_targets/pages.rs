//! The page stream parser: fixed little-endian headers and page payloads.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::page_stream(data));
