//! The `trtfarm.v1` wire contract between `trtfarm` and `trtfarmd`: generated messages, the
//! `Farm` client and server, and the descriptor set for gRPC server reflection. The contract
//! itself, with its error codes, is documented in `proto/proto/trtfarm/v1/trtfarm.proto`.

pub mod local;
pub mod refusal;

/// The `trtfarm.v1` package.
pub mod v1 {
    #![allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]
    tonic::include_proto!("trtfarm.v1");

    /// Encoded `FileDescriptorSet` of `trtfarm.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("trtfarm_v1_descriptor");

    /// The name of this wire package, as `Capabilities.api_versions` lists it.
    pub const API_VERSION: &str = "trtfarm.v1";

    /// `FarmStatus.queue` of a daemon on its own, not in a farm.
    pub const EMBEDDED_QUEUE: &str = "embedded";

    impl Digest {
        /// The digest this message carries, checked: 64 lower-case hex digits, as the
        /// contract says.
        pub fn to_blob_digest(
            &self,
        ) -> Result<trtfarm_types::BlobDigest, trtfarm_types::DigestError> {
            trtfarm_types::BlobDigest::parse(&self.blake3, self.size_bytes)
        }
    }

    impl From<&trtfarm_types::BlobDigest> for Digest {
        fn from(digest: &trtfarm_types::BlobDigest) -> Self {
            Digest {
                blake3: digest.hex(),
                size_bytes: digest.size,
            }
        }
    }

    impl From<trtfarm_types::BlobDigest> for Digest {
        fn from(digest: trtfarm_types::BlobDigest) -> Self {
            Digest::from(&digest)
        }
    }

    impl std::fmt::Display for Digest {
        /// The blob digest's text form, `blake3:<hex>/<size>`; a message that does not hold a
        /// valid digest says so rather than passing for one.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.to_blob_digest() {
                Ok(digest) => digest.fmt(f),
                Err(_) => write!(
                    f,
                    "<malformed digest {:?}, {} bytes>",
                    self.blake3, self.size_bytes
                ),
            }
        }
    }

    impl ActionResult {
        /// How long the build took, from its start to its end (zero if the clock went back).
        pub fn build_duration(&self) -> std::time::Duration {
            let millis = self
                .finished_at_ms
                .saturating_sub(self.started_at_ms)
                .max(0);
            std::time::Duration::from_millis(millis as u64)
        }

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
                ("timing_cache_loaded", &self.timing_cache_loaded),
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
    fn a_build_lasts_from_start_to_end_and_never_less_than_nothing() {
        let result = |started_at_ms, finished_at_ms| v1::ActionResult {
            started_at_ms,
            finished_at_ms,
            ..v1::ActionResult::default()
        };
        assert_eq!(result(1_000, 2_500).build_duration().as_millis(), 1_500);
        assert_eq!(result(2_500, 1_000).build_duration().as_millis(), 0);
    }

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
    fn digests_convert_both_ways_and_display_as_blob_digests() {
        let blob = trtfarm_types::BlobDigest::of_bytes(b"engine");
        let wire = v1::Digest::from(&blob);
        assert_eq!(wire.blake3, blob.hex());
        assert_eq!(wire.size_bytes, 6);
        assert_eq!(wire.to_blob_digest(), Ok(blob));
        assert_eq!(wire.to_string(), blob.to_string());
        let upper = v1::Digest {
            blake3: blob.hex().to_uppercase(),
            size_bytes: 6,
        };
        let error = upper.to_blob_digest().unwrap_err().to_string();
        assert!(error.contains("lower case"), "{error}");
        assert_eq!(
            upper.to_string(),
            format!("<malformed digest {:?}, 6 bytes>", upper.blake3)
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
