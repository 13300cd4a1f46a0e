//! The build root: one directory per daemon, at a path of fixed length, that holds everything
//! a builder process can see by path.
//!
//! TensorRT-RTX plans depend on the build process's heap layout. Measured with address-space
//! randomisation off, each of these changed the plan bytes of a dynamic-shape model by changing only the *length* of a path the builder holds in
//! memory: its working directory (`tempfile` joins it to the plan's path), its program path
//! (argv[0], /proc/self/maps lines), the TensorRT library directory (dlopen names) and the shim
//! cache directory. Those all vary between daemons and hosts (state dir, install prefix, user).
//! The build root gives every builder the same view, whatever the host:
//!
//! ```text
//! /tmp/trtfarm-<16 hex>/             0700, one per (user, state dir)
//!     state-dir                      the state dir it belongs to (orphans are removed)
//!     trtfarm-builder                hard link to (or copy of) the builder program
//!     cache/shims/<hash>/...         trt-ffi's shims, installed by that program before any build
//!     lib-tensorrt-rtx -> <dir>      each toolchain's library directory
//!     00000000000000000042/          one slot per build: task.json, inputs -> …, out -> …
//! ```
//!
//! `/tmp` is fixed on purpose: `$TMPDIR` or a configurable root would bring back a per-host
//! length. Bulk data does not live there: a slot's `inputs` and `out` are symlinks into the
//! build's scratch directory under the state dir, which the kernel follows without the builder
//! ever holding that path.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use manifest_schema::Flavour;

use trtfarm_build_protocol::{INPUTS_DIR, OUT_DIR};

/// The fixed parent of every build root.
pub const BUILD_ROOT_PARENT: &str = "/tmp";

/// Hex digits of the per-daemon part of the root's name.
const ROOT_ID_DIGITS: usize = 16;

/// Name of the builder program inside the root.
const PROGRAM: &str = "trtfarm-builder";

/// Name of trt-ffi's cache (its `TRTFARM_CACHE_DIR`) inside the root.
const CACHE: &str = "cache";

/// The file in a root that names the state dir it belongs to, so a later daemon can tell a
/// root whose daemon is gone for good (its state dir was deleted) from a live one.
const OWNER_FILE: &str = "state-dir";

/// The builder's command that writes its shims into a directory.
const INSTALL_SHIMS_ARG: &str = "install-shims";

/// Prefix of a build root's name under [`BUILD_ROOT_PARENT`].
const ROOT_PREFIX: &str = "trtfarm-";

/// A prepared build root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRoot {
    dir: PathBuf,
    /// blake3 (hex) of the installed builder program.
    program_digest: String,
}

impl BuildRoot {
    /// Where the root of the daemon with `state_dir` lives: `/tmp/trtfarm-<16 hex>`, the hex a
    /// hash of the user id and the state dir, so two daemons never share a root and every root
    /// has the same length.
    pub fn path_for(state_dir: &Path) -> PathBuf {
        let state_dir = state_dir
            .canonicalize()
            .unwrap_or_else(|_| state_dir.to_path_buf());
        let mut hasher = blake3::Hasher::new();
        // SAFETY: geteuid has no preconditions.
        hasher.update(&unsafe { libc::geteuid() }.to_le_bytes());
        hasher.update(state_dir.as_os_str().as_bytes());
        let hex = hasher.finalize().to_hex();
        Path::new(BUILD_ROOT_PARENT).join(format!("{ROOT_PREFIX}{}", &hex[..ROOT_ID_DIGITS]))
    }

    /// Creates (or takes over) the root for `state_dir`: removes other roots of ours whose state
    /// dir is gone (their daemons were killed and will not return), removes slots a previous
    /// daemon left,
    /// installs a copy of `program`, trt-ffi's shims, and one symlink per toolchain library
    /// directory. Call it once per daemon start, after the state dir is locked.
    pub fn prepare(
        state_dir: &Path,
        program: &Path,
        libraries: &[(Flavour, PathBuf)],
    ) -> io::Result<BuildRoot> {
        let mut root = BuildRoot {
            dir: Self::path_for(state_dir),
            program_digest: String::new(),
        };
        remove_orphans(Path::new(BUILD_ROOT_PARENT));
        create_private_dir(&root.dir)?;
        let state_dir = state_dir
            .canonicalize()
            .unwrap_or_else(|_| state_dir.to_path_buf());
        std::fs::write(root.dir.join(OWNER_FILE), state_dir.as_os_str().as_bytes())?;
        for entry in std::fs::read_dir(&root.dir)? {
            let entry = entry?;
            if is_slot_name(&entry.file_name()) {
                // remove_dir_all removes a slot's symlinks without following them.
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        root.install_program(program)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(root.program())?)?;
        root.program_digest = hasher.finalize().to_hex().to_string();
        root.install_shims()?;
        for (flavour, dir) in libraries {
            let link = root.library_dir(*flavour);
            match std::fs::remove_file(&link) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::os::unix::fs::symlink(dir, &link)?;
        }
        Ok(root)
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The builder program, as installed in the root.
    pub fn program(&self) -> PathBuf {
        self.dir.join(PROGRAM)
    }

    /// blake3 (hex) of [`program`](Self::program) as installed: part of every action key.
    pub fn program_digest(&self) -> &str {
        &self.program_digest
    }

    /// trt-ffi's cache directory, the builders' `TRTFARM_CACHE_DIR`.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join(CACHE)
    }

    /// Where builders load `flavour`'s libraries from (a symlink to the real directory).
    pub fn library_dir(&self, flavour: Flavour) -> PathBuf {
        self.dir.join(format!("lib-{}", flavour.as_str()))
    }

    /// The working directory of build `build_id`: a fixed-width name, so every slot's path has
    /// the same length.
    pub fn slot(&self, build_id: u64) -> PathBuf {
        self.dir.join(format!("{build_id:020}"))
    }

    /// Creates build `build_id`'s slot with `inputs` and `out` pointing into `scratch` (which
    /// must hold both), replacing any slot of that number. Returns the slot.
    pub fn prepare_slot(&self, build_id: u64, scratch: &Path) -> io::Result<PathBuf> {
        let slot = self.slot(build_id);
        match std::fs::remove_dir_all(&slot) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir(&slot)?;
        for name in [INPUTS_DIR, OUT_DIR] {
            std::os::unix::fs::symlink(scratch.join(name), slot.join(name))?;
        }
        Ok(slot)
    }

    /// Puts `program` into the root: a hard link where the file system allows, else a copy
    /// (temp name + rename, so a builder never runs a half copy). Not a symlink: the kernel
    /// shows a mapped file by its resolved path, and glibc reads those lines at start-up.
    fn install_program(&self, program: &Path) -> io::Result<()> {
        let target = self.program();
        if program == target {
            return Ok(());
        }
        let temp = self.dir.join(format!(".{PROGRAM}.{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        if std::fs::hard_link(program, &temp).is_err() {
            std::fs::copy(program, &temp).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot copy the builder program {} to {}: {e}",
                        program.display(),
                        temp.display()
                    ),
                )
            })?;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&temp, &target)
    }

    /// Has the builder write its own shims into the root's cache: the shims it will load are
    /// the ones compiled into it, and no build writes a file before TensorRT runs.
    fn install_shims(&self) -> io::Result<()> {
        let output = std::process::Command::new(self.program())
            .arg(INSTALL_SHIMS_ARG)
            .arg(self.cache_dir())
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run the builder {}: {e}", self.program().display()),
                )
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "the builder {} could not install its TensorRT shims in {} ({}): {}",
            self.program().display(),
            self.cache_dir().display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }

    /// Removes the root of the daemon with `state_dir` (on a clean stop: the next start makes
    /// it again). Missing is fine.
    pub fn remove(state_dir: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(Self::path_for(state_dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Removes our build roots under `parent` whose state dir no longer exists (a daemon that was
/// killed cannot clean up after itself; one whose state dir is gone will never come back).
/// Best effort: a root that cannot be read or removed is left alone.
fn remove_orphans(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_root = name
            .as_bytes()
            .strip_prefix(ROOT_PREFIX.as_bytes())
            .is_some_and(|id| id.len() == ROOT_ID_DIGITS && id.iter().all(u8::is_ascii_hexdigit));
        let ours = std::fs::symlink_metadata(entry.path())
            .is_ok_and(|m| m.file_type().is_dir() && m.uid() == uid);
        if !is_root || !ours {
            continue;
        }
        // No owner file yet: a daemon may be creating this root right now.
        let Ok(owner) = std::fs::read(entry.path().join(OWNER_FILE)) else {
            continue;
        };
        let owner = Path::new(std::ffi::OsStr::from_bytes(&owner));
        if !owner.exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A build slot's name: exactly 20 digits.
fn is_slot_name(name: &std::ffi::OsStr) -> bool {
    name.len() == 20 && name.as_bytes().iter().all(u8::is_ascii_digit)
}

/// Creates `dir` readable only by us, or checks that an existing one is ours alone: the root is
/// in a world-writable directory, where someone else may have created the name first.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create the build root {}: {e}", dir.display()),
            ));
        }
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let problem = if !meta.file_type().is_dir() {
        Some("it is not a directory".to_owned())
    } else if meta.uid() != uid {
        Some(format!("it belongs to user {}, not {uid}", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "its mode is {:o}; it must be 700",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to use the build root {}: {problem} (remove it; trtfarmd creates it)",
                dir.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_paths_have_one_length_whatever_the_state_dir() {
        let short = BuildRoot::path_for(Path::new("/s"));
        let long = BuildRoot::path_for(Path::new("/var/lib/a/much/longer/state/directory"));
        assert_ne!(short, long);
        assert_eq!(short.as_os_str().len(), long.as_os_str().len());
        assert!(short.starts_with(BUILD_ROOT_PARENT));
        assert_eq!(short, BuildRoot::path_for(Path::new("/s")));
        let root = BuildRoot {
            dir: short,
            program_digest: String::new(),
        };
        assert_eq!(
            root.slot(1).as_os_str().len(),
            root.slot(u64::MAX).as_os_str().len()
        );
    }

    #[test]
    fn prepare_installs_program_shims_and_libraries_and_clears_stale_slots() {
        let state = tempfile::tempdir().unwrap();
        // A stand-in builder: `install-shims DIR` makes DIR/shims, as the real one does.
        let script: &[u8] = b"#!/bin/sh\n[ \"$1\" = install-shims ] && mkdir -p \"$2/shims\"\n";
        let program = state.path().join("prog");
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let libs = tempfile::tempdir().unwrap();
        let libraries = vec![(Flavour::TensorRtRtx, libs.path().to_path_buf())];
        let root = BuildRoot::prepare(state.path(), &program, &libraries).unwrap();
        let guard = RemoveOnDrop(root.path().to_path_buf());
        assert_eq!(std::fs::read(root.program()).unwrap(), script);
        assert_eq!(
            root.program_digest(),
            blake3::hash(script).to_hex().as_str()
        );
        assert_eq!(
            std::fs::read_link(root.library_dir(Flavour::TensorRtRtx)).unwrap(),
            libs.path()
        );
        assert!(root.cache_dir().join("shims").is_dir());
        let mode = std::fs::metadata(root.path()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);

        let scratch = state.path().join("scratch");
        std::fs::create_dir_all(scratch.join(INPUTS_DIR)).unwrap();
        std::fs::create_dir_all(scratch.join(OUT_DIR)).unwrap();
        std::fs::write(scratch.join(INPUTS_DIR).join("model.onnx"), b"m").unwrap();
        let slot = root.prepare_slot(7, &scratch).unwrap();
        assert_eq!(std::fs::read(slot.join("inputs/model.onnx")).unwrap(), b"m");

        // A restart removes the slot but never what its symlinks point to.
        let again = BuildRoot::prepare(state.path(), &program, &libraries).unwrap();
        assert_eq!(again, root);
        assert!(!slot.exists());
        assert!(scratch.join(INPUTS_DIR).join("model.onnx").is_file());
        drop(guard);
    }

    #[test]
    fn roots_whose_state_dir_is_gone_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let live_state = tempfile::tempdir().unwrap();
        let make = |id: &str, owner: Option<&Path>| {
            let dir = parent.path().join(format!("{ROOT_PREFIX}{id}"));
            std::fs::create_dir(&dir).unwrap();
            if let Some(owner) = owner {
                std::fs::write(dir.join(OWNER_FILE), owner.as_os_str().as_bytes()).unwrap();
            }
            dir
        };
        let orphan = make("0000000000000001", Some(Path::new("/nonexistent/state")));
        let live = make("0000000000000002", Some(live_state.path()));
        let being_created = make("0000000000000003", None);
        let not_a_root = make("not-a-root", Some(Path::new("/nonexistent/state")));
        remove_orphans(parent.path());
        assert!(!orphan.exists());
        assert!(live.exists() && being_created.exists() && not_a_root.exists());
    }

    #[test]
    fn a_root_someone_else_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = create_private_dir(&root).unwrap_err();
        assert!(error.to_string().contains("must be 700"), "{error}");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        create_private_dir(&root).unwrap();
    }

    /// Removes a build root the test made under /tmp.
    struct RemoveOnDrop(PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
