//! libFuzzer entry for vportd::fuzzing::uevent (invariants documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vportd::fuzzing::uevent(data));
