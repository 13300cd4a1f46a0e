//! Finding the manifests a command line names.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The file name `trtfarm` looks for when given a directory.
pub const MANIFEST_FILE_NAME: &str = "engine.toml";

/// Expands command-line paths into manifest files: a file is taken as it is, a directory is
/// searched recursively for `engine.toml`. No paths means the current directory. The result is
/// sorted and free of duplicates, so output order does not depend on the file system.
///
/// The search follows no symbolic links, neither to directories nor to `engine.toml` files: a
/// manifest is found where it really is, so its directory, the root every path in it must stay
/// inside, is the one it was written in. Something named on the command line that is neither a
/// regular file (after links) nor a directory (a device, a FIFO) is refused: reading it could
/// block or never end.
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
        } else if metadata.is_file() {
            found.push(path.clone());
        } else {
            bail!(
                "{} is not a manifest file or a directory; name an engine.toml or a directory holding some",
                path.display()
            );
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
    fn a_device_is_refused_and_a_symlinked_manifest_is_not_searched() {
        let error = find_manifests(&[PathBuf::from("/dev/zero")]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("/dev/zero is not a manifest file or a directory"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("real/engine.toml"));
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::os::unix::fs::symlink(root.join("real/engine.toml"), root.join("b/engine.toml"))
            .unwrap();
        let found = find_manifests(&[root.to_path_buf()]).unwrap();
        assert_eq!(found, vec![root.join("real/engine.toml")]);
        // Named directly, a symlinked manifest is taken.
        let found = find_manifests(&[root.join("b/engine.toml")]).unwrap();
        assert_eq!(found, vec![root.join("b/engine.toml")]);
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
