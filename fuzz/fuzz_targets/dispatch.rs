#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fusegate_fuzz::dispatch::run(data);
});
