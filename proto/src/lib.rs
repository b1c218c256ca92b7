//! Ballast's gRPC API, generated from `proto/ballast/v1/*.proto` by
//! tonic/prost. This crate holds no logic: services live in the coordinator
//! and the broker agent, conversions beside the code that needs them.

#![allow(missing_docs, missing_debug_implementations, clippy::all)]

/// Version 1 of the API (`package ballast.v1`).
pub mod v1 {
    tonic::include_proto!("ballast.v1");

    /// Records stored in the metadata store (`package ballast.v1.metadata`).
    pub mod metadata {
        tonic::include_proto!("ballast.v1.metadata");
    }
}
