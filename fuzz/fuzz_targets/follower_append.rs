//! Fuzz target: see `ballast_fuzz::follower_append`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ballast_fuzz::follower_append(data);
});
