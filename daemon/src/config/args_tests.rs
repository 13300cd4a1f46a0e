//! Tests of `trtfarmd serve` flags and their overlay on the file: flag > env > file > default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::*;

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

#[test]
fn flags_parse_every_value_form() {
    let args = ServeArgs::try_parse_from([
        "trtfarmd-serve",
        "--config",
        "farm.toml",
        "--listen",
        "0.0.0.0:6000",
        "--metrics-listen",
        "127.0.0.1:0",
        "--state-dir",
        "/tmp/state",
        "--action-key-salt",
        "salt",
        "--drain-timeout",
        "2m",
        "--store",
        "memory://",
        "--store-option",
        "aws_region=eu-west-1,aws_endpoint=http://x:9000/?a=b",
        "--store-option",
        "aws_allow_http=true",
        "--cpu-slots",
        "3",
        "--gpu-builds-per-gpu",
        "2",
        "--max-queued-jobs",
        "10",
        "--max-blob-size",
        "1GiB",
        "--max-inputs",
        "7",
        "--max-build-timeout",
        "2h",
        "--worker-memory",
        "8GiB",
        "--max-log-size",
        "1MiB",
        "--job-history",
        "5",
        "--tensorrt-rtx-lib-dir",
        "/opt/rtx",
        "--tensorrt-lib-dir",
        "/opt/trt",
        "--builder",
        "/opt/trtfarm/trtfarm-builder",
        "--gpu-devices",
        "0,2",
        "--mps",
        "own",
        "--mps-pipe-dir",
        "/tmp/mps",
        "--mps-log-dir",
        "/tmp/mps-log",
        "--mps-control",
        "/opt/nvidia/nvidia-cuda-mps-control",
        "--token-file",
        "tokens",
        "--tls-cert",
        "/etc/tls/cert.pem",
        "--tls-key",
        "/etc/tls/key.pem",
        "--queue",
        "postgres://farm@db/engines",
        "--queue-password-file",
        "/etc/trtfarm/pg-password",
        "--queue-lease",
        "45s",
        "--queue-ca-file",
        "/etc/trtfarm/pg-ca.pem",
    ])
    .unwrap();
    assert_eq!(
        args,
        ServeArgs {
            config: Some("farm.toml".into()),
            listen: Some("0.0.0.0:6000".parse().unwrap()),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            state_dir: Some("/tmp/state".into()),
            action_key_salt: Some("salt".into()),
            drain_timeout: Some(Duration::from_secs(120)),
            store: Some("memory://".into()),
            store_options: vec![
                ("aws_region".into(), "eu-west-1".into()),
                ("aws_endpoint".into(), "http://x:9000/?a=b".into()),
                ("aws_allow_http".into(), "true".into()),
            ],
            cpu_slots: Some(3),
            gpu_builds_per_gpu: Some(2),
            max_queued_jobs: Some(10),
            max_blob_size: Some(GIB),
            max_inputs: Some(7),
            max_build_timeout: Some(Duration::from_secs(7200)),
            worker_memory: Some(8 * GIB),
            max_log_size: Some(MIB),
            job_history: Some(5),
            tensorrt_rtx_lib_dir: Some("/opt/rtx".into()),
            tensorrt_lib_dir: Some("/opt/trt".into()),
            builder: Some("/opt/trtfarm/trtfarm-builder".into()),
            gpu_devices: vec![0, 2],
            mps: Some(crate::config::MpsMode::Own),
            mps_pipe_dir: Some("/tmp/mps".into()),
            mps_log_dir: Some("/tmp/mps-log".into()),
            mps_control: Some("/opt/nvidia/nvidia-cuda-mps-control".into()),
            token_file: Some("tokens".into()),
            tls_cert: Some("/etc/tls/cert.pem".into()),
            tls_key: Some("/etc/tls/key.pem".into()),
            queue: Some("postgres://farm@db/engines".into()),
            queue_password_file: Some("/etc/trtfarm/pg-password".into()),
            queue_lease: Some(Duration::from_secs(45)),
            queue_ca_file: Some("/etc/trtfarm/pg-ca.pem".into()),
        }
    );

    let error = ServeArgs::try_parse_from(["trtfarmd-serve", "--max-blob-size", "lots"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid size \"lots\""), "{error}");
    let error = ServeArgs::try_parse_from(["trtfarmd-serve", "--store-option", "=x"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("KEY=VALUE"), "{error}");
    assert!(ServeArgs::try_parse_from(["trtfarmd-serve", "--drain-timeout", "30"]).is_err());
    assert!(ServeArgs::try_parse_from(["trtfarmd-serve", "--slots", "3"]).is_err());
    assert!(
        ServeArgs::try_parse_from(["trtfarmd-serve", "--default-build-timeout", "10m"]).is_err()
    );
    let args = ServeArgs::try_parse_from(["trtfarmd-serve", "--cpu-slots", "0"]).unwrap();
    assert_eq!(args.cpu_slots, Some(0));
}

/// A temporary `daemon.toml` holding `text`.
fn temp_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn flags_and_environment_override_the_file_which_overrides_defaults() {
    let (dir, path) = temp_config(
        "listen = \"127.0.0.1:7001\"\ndrain_timeout = \"5m\"\n\
         [store]\nurl = \"memory://\"\noptions = { a = \"file\", b = \"file\" }\n\
         [slots]\ncpu = 0\n\
         [limits]\nmax_inputs = 9\nmax_build_timeout = \"10h\"\nmax_queued_jobs = 5\n",
    );
    // What clap produced from flags and TRTFARMD_* variables (it gives flags precedence).
    let args = ServeArgs {
        config: Some(path.clone()),
        listen: Some("127.0.0.1:7002".parse().unwrap()),
        store_options: vec![("b".into(), "flag".into()), ("c".into(), "flag".into())],
        max_build_timeout: Some(Duration::from_secs(9 * 3600)),
        state_dir: Some("relative/state".into()),
        ..ServeArgs::default()
    };
    let config = DaemonConfig::load_with_default_file(&args, None).unwrap();
    assert_eq!(config.config_file.as_deref(), Some(path.as_path()));
    // Flag over file.
    assert_eq!(
        config.listen_addr().tcp().map(|addr| addr.port()),
        Some(7002)
    );
    assert_eq!(
        config.limits.max_build_timeout,
        Duration::from_secs(9 * 3600)
    );
    // File over default.
    assert_eq!(config.drain_timeout, Duration::from_secs(300));
    assert_eq!(config.limits.max_inputs, 9);
    assert_eq!(config.limits.max_queued_jobs, 5);
    assert_eq!(config.slots.cpu, 0);
    assert_eq!(config.store.url, "memory://");
    // Default where neither says.
    assert_eq!(config.limits.job_history, 10_000);
    // Store options merge by key.
    assert_eq!(
        config.store.options,
        BTreeMap::from([
            ("a".into(), "file".into()),
            ("b".into(), "flag".into()),
            ("c".into(), "flag".into()),
        ])
    );
    // Flag paths are relative to the working directory, not the file.
    assert_eq!(
        config.state_dir,
        std::env::current_dir().unwrap().join("relative/state")
    );

    // The combination is validated, not each layer: a flag can make the file's values invalid.
    let args = ServeArgs {
        config: Some(path.clone()),
        max_queued_jobs: Some(0),
        ..ServeArgs::default()
    };
    match DaemonConfig::load_with_default_file(&args, None) {
        Err(ConfigError::Invalid { field, .. }) => {
            assert_eq!(field, "limits.max_queued_jobs")
        }
        other => panic!("expected an invalid setting, got {other:?}"),
    }
    drop(dir);
}

#[test]
fn flags_parsed_by_clap_overlay_the_file() {
    let (_dir, path) = temp_config("[slots]\ncpu = 2\ngpu_builds_per_gpu = 2\n");
    let args = ServeArgs::try_parse_from([
        "trtfarmd-serve".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
        "--cpu-slots".as_ref(),
        "6".as_ref(),
    ])
    .unwrap();
    let config = DaemonConfig::load_with_default_file(&args, None).unwrap();
    assert_eq!(config.slots.cpu, 6);
    assert_eq!(config.slots.gpu_builds_per_gpu, 2);
}

#[test]
fn the_default_file_is_read_only_when_it_exists() {
    let (dir, path) = temp_config("[limits]\njob_history = 3\n");
    let no_flags = ServeArgs::default();
    let config = DaemonConfig::load_with_default_file(&no_flags, Some(&path)).unwrap();
    assert_eq!(config.limits.job_history, 3);
    assert_eq!(config.config_file.as_deref(), Some(path.as_path()));

    let missing = dir.path().join("absent.toml");
    let config = DaemonConfig::load_with_default_file(&no_flags, Some(&missing)).unwrap();
    assert_eq!(config, DaemonConfig::defaults());

    // A file asked for by name must exist.
    let named = ServeArgs {
        config: Some(missing.clone()),
        ..ServeArgs::default()
    };
    match DaemonConfig::load_with_default_file(&named, Some(&path)) {
        Err(ConfigError::Read { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn auth_and_tls_flags_overlay_the_file_and_satisfy_validation() {
    let (_dir, path) = temp_config(
        "listen = \"0.0.0.0:7001\"\n[auth]\ntoken_file = \"file-tokens\"\n\
         [tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
    );
    let base = path.parent().unwrap();
    let from_file = ServeArgs {
        config: Some(path.clone()),
        ..ServeArgs::default()
    };
    let config = DaemonConfig::load_with_default_file(&from_file, None).unwrap();
    assert_eq!(config.auth.token_file, Some(base.join("file-tokens")));
    assert_eq!(
        config.tls.files(),
        Some((
            base.join("cert.pem").as_path(),
            base.join("key.pem").as_path()
        ))
    );

    let flags = ServeArgs {
        config: Some(path.clone()),
        token_file: Some("flag-tokens".into()),
        tls_key: Some("/srv/key.pem".into()),
        ..ServeArgs::default()
    };
    let config = DaemonConfig::load_with_default_file(&flags, None).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(config.auth.token_file, Some(cwd.join("flag-tokens")));
    assert_eq!(
        config.tls.key_file.as_deref(),
        Some(std::path::Path::new("/srv/key.pem"))
    );
    assert_eq!(config.tls.cert_file, Some(base.join("cert.pem")));

    // A non-loopback --listen over a file without [auth] is refused as a whole.
    let (_dir, bare) = temp_config("[slots]\ncpu = 1\n");
    let args = ServeArgs {
        config: Some(bare),
        listen: Some("0.0.0.0:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    match DaemonConfig::load_with_default_file(&args, None) {
        Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "auth.token_file"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A --tls-cert alone over a file without [tls] is half a TLS setup.
    let args = ServeArgs {
        tls_cert: Some("/srv/cert.pem".into()),
        ..ServeArgs::default()
    };
    match DaemonConfig::load_with_default_file(&args, None) {
        Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "tls.key_file"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
