//! `trtfarm watch` as a person runs it, on the private local daemon of a private home: it
//! starts the daemon again when it died between changes, Ctrl-C cancels the build it follows,
//! and putting an earlier model back is noticed even when the change between broke the manifest.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use integration::cli::{LocalDaemons, run, trtfarm, wait_for_local_build};
use integration::models::{deep_cnn, images_manifest, slow_project};

/// Longest a test waits for watch to say something (a hang guard, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(240);

/// A running `trtfarm watch` and every line it printed, stdout and stderr together.
struct Watching {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watching {
    /// `trtfarm watch` in `project`, on the local daemon of `home`'s `daemon` directory.
    fn start(home: &Path, project: &Path) -> Watching {
        let mut child = trtfarm(home)
            .current_dir(project)
            .args(["watch", "--debounce-ms", "200", "--daemon-dir"])
            .arg(home.join("daemon"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trtfarm watch");
        let (sender, lines) = mpsc::channel();
        forward(child.stdout.take().unwrap(), sender.clone());
        forward(child.stderr.take().unwrap(), sender);
        Watching {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until `count(needle) >= times`; panics with what was seen after
    /// [`PATIENCE`].
    fn wait_for(&mut self, needle: &str, times: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.count(needle) < times {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "watch never printed `{needle}` {times} times; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    fn said(&self) -> String {
        self.seen.join("\n")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for watch to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "watch did not exit: {}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(stream: impl Read + Send + 'static, sender: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
}

/// A small project (builds in well under a second): `deep.onnx` of `seed` and its manifest.
fn small_project(dir: &Path, engines: &[(&str, u8)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    deep_cnn(dir, 1, 8, 32, 1);
    let manifest = dir.join("engine.toml");
    std::fs::write(&manifest, images_manifest("deep.onnx", 32, engines)).unwrap();
    manifest
}

/// The engine digest `engine.lock` records for `name`.
fn locked(manifest: &Path, name: &str) -> Option<String> {
    let lock = trtfarm::lock::read_lock(manifest).ok()??;
    Some(lock.engine(name)?.engine.to_string())
}

#[test]
fn watch_starts_its_stopped_local_daemon_again_at_the_next_change() {
    let home = tempfile::tempdir().unwrap();
    let _cleanup = LocalDaemons::new(&home.path().join("daemon"));
    let project = home.path().join("project");
    let manifest = small_project(&project, &[("fp32", 3)]);
    let mut watch = Watching::start(home.path(), &project);
    watch.wait_for("watching 1 manifest —", 1);
    assert!(locked(&manifest, "fp32").is_some(), "{}", watch.said());
    assert_eq!(
        watch.count("started the local daemon"),
        1,
        "{}",
        watch.said()
    );

    // The daemon is stopped between two changes (its socket and info file go with it).
    run(trtfarm(home.path())
        .args(["daemon", "stop", "--daemon-dir"])
        .arg(home.path().join("daemon")))
    .expect_code(0, "daemon stop");
    std::fs::write(
        &manifest,
        images_manifest("deep.onnx", 32, &[("fp32", 3), ("second", 2)]),
    )
    .unwrap();
    watch.wait_for("watching 1 manifest —", 2);
    let said = watch.said();
    assert_eq!(watch.count("started the local daemon"), 2, "{said}");
    assert_eq!(watch.count("changed: engine.toml"), 1, "{said}");
    assert!(
        locked(&manifest, "second").is_some(),
        "no new engine:\n{said}"
    );
    assert!(!said.contains("transport error"), "{said}");
    assert!(!said.contains("watching 1 manifests"), "{said}");
}

#[test]
fn ctrl_c_during_a_build_cancels_its_job_and_says_so() {
    let home = tempfile::tempdir().unwrap();
    let daemon_dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&daemon_dir);
    let project = home.path().join("project");
    slow_project(&project, 5);
    let mut watch = Watching::start(home.path(), &project);

    // Ctrl-C as soon as the daemon's builder runs.
    wait_for_local_build(&daemon_dir, PATIENCE);
    watch.signal(libc::SIGINT);
    assert_eq!(watch.exit_code(), Some(130), "{}", watch.said());
    let said = watch.said();
    let line = (watch.seen.iter())
        .find(|l| l.starts_with("cancelled job ") && l.ends_with("(engine.toml#slow)"))
        .unwrap_or_else(|| panic!("no cancellation said:\n{said}"));
    let job = line["cancelled job ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let status = run(trtfarm(home.path())
        .args(["status", &job, "--daemon-dir"])
        .arg(&daemon_dir))
    .expect_code(0, "status");
    assert!(status.stdout.contains("cancelled"), "{status:#?}");
}

#[test]
fn putting_the_first_model_back_after_a_broken_one_builds_it_again() {
    let home = tempfile::tempdir().unwrap();
    let _cleanup = LocalDaemons::new(&home.path().join("daemon"));
    let project = home.path().join("project");
    let manifest = small_project(&project, &[("fp32", 3)]);
    let model = project.join("deep.onnx");
    let backup = home.path().join("first.onnx");
    let cp_p = |from: &Path, to: &Path| {
        let status = std::process::Command::new("cp")
            .arg("-p")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    };
    cp_p(&model, &backup);
    let mut watch = Watching::start(home.path(), &project);
    watch.wait_for("watching 1 manifest —", 1);
    let first = locked(&manifest, "fp32").expect("a first engine");

    // Other weights: another engine.
    deep_cnn(&project, 1, 8, 32, 2);
    watch.wait_for("watching 1 manifest —", 2);
    let second = locked(&manifest, "fp32").expect("a second engine");
    assert_ne!(first, second, "{}", watch.said());

    // A broken model: the manifest no longer validates, nothing is built.
    std::fs::write(&model, b"half a download").unwrap();
    watch.wait_for("watching 1 manifest —", 3);
    assert_eq!(locked(&manifest, "fp32"), Some(second.clone()));

    // The first model put back, size and mtime included: noticed, valid again, and the lock
    // is back on the first engine.
    cp_p(&backup, &model);
    watch.wait_for("watching 1 manifest —", 4);
    let said = watch.said();
    assert_eq!(watch.count("the manifest is valid again"), 1, "{said}");
    assert_eq!(locked(&manifest, "fp32"), Some(first), "{said}");
}
