//! Every control message an agent decodes (handshake, migration, probe,
//! post-copy, rootfs, control socket), as a stream of messages of one type.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::control_stream(data));
