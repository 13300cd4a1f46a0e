//! Tests of the pure parts: commands, environments, configuration, endpoint probing.

use std::ffi::OsString;
use std::path::Path;

use super::endpoint::{Endpoint, probe_endpoint};
use super::fake_control::{Fake, fake_mps_control};
use super::*;

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
