//! How a command names an engine it did not build now: `blake3:<hex>/<size>` (as `submit`
//! prints it), or `MANIFEST#ENGINE`, resolved through that manifest's `engine.lock`. `fetch` and
//! `inspect` read their argument here.

use std::path::{Path, PathBuf};

use anyhow::Context;
use trtfarm::lock::{LockedEngine, lock_path, read_lock};
use trtfarm_types::BlobDigest;

/// An engine named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineRef {
    /// A blob by digest.
    Digest(BlobDigest),
    /// An engine variant, resolved through the `engine.lock` beside the manifest.
    Locked {
        /// The manifest.
        manifest: PathBuf,
        /// The `[[engine]] name`.
        engine: String,
    },
}

/// Reads `blake3:<64 lowercase hex>/<size>`, saying what is wrong and what was expected when
/// it is not that (the argument may also have been meant as MANIFEST#ENGINE).
pub fn parse_digest(text: &str) -> anyhow::Result<BlobDigest> {
    text.parse::<BlobDigest>().map_err(|error| {
        anyhow::anyhow!(
            "`{text}` is not a digest ({}): expected blake3:<64 hex digits>/<size in bytes> \
             (lowercase hex), or MANIFEST#ENGINE",
            error.problem
        )
    })
}

/// Reads a digest or `MANIFEST#ENGINE` (split at the last `#`: a directory may hold one).
pub fn parse_engine_ref(text: &str) -> anyhow::Result<EngineRef> {
    if text.starts_with("blake3:") {
        return parse_digest(text).map(EngineRef::Digest);
    }
    match text.rsplit_once('#') {
        Some((manifest, engine)) if !manifest.is_empty() && !engine.is_empty() => {
            Ok(EngineRef::Locked {
                manifest: PathBuf::from(manifest),
                engine: engine.to_string(),
            })
        }
        _ => parse_digest(text).map(EngineRef::Digest),
    }
}

/// The entry `engine.lock` beside `manifest` has for `engine`; an error that says how to get
/// one, or which engines the lock has.
pub fn locked_entry(manifest: &Path, engine: &str) -> anyhow::Result<LockedEngine> {
    let lock_file = lock_path(manifest);
    let lock = read_lock(manifest)?.with_context(|| {
        format!(
            "there is no {} to resolve {}#{engine}: build it first with `trtfarm submit {}`",
            lock_file.display(),
            manifest.display(),
            manifest.display()
        )
    })?;
    if let Some(entry) = lock.engine(engine) {
        return Ok(entry.clone());
    }
    let names: Vec<&str> = lock.engines.iter().map(|e| e.name.as_str()).collect();
    let names = match names.is_empty() {
        true => "none".to_string(),
        false => names.join(", "),
    };
    anyhow::bail!(
        "{} has no engine `{engine}` (it has: {names})",
        lock_file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn digests_round_trip_through_their_text() {
        let digest = parse_digest(&format!("blake3:{HEX}/1234")).unwrap();
        assert_eq!(digest.hex(), HEX);
        assert_eq!(digest.size, 1234);
        assert_eq!(digest.to_string(), format!("blake3:{HEX}/1234"));
        let error = parse_digest(&format!("blake3:{}/0", HEX.to_uppercase())).unwrap_err();
        assert!(error.to_string().contains("lower case"), "{error}");
    }

    #[test]
    fn malformed_digests_are_refused_with_the_expected_form() {
        for bad in [
            format!("blake3:{HEX}"),
            format!("blake3:{HEX}/-1"),
            format!("blake3:{HEX}/12x"),
            format!("sha256:{HEX}/12"),
            format!("blake3:{}/12", &HEX[..63]),
            format!("blake3:{}g/12", &HEX[..63]),
            "engine.toml".to_string(),
            "#fp16".to_string(),
        ] {
            let error = parse_engine_ref(&bad).expect_err(&bad).to_string();
            assert!(
                error.contains("blake3:<64 hex digits>/<size"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn manifest_and_engine_split_at_the_last_hash() {
        assert_eq!(
            parse_engine_ref("models/a#b/engine.toml#fp16").unwrap(),
            EngineRef::Locked {
                manifest: PathBuf::from("models/a#b/engine.toml"),
                engine: "fp16".into()
            }
        );
    }

    #[test]
    fn a_missing_lock_or_engine_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("engine.toml");
        let error = locked_entry(&manifest, "fp16").unwrap_err().to_string();
        assert!(
            error.contains("build it first with `trtfarm submit"),
            "{error}"
        );
        let empty = trtfarm::lock::Lock::default().updated(&[], &[]);
        trtfarm::lock::write_lock(&empty, &manifest).unwrap();
        let error = locked_entry(&manifest, "fp16").unwrap_err().to_string();
        assert!(
            error.ends_with("has no engine `fp16` (it has: none)"),
            "{error}"
        );
    }
}
