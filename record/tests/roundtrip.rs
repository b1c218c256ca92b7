//! Property tests: arbitrary records survive build -> decode unchanged;
//! concatenated batches split back; compaction keeps exactly the chosen
//! records with their offsets and timestamps; and arbitrary corruption of
//! a valid batch (with or without a fixed-up CRC) is an error or a valid
//! decode, never a panic. proptest prints the failing case and stores its
//! seed under `proptest-regressions/` to reproduce it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ballast_record::{
    Batch, BatchBuilder, Header, Record, Retained, TimestampType, retain_records, split_batches,
    validate_for_append,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Input {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

fn input() -> impl Strategy<Value = Input> {
    let header = (
        "\\PC{0,8}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
    )
        .prop_map(|(key, value)| Header { key, value });
    (
        prop_oneof![any::<i64>(), 1_600_000_000_000i64..1_800_000_000_000],
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..48)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        // Duplicate keys allowed: Kafka keeps every header in order.
        proptest::collection::vec(header, 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Input {
            timestamp,
            key,
            value,
            headers,
        })
}

fn build(inputs: &[Input]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in inputs {
        let predicted = b.size_after(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        );
        b.append(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )
        .unwrap();
        assert_eq!(b.size_in_bytes(), predicted);
    }
    let size = b.size_in_bytes();
    let bytes = b.build();
    assert_eq!(bytes.len(), size);
    bytes
}

proptest! {
    #[test]
    fn build_then_decode_is_identity(inputs in proptest::collection::vec(input(), 1..20)) {
        let bytes = build(&inputs);
        let (h, recs) = Batch::decode(&bytes).unwrap();
        prop_assert_eq!(h.records_count as usize, inputs.len());
        prop_assert_eq!(h.last_offset_delta as usize, inputs.len() - 1);
        prop_assert_eq!(h.base_timestamp, inputs[0].timestamp);
        prop_assert_eq!(
            h.max_timestamp,
            inputs.iter().map(|r| r.timestamp).max().unwrap()
        );
        prop_assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        let recs: Vec<_> = recs.collect::<Result<_, _>>().unwrap();
        for (i, (r, want)) in recs.iter().zip(&inputs).enumerate() {
            prop_assert_eq!(r.offset, i as i64);
            prop_assert_eq!(r.timestamp, want.timestamp);
            prop_assert_eq!(
                r.to_record(),
                Record {
                    offset_delta: i as i32,
                    timestamp_delta: want.timestamp.wrapping_sub(inputs[0].timestamp),
                    key: want.key.clone(),
                    value: want.value.clone(),
                    headers: want.headers.clone(),
                }
            );
        }
        prop_assert_eq!(recs.len(), inputs.len());
        prop_assert_eq!(validate_for_append(&bytes), Ok(h));
        prop_assert_eq!(Batch::parse(&bytes).unwrap().to_records().unwrap().len(), inputs.len());
    }

    #[test]
    fn split_gives_back_each_batch(
        batches in proptest::collection::vec(proptest::collection::vec(input(), 1..5), 0..5),
    ) {
        let built: Vec<Vec<u8>> = batches.iter().map(|b| build(b)).collect();
        let all = built.concat();
        let split: Vec<_> = split_batches(&all).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(split.len(), built.len());
        for ((h, bytes), want) in split.iter().zip(&built) {
            prop_assert_eq!(*bytes, want.as_slice());
            prop_assert_eq!(h.total_len(), want.len());
        }
    }

    #[test]
    fn retain_keeps_exactly_the_chosen_records(
        inputs in proptest::collection::vec(input(), 1..20),
        mask in proptest::collection::vec(any::<bool>(), 20),
        base_offset in 0i64..1 << 40,
    ) {
        let mut bytes = build(&inputs);
        ballast_record::set_base_offset(&mut bytes, base_offset);
        let original: Vec<_> = Batch::parse(&bytes).unwrap().records().map(|r| r.unwrap()).collect();
        let keep = |o: i64| mask[(o - base_offset) as usize];
        let kept: Vec<_> = original.iter().filter(|r| keep(r.offset)).collect();
        let out = retain_records(&bytes, |r| keep(r.offset)).unwrap();
        match out {
            Retained::Unchanged => prop_assert_eq!(kept.len(), original.len()),
            Retained::Dropped => prop_assert!(kept.is_empty()),
            Retained::Rebuilt(c) => {
                let b = Batch::parse(&c).unwrap();
                let h = b.header();
                let oh = Batch::parse(&bytes).unwrap();
                prop_assert_eq!(h.base_offset, base_offset);
                prop_assert_eq!(h.last_offset_delta, oh.header().last_offset_delta);
                prop_assert_eq!(h.records_count as usize, kept.len());
                prop_assert_eq!(h.max_timestamp, kept.iter().map(|r| r.timestamp).max().unwrap());
                let got: Vec<_> = b.records().map(|r| r.unwrap()).collect();
                prop_assert_eq!(got.len(), kept.len());
                for (g, k) in got.iter().zip(&kept) {
                    prop_assert_eq!(g.offset, k.offset);
                    prop_assert_eq!(g.timestamp, k.timestamp);
                    prop_assert_eq!((g.key, g.value), (k.key, k.value));
                    prop_assert!(g.headers().eq(k.headers()));
                }
            }
        }
    }

    /// Corrupt a valid batch at random; with `fix_crc` the CRC is made to
    /// match so decoding goes past it. Never a panic.
    #[test]
    fn corruption_never_panics(
        inputs in proptest::collection::vec(input(), 1..6),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        fix_crc in any::<bool>(),
    ) {
        let mut bytes = build(&inputs);
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if fix_crc && bytes.len() >= 61 {
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            let len = (bytes.len() - 12) as i32;
            bytes[8..12].copy_from_slice(&len.to_be_bytes());
        }
        for b in split_batches(&bytes) {
            let Ok((_, b)) = b else { break };
            if let Ok(batch) = Batch::parse(b) {
                for r in batch.records().flatten() {
                    let _ = r.headers().count();
                    let _ = r.to_record();
                }
                let _ = batch.to_records();
            }
            let _ = validate_for_append(b);
            let _ = retain_records(b, |r| r.offset % 3 != 0);
        }
    }
}
