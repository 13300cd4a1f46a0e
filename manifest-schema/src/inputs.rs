//! Filesystem checks of the files a manifest names: they exist, stay inside the manifest's
//! directory once symbolic links are resolved, and the model matches its pin.

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;
use crate::model::{Blake3Digest, Manifest};
use crate::resolve::STAY_INSIDE_HINT;

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

/// The environment variable naming more directories inputs may come from, beyond the project
/// root: absolute paths separated by `:` (a shared `/models` mount, say). It is read by the
/// process that reads the files (`trtfarm`, and `trtfarmd build`); a daemon serving builds
/// never opens a client's paths: it receives the files' contents by digest.
pub const INPUT_ROOTS_ENV: &str = "TRTFARM_INPUT_ROOTS";

/// The directories in [`INPUT_ROOTS_ENV`], symbolic links resolved; relative entries and
/// directories that do not exist are skipped (they could allow nothing, or the wrong thing).
pub fn extra_input_roots() -> Vec<PathBuf> {
    std::env::var_os(INPUT_ROOTS_ENV)
        .map(|value| parse_input_roots(&value))
        .unwrap_or_default()
}

fn parse_input_roots(value: &std::ffi::OsStr) -> Vec<PathBuf> {
    std::env::split_paths(value)
        .filter(|dir| dir.is_absolute())
        .filter_map(|dir| std::fs::canonicalize(dir).ok())
        .collect()
}

impl Manifest {
    /// Checks the files the manifest names: the model and every plugin exist, are regular files
    /// and, with symbolic links resolved, lie inside the manifest's directory (see
    /// [`Manifest::outside_root`]); a pinned model `digest` matches the model's content. Each
    /// diagnostic points at the offending value. Empty when everything is in order.
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

    /// The project root: the nearest directory at or above the manifest's that holds `.git`
    /// (a repository, or a worktree's `.git` file), else the manifest's own directory, with
    /// symbolic links resolved. Inputs (model, external data, plugins) must lie inside it, so
    /// a manifest from an untrusted change cannot make `trtfarm submit` upload files from
    /// elsewhere on the machine (`../../.ssh/id_ed25519`).
    pub fn root(&self) -> std::io::Result<PathBuf> {
        let dir = std::fs::canonicalize(self.dir())?;
        Ok(dir
            .ancestors()
            .find(|candidate| candidate.join(".git").exists())
            .unwrap_or(&dir)
            .to_path_buf())
    }

    /// Where `file` really is when that is outside the project root ([`Manifest::root`]) and
    /// every directory named in [`INPUT_ROOTS_ENV`], with symbolic links and `..` resolved;
    /// `None` when it is inside one of them.
    pub fn outside_root(&self, file: &Path) -> std::io::Result<Option<PathBuf>> {
        let real = std::fs::canonicalize(file)?;
        let mut roots = vec![self.root()?];
        roots.extend(extra_input_roots());
        Ok((!roots.iter().any(|root| real.starts_with(root))).then_some(real))
    }

    fn check_regular_file(
        &self,
        path: &Path,
        span: Range<usize>,
        what: &str,
        out: &mut Vec<Diagnostic>,
    ) -> bool {
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => match self.outside_root(path) {
                Ok(None) => return true,
                Ok(Some(real)) => {
                    out.push(self.source.error(
                        span,
                        format!(
                            "{what} `{}` resolves to {}, outside the project",
                            path.display(),
                            real.display()
                        ),
                        Some(STAY_INSIDE_HINT.to_string()),
                    ));
                    return false;
                }
                Err(e) => format!("cannot resolve {what} `{}`: {e}", path.display()),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_roots_are_absolute_existing_directories_with_links_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("models");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let value = format!(
            "{}:relative/dir:{}:{}",
            dir.path().join("link").display(),
            dir.path().join("missing").display(),
            real.display()
        );
        let canonical = std::fs::canonicalize(&real).unwrap();
        assert_eq!(
            parse_input_roots(value.as_ref()),
            vec![canonical.clone(), canonical]
        );
    }
}
