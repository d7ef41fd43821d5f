//! A json request body: decoded as the handler does, then through the create path.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    capstan_fuzz::decode_and_admit("application/json", data);
});
