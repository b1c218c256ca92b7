//! Hostile inputs: truncations at every byte, bit flips, and batches whose
//! counts and lengths lie but whose CRC was fixed up so the check passes.
//! Every one must be a named error, never a panic or a large allocation.
//! A counting global allocator records the largest single allocation made
//! while decoding.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The counting allocator is the only unsafe code, confined to this test.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ballast_record::{
    BATCH_HEADER_LEN, Batch, BatchBuilder, BatchHeader, Header, RecordError, Retained,
    retain_records, split_batches, validate_for_append,
};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serialises measurements: tests run on parallel threads.
static PROBE: Mutex<()> = Mutex::new(());

/// Largest single allocation (bytes) made by any thread while `f` ran; the
/// other tests here and the harness make only small allocations.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _guard = PROBE.lock().unwrap_or_else(|e| e.into_inner());
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    (out, LARGEST.load(Ordering::Relaxed))
}

/// Everything a reader might do with untrusted bytes.
fn decode_everything(bytes: &[u8]) -> Result<usize, RecordError> {
    let mut n = 0;
    for b in split_batches(bytes) {
        let (_, b) = b.map_err(|e| e.error)?;
        let batch = Batch::parse(b)?;
        for r in batch.records() {
            let r = r?;
            n += r.headers().count() + r.key.map_or(0, <[u8]>::len);
        }
        batch.to_records()?;
        validate_for_append(b)?;
        retain_records(b, |r| r.offset % 2 == 0)?;
    }
    Ok(n)
}

fn zigzag(v: i64) -> Vec<u8> {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    while u >= 0x80 {
        out.push((u as u8 & 0x7f) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
    out
}

/// A batch with the given header counts and raw records region, its batch
/// length and CRC made right so only the lies inside remain.
fn forged(records_count: i32, last_offset_delta: i32, region: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new().build();
    b.extend_from_slice(region);
    b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    b[57..61].copy_from_slice(&records_count.to_be_bytes());
    fix_up(&mut b);
    b
}

fn fix_up(b: &mut [u8]) {
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// One record's bytes from its fields (lengths written as given).
fn record(fields: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = fields.concat();
    let mut out = zigzag(body.len() as i64);
    out.extend(body);
    out
}

fn valid_batch() -> Vec<u8> {
    let mut b = BatchBuilder::new();
    let hs = [
        Header::new("a", "1"),
        Header {
            key: "b".into(),
            value: None,
        },
    ];
    b.append(100, Some(b"key-0"), Some(b"value-0"), &hs)
        .unwrap();
    b.append(101, None, Some(b"value-1"), &[]).unwrap();
    b.append(99, Some(b"key-2"), None, &hs).unwrap();
    b.build()
}

#[test]
fn every_truncation_is_named() {
    let b = valid_batch();
    for cut in 0..b.len() {
        let e = Batch::decode(&b[..cut]).err();
        assert!(
            matches!(e, Some(RecordError::Truncated { .. })),
            "cut {cut}: {e:?}"
        );
        let split: Vec<_> = split_batches(&b[..cut]).collect();
        if cut == 0 {
            assert!(split.is_empty());
        } else {
            assert_eq!(split.len(), 1);
            let e = split[0].as_ref().unwrap_err();
            assert_eq!((e.valid_bytes, e.valid_batches), (0, 0));
        }
    }
    assert_eq!(decode_everything(&b).unwrap(), 14);
}

#[test]
fn split_reports_valid_bytes_before_the_bad_batch() {
    let one = valid_batch();
    let mut two = one.clone();
    two.extend_from_slice(&one);
    for cut in one.len()..=two.len() {
        let items: Vec<_> = split_batches(&two[..cut]).collect();
        assert!(items[0].is_ok());
        if cut == one.len() {
            assert_eq!(items.len(), 1);
        } else if cut == two.len() {
            assert_eq!(items.len(), 2);
            assert!(items[1].is_ok());
        } else {
            let e = items[1].as_ref().unwrap_err();
            assert_eq!((e.valid_bytes, e.valid_batches), (one.len(), 1));
        }
    }
    // Garbage after two good batches.
    let mut tail = two.clone();
    tail.extend_from_slice(&[0xde; 70]);
    let mut it = split_batches(&tail);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_ok());
    let e = it.next().unwrap().unwrap_err();
    assert_eq!(e.valid_bytes, two.len());
    assert!(matches!(e.error, RecordError::InvalidLength(_)));
    assert!(it.next().is_none());
    assert_eq!(it.valid_bytes(), two.len());
}

#[test]
fn every_bit_flip_is_caught() {
    let b = valid_batch();
    for byte in 0..b.len() {
        for bit in 0..8 {
            let mut f = b.clone();
            f[byte] ^= 1 << bit;
            let r = Batch::decode(&f);
            match byte {
                // Base offset and leader epoch are outside the CRC (the
                // leader stamps them); only a negative base offset is
                // refused.
                0..8 | 12..16 => {
                    if byte == 0 && bit == 7 {
                        assert!(matches!(r, Err(RecordError::Invalid(_))));
                    } else {
                        assert!(r.is_ok(), "byte {byte} bit {bit}: {r:?}");
                    }
                }
                // Records: only the CRC can tell.
                BATCH_HEADER_LEN.. => assert!(
                    matches!(r, Err(RecordError::CrcMismatch { .. })),
                    "byte {byte} bit {bit}: {r:?}"
                ),
                // Length, magic, CRC, header fields: some other named error
                // may come first.
                _ => assert!(r.is_err(), "byte {byte} bit {bit}"),
            }
        }
    }
}

#[test]
fn forged_counts_and_lengths_are_named_without_allocating() {
    let key5: &[u8] = &zigzag(5);
    let null: &[u8] = &zigzag(-1);
    let zero: &[u8] = &zigzag(0);
    let good = record(&[&[0], zero, zero, key5, b"hello", null, zero]);

    // The probe sees a large allocation when there is one.
    let (v, big) = largest_allocation(|| vec![1u8; 1 << 20]);
    assert!(big >= 1 << 20 && v.len() == 1 << 20);

    type Check = fn(&RecordError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("records count i32::MAX", forged(i32::MAX, 0, &good), |e| {
            matches!(
                e,
                RecordError::RecordCountMismatch {
                    declared: i32::MAX,
                    found: 1
                }
            )
        }),
        ("records count 0 with a record", forged(0, 0, &good), |e| {
            matches!(e, RecordError::TrailingBytes { declared: 0, .. })
        }),
        (
            "record length i32::MAX",
            forged(1, 0, &zigzag(i32::MAX.into())),
            |e| {
                matches!(
                    e,
                    RecordError::LengthOutOfBounds {
                        field: "record length",
                        ..
                    }
                )
            },
        ),
        ("record length -5", forged(1, 0, &zigzag(-5)), |e| {
            matches!(
                e,
                RecordError::NegativeLength {
                    field: "record length",
                    ..
                }
            )
        }),
        (
            "key length i32::MAX",
            forged(
                1,
                0,
                &record(&[&[0], zero, zero, &zigzag(i32::MAX.into()), b"x"]),
            ),
            |e| {
                matches!(
                    e,
                    RecordError::LengthOutOfBounds {
                        field: "key length",
                        ..
                    }
                )
            },
        ),
        (
            "value length -2",
            forged(1, 0, &record(&[&[0], zero, zero, null, &zigzag(-2), zero])),
            |e| {
                matches!(
                    e,
                    RecordError::NegativeLength {
                        field: "value length",
                        length: -2,
                        ..
                    }
                )
            },
        ),
        (
            "header count i32::MAX",
            forged(
                1,
                0,
                &record(&[&[0], zero, zero, null, null, &zigzag(i32::MAX.into())]),
            ),
            |e| {
                matches!(
                    e,
                    RecordError::LengthOutOfBounds {
                        field: "header count",
                        ..
                    }
                )
            },
        ),
        (
            "header count -1",
            forged(1, 0, &record(&[&[0], zero, zero, null, null, null])),
            |e| {
                matches!(
                    e,
                    RecordError::NegativeLength {
                        field: "header count",
                        ..
                    }
                )
            },
        ),
        (
            "null header key",
            forged(
                1,
                0,
                &record(&[&[0], zero, zero, null, null, &zigzag(1), null, null]),
            ),
            |e| {
                matches!(
                    e,
                    RecordError::NegativeLength {
                        field: "header key length",
                        ..
                    }
                )
            },
        ),
        (
            "six-byte varint",
            forged(
                1,
                0,
                &record(&[&[0], zero, &[0x80, 0x80, 0x80, 0x80, 0x80, 0]]),
            ),
            |e| {
                matches!(
                    e,
                    RecordError::InvalidVarint {
                        field: "offset delta",
                        ..
                    }
                )
            },
        ),
        (
            "offset delta past the last",
            forged(1, 0, &record(&[&[0], zero, &zigzag(1), null, null, zero])),
            |e| matches!(e, RecordError::OffsetDeltaOutOfRange { .. }),
        ),
        (
            "record longer than its fields",
            forged(
                1,
                0,
                &record(&[&[0], zero, zero, null, null, zero, &[9, 9]]),
            ),
            |e| {
                matches!(
                    e,
                    RecordError::RecordSizeMismatch {
                        declared: 8,
                        used: 6,
                        ..
                    }
                )
            },
        ),
    ];
    for (name, bytes, check) in cases {
        let (result, largest) = largest_allocation(|| {
            let first = Batch::decode(&bytes)
                .and_then(|(_, mut it)| it.find_map(Result::err).map_or(Ok(()), Err));
            (first, decode_everything(&bytes))
        });
        let (first, everything) = result;
        let e = first.expect_err(name);
        assert!(check(&e), "{name}: {e:?}");
        assert!(everything.is_err(), "{name}");
        assert!(largest < 64 * 1024, "{name}: allocated {largest} bytes");
    }
}

#[test]
fn forged_header_fields_are_named() {
    let b = valid_batch();
    let with = |at: usize, v: &[u8], fix: bool| {
        let mut f = b.clone();
        f[at..at + v.len()].copy_from_slice(v);
        if fix {
            let crc = crc32c::crc32c(&f[21..]);
            f[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        f
    };
    let (r, largest) =
        largest_allocation(|| Batch::decode(&with(8, &i32::MAX.to_be_bytes(), false)).map(|_| ()));
    assert_eq!(r, Err(RecordError::InvalidLength(i32::MAX.into())));
    assert!(largest < 64 * 1024);
    assert_eq!(
        Batch::decode(&with(8, &(-1i32).to_be_bytes(), false)).map(|_| ()),
        Err(RecordError::InvalidLength(-1))
    );
    assert_eq!(
        Batch::decode(&with(16, &[1], false)).map(|_| ()),
        Err(RecordError::UnsupportedMagic(1))
    );
    for codec in 1..=7u8 {
        let f = with(22, &[codec], true);
        assert_eq!(
            Batch::decode(&f).map(|_| ()),
            Err(RecordError::UnsupportedCompression(codec))
        );
        // The header still verifies: a compressed batch is a valid batch,
        // just not one we decode.
        assert!(BatchHeader::verify(&f).is_ok());
        assert!(split_batches(&f).all(|r| r.is_ok()));
    }
    // Last offset delta near i32::MAX with a base offset near i64::MAX.
    let mut f = with(23, &i32::MAX.to_be_bytes(), true);
    f[0..8].copy_from_slice(&(i64::MAX - 5).to_be_bytes());
    assert!(matches!(
        Batch::decode(&f).map(|_| ()),
        Err(RecordError::Invalid(_))
    ));
    // Negative records count.
    assert!(matches!(
        Batch::decode(&with(57, &(-1i32).to_be_bytes(), true)).map(|_| ()),
        Err(RecordError::Invalid(_))
    ));
}

#[test]
fn append_checks() {
    let b = valid_batch();
    validate_for_append(&b).unwrap();
    let with = |at: usize, v: &[u8]| {
        let mut f = b.clone();
        f[at..at + v.len()].copy_from_slice(v);
        let crc = crc32c::crc32c(&f[21..]);
        f[17..21].copy_from_slice(&crc.to_be_bytes());
        f
    };
    assert_eq!(
        validate_for_append(&with(22, &[0x20])),
        Err(RecordError::ControlBatch)
    );
    assert_eq!(
        validate_for_append(&with(23, &5i32.to_be_bytes())),
        Err(RecordError::LastOffsetDeltaMismatch {
            last_offset_delta: 5,
            records_count: 3
        })
    );
    assert_eq!(
        validate_for_append(&with(35, &7i64.to_be_bytes())),
        Err(RecordError::MaxTimestampMismatch {
            stored: 7,
            computed: 101
        })
    );
    // Offset deltas 0, 2 with last offset delta 1: a gap.
    let null: &[u8] = &zigzag(-1);
    let zero: &[u8] = &zigzag(0);
    let mut region = record(&[&[0], zero, zero, null, null, zero]);
    region.extend(record(&[&[0], zero, &zigzag(2), null, null, zero]));
    let mut f = forged(2, 2, &region);
    f[23..27].copy_from_slice(&1i32.to_be_bytes());
    fix_up(&mut f);
    assert!(matches!(
        validate_for_append(&f),
        Err(RecordError::OffsetDeltaOutOfRange { .. })
    ));
    let mut region = record(&[&[0], zero, zero, null, null, zero]);
    region.extend(record(&[&[0], zero, zero, null, null, zero]));
    assert_eq!(
        validate_for_append(&forged(2, 1, &region)),
        Err(RecordError::OffsetDeltaGap {
            record: 1,
            offset_delta: 0
        })
    );
    // A rebuilt (compacted) batch is a valid batch.
    let Ok(Retained::Rebuilt(c)) = retain_records(&b, |r| r.offset != 1) else {
        panic!("expected a rebuilt batch");
    };
    assert_eq!(
        decode_everything(&c).map(|_| ()),
        Err(RecordError::LastOffsetDeltaMismatch {
            last_offset_delta: 2,
            records_count: 2
        })
    );
    assert_eq!(Batch::parse(&c).unwrap().to_records().unwrap().len(), 2);
}
