//! Golden tests against the `kafka-protocol` crate's RecordBatch v2 codec:
//! batches it encodes must decode identically with ours, our builder's
//! bytes must equal its bytes for the same records, and our bytes must
//! decode identically with it.
//!
//! `kafka-protocol` 0.18 trusts counts read from the wire, so it is only
//! ever given bytes produced here (by it or by our builder), never hostile
//! ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ballast_record::{
    Batch, BatchBuilder, Header, RecordRef, TimestampType, split_batches, validate_for_append,
};
use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KTimestampType,
};
use proptest::prelude::*;

/// One record to encode both ways.
#[derive(Debug, Clone)]
struct Input {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// Unique keys: kafka-protocol keeps headers in a map.
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn k_records(inputs: &[Input], base_offset: i64) -> Vec<KRecord> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut rec = KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: KTimestampType::Creation,
                offset: base_offset + i as i64,
                // Keeps offset - sequence constant (one batch) and gives
                // base sequence -1, as our builder writes.
                sequence: i as i32 - 1,
                timestamp: r.timestamp,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers: Default::default(),
            };
            for (k, v) in &r.headers {
                rec.headers
                    .insert(StrBytes::from_string(k.clone()), v.clone().map(Bytes::from));
            }
            rec
        })
        .collect()
}

fn k_encode(records: &[KRecord]) -> Vec<u8> {
    let mut buf = Vec::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("kafka-protocol encodes");
    buf
}

/// Decode bytes we produced ourselves with kafka-protocol.
fn k_decode(bytes: &[u8]) -> Vec<KRecord> {
    let mut buf = Bytes::copy_from_slice(bytes);
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("kafka-protocol decodes")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

fn ours_build(inputs: &[Input]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in inputs {
        let hs: Vec<Header> = r
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &hs)
            .expect("fits");
    }
    b.build()
}

fn assert_same(ours: &[RecordRef<'_>], theirs: &[KRecord], check_timestamps: bool) {
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o.offset, t.offset);
        if check_timestamps {
            assert_eq!(o.timestamp, t.timestamp);
        }
        assert_eq!(o.key, t.key.as_deref());
        assert_eq!(o.value, t.value.as_deref());
        let oh: Vec<(String, Option<Vec<u8>>)> = o
            .headers()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        let th: Vec<(String, Option<Vec<u8>>)> = t
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_ref().map(|v| v.to_vec())))
            .collect();
        assert_eq!(oh, th);
    }
}

fn decode_ours(bytes: &[u8]) -> Vec<RecordRef<'_>> {
    let (_, recs) = Batch::decode(bytes).expect("our decoder accepts");
    recs.collect::<Result<_, _>>().expect("records decode")
}

fn sample() -> Vec<Input> {
    vec![
        Input {
            timestamp: 1_700_000_000_000,
            key: Some(b"user-1".to_vec()),
            value: Some(b"hello".to_vec()),
            headers: vec![
                ("trace-id".into(), Some(b"abc".to_vec())),
                ("null-valued".into(), None),
                ("\u{e9}t\u{e9}".into(), Some(vec![])),
            ],
        },
        Input {
            timestamp: 1_700_000_000_005,
            key: None,
            value: Some(vec![0u8; 300]),
            headers: vec![],
        },
        Input {
            timestamp: 1_700_000_000_005,
            key: Some(vec![]),
            value: None,
            headers: vec![],
        },
        Input {
            timestamp: 1_700_000_009_999,
            key: Some(vec![0xff; 200]),
            value: Some(b"last".to_vec()),
            headers: vec![("k".into(), Some(vec![1, 2, 3]))],
        },
    ]
}

#[test]
fn our_bytes_equal_kafka_protocol_bytes() {
    let inputs = sample();
    let theirs = k_encode(&k_records(&inputs, 0));
    let ours = ours_build(&inputs);
    assert_eq!(ours, theirs);
}

#[test]
fn we_read_kafka_protocol_batches() {
    let inputs = sample();
    let k = k_records(&inputs, 1_000);
    let bytes = k_encode(&k);
    let (h, _) = Batch::decode(&bytes).unwrap();
    assert_eq!(h.base_offset, 1_000);
    assert_eq!(h.last_offset(), 1_003);
    assert_eq!(h.records_count, 4);
    assert_eq!(
        (h.base_timestamp, h.max_timestamp),
        (1_700_000_000_000, 1_700_000_009_999)
    );
    assert_eq!(
        (
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            h.partition_leader_epoch
        ),
        (-1, -1, -1, -1)
    );
    assert_same(&decode_ours(&bytes), &k, true);
    // A client's batch as kafka-protocol writes it passes the append checks.
    validate_for_append(&bytes).unwrap();
}

#[test]
fn kafka_protocol_reads_our_batches() {
    let inputs = sample();
    let bytes = ours_build(&inputs);
    let theirs = k_decode(&bytes);
    assert_same(&decode_ours(&bytes), &theirs, true);
    for (t, i) in theirs.iter().zip(&inputs) {
        assert_eq!(t.timestamp, i.timestamp);
        assert_eq!(t.timestamp_type, KTimestampType::Creation);
        assert_eq!((t.producer_id, t.producer_epoch), (-1, -1));
        assert_eq!(t.partition_leader_epoch, -1);
    }
}

#[test]
fn producer_fields_and_flags_from_kafka_protocol() {
    let inputs = sample();
    let mut k = k_records(&inputs, 77);
    for (i, r) in k.iter_mut().enumerate() {
        r.producer_id = 4_242;
        r.producer_epoch = 3;
        r.sequence = 10 + i as i32;
        r.partition_leader_epoch = 9;
        r.transactional = true;
    }
    let bytes = k_encode(&k);
    let (h, _) = Batch::decode(&bytes).unwrap();
    assert_eq!(
        (
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            h.partition_leader_epoch
        ),
        (4_242, 3, 10, 9)
    );
    assert!(h.is_transactional() && !h.is_control());
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert_same(&decode_ours(&bytes), &k, true);
}

#[test]
fn several_batches_both_ways() {
    let inputs = sample();
    let mut theirs = k_encode(&k_records(&inputs[..2], 0));
    theirs.extend(k_encode(&k_records(&inputs[2..], 2)));
    let split: Vec<_> = split_batches(&theirs).collect::<Result<_, _>>().unwrap();
    assert_eq!(split.len(), 2);
    assert_eq!(split[1].0.base_offset, 2);

    let mut ours = ours_build(&inputs[..2]);
    ours.extend(ours_build(&inputs[2..]));
    assert_eq!(k_decode(&ours).len(), 4);
}

#[test]
fn log_append_time_flag_is_read_by_kafka_protocol() {
    let mut b = BatchBuilder::with_log_append_time(42);
    b.append(7, Some(b"k"), Some(b"v"), &[]).unwrap();
    let bytes = b.build();
    let theirs = k_decode(&bytes);
    assert_eq!(theirs[0].timestamp_type, KTimestampType::LogAppend);
    assert_same(&decode_ours(&bytes), &theirs, false);
}

/// A fetch-response batch printed in kafka-protocol's own documentation
/// (`records.rs`): one record, key "hello", value "world", offset delta 1,
/// timestamp delta 1000, record attributes 1, last offset delta 3.
#[test]
fn reads_the_kafka_protocol_doc_batch() {
    const RECORD: [u8; 79] = [
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x43, 0x0, 0x0, 0x0, 0x0, 0x2, 0x73,
        0x6d, 0x29, 0x7b, 0x0, 0b00000000, 0x0, 0x0, 0x0, 0x3, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x0, 0x1, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x1, 0x22, 0x1, 0xd0, 0xf, 0x2, 0xa, 0x68, 0x65,
        0x6c, 0x6c, 0x6f, 0xa, 0x77, 0x6f, 0x72, 0x6c, 0x64, 0x0,
    ];
    let (h, recs) = Batch::decode(&RECORD).unwrap();
    assert_eq!((h.last_offset_delta, h.records_count), (3, 1));
    let recs: Vec<_> = recs.collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 1);
    let r = recs[0];
    assert_eq!((r.offset, r.timestamp, r.attributes), (1, 1_000, 1));
    assert_eq!((r.key, r.value), (Some(&b"hello"[..]), Some(&b"world"[..])));
    assert_same(&recs, &k_decode(&RECORD), true);
}

fn input() -> impl Strategy<Value = (i64, Input)> {
    (
        0i64..1_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::btree_map(
            "\\PC{0,6}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
            0..4,
        ),
    )
        .prop_map(|(step, key, value, headers)| {
            (
                step,
                Input {
                    timestamp: 0,
                    key,
                    value,
                    headers: headers.into_iter().collect(),
                },
            )
        })
}

proptest! {
    /// Arbitrary records (non-decreasing timestamps, where kafka-protocol's
    /// base timestamp, the minimum, equals ours, the first) give identical
    /// bytes, and each side reads the other's.
    #[test]
    fn identical_to_kafka_protocol(
        start in -1i64..i64::MAX / 2,
        records in proptest::collection::vec(input(), 1..12),
    ) {
        let mut t = start;
        let inputs: Vec<Input> = records
            .into_iter()
            .map(|(step, mut r)| {
                t += step;
                r.timestamp = t;
                r
            })
            .collect();
        let k = k_records(&inputs, 0);
        let theirs = k_encode(&k);
        let ours = ours_build(&inputs);
        prop_assert_eq!(&ours, &theirs);
        assert_same(&decode_ours(&theirs), &k, true);
        assert_same(&decode_ours(&ours), &k_decode(&ours), true);
    }
}
