//! Fuzz target: arbitrary bytes through everything that reads untrusted
//! batches (split, verify, decode, iterate, append checks, compaction).
//! Most inputs stop at the CRC; `decode_batch_fixed_crc` gets past it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ballast_record_fuzz::exercise(data);
});
