//! Retention planning (`cleanup.policy=delete`): which of a log's oldest
//! segments go, by time (`retention.ms`, against each segment's largest
//! timestamp), by size (`retention.bytes`, oldest first while the log is
//! larger), and because they lie entirely below the log start offset.
//!
//! Pure: [`plan`] takes a snapshot of the segments and returns how many of
//! the oldest to delete and whether the active segment must be rolled
//! first. [`super::PartitionLog::apply_retention`] does the I/O. The rules
//! are Kafka's `deleteOldSegments`: only a prefix of segments is deleted;
//! never a segment holding offsets at or above the high watermark; never
//! the active segment while it is empty; the active segment only after a
//! roll, when every segment is expired.

use super::config::LogConfig;

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its base offset.
    pub base_offset: i64,
    /// Offset after its last batch.
    pub next_offset: i64,
    /// Bytes in its record file.
    pub size: u64,
    /// Largest timestamp in it (the file's modification time when its
    /// batches carry none).
    pub largest_timestamp: i64,
}

/// Why segments are deleted (the first rule that applies, in Kafka's
/// order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionReason {
    /// Older than `retention.ms`.
    Time,
    /// The log is larger than `retention.bytes`.
    Size,
    /// Entirely below the log start offset.
    LogStart,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Delete this many of the oldest segments.
    pub delete: usize,
    /// Roll the active segment first (every segment is deleted).
    pub roll_first: bool,
    /// Why, when `delete > 0`.
    pub reason: Option<RetentionReason>,
}

/// Plans retention over `segments` (oldest first, the last one active,
/// never empty) at `now_ms`.
pub fn plan(
    segments: &[SegmentInfo],
    config: &LogConfig,
    log_start_offset: i64,
    high_watermark: i64,
    now_ms: i64,
) -> RetentionPlan {
    let n = segments.len();
    let none = RetentionPlan {
        delete: 0,
        roll_first: false,
        reason: None,
    };
    if n == 0 {
        return none;
    }
    let delete_policy = config.cleanup_policy.delete;
    let by_time = if delete_policy && config.retention_ms >= 0 {
        segments
            .iter()
            .take_while(|s| now_ms.saturating_sub(s.largest_timestamp) > config.retention_ms)
            .count()
    } else {
        0
    };
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let by_size =
        if delete_policy && config.retention_bytes >= 0 && total >= config.retention_bytes as u64 {
            let mut diff = total - config.retention_bytes as u64;
            segments
                .iter()
                .take_while(|s| {
                    if diff >= s.size {
                        diff -= s.size;
                        true
                    } else {
                        false
                    }
                })
                .count()
        } else {
            0
        };
    let by_start = segments
        .windows(2)
        .take_while(|w| w[1].base_offset <= log_start_offset)
        .count();
    let wanted = by_time.max(by_size).max(by_start);
    let log_end = segments[n - 1].next_offset;
    let mut allowed = 0;
    for (i, s) in segments.iter().enumerate().take(wanted) {
        let last = i == n - 1;
        let upper = if last {
            log_end
        } else {
            segments[i + 1].base_offset
        };
        if high_watermark < upper || (last && s.size == 0) {
            break;
        }
        allowed += 1;
    }
    if allowed == 0 {
        return none;
    }
    let reason = if by_time >= allowed {
        RetentionReason::Time
    } else if by_size >= allowed {
        RetentionReason::Size
    } else {
        RetentionReason::LogStart
    };
    RetentionPlan {
        delete: allowed,
        roll_first: allowed == n,
        reason: Some(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::config::CleanupPolicy;

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            next_offset: next,
            size,
            largest_timestamp: ts,
        }
    }

    fn config(retention_ms: i64, retention_bytes: i64) -> LogConfig {
        LogConfig {
            retention_ms,
            retention_bytes,
            ..LogConfig::default()
        }
    }

    fn segs() -> Vec<SegmentInfo> {
        vec![
            seg(0, 10, 100, 1_000),
            seg(10, 20, 100, 2_000),
            seg(20, 30, 100, 3_000),
        ]
    }

    #[test]
    fn by_time_takes_the_expired_prefix() {
        let p = plan(&segs(), &config(500, -1), 0, 30, 2_600);
        assert_eq!(
            p,
            RetentionPlan {
                delete: 2,
                roll_first: false,
                reason: Some(RetentionReason::Time)
            }
        );
        // Nothing expired, or retention disabled.
        assert_eq!(plan(&segs(), &config(5_000, -1), 0, 30, 2_600).delete, 0);
        assert_eq!(plan(&segs(), &config(-1, -1), 0, 30, 1 << 40).delete, 0);
    }

    #[test]
    fn everything_expired_rolls_the_active_segment_first() {
        let p = plan(&segs(), &config(500, -1), 0, 30, 10_000);
        assert_eq!((p.delete, p.roll_first), (3, true));
        // Not past the high watermark.
        let p = plan(&segs(), &config(500, -1), 0, 25, 10_000);
        assert_eq!((p.delete, p.roll_first), (2, false));
        let p = plan(&segs(), &config(500, -1), 0, 15, 10_000);
        assert_eq!(p.delete, 1);
        // An empty active segment is never deleted.
        let mut s = segs();
        s.push(seg(30, 30, 0, -1));
        let p = plan(&s, &config(500, -1), 0, 30, 10_000);
        assert_eq!((p.delete, p.roll_first), (3, false));
    }

    #[test]
    fn by_size_deletes_oldest_while_over() {
        let p = plan(&segs(), &config(-1, 150), 0, 30, 0);
        assert_eq!((p.delete, p.reason), (1, Some(RetentionReason::Size)));
        assert_eq!(plan(&segs(), &config(-1, 100), 0, 30, 0).delete, 2);
        assert_eq!(plan(&segs(), &config(-1, 300), 0, 30, 0).delete, 0);
        assert_eq!(plan(&segs(), &config(-1, 0), 0, 30, 0).delete, 3);
    }

    #[test]
    fn below_log_start_and_policies() {
        let p = plan(&segs(), &config(-1, -1), 20, 30, 0);
        assert_eq!((p.delete, p.reason), (2, Some(RetentionReason::LogStart)));
        // Compact-only topics ignore time and size, not the log start.
        let mut c = config(1, 1);
        c.cleanup_policy = CleanupPolicy::COMPACT;
        assert_eq!(plan(&segs(), &c, 0, 30, 1 << 40).delete, 0);
        assert_eq!(plan(&segs(), &c, 10, 30, 1 << 40).delete, 1);
    }
}
