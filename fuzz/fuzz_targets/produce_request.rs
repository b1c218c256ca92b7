//! Fuzz target: see `ballast_fuzz::produce_request`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ballast_fuzz::produce_request(data);
});
