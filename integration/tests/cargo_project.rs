//! A Cargo project whose build script uses `trtfarm-build` (integration/cargo-sample), built by
//! the real `cargo` with our `trtfarm` on PATH against a real daemon (TensorRT-RTX builds on
//! the CPU): the engine is built and locked, the binary finds it through
//! `TRTFARM_ENGINE_FP32` with the locked digest, a second `cargo build` does not run the build
//! script, a locked build needs no daemon when the engine is already in OUT_DIR, a build
//! that cannot reach a daemon says what to do, and a docs.rs build needs neither.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration::cli::{Ran, run, user_environment};
use integration::daemon::Daemon;
use trtfarm_types::BlobDigest;
use trtfarm_types::lock::Lock;

/// How cargo shows that it runs a build script (`-v`); compiling one reads
/// `--crate-name build_script_build` instead.
const BUILD_SCRIPT_RUNS: &str = "build-script-build`";

/// The sample project copied to `dir`, its `trtfarm-build` dependency pointing at this
/// repository's crate, with the example model written beside its manifest and this
/// workspace's lock file (so an offline build resolves to crates already downloaded).
fn copy_sample(dir: &Path) {
    let sample = integration::repo_root().join("integration/cargo-sample");
    for file in [
        "Cargo.toml",
        "build.rs",
        "src/main.rs",
        "models/engine.toml",
    ] {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(sample.join(file), &to).unwrap();
    }
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let crate_dir = integration::repo_root().join("cargo-build");
    let relative = "path = \"../../cargo-build\"";
    assert!(text.contains(relative), "{text}");
    let absolute = format!("path = \"{}\"", crate_dir.display());
    std::fs::write(&manifest, text.replace(relative, &absolute)).unwrap();
    std::fs::copy(
        integration::repo_root().join("Cargo.lock"),
        dir.join("Cargo.lock"),
    )
    .unwrap();
    onnx_graph::write_model(
        &onnx_graph::example_models::ranker(),
        &dir.join("models/ranker.onnx"),
    )
    .unwrap();
}

/// `cargo build --offline -v` of `project`, with our binaries first on PATH, a target
/// directory of its own, the CLI's caches under `home` and `daemon` as the farm; `env` on top.
fn cargo_build(project: &Path, home: &Path, daemon: &str, env: &[(&str, &str)]) -> Ran {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let bin_dir = integration::binary("trtfarm")
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut command = Command::new(cargo);
    user_environment(&mut command, home);
    for variable in ["TRTFARM", "TRTFARM_LOCKED", "DOCS_RS", "CARGO_NET_OFFLINE"] {
        command.env_remove(variable);
    }
    command
        .args(["build", "--offline", "-v"])
        .current_dir(project)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env("TRTFARM_DAEMON", daemon)
        .envs(env.iter().copied());
    run(&mut command)
}

/// What the sample binary printed: `key: value` lines.
fn printed(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}:` in {stdout}"))
        .to_string()
}

#[test]
fn a_build_script_builds_its_engine_for_the_crate_and_runs_again_only_when_told() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&root.path().join("daemon"), &[]);
    let home = root.path().join("home");
    let project = root.path().join("sample");
    copy_sample(&project);

    let first = cargo_build(&project, &home, &daemon.endpoint, &[]).expect_code(0, "first build");
    assert!(first.stderr.contains(BUILD_SCRIPT_RUNS), "{first:#?}");
    let lock = Lock::read_file(&project.join("models/engine.lock"))
        .unwrap()
        .expect("the build script's submit wrote engine.lock");
    let locked: BlobDigest = lock.engine("fp32").expect("fp32 is locked").engine;

    let binary = project.join("target/debug/trtfarm-cargo-sample");
    let ran = run(&mut Command::new(&binary)).expect_code(0, "the sample binary");
    let engine_path = PathBuf::from(printed(&ran.stdout, "path"));
    assert!(
        engine_path.starts_with(project.join("target/debug/build"))
            && engine_path.ends_with("out/trtfarm/models/fp32.engine"),
        "the engine is under OUT_DIR: {}",
        engine_path.display()
    );
    assert_eq!(printed(&ran.stdout, "size"), locked.size.to_string());
    assert_eq!(printed(&ran.stdout, "blake3"), locked.hex(), "compiled in");
    assert_eq!(printed(&ran.stdout, "file blake3"), locked.hex(), "on disk");
    let mtime = std::fs::metadata(&engine_path).unwrap().modified().unwrap();

    let second = cargo_build(&project, &home, &daemon.endpoint, &[]).expect_code(0, "second build");
    assert!(
        !second.stderr.contains(BUILD_SCRIPT_RUNS),
        "nothing changed, yet the build script ran: {second:#?}"
    );
    assert!(
        second.stderr.contains("Fresh trtfarm-cargo-sample"),
        "{second:#?}"
    );

    // Locked, with no daemon to reach: the engine in OUT_DIR has the locked digest, so the
    // build script (run again: TRTFARM_LOCKED changed) needs nothing else and writes nothing.
    let nowhere = "http://127.0.0.1:1";
    let locked_build = cargo_build(&project, &home, nowhere, &[("TRTFARM_LOCKED", "1")])
        .expect_code(0, "locked build without a daemon");
    assert!(
        locked_build.stderr.contains(BUILD_SCRIPT_RUNS),
        "{locked_build:#?}"
    );
    assert_eq!(
        std::fs::metadata(&engine_path).unwrap().modified().unwrap(),
        mtime,
        "an engine already there with its digest is not written again"
    );

    // Building (not locked) with no daemon to reach fails and says what to do.
    let unreachable = cargo_build(&project, &home, nowhere, &[])
        .expect_code(101, "a build with no daemon to reach");
    for needle in [
        "could not reach a trtfarm daemon",
        "trtfarm daemon start",
        "TRTFARM_LOCKED=1",
    ] {
        assert!(unreachable.stderr.contains(needle), "{unreachable:#?}");
    }

    // docs.rs: no trtfarm to run and no daemon, yet the crate builds, with an empty placeholder
    // engine and a warning saying so.
    let docs = cargo_build(
        &project,
        &home,
        nowhere,
        &[("DOCS_RS", "1"), ("TRTFARM", "/nonexistent/trtfarm")],
    )
    .expect_code(0, "a docs.rs build");
    assert!(
        docs.stderr.contains("DOCS_RS is set: the engines of")
            && docs.stderr.contains("are empty placeholder files"),
        "{docs:#?}"
    );
    let ran = run(&mut Command::new(&binary)).expect_code(0, "the docs build's binary");
    assert_eq!(printed(&ran.stdout, "size"), "0", "{ran:#?}");
    assert_eq!(
        std::fs::metadata(&engine_path).unwrap().modified().unwrap(),
        mtime,
        "the placeholder is not where the real engine is"
    );
}
