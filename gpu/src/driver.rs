//! Guards around cudarc: it panics (instead of returning an error) when libcuda or one of its
//! symbols cannot be loaded, so every CUDA call in this crate goes through these first.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::driver::DriverError;

/// Why the CUDA driver library cannot be used, or `None` when it loads.
pub(crate) fn cuda_unavailable() -> Option<String> {
    // SAFETY: only dlopens (and closes) the library; no CUDA function is called.
    let present = catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() });
    match present {
        Ok(true) => None,
        Ok(false) => Some(
            "no NVIDIA driver: libcuda.so.1 not found (is the NVIDIA driver installed, and its \
             library on the loader path?)"
                .to_string(),
        ),
        Err(panic) => Some(format!(
            "no NVIDIA driver: loading libcuda panicked: {}",
            panic_message(&panic)
        )),
    }
}

/// Whether cuBLAS loads; `Err` carries the library names that were tried.
pub(crate) fn cublas_present() -> Result<(), Vec<String>> {
    // SAFETY: only dlopens (and closes) the library.
    match catch_unwind(|| unsafe { cudarc::cublas::sys::is_culib_present() }) {
        Ok(true) => Ok(()),
        _ => Err(cudarc::get_lib_name_candidates("cublas")),
    }
}

/// Runs `f`, turning a panic inside cudarc (a symbol this driver lacks, say) into an error.
///
/// Only a second line of defence: [`cuda_unavailable`] is checked first, because a caught panic
/// still prints through the panic hook.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| format!("{what} panicked: {}", panic_message(&panic)))
}

/// `CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)`: the name and the driver's text.
pub(crate) fn describe(error: DriverError) -> String {
    let name = error.error_name().map(|s| s.to_string_lossy().into_owned());
    let text = error
        .error_string()
        .map(|s| s.to_string_lossy().into_owned());
    match (name, text) {
        (Ok(name), Ok(text)) => format!("{name} ({text})"),
        (Ok(name), Err(_)) => name,
        _ => format!("{:?}", error.0),
    }
}

/// `13.0` from `cuDriverGetVersion`'s `13000`.
pub(crate) fn format_cuda_version(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_format_like_nvidia_smi() {
        assert_eq!(format_cuda_version(13000), "13.0");
        assert_eq!(format_cuda_version(12080), "12.8");
        assert_eq!(format_cuda_version(11040), "11.4");
    }

    #[test]
    fn guard_turns_a_panic_into_an_error() {
        let err = guard("probe", || panic!("Missing symbol cuFoo")).unwrap_err();
        assert!(
            err.contains("probe panicked: Missing symbol cuFoo"),
            "{err}"
        );
        assert_eq!(guard("probe", || 7), Ok(7));
    }

    #[test]
    fn cublas_names_tried_are_reported() {
        // No cuBLAS here; on a GPU host with it installed this is Ok.
        if let Err(tried) = cublas_present() {
            assert!(
                tried.iter().any(|n| n.starts_with("libcublas.so")),
                "{tried:?}"
            );
        }
    }
}
