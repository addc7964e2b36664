#![no_main]
// The body and the properties it checks: pos_shared::fuzzing::vendor_lightspeed.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pos_shared::fuzzing::vendor_lightspeed(data));
