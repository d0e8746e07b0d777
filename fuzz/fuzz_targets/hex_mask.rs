//! libFuzzer entry for vportd::fuzzing::hex_mask (invariants documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vportd::fuzzing::hex_mask(data));
