//! Generates the `trtfarm.v1` client and server from `proto/trtfarm/v1/trtfarm.proto`, plus the
//! file descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/trtfarm/v1/trtfarm.proto";
    println!("cargo::rerun-if-changed={proto}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Blob chunks stay `Bytes`: no copy between the socket and the store.
        .bytes(".")
        // Maps in key order: an encoded message is the same bytes every time.
        .btree_map(".")
        .file_descriptor_set_path(out_dir.join("trtfarm_v1_descriptor.bin"))
        .compile_protos(&[proto], &["proto"])?;
    Ok(())
}
