//! The cluster coordinator (controller).
//!
//! Owns the cluster's metadata in etcd (or the embedded local store for
//! `ballast dev`), wins leadership through etcd election and fences every
//! write with its epoch, registers broker agents, places and elects, and
//! pushes desired state to agents. Placement and leader choice are never
//! computed here: they come from `ballast-assignor`, which is pure.
//!
//! Status: the crate is laid out; the store, election and services arrive
//! with the coordinator issue (see docs/ARCHITECTURE.md).

pub mod keys;
pub mod partition;
pub mod records;
pub mod topic;
