//! Typed Rust client for Ballast: admin, producer and consumer.
//!
//! Status: the crate is laid out; the admin client arrives with the
//! coordinator issue, the producer and consumer with the later ones.
