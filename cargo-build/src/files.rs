//! Files under `OUT_DIR`: where each engine goes, whether the one there already has the
//! digest (then it is left alone, mtime and all), and docs.rs placeholders.

use std::path::{Component, Path, PathBuf};

use trtfarm_types::BlobDigest;

use crate::Error;

/// Where an engine of `manifest` goes under `root` (`OUT_DIR/trtfarm`): the manifest's
/// directory relative to the package, then `<engine>.engine`, which is where
/// `trtfarm submit --out root` puts it too.
pub(crate) fn engine_path(
    root: &Path,
    package_dir: &Path,
    manifest: &Path,
    engine: &str,
) -> PathBuf {
    let relative = manifest.strip_prefix(package_dir).unwrap_or(manifest);
    let dir: PathBuf = relative
        .parent()
        .unwrap_or(Path::new(""))
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    root.join(dir).join(format!("{engine}.engine"))
}

/// Whether `path` holds exactly the blob `digest`.
pub(crate) fn has_digest(path: &Path, digest: &BlobDigest) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = blake3::Hasher::new();
    match hasher.update_reader(file) {
        Ok(hasher) => BlobDigest::new(hasher.finalize(), hasher.count()) == *digest,
        Err(_) => false,
    }
}

/// Writes an empty placeholder at `path` unless one is there (so a docs build that runs twice
/// changes nothing).
pub(crate) fn write_placeholder(path: &Path) -> Result<(), Error> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        return Ok(());
    }
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, []).map_err(io)
}

/// The engine names a manifest declares, read without trtfarm (on docs.rs): each
/// `[[engine]] name`, or `default` when there is no `[[engine]]`, as trtfarm names it.
pub(crate) fn manifest_engine_names(manifest: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(manifest).map_err(|source| Error::Manifest {
        path: manifest.to_path_buf(),
        source,
    })?;
    let format = |message: String| Error::ManifestFormat {
        path: manifest.to_path_buf(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format(e.to_string()))?;
    let Some(engines) = table.get("engine") else {
        return Ok(vec!["default".to_string()]);
    };
    let engines = engines
        .as_array()
        .ok_or_else(|| format("`engine` is not an array of tables ([[engine]])".into()))?;
    engines
        .iter()
        .map(|engine| {
            engine
                .get("name")
                .and_then(toml::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format("an [[engine]] has no string `name`".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_go_where_submit_out_puts_them() {
        let root = Path::new("/out/trtfarm");
        let package = Path::new("/src/app");
        assert_eq!(
            engine_path(
                root,
                package,
                Path::new("/src/app/models/engine.toml"),
                "fp32"
            ),
            PathBuf::from("/out/trtfarm/models/fp32.engine")
        );
        assert_eq!(
            engine_path(root, package, Path::new("/src/app/engine.toml"), "fp32"),
            PathBuf::from("/out/trtfarm/fp32.engine")
        );
        // A manifest outside the package cannot lead outside the root.
        assert_eq!(
            engine_path(
                root,
                package,
                Path::new("/src/shared/../m/engine.toml"),
                "a"
            ),
            PathBuf::from("/out/trtfarm/src/shared/m/a.engine")
        );
    }

    #[test]
    fn a_file_has_a_digest_only_with_those_very_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.engine");
        std::fs::write(&path, b"plan").unwrap();
        assert!(has_digest(&path, &BlobDigest::of_bytes(b"plan")));
        assert!(!has_digest(&path, &BlobDigest::of_bytes(b"plan!")));
        assert!(!has_digest(
            &dir.path().join("none"),
            &BlobDigest::of_bytes(b"")
        ));
    }

    #[test]
    fn engine_names_come_from_the_manifest_or_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.toml");
        std::fs::write(
            &path,
            "schema_version = 1\n[[engine]]\nname = \"fp32\"\n[[engine]]\nname = \"fp16\"\n",
        )
        .unwrap();
        assert_eq!(manifest_engine_names(&path).unwrap(), ["fp32", "fp16"]);
        std::fs::write(&path, "schema_version = 1\n").unwrap();
        assert_eq!(manifest_engine_names(&path).unwrap(), ["default"]);
        std::fs::write(&path, "engine = 3\n").unwrap();
        let error = manifest_engine_names(&path).unwrap_err().to_string();
        assert!(error.contains("not an array"), "{error}");
    }
}
