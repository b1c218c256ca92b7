//! [`Reflector`]: keeps an in-memory mirror of one key prefix in sync with
//! the store, and tells its consumer exactly what changed.
//!
//! It loads the prefix with `range_prefix`, then watches from the load's
//! revision + 1. When the watch reports that its revision was compacted, it
//! reloads the whole prefix and watches again, emitting
//! [`ReflectorEvent::Reset`]: the consumer replaces its state and never sees a
//! silent gap. When a watch stream ends for another reason (etcd restarted or
//! unreachable past the retry budget), it resumes from the last revision
//! applied + 1, which is gap-free too (and falls back to a reload if that
//! revision was compacted meanwhile).
//!
//! Works on any [`MetadataStore`]. It owns the mirror and the watch; it must
//! never interpret keys (that is the consumer's business) nor swallow an
//! error: a failed load or watch is returned, and calling
//! [`Reflector::next`] again retries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{KeyValue, MetadataStore, StoreResult, WatchEvent, WatchMessage, WatchStream};

/// A change of the mirrored prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReflectorEvent {
    /// The whole prefix as of `revision`: replace any state you derived
    /// (first load, or reload after a compaction).
    Reset {
        /// Every key under the prefix, sorted by key.
        kvs: Vec<KeyValue>,
        /// The revision they were read at.
        revision: i64,
    },
    /// The changes of one revision, already applied to the mirror.
    Events {
        /// The revision.
        revision: i64,
        /// Its events under the prefix, in order.
        events: Vec<WatchEvent>,
    },
}

/// Longest pause between resumptions of a watch that keeps ending.
const MAX_RESUME_BACKOFF: Duration = Duration::from_secs(1);

/// A self-healing mirror of one prefix. See the module documentation.
pub struct Reflector {
    store: Arc<dyn MetadataStore>,
    prefix: Vec<u8>,
    mirror: BTreeMap<Vec<u8>, KeyValue>,
    /// Revision the mirror reflects; 0 before the first load.
    revision: i64,
    watch: Option<WatchStream>,
    /// Whether the next step must reload (nothing loaded yet, or compacted).
    needs_reload: bool,
    /// Pause before the next resumption, after watches that ended early.
    resume_backoff: Duration,
}

impl fmt::Debug for Reflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reflector")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("keys", &self.mirror.len())
            .field("revision", &self.revision)
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

impl Reflector {
    /// A reflector whose first [`Reflector::next`] loads the prefix and
    /// returns it as a `Reset`.
    pub fn new(store: Arc<dyn MetadataStore>, prefix: impl Into<Vec<u8>>) -> Self {
        Reflector {
            store,
            prefix: prefix.into(),
            mirror: BTreeMap::new(),
            revision: 0,
            watch: None,
            needs_reload: true,
            resume_backoff: Duration::ZERO,
        }
    }

    /// A reflector resuming from a state the consumer already has (`kvs`, the
    /// whole prefix as of `revision`): it watches from `revision + 1`, and if
    /// that was compacted, its first event is a `Reset`.
    pub fn from_snapshot(
        store: Arc<dyn MetadataStore>,
        prefix: impl Into<Vec<u8>>,
        kvs: Vec<KeyValue>,
        revision: i64,
    ) -> Self {
        let mut reflector = Reflector::new(store, prefix);
        reflector.mirror = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        reflector.revision = revision;
        reflector.needs_reload = false;
        reflector
    }

    /// The mirrored prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The mirror: every key under the prefix as of [`Reflector::revision`].
    pub fn snapshot(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.mirror
    }

    /// The revision the mirror reflects (0 before the first load).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Waits for the next change, applies it to the mirror and returns it.
    ///
    /// On error (store unavailable) the mirror is unchanged and the next call
    /// retries; pace the retries. Cancel-safe: dropping the future loses
    /// nothing (a load is redone, a received message is applied before the
    /// future completes).
    pub async fn next(&mut self) -> StoreResult<ReflectorEvent> {
        loop {
            if self.needs_reload {
                return self.reload().await;
            }
            let Some(watch) = self.watch.as_mut() else {
                if !self.resume_backoff.is_zero() {
                    tokio::time::sleep(self.resume_backoff).await;
                }
                let watch = self
                    .store
                    .watch_prefix(&self.prefix, self.revision + 1)
                    .await?;
                self.watch = Some(watch);
                continue;
            };
            match watch.recv().await {
                Some(WatchMessage::Events { revision, events }) => {
                    self.resume_backoff = Duration::ZERO;
                    for event in &events {
                        match event {
                            WatchEvent::Put(kv) => {
                                self.mirror.insert(kv.key.clone(), kv.clone());
                            }
                            WatchEvent::Delete { key, .. } => {
                                self.mirror.remove(key);
                            }
                        }
                    }
                    self.revision = revision;
                    return Ok(ReflectorEvent::Events { revision, events });
                }
                Some(WatchMessage::Compacted { compact_revision }) => {
                    tracing::info!(
                        prefix = %String::from_utf8_lossy(&self.prefix),
                        revision = self.revision,
                        compact_revision,
                        "reflector: watch revision compacted, reloading"
                    );
                    self.watch = None;
                    self.needs_reload = true;
                }
                None => {
                    tracing::debug!(
                        prefix = %String::from_utf8_lossy(&self.prefix),
                        revision = self.revision,
                        "reflector: watch ended, resuming"
                    );
                    self.watch = None;
                    self.resume_backoff = (self.resume_backoff * 2)
                        .max(Duration::from_millis(50))
                        .min(MAX_RESUME_BACKOFF);
                }
            }
        }
    }

    async fn reload(&mut self) -> StoreResult<ReflectorEvent> {
        self.watch = None;
        let range = self.store.range_prefix(&self.prefix).await?;
        let watch = self
            .store
            .watch_prefix(&self.prefix, range.revision + 1)
            .await?;
        self.mirror = range
            .kvs
            .iter()
            .map(|kv| (kv.key.clone(), kv.clone()))
            .collect();
        self.revision = range.revision;
        self.watch = Some(watch);
        self.needs_reload = false;
        self.resume_backoff = Duration::ZERO;
        Ok(ReflectorEvent::Reset {
            kvs: range.kvs,
            revision: range.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    #[tokio::test]
    async fn first_event_is_the_full_prefix_then_changes() {
        let store: Arc<dyn MetadataStore> = Arc::new(LocalStore::open_temporary().await.unwrap());
        store.put(b"p/a", b"1").await.unwrap();
        let mut reflector = Reflector::new(store.clone(), "p/");
        match reflector.next().await.unwrap() {
            ReflectorEvent::Reset { kvs, revision } => {
                assert_eq!(kvs.len(), 1);
                assert_eq!(revision, 2);
            }
            other => panic!("expected a reset, got {other:?}"),
        }
        store.put(b"p/b", b"2").await.unwrap();
        store.put(b"q/x", b"outside").await.unwrap();
        store.delete(b"p/a").await.unwrap();
        assert!(matches!(
            reflector.next().await.unwrap(),
            ReflectorEvent::Events { revision: 3, .. }
        ));
        assert!(matches!(
            reflector.next().await.unwrap(),
            ReflectorEvent::Events { revision: 5, .. }
        ));
        let keys: Vec<_> = reflector.snapshot().keys().cloned().collect();
        assert_eq!(keys, vec![b"p/b".to_vec()]);
    }
}
