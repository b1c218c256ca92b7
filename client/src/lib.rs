//! Typed Rust client for Ballast: admin, producer and consumer.
//!
//! Owns everything a program needs to talk to a Ballast cluster without
//! knowing its topology: which coordinator is active, how to follow a
//! standby's redirect, when a call may be retried. It holds no cluster
//! state beyond the address of the last active coordinator.
//!
//! Status: the admin client ([`AdminClient`]) is here; the producer and
//! consumer arrive with later issues.
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

pub mod admin;
mod error;
pub mod partitioner;
mod retry;

pub use admin::{AdminClient, AdminOptions, NewTopic};
pub use error::{Attempt, ClientError};
pub use retry::{ACTIVE_COORDINATOR_KEY, code_name};
