//! Which `__consumer_offsets` partition coordinates a consumer group.
//!
//! Ballast's rule, as the product design states it, is
//! `abs(java_string_hash(group_id) % n)` with `%` truncating toward zero as
//! Java's does. Apache Kafka computes `Utils.abs(hash) % n`, where
//! `Utils.abs(Integer.MIN_VALUE)` is 0. The two agree for every group id
//! except those whose hash is exactly `i32::MIN`: `"polygenelubricants"` maps
//! to partition 48 of 50 here and to partition 0 in Kafka. Both are exposed;
//! the cluster uses [`coordinator_partition`].

use crate::error::Error;
use crate::java::java_string_hash;

/// The default partition count of `__consumer_offsets` (Kafka's
/// `offsets.topic.num.partitions`).
pub const DEFAULT_OFFSETS_PARTITIONS: i32 = 50;

/// Ballast's coordinator partition: `abs(java_string_hash(group_id) % n)`.
/// Any string is a valid group id, the empty string included.
pub fn coordinator_partition(group_id: &str, offsets_partitions: i32) -> Result<i32, Error> {
    check_partitions(offsets_partitions)?;
    // `%` on i32 truncates toward zero, as Java's does; |h % n| < n so abs
    // cannot overflow.
    Ok((java_string_hash(group_id) % offsets_partitions).abs())
}

/// Kafka's own formula, `Utils.abs(hash) % n`, for comparison with a Kafka
/// cluster's answer.
pub fn kafka_coordinator_partition(group_id: &str, offsets_partitions: i32) -> Result<i32, Error> {
    check_partitions(offsets_partitions)?;
    let h = java_string_hash(group_id);
    let kafka_abs = if h == i32::MIN { 0 } else { h.abs() };
    Ok(kafka_abs % offsets_partitions)
}

fn check_partitions(n: i32) -> Result<(), Error> {
    if n < 1 {
        return Err(Error::InvalidOffsetsPartitions(n));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by OpenJDK 17 from `Math.abs(g.hashCode() % 50)`
    // and Kafka's `Utils.abs(g.hashCode()) % 50`.
    #[test]
    fn golden_partitions() {
        let golden: &[(&str, i32, i32)] = &[
            ("polygenelubricants", 48, 0),
            ("my-group", 12, 12),
            ("", 0, 0),
            ("console-consumer-12345", 6, 6),
            ("orders-service", 17, 17),
        ];
        for (g, design, kafka) in golden {
            assert_eq!(coordinator_partition(g, 50).ok(), Some(*design), "{g:?}");
            assert_eq!(
                kafka_coordinator_partition(g, 50).ok(),
                Some(*kafka),
                "{g:?}"
            );
        }
    }

    #[test]
    fn min_hash_is_the_only_divergence() {
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(
            coordinator_partition("polygenelubricants", 50).ok(),
            Some(48)
        );
        assert_eq!(
            kafka_coordinator_partition("polygenelubricants", 50).ok(),
            Some(0)
        );
        // With a power-of-two count i32::MIN % n == 0 and the two agree again.
        assert_eq!(
            coordinator_partition("polygenelubricants", 64).ok(),
            Some(0)
        );
    }

    #[test]
    fn rejects_non_positive_counts() {
        assert_eq!(
            coordinator_partition("g", 0),
            Err(Error::InvalidOffsetsPartitions(0))
        );
        assert!(kafka_coordinator_partition("g", -5).is_err());
    }

    proptest::proptest! {
        #[test]
        fn in_range_and_equal_to_kafka_off_min(g in ".{0,24}", n in 1i32..=1000) {
            let p = coordinator_partition(&g, n).unwrap_or(-1);
            proptest::prop_assert!((0..n).contains(&p));
            if java_string_hash(&g) != i32::MIN {
                proptest::prop_assert_eq!(Ok(p), kafka_coordinator_partition(&g, n));
            }
        }
    }
}
