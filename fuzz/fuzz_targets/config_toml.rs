//! Fuzz target: see `ballast_fuzz::config_toml`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ballast_fuzz::config_toml(data);
});
