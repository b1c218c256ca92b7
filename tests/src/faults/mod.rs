//! The fault-injection suite's harness (issue 8): a seeded fault schedule,
//! a multi-process cluster that faults can be injected into, the recorded
//! client-visible history, and one checker per property over that history.
//!
//! The shape follows etcd's `tests/robustness`: the workload (in
//! `tests/tests/faults.rs`, which has the client crate) records what the
//! clients saw into a [`history::History`]; after every fault healed, the
//! checkers in [`check`] decide from the history alone whether a property
//! held. Checkers are pure functions (no I/O, no clock), unit-tested on
//! hand-made histories.
//!
//! Owns: [`rng`] (the seed and a small PRNG), [`schedule`] (which fault
//! when, pure), [`cluster`] (processes and fault injection), [`history`]
//! and [`check`]. Must never decide a property from anything but the
//! recorded history, and must never leave a process running (every child
//! dies with its handle).

pub mod check;
pub mod cluster;
pub mod history;
pub mod rng;
pub mod schedule;
