//! `scripts/ci-engines`, the CI recipe of docs/ci.md, run as a CI job runs it against a real
//! daemon (TensorRT-RTX builds): with no engine.lock it fails; with a fresh lock it passes and
//! leaves the locked engines and a JSON report to publish, and the digest cache where the job
//! keeps it; new weights for the model make it fail with the lock's diff, building nothing and
//! leaving the lock as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration::cli::{Ran, run, trtfarm, user_environment};
use integration::daemon::Daemon;
use integration::models::{deep_cnn, images_manifest};

const BUILDS: &str = "trtfarm_builds_started_total";

/// A repository with one manifest (`models/ranker/engine.toml`, engine `fp32`), a daemon, and
/// a home for the client's caches.
struct Repository {
    root: tempfile::TempDir,
    daemon: Daemon,
    _daemon_root: tempfile::TempDir,
}

impl Repository {
    fn new() -> Repository {
        let root = tempfile::tempdir().unwrap();
        let models = root.path().join("repo/models/ranker");
        std::fs::create_dir_all(&models).unwrap();
        deep_cnn(&models, 2, 8, 16, 1);
        std::fs::write(
            models.join("engine.toml"),
            images_manifest("deep.onnx", 16, &[("fp32", 3)]),
        )
        .unwrap();
        let daemon_root = tempfile::tempdir().unwrap();
        Repository {
            daemon: Daemon::start(daemon_root.path(), &[]),
            _daemon_root: daemon_root,
            root,
        }
    }

    fn checkout(&self) -> PathBuf {
        self.root.path().join("repo")
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// `trtfarm submit` as a developer runs it before committing.
    fn submit(&self) {
        run(trtfarm(&self.home()).current_dir(self.checkout()).args([
            "--daemon",
            &self.daemon.endpoint,
            "submit",
        ]))
        .expect_code(0, "trtfarm submit");
    }

    /// The CI job's step: `scripts/ci-engines engines`.
    fn ci(&self) -> Ran {
        let script = integration::repo_root().join("scripts/ci-engines");
        let mut command = Command::new(script);
        user_environment(&mut command, &self.home());
        command
            .current_dir(self.checkout())
            .env("TRTFARM", integration::binary("trtfarm"))
            .env("TRTFARM_DAEMON", &self.daemon.endpoint)
            .env_remove("TRTFARM_DIGEST_CACHE")
            .env_remove("TRTFARM_CI_CACHE_DIR")
            .arg("engines");
        run(&mut command)
    }

    fn manifest(&self) -> PathBuf {
        self.checkout().join("models/ranker/engine.toml")
    }
}

fn digest(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("blake3:{}/{}", blake3::hash(&bytes).to_hex(), bytes.len())
}

#[test]
fn ci_engines_passes_on_a_fresh_lock_and_fails_on_drift_building_nothing() {
    let repo = Repository::new();

    let unlocked = repo.ci().expect_code(1, "ci-engines without engine.lock");
    assert!(
        unlocked.stderr.contains("engines differ from engine.lock"),
        "{unlocked:#?}"
    );
    assert_eq!(repo.daemon.metric(BUILDS), 0.0, "nothing built unlocked");

    repo.submit();
    let lock_path = repo.checkout().join("models/ranker/engine.lock");
    let lock_text = std::fs::read_to_string(&lock_path).unwrap();
    let locked = trtfarm::lock::read_lock(&repo.manifest())
        .unwrap()
        .unwrap()
        .engine("fp32")
        .unwrap()
        .engine
        .to_string();

    let passed = repo.ci().expect_code(0, "ci-engines on a fresh lock");
    assert!(
        passed.stderr.contains("every engine matches engine.lock"),
        "{passed:#?}"
    );
    let published = repo.checkout().join("engines/models/ranker/fp32.engine");
    assert_eq!(
        digest(&published),
        locked,
        "the published engine is the locked one"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.checkout().join("engines/report.json")).unwrap(),
    )
    .expect("report.json is JSON");
    assert!(
        report.to_string().contains(&locked),
        "the report names the engine: {report}"
    );
    assert!(
        repo.checkout()
            .join(".trtfarm-cache/digests.redb")
            .is_file(),
        "the digest cache is where the job keeps it"
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), lock_text);

    // New weights, committed without running `trtfarm submit`: drift.
    let builds = repo.daemon.metric(BUILDS);
    deep_cnn(&repo.checkout().join("models/ranker"), 2, 8, 16, 2);
    let drifted = repo.ci().expect_code(1, "ci-engines after new weights");
    assert!(drifted.stderr.contains("action_key"), "{drifted:#?}");
    assert!(
        drifted.stderr.contains("engines differ from engine.lock"),
        "{drifted:#?}"
    );
    assert_eq!(repo.daemon.metric(BUILDS), builds, "drift builds nothing");
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        lock_text,
        "the lock is left as committed"
    );
    assert_eq!(
        digest(&published),
        locked,
        "the published engine is untouched"
    );
}
