//! The CMake module (`cmake/TrtfarmEngines.cmake`, through `find_package(trtfarm)`) in a real
//! CMake project, `integration/cmake-sample/`, built by Debian's `cmake` with Ninja and with
//! Make against a real daemon (TensorRT-RTX builds): the first build produces the engines the
//! lock names; a second does nothing; new weights for one model rebuild exactly that model's
//! engines and the steps downstream of them; a new or touched unrelated file rebuilds nothing;
//! a touched model runs `trtfarm submit` again without rewriting its engine, so nothing
//! downstream runs. The copy lives under a directory whose name has a space, which the
//! dependency file must escape.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use integration::cli::{Ran, run, user_environment};
use integration::daemon::Daemon;
use integration::models::deep_cnn;

const BUILDS: &str = "trtfarm_builds_started_total";

/// What a model of the sample is: a small CNN, `images [N, 3, 16, 16]`, weights from `seed`.
fn write_model(manifest_dir: &Path, seed: u64) {
    deep_cnn(manifest_dir, 2, 8, 16, seed);
}

/// A copy of the sample project with its models, a daemon, and a home for the client's caches.
struct Sample {
    root: tempfile::TempDir,
    daemon: Daemon,
    _daemon_root: tempfile::TempDir,
}

impl Sample {
    fn new() -> Sample {
        for tool in ["cmake", "ninja", "make"] {
            assert!(
                Command::new(tool).arg("--version").output().is_ok(),
                "`{tool}` is not installed: run scripts/setup (it installs cmake and ninja-build)"
            );
        }
        let root = tempfile::tempdir().unwrap();
        let source = root.path().join("sample project");
        let sample = integration::repo_root().join("integration/cmake-sample");
        for entry in walkdir::WalkDir::new(&sample) {
            let entry = entry.unwrap();
            let target = source.join(entry.path().strip_prefix(&sample).unwrap());
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
        write_model(&source.join("models/classifier"), 1);
        write_model(&source.join("models/ranker"), 2);
        let daemon_root = tempfile::tempdir().unwrap();
        Sample {
            daemon: Daemon::start(daemon_root.path(), &[]),
            _daemon_root: daemon_root,
            root,
        }
    }

    fn source(&self) -> PathBuf {
        self.root.path().join("sample project")
    }

    fn manifest(&self, model: &str) -> PathBuf {
        self.source().join("models").join(model).join("engine.toml")
    }

    /// `program` as a build tool runs in CI: the client's caches under the test's home, the
    /// test's daemon, and the workspace's binaries on PATH.
    fn tool(&self, program: &str, args: &[&str]) -> Ran {
        let mut command = Command::new(program);
        user_environment(&mut command, &self.root.path().join("home"));
        let bin = integration::binary("trtfarm");
        let path =
            std::env::join_paths(std::iter::once(bin.parent().unwrap().to_path_buf()).chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ))
            .unwrap();
        command
            .env("TRTFARM_DAEMON", &self.daemon.endpoint)
            .env("PATH", path)
            .current_dir(self.root.path())
            .args(args);
        run(&mut command)
    }

    fn configure(&self, build: &str, generator: &str, extra: &[&str]) -> PathBuf {
        let source = self.source();
        let config_dir = integration::repo_root().join("cmake");
        let mut args = vec![
            "-S".to_string(),
            source.display().to_string(),
            "-B".to_string(),
            build.to_string(),
            "-G".to_string(),
            generator.to_string(),
            format!("-Dtrtfarm_DIR={}", config_dir.display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("cmake", &args)
            .expect_code(0, &format!("cmake -G {generator}"));
        self.root.path().join(build)
    }

    fn builds(&self) -> f64 {
        self.daemon.metric(BUILDS)
    }

    /// Panics unless `file` holds the engine `engine.lock` records for `model`'s `engine`;
    /// returns that digest.
    fn assert_locked(&self, file: &Path, model: &str, engine: &str) -> String {
        let lock = trtfarm::lock::read_lock(&self.manifest(model))
            .unwrap()
            .expect("engine.lock beside the manifest");
        let locked = lock.engine(engine).expect("the engine is locked").engine;
        assert_eq!(digest(file), locked.to_string(), "{}", file.display());
        locked.to_string()
    }
}

fn digest(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("blake3:{}/{}", blake3::hash(&bytes).to_hex(), bytes.len())
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn assert_no_work(sample: &Sample, build: &Path, after: &str) {
    let dry = sample.tool("ninja", &["-C", &build.display().to_string(), "-n"]);
    assert!(
        dry.code == 0 && dry.stdout.contains("ninja: no work to do."),
        "after {after}, `ninja -n` has work: {dry:#?}"
    );
}

#[test]
fn ninja_builds_engines_once_and_again_only_for_the_model_that_changed() {
    let sample = Sample::new();
    let trtfarm = integration::binary("trtfarm");
    let build = sample.configure(
        "build ninja",
        "Ninja",
        &[&format!("-DTRTFARM_EXECUTABLE={}", trtfarm.display())],
    );
    // Both submits run in the `trtfarm` job pool, two at a time by default.
    let rules = std::fs::read_to_string(build.join("CMakeFiles/rules.ninja")).unwrap();
    assert!(rules.contains("pool trtfarm\n  depth = 2"), "{rules}");
    let edges = std::fs::read_to_string(build.join("build.ninja")).unwrap();
    assert_eq!(edges.matches("pool = trtfarm").count(), 2, "{edges}");
    let ninja = |what: &str| {
        sample
            .tool("ninja", &["-C", &build.display().to_string()])
            .expect_code(0, what)
    };
    let classifier = build.join("classifier/fp32.engine");
    let classifier_o1 = build.join("classifier/fp32-o1.engine");
    let ranker = build.join("engines/ranker/fp32.engine");
    let packaged_classifier = build.join("package/classifier.engine");
    let packaged_ranker = build.join("package/ranker.engine");

    let first = ninja("first build");
    assert_eq!(sample.builds(), 3.0, "three engines built: {first:#?}");
    let old_classifier = sample.assert_locked(&classifier, "classifier", "fp32");
    sample.assert_locked(&classifier_o1, "classifier", "fp32-o1");
    let ranker_digest = sample.assert_locked(&ranker, "ranker", "fp32");
    assert_eq!(digest(&packaged_classifier), old_classifier);
    assert_eq!(digest(&packaged_ranker), ranker_digest);
    assert_no_work(&sample, &build, "the first build");

    // New weights for the classifier: its two engines and their package step, nothing else.
    let ranker_time = modified(&ranker);
    let packaged_ranker_time = modified(&packaged_ranker);
    write_model(&sample.source().join("models/classifier"), 7);
    let second = ninja("build after new classifier weights");
    assert!(
        second
            .stdout
            .contains("trtfarm: classifier: engines fp32, fp32-o1"),
        "{second:#?}"
    );
    assert!(!second.stdout.contains("trtfarm: ranker"), "{second:#?}");
    assert!(
        !second.stdout.contains("package ranker.engine"),
        "{second:#?}"
    );
    assert_eq!(sample.builds(), 5.0, "exactly the classifier's two engines");
    let new_classifier = sample.assert_locked(&classifier, "classifier", "fp32");
    assert_ne!(new_classifier, old_classifier, "new weights, new engine");
    sample.assert_locked(&classifier_o1, "classifier", "fp32-o1");
    assert_eq!(digest(&packaged_classifier), new_classifier);
    assert_eq!(
        modified(&ranker),
        ranker_time,
        "the ranker's engine is untouched"
    );
    assert_eq!(modified(&packaged_ranker), packaged_ranker_time);
    assert_no_work(&sample, &build, "the rebuild");

    // Files no engine reads: a new one beside the model, an existing one rewritten.
    std::fs::write(sample.source().join("models/ranker/NOTES.md"), "notes\n").unwrap();
    std::fs::write(
        sample.source().join("models/classifier/README.md"),
        "# classifier\n",
    )
    .unwrap();
    assert_no_work(&sample, &build, "unrelated files changed");

    // The ranker's model touched, its bytes the same: `trtfarm submit` runs (a cache hit) but
    // rewrites no engine, so the package step does not run, and Ninja remembers that it ran.
    let model = sample.source().join("models/ranker/deep.onnx");
    std::fs::File::options()
        .write(true)
        .open(&model)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    let touched = ninja("build after touching a model");
    assert!(touched.stdout.contains("trtfarm: ranker"), "{touched:#?}");
    assert!(
        !touched.stdout.contains("package ranker.engine"),
        "{touched:#?}"
    );
    assert_eq!(sample.builds(), 5.0, "a touched model is no new build");
    assert_eq!(
        modified(&ranker),
        ranker_time,
        "the engine is not rewritten"
    );
    assert_no_work(&sample, &build, "the touched model's submit");

    // The Makefile generator, on the same daemon: the engines come from the cache, and a
    // second `make` runs nothing. `trtfarm` is found on PATH this time.
    let make_build = sample.configure("build make", "Unix Makefiles", &[]);
    let make = |what: &str| {
        sample
            .tool("make", &["-C", &make_build.display().to_string()])
            .expect_code(0, what)
    };
    let first_make = make("first make");
    assert!(
        first_make.stdout.contains("trtfarm: ranker"),
        "{first_make:#?}"
    );
    assert_eq!(sample.builds(), 5.0, "the engines were built already");
    sample.assert_locked(
        &make_build.join("engines/ranker/fp32.engine"),
        "ranker",
        "fp32",
    );
    sample.assert_locked(
        &make_build.join("classifier/fp32-o1.engine"),
        "classifier",
        "fp32-o1",
    );
    let second_make = make("second make");
    assert!(
        !second_make.stdout.contains("trtfarm:") && !second_make.stdout.contains("package "),
        "a second make runs nothing: {second_make:#?}"
    );
}

#[test]
fn configuring_stops_with_trtfarms_diagnostics_when_the_manifest_does_not_check() {
    let dir = tempfile::tempdir().unwrap();
    let module_dir = integration::repo_root().join("cmake");
    // include() through CMAKE_MODULE_PATH this time, and no ENGINES: they are listed by
    // `trtfarm check --json`, which fails on the misspelled key.
    std::fs::write(
        dir.path().join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.20)\nproject(broken NONE)\n\
             list(APPEND CMAKE_MODULE_PATH \"{}\")\ninclude(TrtfarmEngines)\n\
             trtfarm_add_engines(broken MANIFEST engine.toml)\n",
            module_dir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("engine.toml"),
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
         toolchain = \"tensorrt-rtx 1.7\"\nprecison = \"fp16\"\n",
    )
    .unwrap();
    let mut command = Command::new("cmake");
    user_environment(&mut command, &dir.path().join("home"));
    command
        .current_dir(dir.path())
        .args(["-S", ".", "-B", "build", "-G", "Ninja"])
        .arg(format!(
            "-DTRTFARM_EXECUTABLE={}",
            integration::binary("trtfarm").display()
        ));
    let configured = run(&mut command);
    assert_ne!(configured.code, 0, "{configured:#?}");
    assert!(
        configured.stderr.contains("does not check")
            && configured.stderr.contains("unknown key `precison`"),
        "{configured:#?}"
    );
}

#[test]
fn no_depfile_is_written_when_nothing_was_built() {
    let dir = tempfile::tempdir().unwrap();
    deep_cnn(dir.path(), 1, 4, 16, 1);
    std::fs::write(
        dir.path().join("engine.toml"),
        integration::models::images_manifest("deep.onnx", 16, &[("fp32", 3)]),
    )
    .unwrap();
    // A daemon address where nothing listens: the build tool must see a failure and no
    // dependency file claiming an engine that was never written.
    let refused = run(integration::cli::trtfarm(&dir.path().join("home"))
        .current_dir(dir.path())
        .args([
            "--daemon",
            "http://127.0.0.1:9",
            "submit",
            "--depfile",
            "e.d",
        ]));
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(
        refused
            .stderr
            .contains("cannot reach the daemon at http://127.0.0.1:9")
            && refused
                .stderr
                .contains("hint: is `trtfarmd serve` running there"),
        "{refused:#?}"
    );
    assert!(!refused.stderr.contains("tonic"), "{refused:#?}");
    assert!(!dir.path().join("e.d").exists());
}
