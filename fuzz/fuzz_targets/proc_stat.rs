//! libFuzzer entry for vportd::fuzzing::proc_stat (invariants documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vportd::fuzzing::proc_stat(data));
