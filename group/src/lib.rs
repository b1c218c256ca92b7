//! Ballast's consumer-group coordinator, as a pure state machine.
//!
//! The coordinator of group G is the leader of partition
//! `abs(javaStringHash(G) % N)` of `__consumer_offsets`; the broker agent
//! hosting that leader runs one [`Shard`] per offsets partition it leads.
//! This crate is everything that agent needs except the I/O:
//! * [`state`]: groups, members and committed offsets, changed only by
//!   applying [`record::GroupRecord`]s, so a new coordinator rebuilds them
//!   by replaying the partition with the same code;
//! * [`handlers`]: heartbeat (KIP-848 membership with server-side range
//!   assignment), offset commit and fetch, list, describe, delete. Each
//!   returns records to persist plus a response and changes nothing;
//! * [`reconcile`]: how one member moves towards its target without a
//!   partition ever having two holders;
//! * [`sessions`]: session and rebalance deadlines (soft state, never
//!   persisted; a loaded shard gives every member a full session);
//! * [`record`]: the records' key and value bytes.
//!
//! Pure: no tokio, no files, no clocks; time is a parameter.

pub mod assignment;
pub mod error;
pub mod handlers;
pub mod reconcile;
pub mod record;
pub mod sessions;
pub mod state;

pub use assignment::Assignment;
pub use error::GroupError;
pub use handlers::{GroupConfig, MAX_ID_BYTES, Outcome, TopicCounts};
pub use record::{GroupRecord, RecordError};
pub use sessions::{Expiry, Sessions};
pub use state::{CommittedOffset, Group, GroupMetadata, GroupState, Member, MemberState, Shard};
