//! Files only their owner may touch: the local daemon's state directory (mode 0700) and its
//! info file (mode 0600), created that way and refused when they are not. The directory is what
//! keeps other local users away from the daemon's socket, jobs database and uploads, so a
//! directory that another user owns or can enter, or a symbolic link someone could repoint, is
//! an error that says how to fix it, never something to work around.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a private directory: only the owner may list, enter or change it.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of a private file: only the owner may read or write it.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Why a directory or file that must be private to this user cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotPrivate {
    /// It could not be created, opened or inspected.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// It is a symbolic link, which whoever controls its target could repoint.
    #[error(
        "{} is a symbolic link; the local daemon's directory and files must be real ones, so \
         nobody can point them elsewhere: give the real path (`readlink -f {}`) instead",
        path.display(),
        path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// It is not a directory (or not a regular file) where one is expected.
    #[error("{} is not a {expected}; move it away or give another path", path.display())]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// `directory` or `regular file`.
        expected: &'static str,
    },
    /// Another user owns it.
    #[error(
        "{} belongs to uid {owner}, not to you (uid {you}); every user needs a daemon directory \
         of their own: use one of yours (the default is under your home directory)",
        path.display()
    )]
    Owner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user running this program.
        you: u32,
    },
    /// Group or others may read, write or enter it.
    #[error(
        "{} has mode {mode:04o}: users other than you can {what} it; run `chmod {wanted:o} {}`",
        path.display(),
        path.display()
    )]
    Mode {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode it should have.
        wanted: u32,
        /// What others could do, in words.
        what: &'static str,
    },
}

/// The effective user id of this process: who must own private files.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Creates `dir` with mode 0700 if it does not exist (its missing parents with the usual
/// modes), then checks it with [`check_private_dir`].
pub fn ensure_private_dir(dir: &Path) -> Result<(), NotPrivate> {
    let io = |source| NotPrivate::Io {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| NotPrivate::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io(error)),
    }
    check_private_dir(dir)
}

/// Checks that `dir` is a real directory (not a symbolic link), owned by this user, that group
/// and others have no access to.
pub fn check_private_dir(dir: &Path) -> Result<(), NotPrivate> {
    let metadata = std::fs::symlink_metadata(dir).map_err(|source| NotPrivate::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    check_metadata(dir, &metadata, Kind::Directory)
}

/// Opens `path` for reading without following a symbolic link (a link fails with `ELOOP`);
/// [`check_private_file`] then checks what was opened.
pub fn open_private_file(path: &Path) -> Result<File, std::io::Error> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Checks an open file (from [`open_private_file`]) as [`check_private_dir`] checks a
/// directory, with mode 0600.
pub fn check_private_file(path: &Path, file: &File) -> Result<(), NotPrivate> {
    let metadata = file.metadata().map_err(|source| NotPrivate::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_metadata(path, &metadata, Kind::File)
}

/// Writes `bytes` to `path` as a new file of mode 0600 (replacing a leftover file of that name,
/// whatever its mode was).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), NotPrivate> {
    let io = |source| NotPrivate::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    // `mode` applies only when the file is created: a leftover keeps its own until set here.
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// What a private path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    File,
}

/// The pure check behind [`check_private_dir`] and [`check_private_file`].
fn check_metadata(path: &Path, metadata: &Metadata, kind: Kind) -> Result<(), NotPrivate> {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        return Err(NotPrivate::Symlink {
            path: path.to_path_buf(),
        });
    }
    let (right_kind, expected, wanted, what) = match kind {
        Kind::Directory => (
            file_type.is_dir(),
            "directory",
            PRIVATE_DIR_MODE,
            "list, enter or change",
        ),
        Kind::File => (
            file_type.is_file(),
            "regular file",
            PRIVATE_FILE_MODE,
            "read or change",
        ),
    };
    if !right_kind {
        return Err(NotPrivate::WrongKind {
            path: path.to_path_buf(),
            expected,
        });
    }
    let you = current_uid();
    if metadata.uid() != you {
        return Err(NotPrivate::Owner {
            path: path.to_path_buf(),
            owner: metadata.uid(),
            you,
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(NotPrivate::Mode {
            path: path.to_path_buf(),
            mode,
            wanted,
            what,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_directory_is_created_private_with_its_parents() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state/trtfarm/daemon");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, PRIVATE_DIR_MODE);
        // A second call finds it as it left it.
        ensure_private_dir(&dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_enter_is_refused_with_the_chmod_that_fixes_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("daemon");
        std::fs::create_dir(&dir).unwrap();
        for mode in [0o755, 0o750, 0o701, 0o710, 0o777] {
            chmod(&dir, mode);
            let error = ensure_private_dir(&dir).unwrap_err();
            assert!(
                matches!(error, NotPrivate::Mode { .. }),
                "{mode:o}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!("has mode {mode:04o}")),
                "{message}"
            );
            assert!(
                message.contains(&format!("run `chmod 700 {}`", dir.display())),
                "{message}"
            );
        }
        chmod(&dir, 0o700);
        check_private_dir(&dir).unwrap();
        // Owner bits are the owner's business.
        chmod(&dir, 0o500);
        check_private_dir(&dir).unwrap();
        chmod(&dir, 0o700);
    }

    #[test]
    fn a_symbolic_link_is_refused_even_to_a_private_directory() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        ensure_private_dir(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let error = ensure_private_dir(&link).unwrap_err();
        assert!(matches!(error, NotPrivate::Symlink { .. }), "{error:?}");
        assert!(error.to_string().contains("readlink -f"), "{error}");
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("daemon");
        std::fs::write(&path, "not a directory").unwrap();
        let error = ensure_private_dir(&path).unwrap_err();
        assert!(
            matches!(
                error,
                NotPrivate::WrongKind {
                    expected: "directory",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn another_users_directory_is_refused_naming_both_users() {
        let root = tempfile::tempdir().unwrap();
        // Root can give a directory away; anyone else finds one of root's.
        let foreign = if current_uid() == 0 {
            let dir = root.path().join("theirs");
            std::fs::create_dir(&dir).unwrap();
            chmod(&dir, 0o700);
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            dir
        } else {
            PathBuf::from("/")
        };
        let owner = std::fs::metadata(&foreign).unwrap().uid();
        let error = check_private_dir(&foreign).unwrap_err();
        assert!(matches!(error, NotPrivate::Owner { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "belongs to uid {owner}, not to you (uid {})",
                current_uid()
            )),
            "{message}"
        );
    }

    #[test]
    fn private_files_are_written_0600_and_wider_ones_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("daemon.json");
        // A leftover readable by everyone is replaced by a private file.
        std::fs::write(&path, "old").unwrap();
        chmod(&path, 0o644);
        write_private_file(&path, b"{}").unwrap();
        let file = open_private_file(&path).unwrap();
        check_private_file(&path, &file).unwrap();
        assert_eq!(
            file.metadata().unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");

        chmod(&path, 0o640);
        let file = open_private_file(&path).unwrap();
        let message = check_private_file(&path, &file).unwrap_err().to_string();
        assert!(message.contains("has mode 0640"), "{message}");
        assert!(message.contains("read or change"), "{message}");
        assert!(message.contains("run `chmod 600"), "{message}");

        let link = root.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let error = open_private_file(&link).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP), "{error}");
    }
}
