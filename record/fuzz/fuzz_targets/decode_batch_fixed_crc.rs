//! Fuzz target: the input made into one batch that passes the outer
//! checks (batch length = input length - 12, magic 2, CRC-32C recomputed),
//! so the fuzzer explores the record decoder behind the CRC.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    ballast_record_fuzz::fix_up(&mut bytes);
    ballast_record_fuzz::exercise(&bytes);
});
