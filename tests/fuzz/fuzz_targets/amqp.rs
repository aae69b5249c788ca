//! cargo-fuzz target: `weir_host::fuzzing::amqp_frames` must return normally for any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_host::fuzzing::amqp_frames(data);
});
