//! Disk-bound work over a few threads: opening or creating many partitions
//! at once waits on fsyncs and reads, and the disk takes several at once
//! (as Kafka's recovery threads). Called from blocking threads.

/// Threads at most.
pub(crate) const THREADS: usize = 4;
/// Items per thread before another thread is worth starting.
pub(crate) const PER_THREAD: usize = 32;

/// `items.iter().map(f)`, in order, over up to [`THREADS`] scoped threads
/// when there are more than [`PER_THREAD`] items. Each item of a thread
/// that panicked gets `panicked()`.
pub(crate) fn par_map<I: Sync, T: Send>(
    items: &[I],
    f: impl Fn(&I) -> T + Sync,
    panicked: impl Fn() -> T,
) -> Vec<T> {
    let threads = THREADS.min(items.len().div_ceil(PER_THREAD)).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()),
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| {
                h.join()
                    .unwrap_or_else(|_| (0..n).map(|_| panicked()).collect())
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_filter_map_keeps_order_and_filters_at_every_size() {
        for n in [0usize, 1, 31, 32, 33, 200, 1_000] {
            let items: Vec<usize> = (0..n).collect();
            let got: Vec<usize> = par_map(&items, |i| (i % 3 != 0).then_some(i * 2), || None)
                .into_iter()
                .flatten()
                .collect();
            let want: Vec<usize> = items
                .iter()
                .filter(|i| *i % 3 != 0)
                .map(|i| i * 2)
                .collect();
            assert_eq!(got, want, "n={n}");
        }
    }
}
