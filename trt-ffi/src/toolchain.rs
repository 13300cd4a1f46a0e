//! Finding and loading a TensorRT flavour: which library files, from where, which version.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

use crate::error::LoadError;
use crate::shim::{self, LoadedShim, ffi};

pub use trtfarm_types::{Flavour, Version};

/// File names of `flavour`'s builder library, preferred first.
pub fn builder_library_names(flavour: Flavour) -> &'static [&'static str] {
    match flavour {
        Flavour::TensorRtRtx => &["libtensorrt_rtx.so.1", "libtensorrt_rtx.so"],
        Flavour::TensorRt => &["libnvinfer.so.11", "libnvinfer.so"],
    }
}

/// File names of `flavour`'s ONNX parser library, preferred first.
pub fn parser_library_names(flavour: Flavour) -> &'static [&'static str] {
    match flavour {
        Flavour::TensorRtRtx => &[
            "libtensorrt_onnxparser_rtx.so.1",
            "libtensorrt_onnxparser_rtx.so",
        ],
        Flavour::TensorRt => &["libnvonnxparser.so.11", "libnvonnxparser.so"],
    }
}

/// Environment variables naming a library directory for `flavour`.
fn lib_dir_vars(flavour: Flavour) -> &'static [&'static str] {
    match flavour {
        Flavour::TensorRtRtx => &["TRTFARM_RTX_LIB_DIR", "TENSORRT_RTX_LIB_DIR"],
        Flavour::TensorRt => &["TRTFARM_ENTERPRISE_LIB_DIR", "TENSORRT_LIB_DIR"],
    }
}

/// Environment variables naming an install root (`<root>/lib`).
fn root_vars(flavour: Flavour) -> &'static [&'static str] {
    match flavour {
        Flavour::TensorRtRtx => &["TENSORRT_RTX_ROOT"],
        Flavour::TensorRt => &["TENSORRT_ROOT"],
    }
}

/// What a user can do when `flavour`'s libraries are not found.
pub fn install_hint(flavour: Flavour) -> String {
    let vars = [lib_dir_vars(flavour), root_vars(flavour)]
        .concat()
        .join(" or ");
    match flavour {
        Flavour::TensorRtRtx => format!(
            "run scripts/setup (it installs TensorRT-RTX from PyPI), set {vars}, or pass the directory that holds them"
        ),
        Flavour::TensorRt => format!(
            "install TensorRT (NVIDIA ships it outside public package registries, so scripts/setup cannot), then set {vars} or pass the directory that holds them"
        ),
    }
}

/// Where scripts/setup puts `flavour`'s libraries under the trtfarm cache.
fn cache_subdir(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::TensorRtRtx => "deps/lib/tensorrt-rtx",
        Flavour::TensorRt => "deps/lib/tensorrt",
    }
}

/// A loaded TensorRT flavour, ready to build engines.
///
/// Builds run one at a time per process, whatever the number of toolchains: TensorRT has a
/// single process-wide logger, and concurrent TensorRT-RTX builds with different targets were
/// seen to fail ("Target SM 86 is not found in the accelerator list"). For reproducible RTX
/// plans, run one build per fresh process (docs/architecture.md, "Reproducible plans").
pub struct Toolchain {
    flavour: Flavour,
    version: Version,
    /// The builder library as found and dlopen'ed (symlinks not resolved, see `load`).
    library_found: PathBuf,
    /// The parser library as found and dlopen'ed.
    parser_found: PathBuf,
    library_path: OnceLock<PathBuf>,
    parser_path: OnceLock<PathBuf>,
    digest: OnceLock<blake3::Hash>,
    parser_digest: OnceLock<blake3::Hash>,
    pub(crate) shim: &'static LoadedShim,
    pub(crate) handle: Mutex<NonNull<ffi::trtfarm_toolchain>>,
}

// SAFETY: the handle is only used under the mutex, and the shim itself serialises builds; the
// shim library is immutable after loading.
unsafe impl Send for Toolchain {}
// SAFETY: as above.
unsafe impl Sync for Toolchain {}

impl std::fmt::Debug for Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolchain")
            .field("flavour", &self.flavour)
            .field("version", &self.version)
            .field("library_path", &self.library_found)
            .field("parser_path", &self.parser_found)
            .finish_non_exhaustive()
    }
}

/// Directories searched for a flavour when no explicit directory is given, in order.
pub fn default_search_dirs(flavour: Flavour) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let env_dir = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    dirs.extend(lib_dir_vars(flavour).iter().filter_map(|v| env_dir(v)));
    dirs.extend(
        root_vars(flavour)
            .iter()
            .filter_map(|v| env_dir(v))
            .map(|root| root.join("lib")),
    );
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/local/lib",
            "/usr/lib64",
            "/usr/lib",
        ]
        .map(PathBuf::from),
    );
    if let Some(root) = shim::cache_root() {
        dirs.push(root.join(cache_subdir(flavour)));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn find_in(dirs: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
}

impl Toolchain {
    /// Loads `flavour` from `lib_dir` only, or, when `None`, from the first directory of
    /// `default_search_dirs` that holds its builder library.
    pub fn load(flavour: Flavour, lib_dir: Option<&Path>) -> Result<Toolchain, LoadError> {
        let dirs = match lib_dir {
            // An explicit directory is a pin: falling back elsewhere would load another build.
            Some(dir) => vec![dir.to_path_buf()],
            None => default_search_dirs(flavour),
        };
        let not_found = |names: &[&str]| LoadError::NotFound {
            flavour,
            libraries: names.iter().map(|s| s.to_string()).collect(),
            searched: dirs.clone(),
        };
        let builder = find_in(&dirs, builder_library_names(flavour))
            .ok_or_else(|| not_found(builder_library_names(flavour)))?;
        // The parser belongs beside its builder; look there first.
        let builder_dir = builder.parent().map(Path::to_path_buf).unwrap_or_default();
        let parser_dirs: Vec<PathBuf> = std::iter::once(builder_dir)
            .chain(dirs.iter().cloned())
            .collect();
        let parser = find_in(&parser_dirs, parser_library_names(flavour))
            .ok_or_else(|| not_found(parser_library_names(flavour)))?;
        // Symlinks are resolved only when a caller asks for the paths, never here: TensorRT-RTX
        // plans depend on the process's heap layout, and resolving allocates strings as long as
        // the real install path. A build that loads the libraries through a fixed-length
        // symlink therefore does not depend on where they really live.

        let shim = shim::shim(flavour)?;
        let open_error = |path: &Path, message: String| LoadError::Open {
            flavour,
            path: path.to_path_buf(),
            message,
        };
        let c_builder = CString::new(builder.as_os_str().as_bytes())
            .map_err(|_| open_error(&builder, "path contains a NUL byte".into()))?;
        let c_parser = CString::new(parser.as_os_str().as_bytes())
            .map_err(|_| open_error(&parser, "path contains a NUL byte".into()))?;
        let mut message = vec![0u8; 4096];
        let mut handle: *mut ffi::trtfarm_toolchain = std::ptr::null_mut();
        // SAFETY: valid C strings and buffer; the shim writes the handle or an error message.
        let status = unsafe {
            shim.api.trtfarm_toolchain_open(
                c_builder.as_ptr(),
                c_parser.as_ptr(),
                &mut handle,
                message.as_mut_ptr().cast(),
                message.len(),
            )
        };
        let handle = match NonNull::new(handle) {
            Some(h) if status == ffi::TRTFARM_OK as i32 => h,
            _ => return Err(open_error(&builder, c_message(&message))),
        };
        let mut raw = ffi::trtfarm_version::default();
        // SAFETY: the handle was just opened.
        unsafe {
            shim.api
                .trtfarm_toolchain_version(handle.as_ptr(), &mut raw)
        };
        let nonneg = |v: i32| u32::try_from(v).unwrap_or(0);
        let version = Version {
            major: nonneg(raw.library_major),
            minor: nonneg(raw.library_minor),
            patch: nonneg(raw.library_patch),
            build: nonneg(raw.library_build),
        };
        Ok(Toolchain {
            flavour,
            version,
            library_found: builder,
            parser_found: parser,
            library_path: OnceLock::new(),
            parser_path: OnceLock::new(),
            digest: OnceLock::new(),
            parser_digest: OnceLock::new(),
            shim,
            handle: Mutex::new(handle),
        })
    }

    /// The flavour this toolchain drives.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The version the loaded builder library reports.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The version of the headers the shim was compiled against ("1.7.1.116").
    pub fn headers_version(&self) -> &'static str {
        shim::headers_version(self.flavour)
    }

    /// The builder library file that was loaded, symlinks resolved (on first call: call it
    /// after a build whose plan must not depend on the install path).
    pub fn library_path(&self) -> &Path {
        self.library_path
            .get_or_init(|| resolved(&self.library_found))
    }

    /// The ONNX parser library file that was loaded, symlinks resolved (on first call, like
    /// [`library_path`](Self::library_path)).
    pub fn parser_library_path(&self) -> &Path {
        self.parser_path
            .get_or_init(|| resolved(&self.parser_found))
    }

    /// Where this flavour's embedded shim was written and loaded from (for diagnostics).
    pub fn shim_path(&self) -> &Path {
        &self.shim.path
    }

    /// blake3 of the builder library file, streamed from disk on first call and then cached.
    pub fn library_digest(&self) -> std::io::Result<blake3::Hash> {
        file_digest(&self.digest, &self.library_found)
    }

    /// blake3 of the ONNX parser library file, streamed from disk on first call and then
    /// cached. The parser decides what network TensorRT sees, so a parser upgrade must count
    /// as a toolchain change even when the builder library stays the same.
    pub fn parser_library_digest(&self) -> std::io::Result<blake3::Hash> {
        file_digest(&self.parser_digest, &self.parser_found)
    }
}

/// `path` with symlinks resolved, or as it is when that fails.
fn resolved(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// The blake3 of the file at `path`, computed once into `cell`.
fn file_digest(cell: &OnceLock<blake3::Hash>, path: &Path) -> std::io::Result<blake3::Hash> {
    if let Some(digest) = cell.get() {
        return Ok(*digest);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(*cell.get_or_init(|| hasher.finalize()))
}

impl Drop for Toolchain {
    fn drop(&mut self) {
        let handle = self.handle.get_mut().unwrap_or_else(|p| p.into_inner());
        // SAFETY: no build can be running: we hold the only reference.
        unsafe { self.shim.api.trtfarm_toolchain_close(handle.as_ptr()) };
    }
}

/// The NUL-terminated text a shim call wrote into `buffer`.
pub(crate) fn c_message(buffer: &[u8]) -> String {
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_lib_dir_is_the_only_place_searched() {
        let dir = tempfile::tempdir().unwrap();
        let err = Toolchain::load(Flavour::TensorRtRtx, Some(dir.path())).unwrap_err();
        match &err {
            LoadError::NotFound {
                libraries,
                searched,
                ..
            } => {
                assert_eq!(searched, &vec![dir.path().to_path_buf()]);
                assert!(libraries.contains(&"libtensorrt_rtx.so.1".to_owned()));
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("libtensorrt_rtx.so.1"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
    }

    #[test]
    fn a_file_that_is_not_a_library_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["libnvinfer.so.11", "libnvonnxparser.so.11"] {
            std::fs::write(dir.path().join(name), b"not an ELF file").unwrap();
        }
        let err = Toolchain::load(Flavour::TensorRt, Some(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LoadError::Open { .. }), "{text}");
        assert!(text.contains("libnvinfer.so.11"), "{text}");
    }
}
