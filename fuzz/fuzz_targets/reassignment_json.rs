//! Fuzz target: see `ballast_fuzz::reassignment_json`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ballast_fuzz::reassignment_json(data);
});
