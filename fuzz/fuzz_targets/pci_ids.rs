//! libFuzzer entry for vportd::fuzzing::pci_ids (invariants documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vportd::fuzzing::pci_ids(data));
