//! Filesystem checks of the files a manifest names: they exist, and the model matches its pin.

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::Path;

use crate::diagnostic::Diagnostic;
use crate::model::{Blake3Digest, Manifest};

/// Read buffer for hashing; models are often gigabytes, so they are streamed.
const HASH_BUFFER_BYTES: usize = 1 << 20;

/// The blake3 digest of a file, streamed through a fixed-size buffer.
pub fn hash_file(path: &Path) -> std::io::Result<Blake3Digest> {
    let file = File::open(path)?;
    let mut reader = BufReader::with_capacity(HASH_BUFFER_BYTES, file);
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&mut reader)?;
    Ok(hasher.finalize().into())
}

impl Manifest {
    /// Checks the files the manifest names: the model and every plugin exist and are regular
    /// files, and a pinned model `digest` matches the model's content. Each diagnostic points
    /// at the offending value. Empty when everything is in order.
    pub fn check_inputs(&self) -> Vec<Diagnostic> {
        let mut diagnostics = Vec::new();
        let model_ok = self.check_regular_file(
            &self.model.resolved_path,
            self.model.spans.path.clone(),
            "model",
            &mut diagnostics,
        );
        for plugin in &self.model.plugins {
            self.check_regular_file(
                &plugin.resolved_path,
                plugin.span.clone(),
                "plugin",
                &mut diagnostics,
            );
        }
        if let (true, Some(pinned), Some(span)) =
            (model_ok, self.model.digest, self.model.spans.digest.clone())
        {
            match hash_file(&self.model.resolved_path) {
                Ok(actual) if actual == pinned => {}
                Ok(actual) => diagnostics.push(
                    self.source.error(
                        span,
                        format!(
                            "model `{}` does not match its pinned digest: its content is {actual}",
                            self.model.path
                        ),
                        Some(
                            "if the model changed on purpose, update `digest` to the new value"
                                .to_string(),
                        ),
                    ),
                ),
                Err(e) => diagnostics.push(self.source.error(
                    span,
                    format!(
                        "cannot read model `{}` to check its digest: {e}",
                        self.model.path
                    ),
                    None,
                )),
            }
        }
        diagnostics
    }

    fn check_regular_file(
        &self,
        path: &Path,
        span: Range<usize>,
        what: &str,
        out: &mut Vec<Diagnostic>,
    ) -> bool {
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => return true,
            Ok(meta) if meta.is_dir() => {
                format!("{what} `{}` is a directory, not a file", path.display())
            }
            Ok(_) => format!("{what} `{}` is not a regular file", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("{what} `{}` does not exist", path.display())
            }
            Err(e) => format!("cannot read {what} `{}`: {e}", path.display()),
        };
        out.push(self.source.error(
            span,
            problem,
            Some("paths are relative to the manifest's directory".to_string()),
        ));
        false
    }
}
