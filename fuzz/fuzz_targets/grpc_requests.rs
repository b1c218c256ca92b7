//! Fuzz target: see `ballast_fuzz::grpc_requests`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ballast_fuzz::grpc_requests(data);
});
