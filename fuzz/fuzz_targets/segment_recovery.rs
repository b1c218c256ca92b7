//! Fuzz target: see `ballast_fuzz::segment_recovery`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ballast_fuzz::segment_recovery(data);
});
