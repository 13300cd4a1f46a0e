//! The `trtfarm.v1` wire contract between `trtfarm` and `trtfarmd`: generated messages, the
//! `Farm` client and server, and the descriptor set for gRPC server reflection. The contract
//! itself, with its error codes, is documented in `proto/trtfarm/v1/trtfarm.proto`.

pub mod local;

/// The `trtfarm.v1` package.
pub mod v1 {
    #![allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]
    tonic::include_proto!("trtfarm.v1");

    /// Encoded `FileDescriptorSet` of `trtfarm.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("trtfarm_v1_descriptor");

    /// The name of this wire package, as `Capabilities.api_versions` lists it.
    pub const API_VERSION: &str = "trtfarm.v1";
}
