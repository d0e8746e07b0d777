//! libFuzzer entry for vportd::fuzzing::cpulist (invariants documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vportd::fuzzing::cpulist(data));
