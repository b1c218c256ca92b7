//! The three pieces of Java behaviour Kafka's answers depend on:
//! `String.hashCode`, `String.compareTo` and `java.util.Random`.
//!
//! Java strings are sequences of UTF-16 code units, so hashing and ordering
//! work on those units, not on Rust's UTF-8 bytes or `char`s. A character
//! outside the Basic Multilingual Plane is two units (a surrogate pair); the
//! surrogates (0xD800..=0xDFFF) sort *before* the BMP characters
//! 0xE000..=0xFFFF in Java, whereas Rust's `str` order puts them after.

use std::cmp::Ordering;

/// Java's `String.hashCode`: `h = 31 * h + c` over the UTF-16 code units,
/// with wrapping 32-bit arithmetic. The empty string hashes to 0.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Java's `String.compareTo` order: lexicographic over UTF-16 code units,
/// a proper prefix first.
pub fn java_string_cmp(a: &str, b: &str) -> Ordering {
    // Fast path: while both strings are ASCII the byte order is the
    // UTF-16 order. Fall back at the first non-ASCII byte of either.
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let common = ab.len().min(bb.len());
    for i in 0..common {
        let (x, y) = (ab[i], bb[i]);
        if x >= 0x80 || y >= 0x80 {
            // Compare from the start of the characters that contain i; both
            // strings agree byte for byte up to i, so they agree on the
            // character boundary too.
            let mut start = i;
            while !a.is_char_boundary(start) {
                start -= 1;
            }
            return a[start..].encode_utf16().cmp(b[start..].encode_utf16());
        }
        if x != y {
            return x.cmp(&y);
        }
    }
    ab.len().cmp(&bb.len())
}

/// `java.util.Random`: the 48-bit linear congruential generator, bit for bit.
///
/// Kafka's `AdminUtils` draws its start index and follower shift from a
/// `Random`; seeding this one with `s` gives exactly the values a
/// `new java.util.Random(s)` would, so a seeded placement here equals the one
/// Kafka computes with a Random seeded alike.
#[derive(Debug, Clone)]
pub struct JavaRandom {
    seed: i64,
}

const MULTIPLIER: i64 = 0x5_DEEC_E66D;
const ADDEND: i64 = 0xB;
const MASK: i64 = (1 << 48) - 1;

impl JavaRandom {
    /// `new Random(seed)`.
    pub fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed ^ MULTIPLIER) & MASK,
        }
    }

    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND)) & MASK;
        // Java: (int)(seed >>> (48 - bits)); the seed is non-negative here.
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`: a uniformly distributed 32-bit value.
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextInt(bound)`: uniform in `0..bound`, with Java's rejection loop.
    /// Returns `None` when `bound <= 0` (Java throws IllegalArgumentException).
    pub fn next_int_bounded(&mut self, bound: i32) -> Option<i32> {
        if bound <= 0 {
            return None;
        }
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            // A power of two: take the high bits.
            r = ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        } else {
            let mut u = r;
            loop {
                r = u % bound;
                // Java's `u - r + m < 0` relies on int overflow.
                if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                    break;
                }
                u = self.next(31);
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by OpenJDK 17 (`"...".hashCode()`), kept as a golden table.
    #[test]
    fn hash_matches_java() {
        let golden: &[(&str, i32)] = &[
            ("", 0),
            ("a", 97),
            ("abc", 96354),
            ("hello", 99162322),
            ("my-group", -1_906_497_762),
            ("polygenelubricants", i32::MIN),
            ("console-consumer-12345", 158_455_506),
            ("\u{1F600}", 1_772_899),
            ("grüße", 98_768_023),
            ("\u{FFFF}", 65535),
        ];
        for (s, h) in golden {
            assert_eq!(java_string_hash(s), *h, "hash of {s:?}");
        }
    }

    #[test]
    fn compare_uses_utf16_units() {
        // U+FF61 is one unit 0xFF61; U+1F600 is the pair 0xD83D 0xDE00.
        // Java puts the surrogate pair first; Rust's str order does not.
        let bmp_high = "\u{FF61}";
        let astral = "\u{1F600}";
        assert_eq!(java_string_cmp(astral, bmp_high), Ordering::Less);
        assert_eq!(astral.cmp(bmp_high), Ordering::Greater);
        assert_eq!(java_string_cmp("a", "b"), Ordering::Less);
        assert_eq!(java_string_cmp("ab", "a"), Ordering::Greater);
        assert_eq!(java_string_cmp("", ""), Ordering::Equal);
        assert_eq!(java_string_cmp("x\u{1F600}", "x\u{FF61}"), Ordering::Less);
        assert_eq!(java_string_cmp("é", "e"), Ordering::Greater);
    }

    #[test]
    fn random_matches_java() {
        // new java.util.Random(42): nextInt(10) x5, nextInt(1000) x3,
        // nextInt(16) x3, nextInt() x2 -- printed by OpenJDK 17.
        let mut r = JavaRandom::new(42);
        let a: Vec<i32> = (0..5)
            .map(|_| r.next_int_bounded(10).unwrap_or(-1))
            .collect();
        assert_eq!(a, vec![0, 3, 8, 4, 0]);
        let b: Vec<i32> = (0..3)
            .map(|_| r.next_int_bounded(1000).unwrap_or(-1))
            .collect();
        assert_eq!(b, vec![525, 505, 918]);
        // 16 is a power of two: the high-bits path.
        let c: Vec<i32> = (0..3)
            .map(|_| r.next_int_bounded(16).unwrap_or(-1))
            .collect();
        assert_eq!(c, vec![10, 1, 14]);
        assert_eq!(r.next_int(), 1_938_135_004);
        assert_eq!(r.next_int(), 1_583_910_553);
        // A bound near 2^30 exercises the rejection loop; new Random(-7).
        let mut r = JavaRandom::new(-7);
        let d: Vec<i32> = (0..4)
            .map(|_| r.next_int_bounded(1_000_000_007).unwrap_or(-1))
            .collect();
        assert_eq!(d, vec![577_934_662, 935_951_290, 445_645_583, 119_890_471]);
        assert_eq!(r.next_int_bounded(0), None);
        assert_eq!(r.next_int_bounded(-3), None);
    }

    proptest::proptest! {
        #[test]
        fn cmp_agrees_with_utf16_iterators(a in ".{0,8}", b in ".{0,8}") {
            proptest::prop_assert_eq!(
                java_string_cmp(&a, &b),
                a.encode_utf16().cmp(b.encode_utf16())
            );
        }

        #[test]
        fn bounded_random_in_range(seed in proptest::num::i64::ANY, bound in 1i32..=i32::MAX) {
            let mut r = JavaRandom::new(seed);
            for _ in 0..4 {
                let v = r.next_int_bounded(bound).unwrap_or(-1);
                proptest::prop_assert!((0..bound).contains(&v));
            }
        }
    }
}
