//! cargo-fuzz target: `weir_host::fuzzing::kafka_request` must return normally for any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_host::fuzzing::kafka_request(data);
});
