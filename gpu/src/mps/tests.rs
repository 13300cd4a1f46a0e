use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::endpoint::{Endpoint, probe_endpoint, process_alive};
use super::*;

/// How a [`fake_mps_control`] behaves.
#[derive(Default)]
struct Fake {
    /// `-d` prints to stderr and exits 3.
    fail_start: bool,
    /// `quit` is accepted but the daemon keeps running.
    ignore_quit: bool,
}

/// Writes `fake_mps_control`: a fake standing in for NVIDIA's `nvidia-cuda-mps-control`, which
/// cannot exist on a machine without the driver. Like the real one, `-d` returns at once and a
/// moment later the daemon answers on `$CUDA_MPS_PIPE_DIRECTORY/control` (here a FIFO that a
/// background `sleep` holds open for reading) and writes its pid file; client mode reads `quit`
/// on stdin and stops it. The `sleep` ends by itself, so a failed test leaks nothing for long.
fn fake_mps_control(dir: &Path, fake: Fake) -> PathBuf {
    let fail = if fake.fail_start {
        "echo 'fake: cannot start' >&2; exit 3"
    } else {
        ":"
    };
    let quit = if fake.ignore_quit {
        ":"
    } else {
        r#"kill "$(cat "$pipe/nvidia-cuda-mps-control.pid")"; rm -f "$pipe/control" "$pipe/nvidia-cuda-mps-control.pid""#
    };
    let script = format!(
        r#"#!/bin/sh
set -eu
pipe="$CUDA_MPS_PIPE_DIRECTORY"
if [ "${{1:-}}" = "-d" ]; then
  {fail}
  (
    sleep 0.2
    rm -f "$pipe/control"
    mkfifo "$pipe/control"
    sleep 60 3<>"$pipe/control" &
    echo $! > "$pipe/nvidia-cuda-mps-control.pid"
    echo "started $!" >> "$CUDA_MPS_LOG_DIRECTORY/control.log"
  ) &
  exit 0
fi
read -r command
if [ "$command" = quit ]; then
  {quit}
fi
"#
    );
    let path = dir.join("fake_mps_control");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn dirs(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("run/mps"), root.join("log/mps"))
}

#[test]
fn start_command_is_dash_d_with_both_directories() {
    let dirs = MpsDirs {
        pipe_dir: "/run/trtfarm/mps".into(),
        log_dir: Some("/var/log/trtfarm/mps".into()),
    };
    let command = control_command(
        Path::new("/usr/bin/nvidia-cuda-mps-control"),
        &dirs,
        ControlAction::StartDaemon,
    );
    assert_eq!(command.get_program(), "/usr/bin/nvidia-cuda-mps-control");
    assert_eq!(command.get_args().collect::<Vec<_>>(), ["-d"]);
    let envs: Vec<_> = command.get_envs().collect();
    assert_eq!(
        envs,
        [
            (
                "CUDA_MPS_LOG_DIRECTORY".as_ref(),
                Some("/var/log/trtfarm/mps".as_ref())
            ),
            (
                "CUDA_MPS_PIPE_DIRECTORY".as_ref(),
                Some("/run/trtfarm/mps".as_ref())
            ),
        ]
    );
    assert_eq!(ControlAction::StartDaemon.stdin_text(), None);
}

#[test]
fn quit_command_is_the_client_with_quit_on_stdin() {
    let dirs = MpsDirs {
        pipe_dir: "/tmp/nvidia-mps".into(),
        log_dir: None,
    };
    let command = control_command(Path::new("mps-control"), &dirs, ControlAction::Quit);
    assert_eq!(command.get_args().count(), 0);
    let envs: Vec<_> = command.get_envs().collect();
    assert_eq!(
        envs,
        [(
            "CUDA_MPS_PIPE_DIRECTORY".as_ref(),
            Some("/tmp/nvidia-mps".as_ref())
        )]
    );
    assert_eq!(ControlAction::Quit.stdin_text(), Some("quit\n"));
}

#[test]
fn client_env_sets_the_pipe_and_an_optional_percentage() {
    let pipe = Path::new("/run/trtfarm/mps");
    assert_eq!(
        client_env(pipe, None).unwrap(),
        [(
            "CUDA_MPS_PIPE_DIRECTORY".to_string(),
            "/run/trtfarm/mps".to_string()
        )]
    );
    assert_eq!(
        client_env(pipe, Some(25)).unwrap(),
        [
            (
                "CUDA_MPS_PIPE_DIRECTORY".to_string(),
                "/run/trtfarm/mps".to_string()
            ),
            (
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".to_string(),
                "25".to_string()
            ),
        ]
    );
    assert!(client_env(pipe, Some(1)).is_ok());
    assert!(client_env(pipe, Some(100)).is_ok());
    for bad in [0, 101] {
        let err = client_env(pipe, Some(bad)).unwrap_err();
        assert!(
            matches!(err, MpsError::InvalidPercentage(p) if p == bad),
            "{err}"
        );
        assert!(err.to_string().contains("must be 1 to 100"), "{err}");
    }
}

#[test]
fn control_binary_is_found_on_path_first_then_in_fallbacks() {
    let root = tempfile::tempdir().unwrap();
    let (first, second, fallback) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    for dir in [&first, &second, &fallback] {
        std::fs::create_dir(dir).unwrap();
    }
    // Not executable: skipped, as execve would fail on it.
    std::fs::write(first.join(CONTROL_BINARY), "").unwrap();
    let path = std::env::join_paths([&first, &second]).unwrap();
    let fallbacks = || vec![fallback.clone()].into_iter();
    assert_eq!(find_binary_in(Some(&path), fallbacks()), None);

    fake_mps_control(&fallback, Fake::default());
    std::fs::rename(
        fallback.join("fake_mps_control"),
        fallback.join(CONTROL_BINARY),
    )
    .unwrap();
    assert_eq!(
        find_binary_in(Some(&path), fallbacks()),
        Some(fallback.join(CONTROL_BINARY))
    );
    assert_eq!(
        find_binary_in(None, fallbacks()),
        Some(fallback.join(CONTROL_BINARY))
    );

    std::fs::copy(fallback.join(CONTROL_BINARY), second.join(CONTROL_BINARY)).unwrap();
    assert_eq!(
        find_binary_in(Some(&path), fallbacks()),
        Some(second.join(CONTROL_BINARY))
    );
    let empty = OsString::new();
    assert_eq!(find_binary_in(Some(&empty), std::iter::empty()), None);
}

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
fn availability_explains_what_is_missing() {
    assert!(availability(&MpsMode::Off).is_ok());
    let root = tempfile::tempdir().unwrap();
    let err = availability(&MpsMode::Existing {
        pipe_dir: root.path().into(),
    })
    .unwrap_err();
    assert!(matches!(err, MpsError::NotRunning { .. }), "{err:?}");

    let own = MpsMode::Own {
        pipe_dir: root.path().join("p"),
        log_dir: root.path().join("l"),
    };
    if find_control_binary(std::env::var_os("PATH").as_deref()).is_none() {
        let err = availability(&own).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MPS was asked for but nvidia-cuda-mps-control is not on PATH or in \
             /usr/local/nvidia/bin; install the NVIDIA driver utilities or set gpu.mps = \"off\""
        );
    }
}

#[test]
fn mode_reads_from_toml_in_kebab_case() {
    #[derive(serde::Deserialize, Debug)]
    struct Gpu {
        mps: MpsMode,
    }
    let off: Gpu = toml::from_str(r#"mps = "off""#).unwrap();
    assert_eq!(off.mps, MpsMode::Off);
    let own: Gpu =
        toml::from_str("[mps.own]\npipe_dir = \"/run/trtfarm/mps\"\nlog_dir = \"/var/log/mps\"")
            .unwrap();
    assert_eq!(
        own.mps,
        MpsMode::Own {
            pipe_dir: "/run/trtfarm/mps".into(),
            log_dir: "/var/log/mps".into()
        }
    );
    let existing: Gpu =
        toml::from_str(r#"mps = { existing = { pipe_dir = "/tmp/nvidia-mps" } }"#).unwrap();
    assert_eq!(
        existing.mps,
        MpsMode::Existing {
            pipe_dir: "/tmp/nvidia-mps".into()
        }
    );
    assert!(toml::from_str::<Gpu>(r#"mps = "on""#).is_err());
    let typo = toml::from_str::<Gpu>(r#"mps = { existing = { pipe = "/tmp/nvidia-mps" } }"#);
    assert!(typo.is_err(), "unknown fields are rejected");
    assert_eq!(MpsMode::default(), MpsMode::Off);
}

#[test]
fn a_seqpacket_socket_answers_like_nvidias_and_is_stale_once_closed() {
    let root = tempfile::tempdir().unwrap();
    let pipe = root.path();
    let listener = super::socket::listen_seqpacket(&pipe.join("control")).unwrap();
    assert_eq!(probe_endpoint(pipe), Endpoint::Answers);
    assert!(MpsControl::use_existing(pipe).is_ok());
    drop(listener);
    // NVIDIA's daemon leaves its socket behind when it quits. A child that a concurrent test
    // is spawning may hold a copy of the listener until its exec: give that a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while probe_endpoint(pipe) == Endpoint::Answers && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(probe_endpoint(pipe), Endpoint::Stale);
    let err = MpsControl::use_existing(pipe).unwrap_err();
    assert!(matches!(err, MpsError::NotAnswering { .. }), "{err:?}");
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
