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

    impl ActionResult {
        /// Every blob this result names, with its field name: what must exist for the result
        /// to be served, and what store maintenance must keep.
        pub fn blobs(&self) -> impl Iterator<Item = (&'static str, &Digest)> {
            [
                ("engine", &self.engine),
                ("build_log", &self.build_log),
                ("layer_info", &self.layer_info),
                ("timing_cache", &self.timing_cache),
                ("provenance", &self.provenance),
                ("transformed_model", &self.transformed_model),
                ("layer_listing", &self.layer_listing),
            ]
            .into_iter()
            .filter_map(|(what, digest)| Some((what, digest.as_ref()?)))
        }

        /// `layers_by_precision` for people: `fp16 40, fp32 3`, the commonest first; `None`
        /// when the build reported no layers.
        pub fn precision_summary(&self) -> Option<String> {
            let mut counts: Vec<(&String, &u64)> = self.layers_by_precision.iter().collect();
            // Most layers first; equal counts in name order (the map's order, kept by a
            // stable sort).
            counts.sort_by_key(|(_, count)| std::cmp::Reverse(**count));
            let parts: Vec<String> = counts
                .into_iter()
                .map(|(precision, count)| format!("{precision} {count}"))
                .collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn precision_summary_puts_the_commonest_first() {
        let mut result = v1::ActionResult::default();
        assert_eq!(result.precision_summary(), None);
        for (precision, count) in [("fp32", 3), ("int32", 3), ("fp16", 40)] {
            result
                .layers_by_precision
                .insert(precision.to_string(), count);
        }
        assert_eq!(
            result.precision_summary().as_deref(),
            Some("fp16 40, fp32 3, int32 3")
        );
    }

    #[test]
    fn blobs_lists_every_digest_field_that_is_set() {
        let digest = |n: u8| {
            Some(v1::Digest {
                blake3: format!("{n:02x}").repeat(32),
                size_bytes: u64::from(n),
            })
        };
        let result = v1::ActionResult {
            engine: digest(1),
            build_log: digest(2),
            provenance: digest(3),
            layer_listing: digest(4),
            ..Default::default()
        };
        let names: Vec<&str> = result.blobs().map(|(what, _)| what).collect();
        assert_eq!(
            names,
            ["engine", "build_log", "provenance", "layer_listing"]
        );
    }
}
