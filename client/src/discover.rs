//! Finding the manifests a command line names.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The file name `trtfarm` looks for when given a directory.
pub const MANIFEST_FILE_NAME: &str = "engine.toml";

/// Expands command-line paths into manifest files: a file is taken as it is, a directory is
/// searched recursively for `engine.toml`. No paths means the current directory. The result is
/// sorted and free of duplicates, so output order does not depend on the file system.
pub fn find_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let default = [PathBuf::from(".")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let mut found = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.is_dir() {
            let before = found.len();
            search_directory(path, &mut found)?;
            if found.len() == before {
                bail!("no {MANIFEST_FILE_NAME} under {}", path.display());
            }
        } else {
            found.push(path.clone());
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn search_directory(root: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !is_skipped_directory(entry));
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot search {}", root.display()))?;
        if entry.file_type().is_file() && entry.file_name() == MANIFEST_FILE_NAME {
            found.push(entry.into_path());
        }
    }
    Ok(())
}

/// Hidden directories (`.git`, `.venv`, ...) and Cargo's `target/` never hold manifests a user
/// means, and can be huge.
fn is_skipped_directory(entry: &walkdir::DirEntry) -> bool {
    entry.file_type().is_dir()
        && entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with('.') || name == "target")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn finds_manifests_recursively_and_skips_hidden_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("a/engine.toml"));
        touch(&root.join("b/c/engine.toml"));
        touch(&root.join("b/c/other.toml"));
        touch(&root.join(".git/engine.toml"));
        touch(&root.join("target/engine.toml"));

        let found = find_manifests(&[root.to_path_buf()]).unwrap();

        assert_eq!(
            found,
            vec![root.join("a/engine.toml"), root.join("b/c/engine.toml")]
        );
    }

    #[test]
    fn a_file_is_taken_as_is_and_duplicates_collapse() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("custom.toml");
        touch(&manifest);

        let found = find_manifests(&[manifest.clone(), manifest.clone()]).unwrap();

        assert_eq!(found, vec![manifest]);
    }

    #[test]
    fn a_directory_without_manifests_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = find_manifests(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            error.to_string().contains("no engine.toml under"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let error = find_manifests(&[PathBuf::from("/nonexistent/trtfarm")]).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/trtfarm"),
            "{error}"
        );
    }
}
