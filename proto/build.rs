//! Compiles the .proto files. `protoc` comes from the environment: the
//! project's scripts install Debian's `protobuf-compiler` (see README.md).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/ballast/v1/admin.proto",
        "proto/ballast/v1/broker.proto",
        "proto/ballast/v1/agent.proto",
        "proto/ballast/v1/metadata.proto",
        "proto/ballast/v1/data.proto",
        "proto/ballast/v1/group.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    Ok(())
}
