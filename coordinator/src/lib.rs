//! The cluster coordinator (controller).
//!
//! Owns the cluster's metadata in etcd (or the embedded local store for
//! `ballast dev`), wins leadership through etcd election and fences every
//! write with its epoch, registers broker agents, places and elects, and
//! pushes desired state to agents. Placement and leader choice are never
//! computed here: they come from `ballast-assignor`, which is pure.
//!
//! Status: the metadata store layer is in place ([`store`]: the
//! `MetadataStore` trait, `EtcdStore`, the embedded `LocalStore`, leader
//! election with fencing, the prefix reflector); the coordinator's services
//! arrive with the rest of the coordinator issue (see docs/ARCHITECTURE.md).

pub mod store;

pub mod config;
pub mod ha;
pub mod keys;
pub mod partition;
pub mod push;
pub mod records;
pub mod service;
pub mod state;
pub mod term;
pub mod topic;
pub mod writer;

pub use config::CoordinatorConfig;
pub use ha::{Coordinator, Role};
