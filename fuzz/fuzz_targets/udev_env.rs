//! libFuzzer entry for vportd::fuzzing::udev_env (invariants documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vportd::fuzzing::udev_env(data));
