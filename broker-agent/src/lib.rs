//! The broker agent.
//!
//! Hosts partition logs (segments, indexes, recovery, retention), serves
//! produce and fetch, replicates from leaders, and hosts the group
//! coordinator for the `__consumer_offsets` partitions it leads. It applies
//! the desired state the coordinator pushes and reports what it reached.
//!
//! Status: the crate is laid out; the control loop arrives with the
//! coordinator issue and the log with the broker-log issue.
