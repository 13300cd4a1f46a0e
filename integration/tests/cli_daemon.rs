//! The real `trtfarm` binary against real daemons: finding, starting, reusing and stopping the
//! local daemon; fetch by digest (verified, atomic); status, logs, cancel and ls; completions
//! and man pages.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use integration::cli::{LocalDaemons, Ran, alive, run, serve_processes, trtfarm};
use integration::daemon::Daemon;
use integration::farm::{follow, job_of, request_for, succeeded};
use integration::models::{deep_cnn, images_manifest};
use trtfarm::lock::{LOCK_VERSION, Lock, LockedEngine, locked_toolchain, write_lock};
use trtfarm_proto::local::{DaemonInfo, INFO_FILE, ensure_private_dir, unix_endpoint};
use trtfarm_proto::v1;

/// `trtfarm ARGS --daemon-dir DIR` with its user directories under `home`.
fn local(home: &Path, dir: &Path, args: &[&str]) -> Ran {
    run(trtfarm(home).args(args).arg("--daemon-dir").arg(dir))
}

/// `trtfarm ARGS --daemon URL`.
fn remote(home: &Path, daemon: &Daemon, args: &[&str]) -> Ran {
    run(trtfarm(home)
        .args(args)
        .args(["--daemon", &daemon.endpoint]))
}

fn info(dir: &Path) -> DaemonInfo {
    DaemonInfo::read(dir)
        .expect("read the info file")
        .expect("an info file")
}

/// A pid that belonged to a process which has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn status_starts_nothing_and_commands_start_reuse_and_stop_one_daemon() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&dir);

    let ran = local(home.path(), &dir, &["daemon", "status"]).expect_code(1, "no daemon yet");
    assert!(
        ran.stderr.contains("no local daemon is running"),
        "{ran:#?}"
    );
    assert!(!dir.join(INFO_FILE).exists(), "status started nothing");
    assert!(serve_processes(&dir).is_empty(), "status started nothing");

    let ran = local(home.path(), &dir, &["ls"]).expect_code(0, "ls starts a daemon");
    assert!(ran.stdout.starts_with("ID"), "{ran:#?}");
    let first = info(&dir);
    assert!(alive(first.pid));
    assert_eq!(serve_processes(&dir), vec![first.pid]);

    local(home.path(), &dir, &["ls", "-n", "5"]).expect_code(0, "ls reuses it");
    let ran = local(home.path(), &dir, &["daemon", "start"]).expect_code(0, "start");
    assert!(ran.stdout.contains("already running"), "{ran:#?}");
    assert_eq!(
        info(&dir).pid,
        first.pid,
        "the same daemon answered every command"
    );
    assert_eq!(serve_processes(&dir), vec![first.pid]);

    let ran = local(home.path(), &dir, &["daemon", "status"]).expect_code(0, "status");
    assert!(
        ran.stdout.contains(&format!("pid         {}", first.pid)),
        "{ran:#?}"
    );
    assert!(ran.stdout.contains("tensorrt-rtx"), "{ran:#?}");
    let ran = local(home.path(), &dir, &["daemon", "status", "--json"]).expect_code(0, "json");
    let status: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(status["pid"], first.pid);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["store"]["kind"], "file");
    let store = status["store"]["url"].as_str().unwrap();
    assert!(
        store.ends_with(&format!("{}/cache/trtfarm/store", home.path().display())),
        "the started daemon keeps its default store under the user cache dir: {store}"
    );
    assert!(status["slots"][0]["slots"].as_u64().is_some(), "{status:#}");

    let ran = local(home.path(), &dir, &["daemon", "stop"]).expect_code(0, "stop");
    assert!(ran.stdout.contains("stopped"), "{ran:#?}");
    assert!(!alive(first.pid), "the daemon is gone");
    assert!(!dir.join(INFO_FILE).exists(), "its info file is gone");
    local(home.path(), &dir, &["daemon", "status"]).expect_code(1, "stopped");
    let ran = local(home.path(), &dir, &["daemon", "stop"]).expect_code(0, "stop again");
    assert!(ran.stdout.contains("no local daemon"), "{ran:#?}");
}

#[test]
fn clients_racing_on_an_empty_directory_start_one_daemon() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&dir);

    let racers: Vec<_> = (0..3)
        .map(|_| {
            let home = home.path().to_path_buf();
            let dir = dir.clone();
            std::thread::spawn(move || local(&home, &dir, &["ls"]))
        })
        .collect();
    for racer in racers {
        racer
            .join()
            .unwrap()
            .expect_code(0, "every racer gets a daemon");
    }
    let pid = info(&dir).pid;
    assert_eq!(serve_processes(&dir), vec![pid], "exactly one daemon");
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert_eq!(log.matches(" starts ").count(), 1, "one start: {log}");
    assert!(
        !log.contains('\x1b'),
        "no colour codes in a log file: {log}"
    );
}

#[test]
fn a_stale_info_file_gets_a_new_daemon_and_a_reused_pid_is_left_alone() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("daemon");
    ensure_private_dir(&dir).unwrap();
    let _cleanup = LocalDaemons::new(&dir);

    let dead = dead_pid();
    let stale = DaemonInfo {
        pid: dead,
        endpoint: "http://127.0.0.1:9".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    stale.write(&dir).unwrap();
    let ran = local(home.path(), &dir, &["daemon", "status"]).expect_code(1, "stale");
    assert!(ran.stderr.contains("which is gone"), "{ran:#?}");
    local(home.path(), &dir, &["ls"]).expect_code(0, "a new daemon");
    let fresh = info(&dir);
    assert_ne!(fresh.pid, dead);
    assert!(alive(fresh.pid));
    local(home.path(), &dir, &["daemon", "stop"]).expect_code(0, "stop");

    // A live process that is no trtfarmd (this test) holds the pid now: never signalled.
    DaemonInfo {
        pid: std::process::id(),
        ..stale
    }
    .write(&dir)
    .unwrap();
    local(home.path(), &dir, &["ls"]).expect_code(0, "a new daemon again");
    let fresh = info(&dir);
    assert_ne!(fresh.pid, std::process::id());
    assert_eq!(serve_processes(&dir), vec![fresh.pid]);
}

#[test]
fn a_daemon_that_does_not_answer_is_stopped_and_replaced() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("daemon");
    ensure_private_dir(&dir).unwrap();
    let _cleanup = LocalDaemons::new(&dir);
    // A live trtfarmd whose info file names a socket nobody answers on: the restart path
    // (SIGTERM, wait, start ours) that a version mismatch also takes.
    let hung = Daemon::start(&home.path().join("hung"), &[]);
    DaemonInfo {
        pid: hung.pid(),
        endpoint: unix_endpoint(&dir.join("nobody-answers.sock")),
        version: env!("CARGO_PKG_VERSION").into(),
    }
    .write(&dir)
    .unwrap();
    let ran = local(home.path(), &dir, &["ls"]).expect_code(0, "replaced");
    assert!(ran.stderr.contains("does not answer"), "{ran:#?}");
    assert!(!alive(hung.pid()), "the silent daemon was stopped");
    let fresh = info(&dir);
    assert_ne!(fresh.pid, hung.pid());
    assert_eq!(serve_processes(&dir), vec![fresh.pid]);
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_and_logs_are_verified_and_a_corrupt_blob_leaves_no_file() {
    let examples = integration::examples_copy();
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let manifest = examples.path().join("cnn-dynamic-batch/engine.toml");
    let request = request_for(&mut client, &manifest, "fp32").await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());
    let result = succeeded(&follow(&mut client, job.id).await);
    let engine = result.engine.clone().unwrap();
    let text = format!("blake3:{}/{}", engine.blake3, engine.size_bytes);
    let stored = daemon
        .store_dir
        .join("cas/blake3")
        .join(&engine.blake3[..2])
        .join(&engine.blake3);

    // The token is sent; this daemon does not check it yet.
    let out = root.path().join("out/model.engine");
    let args = [
        "fetch",
        &text,
        "-o",
        out.to_str().unwrap(),
        "--token",
        "t0k3n",
    ];
    remote(&home, &daemon, &args).expect_code(0, "fetch");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&stored).unwrap()
    );
    // Without -o the file is named by its hex, in the working directory.
    let cwd = root.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut fetch = trtfarm(&home);
    fetch
        .current_dir(&cwd)
        .args(["fetch", &text, "--daemon", &daemon.endpoint]);
    run(&mut fetch).expect_code(0, "fetch to the default name");
    assert_eq!(
        std::fs::read(cwd.join(&engine.blake3)).unwrap().len() as u64,
        engine.size_bytes
    );

    // MANIFEST#ENGINE: the digest from engine.lock, written to the engine's `output`.
    let lock = Lock {
        version: LOCK_VERSION,
        engines: vec![LockedEngine {
            name: "fp32".into(),
            toolchain: locked_toolchain(result.toolchain.as_ref().unwrap()).unwrap(),
            target: "sm86,sm89".into(),
            timing_cache: None,
            action_key: result.action_key.parse().unwrap(),
            engine: text.parse().unwrap(),
            inputs: Default::default(),
            settings: Default::default(),
        }],
    };
    write_lock(&lock, &manifest).unwrap();
    let wanted = format!("{}#fp32", manifest.display());
    remote(&home, &daemon, &["fetch", &wanted]).expect_code(0, "fetch MANIFEST#ENGINE");
    let output = manifest.with_file_name("build/classifier.fp32.engine");
    assert_eq!(
        std::fs::read(&output).unwrap(),
        std::fs::read(&stored).unwrap()
    );
    let wanted = format!("{}#int8", manifest.display());
    let ran = remote(&home, &daemon, &["fetch", &wanted]).expect_code(2, "not locked");
    assert!(
        ran.stderr.contains("no engine `int8` (it has: fp32)"),
        "{ran:#?}"
    );

    // status, ls and logs of the finished job.
    let id = job.id.to_string();
    let ran = remote(&home, &daemon, &["status", &id]).expect_code(0, "status");
    assert!(
        ran.stdout.contains("succeeded") && ran.stdout.contains(&text),
        "{ran:#?}"
    );
    let ran = remote(&home, &daemon, &["ls"]).expect_code(0, "ls");
    assert!(ran.stdout.contains(&text), "{ran:#?}");
    let ran = remote(&home, &daemon, &["logs", &id]).expect_code(0, "logs");
    let log = result.build_log.clone().unwrap();
    let log_path = daemon
        .store_dir
        .join("cas/blake3")
        .join(&log.blake3[..2])
        .join(&log.blake3);
    assert_eq!(ran.stdout, std::fs::read_to_string(log_path).unwrap());

    // A byte flipped in the store: refused with the daemon (corrupt data), nothing written.
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let refused_dir = root.path().join("refused");
    let refused = refused_dir.join("model.engine");
    let args = ["fetch", &text, "-o", refused.to_str().unwrap()];
    let ran = remote(&home, &daemon, &args).expect_code(2, "a corrupt blob");
    assert!(ran.stderr.contains("corrupt data: "), "{ran:#?}");
    assert_eq!(ran.stderr.trim().lines().count(), 1, "one line: {ran:#?}");
    assert!(!refused.exists(), "no output file");
    assert_eq!(
        std::fs::read_dir(&refused_dir).unwrap().count(),
        0,
        "no partial file"
    );

    let ran = remote(&home, &daemon, &["fetch", "blake3:abc/12"]).expect_code(2, "bad digest");
    assert!(
        ran.stderr.contains("blake3:<64 hex digits>/<size"),
        "{ran:#?}"
    );
}

/// A project whose model takes a while to build, with three engine variants.
fn queued_project(root: &Path) -> std::path::PathBuf {
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    deep_cnn(&project, 2, 8, 16, 1);
    let manifest = project.join("engine.toml");
    let engines = [("level-1", 1), ("level-2", 2), ("level-3", 3)];
    std::fs::write(&manifest, images_manifest("deep.onnx", 16, &engines)).unwrap();
    manifest
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_jobs_are_listed_inspected_followed_and_cancelled() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let manifest = queued_project(root.path());
    // No build slots: every job stays queued.
    let daemon = Daemon::start(root.path(), &["--cpu-slots", "0"]);
    let mut client = daemon.client().await;
    let mut ids = Vec::new();
    for variant in ["level-1", "level-2", "level-3"] {
        let request = request_for(&mut client, &manifest, variant).await;
        ids.push(
            job_of(&client.submit(request).await.unwrap().into_inner())
                .id
                .to_string(),
        );
    }

    let ran = remote(&home, &daemon, &["ls"]).expect_code(0, "ls");
    let rows: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(rows.len(), 4, "a header and three jobs: {ran:#?}");
    assert!(
        rows[0].starts_with("ID") && rows[0].contains("RESULT"),
        "{ran:#?}"
    );
    assert!(rows[1].starts_with(&ids[2]), "newest first: {ran:#?}");
    for (row, (id, position)) in rows[1..].iter().zip(ids.iter().zip([1, 2, 3]).rev()) {
        assert!(row.starts_with(id.as_str()), "{ran:#?}");
        assert!(row.contains(&format!("queued #{position}")), "{ran:#?}");
        assert!(row.contains("engine.toml#level-") && row.contains("integration-test"));
    }
    let ran = remote(&home, &daemon, &["ls", "-n", "1"]).expect_code(0, "ls -n 1");
    assert_eq!(ran.stdout.lines().count(), 2, "{ran:#?}");

    let ran = remote(&home, &daemon, &["status", &ids[1]]).expect_code(0, "status");
    assert!(
        ran.stdout.contains("queued (position 2 in the queue)"),
        "{ran:#?}"
    );
    assert!(ran.stdout.contains("engine.toml#level-2"), "{ran:#?}");

    let ran = remote(&home, &daemon, &["cancel", &ids[0]]).expect_code(0, "cancel");
    assert!(
        ran.stdout.contains(&format!("cancelled job {}", ids[0])),
        "{ran:#?}"
    );
    let job = client
        .get_job(v1::GetJobRequest {
            job_id: ids[0].parse().unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.state, v1::JobState::Cancelled as i32);
    let ran = remote(&home, &daemon, &["cancel", &ids[0]]).expect_code(0, "cancelled again");
    assert!(ran.stdout.contains("was already cancelled"), "{ran:#?}");
    let ran = remote(&home, &daemon, &["status", &ids[0], "--json"]).expect_code(0, "json");
    let status: serde_json::Value = serde_json::from_str(&ran.stdout).expect("status --json");
    assert_eq!(status["state"], "cancelled", "{ran:#?}");
    assert_eq!(status["failure"]["kind"], "cancelled", "{ran:#?}");
    let ran = remote(&home, &daemon, &["ls", "--json"]).expect_code(0, "ls --json");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ran.stdout).expect("ls --json");
    assert!(
        listed
            .iter()
            .any(|job| job["id"].as_u64() == ids[0].parse().ok()),
        "{ran:#?}"
    );
    let ran = remote(&home, &daemon, &["status", &ids[0]]).expect_code(0, "cancelled status");
    assert!(
        ran.stdout.contains("failure             cancelled: "),
        "{ran:#?}"
    );
    let ran = remote(&home, &daemon, &["status", &ids[1]]).expect_code(0, "moved up");
    assert!(ran.stdout.contains("position 1 in the queue"), "{ran:#?}");
    let ran = remote(&home, &daemon, &["logs", &ids[0]]).expect_code(1, "never ran: no log");
    assert!(ran.stderr.contains("has no build log"), "{ran:#?}");
    let ran = remote(&home, &daemon, &["status", "999999"]).expect_code(2, "unknown job");
    assert!(ran.stderr.contains("no job 999999"), "{ran:#?}");

    // `logs` follows a queued job until it ends.
    let mut logs = trtfarm(&home)
        .args(["logs", &ids[1], "--daemon", &daemon.endpoint])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(logs.stderr.take().unwrap()).lines();
    let first = stderr.next().expect("a first line").unwrap();
    assert!(first.starts_with("following job"), "{first}");
    client
        .cancel_job(v1::CancelJobRequest {
            job_id: ids[1].parse().unwrap(),
        })
        .await
        .unwrap();
    let rest: Vec<String> = stderr.map(Result::unwrap).collect();
    let status = logs.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("ended: cancelled")),
        "{rest:?}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_real_flags() {
    let home = tempfile::tempdir().unwrap();
    let ran = run(trtfarm(home.path()).args(["completions", "bash"])).expect_code(0, "bash");
    assert!(ran.stdout.contains("submit") && ran.stdout.contains("--daemon-dir"));
    let dir = home.path().join("man");
    run(trtfarm(home.path()).arg("man").arg(&dir)).expect_code(0, "man");
    let page = std::fs::read_to_string(dir.join("trtfarm.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH trtfarm"),
        "{page}"
    );
    assert!(dir.join("trtfarm-fetch.1").is_file());
    assert!(dir.join("trtfarm-daemon-stop.1").is_file());
}
