//! Typed Rust client for Ballast: admin, producer and consumer.
//!
//! Owns everything a program needs to talk to a Ballast cluster without
//! knowing its topology: which coordinator is active, how to follow a
//! standby's redirect, when a call may be retried. It holds no cluster
//! state beyond the address of the last active coordinator.
//!
//! Three clients: [`AdminClient`] talks to the coordinators; [`Producer`]
//! and [`Consumer`] talk to the agents' Data service, finding partition
//! leaders through a [`metadata`] cache. [`GroupConsumer`] is a consumer
//! whose partitions a group coordinator assigns (the agents' Group
//! service, see [`group`]); [`GroupAdmin`] lists, describes, deletes
//! groups and resets their offsets.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ballast_client::ClientError> {
//! use ballast_client::{AdminClient, AdminOptions, NewTopic};
//!
//! let admin = AdminClient::connect(
//!     vec!["10.0.0.1:9410".into(), "10.0.0.2:9410".into()],
//!     AdminOptions::default(),
//! )?;
//! let topic = admin.create_topic(NewTopic::new("orders", 6, 3)).await?;
//! println!("{} has {} partitions", topic.name, topic.partitions.len());
//! # Ok(())
//! # }
//! ```

mod accumulator;
pub mod admin;
mod connection;
pub mod consumer;
mod error;
pub mod group;
pub mod group_admin;
pub mod metadata;
pub mod partitioner;
pub mod producer;
mod retry;

pub use accumulator::TopicPartition;
pub use admin::{AdminClient, AdminOptions, NewTopic};
pub use ballast_proto::v1::ErrorCode;
pub use ballast_record::Header;
pub use connection::error_code_name;
pub use consumer::{
    ConsumeError, Consumer, ConsumerConfig, ConsumerRecord, Divergence, OffsetReset, StartPosition,
};
pub use error::{Attempt, ClientError};
pub use group::{
    CommitEvent, Committed, GroupConfig, GroupConsumer, GroupError, NoopListener, OffsetCommit,
    RebalanceEvent, RebalanceListener,
};
pub use group_admin::{
    GroupAdmin, GroupAdminOptions, GroupDescription, GroupList, PartitionLag, PlannedReset,
    ResetPlan, ResetSpec,
};
pub use metadata::{MetadataError, MetadataOptions};
pub use producer::{
    Acks, DeliveryFuture, Keyless, ProduceError, Producer, ProducerConfig, ProducerRecord,
    RecordMetadata,
};
pub use retry::{ACTIVE_COORDINATOR_KEY, code_name};
