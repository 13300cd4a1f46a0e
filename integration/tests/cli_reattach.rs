//! The client outlives its daemon: the local daemon is SIGKILLed while `trtfarm submit` waits
//! for a build; the client starts it again, re-attaches to its job by id, and finishes with the
//! engine.

use std::process::Stdio;
use std::time::Duration;

use integration::cli::{LocalDaemons, alive, run, trtfarm, wait_for_local_build};
use integration::models::slow_project;
use trtfarm_proto::local::DaemonInfo;

#[test]
fn a_submit_survives_its_local_daemon_being_killed_mid_build() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&dir);
    let manifest = slow_project(&home.path().join("project"), 71);
    let out = home.path().join("out");

    let submit = trtfarm(home.path())
        .arg("submit")
        .arg(&manifest)
        .arg("--out")
        .arg(&out)
        .arg("--daemon-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trtfarm submit");

    // Kill the daemon as soon as its builder runs.
    let killed = wait_for_local_build(&dir, Duration::from_secs(120));
    // SAFETY: kill(2) on the daemon this test's client started for its own directory.
    unsafe { libc::kill(killed as i32, libc::SIGKILL) };
    let output = submit.wait_with_output().expect("wait for trtfarm submit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "submit failed after the daemon was killed:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("the local daemon went away; starting it again and re-attaching"),
        "{stderr}"
    );
    assert!(!alive(killed), "the killed daemon is gone");
    let restarted = DaemonInfo::read(&dir).unwrap().expect("a new daemon");
    assert_ne!(restarted.pid, killed);

    // The engine on disk is the one the lock records, and a resubmit is a cache hit for it.
    // `--out` keeps the manifest's directory below it.
    let engine = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .find(|entry| entry.file_name() == "slow.engine")
        .expect("the engine under --out")
        .into_path();
    let bytes = std::fs::read(&engine).unwrap_or_else(|e| panic!("{}: {e}", engine.display()));
    let digest = format!("blake3:{}/{}", blake3::hash(&bytes).to_hex(), bytes.len());
    let lock = trtfarm::lock::read_lock(&manifest)
        .unwrap()
        .expect("a lock");
    assert_eq!(lock.engine("slow").unwrap().engine.to_string(), digest);
    let again = run(trtfarm(home.path())
        .arg("submit")
        .arg(&manifest)
        .arg("--daemon-dir")
        .arg(&dir))
    .expect_code(0, "resubmit");
    assert!(again.stdout.contains("cached"), "{again:#?}");
    assert!(again.stdout.contains(&digest), "{again:#?}");
}

/// A "daemon" that accepts connections and never says a word: the client notices by its
/// unanswered pings and gives up with an error, instead of waiting forever.
#[test]
fn a_daemon_that_never_answers_is_not_waited_for_forever() {
    let home = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        // Hold every connection open, read nothing, answer nothing.
        for stream in silent.incoming().take(4).flatten() {
            open.push(stream);
        }
        std::thread::sleep(Duration::from_secs(120));
    });
    // `run` gives up (and fails the test) after five minutes; the client must end by itself.
    let ran = run(trtfarm(home.path()).args(["ls", "--daemon", &url]));
    assert_eq!(ran.code, 2, "{ran:#?}");
    assert!(ran.stderr.starts_with("error: "), "{ran:#?}");
    println!("{}", ran.stderr);
    drop(held);
}
