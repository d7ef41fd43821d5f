//! A merge patch applied to an object of the kind the first byte picks, then admitted.
#![no_main]

use capstan_apiserver::patch::PatchType;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    capstan_fuzz::patch_and_admit(PatchType::Merge, data);
});
