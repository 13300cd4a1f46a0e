//! Compiles the C++ shim twice (TensorRT-RTX and TensorRT Enterprise headers) into two shared
//! objects and runs bindgen over its C header.
//!
//! The shim is never linked into the Rust binary: two flavours in one symbol namespace would be an
//! ODR violation (same nvinfer1 inline code, different layouts). The crate embeds both `.so`
//! files and dlopens the one it needs. TensorRT itself is not linked either.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// One flavour's shim: where its headers are and what the output is called.
struct Flavour {
    /// Suffix of `libtrtfarm_shim_<name>.so`.
    name: &'static str,
    /// Extra preprocessor definition selecting flavour-specific code.
    define: Option<&'static str>,
    /// Environment variables naming an include directory, in priority order.
    include_vars: &'static [&'static str],
    /// Environment variables naming an install root (`<root>/include`).
    root_vars: &'static [&'static str],
    /// Default directory under `${cache}/trtfarm/deps/include`.
    cache_subdir: &'static str,
    /// Macro in NvInferVersion.h that proves the headers are this flavour.
    marker_macro: &'static str,
}

const FLAVOURS: [Flavour; 2] = [
    Flavour {
        name: "rtx",
        define: Some("TRTFARM_FLAVOUR_RTX"),
        include_vars: &["TENSORRT_RTX_INCLUDE_DIR", "TRTFARM_RTX_INCLUDE_DIR"],
        root_vars: &["TENSORRT_RTX_ROOT"],
        cache_subdir: "tensorrt-rtx-1.7",
        marker_macro: "TRT_MAJOR_RTX",
    },
    Flavour {
        name: "trt",
        define: None,
        include_vars: &["TENSORRT_INCLUDE_DIR", "TRTFARM_ENTERPRISE_INCLUDE_DIR"],
        root_vars: &["TENSORRT_ROOT"],
        cache_subdir: "tensorrt-11.4",
        marker_macro: "TRT_MAJOR_ENTERPRISE",
    },
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets this"));
    let shim_dir = manifest_dir.join("shim");
    for file in [
        "trtfarm_shim.cpp",
        "trtfarm_shim.h",
        "trtfarm_callbacks.hpp",
        "cuda_stub/cuda_runtime_api.h",
    ] {
        println!("cargo:rerun-if-changed={}", shim_dir.join(file).display());
    }
    for var in [
        "XDG_CACHE_HOME",
        "HOME",
        "TRTFARM_CUDA_INCLUDE_DIR",
        "CUDA_HOME",
        "CXX",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let cache_include = cache_dir().map(|c| c.join("trtfarm/deps/include"));
    let cuda_include =
        find_cuda_include(cache_include.as_deref()).unwrap_or_else(|| shim_dir.join("cuda_stub"));

    let version_script = out_dir.join("trtfarm_shim.map");
    std::fs::write(&version_script, "{ global: trtfarm_*; local: *; };\n")
        .expect("write linker version script");

    // Both compilations run at once: they are independent and each takes a few seconds.
    let mut jobs: Vec<(PathBuf, Child)> = Vec::new();
    for flavour in &FLAVOURS {
        let include = find_tensorrt_include(flavour, cache_include.as_deref());
        let version = header_version(&include, flavour);
        println!(
            "cargo:rustc-env=TRTFARM_{}_HEADERS_VERSION={version}",
            flavour.name.to_uppercase()
        );
        let output = out_dir.join(format!("libtrtfarm_shim_{}.so", flavour.name));
        let mut command = compiler_command();
        command
            .args(["-std=c++17", "-O2", "-g0", "-fPIC", "-shared"])
            .args(["-fvisibility=hidden", "-fvisibility-inlines-hidden"])
            .args(["-Wall", "-Wextra", "-Wno-deprecated-declarations"])
            .arg(format!(
                "-ffile-prefix-map={}=trt-ffi",
                manifest_dir.display()
            ))
            .arg("-I")
            .arg(&shim_dir)
            // -isystem: warnings inside NVIDIA's headers are not ours to fix.
            .arg("-isystem")
            .arg(&include)
            .arg("-isystem")
            .arg(&cuda_include);
        if let Some(define) = flavour.define {
            command.arg(format!("-D{define}"));
        }
        command
            .arg(shim_dir.join("trtfarm_shim.cpp"))
            .arg("-o")
            .arg(&output)
            .args([
                "-ldl",
                "-Wl,-Bsymbolic",
                "-Wl,--no-undefined",
                "-Wl,--build-id=none",
            ])
            .arg(format!("-Wl,--version-script={}", version_script.display()));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the C++ compiler ({command:?}): {e}"));
        jobs.push((output, child));
    }
    for (output, mut child) in jobs {
        let status = child.wait().expect("wait for the C++ compiler");
        if !status.success() {
            panic!("compiling {} failed ({status})", output.display());
        }
    }

    generate_bindings(&shim_dir, &out_dir);
}

/// The C++ compiler `cc` would use for this target (honours CXX and friends).
fn compiler_command() -> Command {
    let compiler = cc::Build::new()
        .cpp(true)
        .cargo_metadata(false)
        .get_compiler();
    // Only the executable: cc's default flags (-ffunction-sections, -g, ...) are chosen above.
    Command::new(compiler.path())
}

fn cache_dir() -> Option<PathBuf> {
    env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
}

/// Finds the TensorRT headers of one flavour or stops the build naming every path it tried.
fn find_tensorrt_include(flavour: &Flavour, cache_include: Option<&Path>) -> PathBuf {
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    for var in flavour.include_vars {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(dir) = env::var_os(var).filter(|v| !v.is_empty()) {
            candidates.push((format!("${var}"), PathBuf::from(dir)));
        }
    }
    for var in flavour.root_vars {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(root) = env::var_os(var).filter(|v| !v.is_empty()) {
            candidates.push((
                format!("${var}/include"),
                PathBuf::from(root).join("include"),
            ));
        }
    }
    if let Some(cache) = cache_include {
        candidates.push(("default cache".to_owned(), cache.join(flavour.cache_subdir)));
    }
    for (_, dir) in &candidates {
        let version = dir.join("NvInferVersion.h");
        let Ok(text) = std::fs::read_to_string(&version) else {
            continue;
        };
        // A directory of the other flavour would compile but describe the wrong library.
        if text.contains(flavour.marker_macro) && dir.join("NvOnnxParser.h").is_file() {
            println!("cargo:rerun-if-changed={}", dir.display());
            return dir.clone();
        }
    }
    let tried: Vec<String> = candidates
        .iter()
        .map(|(from, dir)| format!("  {} ({from})", dir.display()))
        .collect();
    panic!(
        "TensorRT headers for the `{}` shim not found (need NvInferVersion.h defining {} and \
         NvOnnxParser.h). Tried:\n{}\nrun scripts/setup or set TENSORRT_INCLUDE_DIR \
         (Enterprise) / TENSORRT_RTX_INCLUDE_DIR (RTX)",
        flavour.name,
        flavour.marker_macro,
        if tried.is_empty() {
            "  (no candidate: HOME and XDG_CACHE_HOME unset)".to_owned()
        } else {
            tried.join("\n")
        }
    );
}

/// A CUDA include directory complete enough to compile cuda_runtime_api.h, if any.
fn find_cuda_include(cache_include: Option<&Path>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = env::var_os("TRTFARM_CUDA_INCLUDE_DIR").filter(|v| !v.is_empty()) {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(home) = env::var_os("CUDA_HOME").filter(|v| !v.is_empty()) {
        candidates.push(PathBuf::from(home).join("include"));
    }
    if let Some(cache) = cache_include {
        candidates.push(cache.join("cuda"));
    }
    // The PyPI runtime wheel lacks crt/host_defines.h; such a directory cannot be compiled.
    candidates.into_iter().find(|dir| {
        dir.join("cuda_runtime_api.h").is_file() && dir.join("crt/host_defines.h").is_file()
    })
}

/// "major.minor.patch.build" from NvInferVersion.h.
fn header_version(include: &Path, flavour: &Flavour) -> String {
    let text = std::fs::read_to_string(include.join("NvInferVersion.h"))
        .expect("NvInferVersion.h was readable a moment ago");
    let suffix = flavour
        .marker_macro
        .strip_prefix("TRT_MAJOR")
        .expect("marker is TRT_MAJOR_*");
    let field = |name: &str| -> String {
        let macro_name = format!("TRT_{name}{suffix}");
        text.lines()
            .filter_map(|line| line.trim().strip_prefix("#define "))
            .find_map(|rest| {
                let mut parts = rest.split_whitespace();
                (parts.next() == Some(macro_name.as_str()))
                    .then(|| parts.next().unwrap_or("0").to_owned())
            })
            .unwrap_or_else(|| "0".to_owned())
    };
    format!(
        "{}.{}.{}.{}",
        field("MAJOR"),
        field("MINOR"),
        field("PATCH"),
        field("BUILD")
    )
}

fn generate_bindings(shim_dir: &Path, out_dir: &Path) {
    let bindings = bindgen::Builder::default()
        .header(shim_dir.join("trtfarm_shim.h").display().to_string())
        .allowlist_function("trtfarm_.*")
        .allowlist_type("trtfarm_.*")
        .allowlist_var("TRTFARM_.*")
        // Calls go through the dlopen'ed shim, never through link-time symbols.
        .dynamic_library_name("ShimLibrary")
        .dynamic_link_require_all(true)
        .layout_tests(false)
        .derive_default(true)
        .generate()
        .expect("bindgen over trtfarm_shim.h (needs libclang: run scripts/setup)");
    bindings
        .write_to_file(out_dir.join("shim_bindings.rs"))
        .expect("write shim_bindings.rs");
}
