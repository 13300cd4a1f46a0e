//! The control daemon's lifecycle, for real processes, against the fake control binary.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use super::endpoint::{Endpoint, probe_endpoint, process_alive};
use super::fake_control::{Fake, dirs, fake_mps_control};
use super::*;

#[test]
fn start_own_with_a_missing_binary_says_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let (pipe, log) = dirs(root.path());
    let binary = root.path().join("nvidia-cuda-mps-control");
    let err = MpsControl::start_own(&binary, &pipe, &log).unwrap_err();
    assert!(
        matches!(err, MpsError::ControlBinaryMissing { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&binary.display().to_string()), "{text}");
    assert!(text.contains("gpu.mps = \"off\""), "{text}");
    assert!(
        !pipe.exists(),
        "nothing is created for a binary that is not there"
    );
}

#[test]
fn owned_daemon_starts_answers_refuses_a_second_and_stops() {
    let root = tempfile::tempdir().unwrap();
    let (pipe, log) = dirs(root.path());
    let fake = fake_mps_control(root.path(), Fake::default());

    let daemon = MpsControl::start_own(&fake, &pipe, &log).unwrap();
    assert!(daemon.owned());
    assert_eq!(daemon.pipe_dir(), pipe);
    for dir in [&pipe, &log] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    assert!(
        std::fs::metadata(pipe.join("control"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let pid = daemon.daemon_pid().expect("the pid file is read");
    assert!(process_alive(pid));
    assert_eq!(
        daemon.client_env(Some(25)).unwrap()[0],
        (
            "CUDA_MPS_PIPE_DIRECTORY".to_string(),
            pipe.display().to_string()
        )
    );

    // Someone else's view: usable, not theirs to stop.
    let existing = MpsControl::use_existing(&pipe).unwrap();
    assert!(!existing.owned());
    existing.shutdown().unwrap();
    assert!(
        process_alive(pid),
        "shutting down a daemon we do not own leaves it running"
    );

    let err = MpsControl::start_own(&fake, &pipe, &log).unwrap_err();
    assert!(
        matches!(err, MpsError::AlreadyRunning { pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    assert!(err.to_string().contains("did not start it"), "{err}");

    daemon.shutdown().unwrap();
    assert!(!process_alive(pid));
    assert_eq!(probe_endpoint(&pipe), Endpoint::Missing);
    let err = MpsControl::use_existing(&pipe).unwrap_err();
    assert!(matches!(err, MpsError::NotRunning { .. }), "{err:?}");
}

#[test]
fn dropping_an_owned_daemon_stops_it() {
    let root = tempfile::tempdir().unwrap();
    let (pipe, log) = dirs(root.path());
    let fake = fake_mps_control(root.path(), Fake::default());
    let daemon = MpsControl::start_own(&fake, &pipe, &log).unwrap();
    let pid = daemon.daemon_pid().unwrap();
    drop(daemon);
    assert!(!process_alive(pid));
}

#[test]
fn a_failing_start_reports_what_the_binary_printed() {
    let root = tempfile::tempdir().unwrap();
    let (pipe, log) = dirs(root.path());
    let fake = fake_mps_control(
        root.path(),
        Fake {
            fail_start: true,
            ..Fake::default()
        },
    );
    let err = MpsControl::start_own(&fake, &pipe, &log).unwrap_err();
    assert!(matches!(err, MpsError::StartFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("fake: cannot start"), "{text}");
    assert!(text.contains("control.log"), "{text}");
}

#[test]
fn a_daemon_that_ignores_quit_is_reported_not_waited_for_forever() {
    let root = tempfile::tempdir().unwrap();
    let (pipe, log) = dirs(root.path());
    let fake = fake_mps_control(
        root.path(),
        Fake {
            ignore_quit: true,
            ..Fake::default()
        },
    );
    let mut daemon = MpsControl::start_own(&fake, &pipe, &log).unwrap();
    let pid = daemon.daemon_pid().unwrap();
    let err = daemon.stop(Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(err, MpsError::ShutdownTimedOut { pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    assert!(err.to_string().contains("waits for its clients"), "{err}");
    // Clean up the fake by hand; drop does not try a second time.
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    drop(daemon);
}

#[test]
fn a_stale_fifo_is_not_a_daemon() {
    let root = tempfile::tempdir().unwrap();
    let (pipe, log) = dirs(root.path());
    std::fs::create_dir_all(&pipe).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(pipe.join("control"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(probe_endpoint(&pipe), Endpoint::Stale);
    let err = MpsControl::use_existing(&pipe).unwrap_err();
    assert!(matches!(err, MpsError::NotAnswering { .. }), "{err:?}");

    // Our own daemon replaces what a dead one left.
    let fake = fake_mps_control(root.path(), Fake::default());
    MpsControl::start_own(&fake, &pipe, &log)
        .unwrap()
        .shutdown()
        .unwrap();
}

#[test]
fn a_pipe_dir_too_long_for_its_sockets_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let long = root.path().join("p".repeat(100));
    let err = check_pipe_dir_length(&long).unwrap_err();
    assert!(err.to_string().contains("too long"), "{err}");
    let fake = fake_mps_control(root.path(), Fake::default());
    let err = MpsControl::start_own(&fake, &long, &root.path().join("log")).unwrap_err();
    assert!(matches!(err, MpsError::PipeDirTooLong { .. }), "{err:?}");
    assert!(check_pipe_dir_length(Path::new("/tmp/trtfarm-mps-0123456789abcdef")).is_ok());
}

#[test]
fn a_slow_quit_is_left_pending_so_the_daemon_still_exits() {
    let root = tempfile::tempdir().unwrap();
    let (pipe, log) = dirs(root.path());
    let fake = fake_mps_control(
        root.path(),
        Fake {
            slow_quit: true,
            ..Fake::default()
        },
    );
    let mut daemon = MpsControl::start_own(&fake, &pipe, &log).unwrap();
    let pid = daemon.daemon_pid().unwrap();
    let err = daemon.stop(Duration::from_millis(200)).unwrap_err();
    assert!(err.to_string().contains("quit is still pending"), "{err}");
    // The quit command was not killed: it completes and the daemon goes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!process_alive(pid));
}
