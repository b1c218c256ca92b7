//! The shared test harness for Ballast's cross-process integration tests
//! (`tests/tests/*.rs`).
//!
//! Owns helpers that several test files need: finding the binaries the
//! workspace builds ([`bin_path`]). Later modules add real etcd processes,
//! free ports and temp dirs. Nothing here is product code: it may panic with
//! a message that tells the developer what to do.

pub mod bench;
pub mod bin_path;
pub mod cluster;
pub mod etcd;
pub mod faults;
pub mod netns;
pub mod process;
