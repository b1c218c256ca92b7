//! Ballast's pure algorithms: replica placement, range assignment, the group
//! coordinator hash, leader choice, load figures and reassignment plans.
//!
//! Wherever Apache Kafka defines a result this crate gives exactly Kafka's
//! answer, pinned by golden tests taken from Kafka's own test suites and by
//! values printed from a JDK; where it departs (and why) the module says so.
//!
//! This crate must stay pure: no tokio, tonic, etcd, files or clocks. Random
//! choices take a seeded [`JavaRandom`] from the caller.

pub mod coordinator;
pub mod error;
pub mod java;
pub mod leader;
pub mod placement;
pub mod range;
pub mod reassign;
pub mod rebalance;

pub use coordinator::{
    DEFAULT_OFFSETS_PARTITIONS, coordinator_partition, kafka_coordinator_partition,
};
pub use error::Error;
pub use java::{JavaRandom, java_string_cmp, java_string_hash};
pub use leader::{
    BrokerLoad, DEFAULT_LEADER_IMBALANCE_PERCENTAGE, PartitionView, Spread, broker_loads,
    leader_imbalance, next_leader, next_leader_unclean, preferred_leader,
};
pub use placement::{
    BrokerMetadata, PlacementRequest, ReplicaAssignment, StartIndex, assign_replicas_to_brokers,
    rack_alternated_broker_list,
};
pub use range::{
    IdAssignment, Member, RangeAssignment, Subscriber, TopicId, TopicPartitions, member_order,
    range_assign, range_assign_ids,
};
pub use reassign::{PartitionReplicas, PlanProblem, Proposal, propose_reassignment, validate_plan};
