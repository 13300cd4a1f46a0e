//! Helpers shared by the integration tests: locating the workspace's binaries and preparing
//! private copies of the examples.

pub mod bench;
pub mod cli;
pub mod cpu_load;
pub mod daemon;
pub mod determinism;
pub mod farm;
pub mod hostile_models;
pub mod models;
pub mod other_user;
pub mod postgres;
pub mod real_models;
pub mod servers;
pub mod tls;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ lives inside the repository")
        .to_path_buf()
}

/// The path of a workspace binary (`trtfarm`, `trtfarmd`) built by the same `cargo test` run.
///
/// Panics with instructions when it is missing: `cargo test -p integration` alone does not
/// build other packages' binaries, `cargo test --workspace` does.
pub fn binary(name: &str) -> PathBuf {
    // The test executable lives in target/<profile>/deps/; binaries one level up.
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build --bin {name}` first)",
        path.display()
    );
    path
}

/// A private copy of `examples/manifests/` (manifests and READMEs) with freshly generated
/// models, so tests never depend on what a previous run left in the working tree.
pub fn examples_copy() -> tempfile::TempDir {
    let source = repo_root().join("examples/manifests");
    let copy = tempfile::tempdir().expect("create a temporary directory");
    for entry in walkdir::WalkDir::new(&source) {
        let entry = entry.expect("walk examples/manifests");
        let relative = entry
            .path()
            .strip_prefix(&source)
            .expect("walkdir yields paths under its root");
        let target = copy.path().join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("create example directory");
        } else if is_source_file(entry.path()) {
            std::fs::copy(entry.path(), &target).expect("copy example file");
        }
    }
    onnx_graph::example_models::write_examples(copy.path()).expect("generate example models");
    copy
}

/// Manifests and documentation: what the repository holds, not what a run generated.
fn is_source_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("toml" | "md")
    )
}

/// Writes `size` bytes of blake3 XOF output to `path`: incompressible, fast to make, the same
/// bytes every time.
pub fn write_pseudo_random(path: &Path, size: u64) {
    use std::io::{Read, Write};
    let mut reader = blake3::Hasher::new()
        .update(b"trtfarm bench")
        .finalize_xof();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buffer = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        reader.read_exact(&mut buffer[..n]).unwrap();
        file.write_all(&buffer[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}
