//! What the fuzz targets run: every reader of untrusted batch bytes, plus
//! invariants that must hold whenever a read succeeds. Any panic here is a
//! bug in `ballast-record` (or in an invariant below).
//!
//! Run from `record/` (cargo-fuzz: `cargo install --locked cargo-fuzz`):
//!
//! ```text
//! cargo +nightly fuzz run decode_batch /tmp/work-dir fuzz/corpus/decode_batch -- -max_total_time=60
//! cargo +nightly fuzz run decode_batch_fixed_crc /tmp/work-dir2 fuzz/corpus/decode_batch_fixed_crc -- -max_total_time=60
//! ```
//!
//! The first directory receives new inputs, so the committed seed corpus
//! (a few valid batches) stays small. Crashes land in `fuzz/artifacts/`.

use ballast_record::{
    BATCH_HEADER_LEN, Batch, RecordError, RecordRef, Retained, retain_records, split_batches,
    validate_for_append,
};

/// Make `bytes` one batch that passes the length, magic and CRC checks.
pub fn fix_up(bytes: &mut [u8]) {
    if bytes.len() < BATCH_HEADER_LEN {
        return;
    }
    let len = (bytes.len() - 12) as i32;
    bytes[8..12].copy_from_slice(&len.to_be_bytes());
    bytes[16] = 2;
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn same(a: &RecordRef<'_>, b: &RecordRef<'_>) -> bool {
    a.offset == b.offset
        && a.timestamp == b.timestamp
        && a.key == b.key
        && a.value == b.value
        && a.headers().eq(b.headers())
}

/// Run every reader over `data` and check invariants.
pub fn exercise(data: &[u8]) {
    // Decoding directly (first batch only).
    if let Ok((h, records)) = Batch::decode(data) {
        assert!(h.total_len() <= data.len());
        for r in records.flatten() {
            assert!((0..=h.last_offset_delta).contains(&r.offset_delta));
        }
    }

    let mut consumed = 0;
    let mut batches = split_batches(data);
    for item in batches.by_ref() {
        let (h, bytes) = match item {
            Ok(ok) => ok,
            Err(e) => {
                assert_eq!(e.valid_bytes, consumed);
                break;
            }
        };
        assert_eq!(bytes.len(), h.total_len());
        consumed += bytes.len();

        let Ok(batch) = Batch::parse(bytes) else {
            continue;
        };
        let decoded: Result<Vec<RecordRef<'_>>, RecordError> = batch.records().collect();
        for r in batch.records().flatten() {
            let _ = r.headers().count();
            let owned = r.to_record();
            assert_eq!(owned.headers.len(), r.header_count() as usize);
        }
        let owned = batch.to_records();
        assert_eq!(owned.is_ok(), decoded.is_ok());
        let appendable = validate_for_append(bytes);
        if appendable.is_ok() {
            assert!(decoded.is_ok());
        }

        // Compaction: keep every other record; the result must decode to
        // exactly the kept records.
        let compacted = retain_records(bytes, |r| r.offset_delta % 2 == 0);
        match (&decoded, compacted) {
            (Err(_), c) => assert!(c.is_err()),
            (Ok(_), Err(e)) => panic!("decoded batch failed to compact: {e}"),
            (Ok(all), Ok(Retained::Unchanged)) => {
                assert!(all.iter().all(|r| r.offset_delta % 2 == 0));
            }
            (Ok(all), Ok(Retained::Dropped)) => {
                assert!(all.iter().all(|r| r.offset_delta % 2 != 0));
            }
            (Ok(all), Ok(Retained::Rebuilt(out))) => {
                let kept: Vec<_> = all.iter().filter(|r| r.offset_delta % 2 == 0).collect();
                let rebuilt = Batch::parse(&out).expect("rebuilt batch verifies");
                assert_eq!(rebuilt.header().base_offset, h.base_offset);
                assert_eq!(rebuilt.header().last_offset_delta, h.last_offset_delta);
                let got: Vec<_> = rebuilt
                    .records()
                    .collect::<Result<_, _>>()
                    .expect("rebuilt records decode");
                assert_eq!(got.len(), kept.len());
                for (g, k) in got.iter().zip(kept) {
                    assert!(same(g, k), "{g:?} != {k:?}");
                }
            }
        }
    }
    assert_eq!(batches.valid_bytes(), consumed);
}
