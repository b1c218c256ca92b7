//! The cluster coordinator (controller).
//!
//! Owns the cluster's metadata in etcd (or the embedded local store for
//! `ballast dev`), wins leadership through etcd election and fences every
//! write with its epoch, registers broker agents, places and elects, and
//! pushes desired state to agents. Placement and leader choice are never
//! computed here: they come from `ballast-assignor`, which is pure.
//!
//! Layout: [`store`] (the `MetadataStore` trait, `EtcdStore`, the embedded
//! `LocalStore`, election with fencing, the reflector); [`ha`] (the election
//! loop and renew deadline); [`term`] (one active term: plan, fenced write,
//! apply, push); [`state`], [`partition`], [`topic`] (pure planning and
//! validation); [`writer`] (batched fenced transactions); [`push`] (per-agent
//! desired-state pushes); [`service`] (gRPC, and the one error-to-status
//! mapping). docs/ARCHITECTURE.md states the guarantees.

pub mod store;

pub mod config;
pub mod ha;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod partition;
pub mod push;
pub mod reassignment;
pub mod records;
pub mod service;
pub mod state;
pub mod term;
pub mod topic;
pub mod writer;

pub use config::CoordinatorConfig;
pub use ha::{Coordinator, Role};
