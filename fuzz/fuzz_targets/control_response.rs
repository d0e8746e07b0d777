//! libFuzzer entry for vportd::fuzzing::control_response (invariants documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vportd::fuzzing::control_response(data));
