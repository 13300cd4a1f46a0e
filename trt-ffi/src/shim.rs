//! The embedded C++ shims: written once to a content-addressed cache path, then dlopen'ed.
//!
//! Each flavour's shim is its own shared object (see build.rs for why), loaded RTLD_LOCAL so the
//! two never see each other's nvinfer1 symbols. A loaded shim stays loaded for the rest of the
//! process: TensorRT keeps pointers into it (the logger).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::LoadError;
use crate::toolchain::Flavour;

/// bindgen's view of trtfarm_shim.h, including the `ShimLibrary` dynamic-loading struct.
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unsafe_op_in_unsafe_fn,
    clippy::all
)]
pub(crate) mod ffi {
    include!(concat!(env!("OUT_DIR"), "/shim_bindings.rs"));
}

static RTX_SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libtrtfarm_shim_rtx.so"));
static TRT_SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libtrtfarm_shim_trt.so"));

/// The version of the TensorRT headers each shim was compiled against ("1.7.1.116").
pub(crate) fn headers_version(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::TensorRtRtx => env!("TRTFARM_RTX_HEADERS_VERSION"),
        Flavour::TensorRt => env!("TRTFARM_TRT_HEADERS_VERSION"),
    }
}

fn embedded(flavour: Flavour) -> (&'static [u8], &'static str) {
    match flavour {
        Flavour::TensorRtRtx => (RTX_SHIM, "libtrtfarm_shim_rtx.so"),
        Flavour::TensorRt => (TRT_SHIM, "libtrtfarm_shim_trt.so"),
    }
}

/// The root of trtfarm's per-user cache: $TRTFARM_CACHE_DIR, else `<user cache dir>/trtfarm`.
pub(crate) fn cache_root() -> Option<PathBuf> {
    std::env::var_os("TRTFARM_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("trtfarm")))
}

/// Writes the shim to `<cache>/shims/<blake3>/<name>` unless an identical file is there.
fn materialize(root: &Path, bytes: &[u8], name: &str) -> std::io::Result<PathBuf> {
    let digest = blake3::hash(bytes);
    let dir = root.join("shims").join(digest.to_hex().as_str());
    let path = dir.join(name);
    if let Ok(existing) = std::fs::read(&path)
        && blake3::hash(&existing) == digest
    {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    // Temp file + rename: concurrent processes each write their own copy and the last rename
    // wins with identical bytes, so nobody ever dlopens a half-written file.
    let mut tmp = tempfile::Builder::new()
        .prefix(".shim-")
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// Writes both embedded shims under `cache_root`, where a process whose `TRTFARM_CACHE_DIR` is
/// `cache_root` loads them from, and returns their paths.
///
/// A process that finds its shim in place does exactly the same work as every other such
/// process; one that has to write it first does more (and allocates differently). Build farms
/// that want identical plans install the shims before starting any build process.
pub fn install_shims(cache_root: &Path) -> std::io::Result<Vec<PathBuf>> {
    [Flavour::TensorRtRtx, Flavour::TensorRt]
        .into_iter()
        .map(|flavour| {
            let (bytes, name) = embedded(flavour);
            materialize(cache_root, bytes, name)
        })
        .collect()
}

/// A loaded shim and the path it was loaded from.
pub(crate) struct LoadedShim {
    /// Function table of the shim.
    pub(crate) api: ffi::ShimLibrary,
    /// Where the shim file lives.
    pub(crate) path: PathBuf,
}

fn load(flavour: Flavour) -> Result<LoadedShim, String> {
    let (bytes, name) = embedded(flavour);
    let root = cache_root()
        .ok_or_else(|| "no cache directory (set TRTFARM_CACHE_DIR or HOME)".to_owned())?;
    let path = materialize(&root, bytes, name)
        .map_err(|e| format!("cannot write the shim under {}: {e}", root.display()))?;
    // RTLD_NOW surfaces a missing symbol here rather than mid-build; RTLD_LOCAL keeps the two
    // flavours' shims apart.
    let library = unsafe {
        libloading::os::unix::Library::open(
            Some(&path),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
        )
    }
    .map_err(|e| format!("dlopen {}: {e}", path.display()))?;
    // SAFETY: the file is our own shim, whose exported functions match the generated bindings.
    let api = unsafe { ffi::ShimLibrary::from_library(library) }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: plain functions without arguments.
    let (abi, compiled_flavour) =
        unsafe { (api.trtfarm_shim_abi_version(), api.trtfarm_shim_flavour()) };
    if abi != ffi::TRTFARM_SHIM_ABI_VERSION as i32 {
        return Err(format!(
            "{} has ABI version {abi}, expected {}",
            path.display(),
            ffi::TRTFARM_SHIM_ABI_VERSION
        ));
    }
    let expected = match flavour {
        Flavour::TensorRtRtx => ffi::TRTFARM_FLAVOUR_TENSORRT_RTX,
        Flavour::TensorRt => ffi::TRTFARM_FLAVOUR_TENSORRT,
    };
    if compiled_flavour != expected as i32 {
        return Err(format!(
            "{} was compiled for another flavour",
            path.display()
        ));
    }
    Ok(LoadedShim { api, path })
}

/// The shim for `flavour`, loaded on first use and kept for the life of the process.
pub(crate) fn shim(flavour: Flavour) -> Result<&'static LoadedShim, LoadError> {
    static RTX: OnceLock<Result<LoadedShim, String>> = OnceLock::new();
    static TRT: OnceLock<Result<LoadedShim, String>> = OnceLock::new();
    let cell = match flavour {
        Flavour::TensorRtRtx => &RTX,
        Flavour::TensorRt => &TRT,
    };
    cell.get_or_init(|| load(flavour))
        .as_ref()
        .map_err(|message| LoadError::Shim {
            flavour,
            message: message.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn materialize_is_content_addressed_and_idempotent() {
        let root = tempfile::tempdir().unwrap();
        let a = materialize(root.path(), b"one", "lib.so").unwrap();
        let again = materialize(root.path(), b"one", "lib.so").unwrap();
        let b = materialize(root.path(), b"two", "lib.so").unwrap();
        assert_eq!(a, again);
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        assert!(a.starts_with(root.path().join("shims")));
    }

    #[test]
    fn install_shims_writes_both_where_load_looks() {
        let root = tempfile::tempdir().unwrap();
        let paths = install_shims(root.path()).unwrap();
        assert_eq!(paths.len(), 2);
        for (flavour, path) in [Flavour::TensorRtRtx, Flavour::TensorRt].iter().zip(&paths) {
            let (bytes, name) = embedded(*flavour);
            assert_eq!(std::fs::read(path).unwrap(), bytes);
            assert_eq!(materialize(root.path(), bytes, name).unwrap(), *path);
        }
    }

    #[test]
    fn materialize_repairs_a_corrupted_copy() {
        let root = tempfile::tempdir().unwrap();
        let path = materialize(root.path(), b"payload", "lib.so").unwrap();
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(
            materialize(root.path(), b"payload", "lib.so").unwrap(),
            path
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"payload");
    }

    #[test]
    fn both_shims_are_embedded_and_load_without_tensorrt() {
        // Loading the shim never touches TensorRT: it must work on any machine, including
        // the Enterprise shim that has no library to drive here.
        for flavour in [Flavour::TensorRtRtx, Flavour::TensorRt] {
            let loaded = shim(flavour).expect("shim loads");
            assert!(loaded.path.is_file());
        }
        assert_ne!(RTX_SHIM, TRT_SHIM);
        assert!(headers_version(Flavour::TensorRtRtx).starts_with("1.7."));
        assert!(headers_version(Flavour::TensorRt).starts_with("11."));
    }
}
