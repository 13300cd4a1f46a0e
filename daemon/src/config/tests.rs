//! Tests of `daemon.toml` parsing: defaults, value forms, errors with line and column, paths.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
    DaemonConfig::from_toml_str(text, Path::new("/etc/trtfarm/daemon.toml"))
}

fn parse_error(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(ConfigError::Parse {
            path,
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!(path, Path::new("/etc/trtfarm/daemon.toml"));
            (line, column, message)
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn invalid_field(text: &str) -> (&'static str, String) {
    match parse(text) {
        Err(ConfigError::Invalid { field, message }) => (field, message),
        other => panic!("expected an invalid setting, got {other:?}"),
    }
}

fn home() -> PathBuf {
    dirs::home_dir().expect("tests need a home directory")
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = DaemonConfig::defaults();
    assert_eq!(config.listen, None);
    assert_eq!(
        config.listen_addr(),
        ListenAddr::Unix(config.state_dir.join("daemon.sock")),
        "private by default: the socket in the state directory"
    );
    assert!(config.is_loopback());
    assert_eq!(config.metrics_listen, None);
    assert_eq!(config.action_key_salt, None);
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
    assert!(config.state_dir.is_absolute(), "{:?}", config.state_dir);
    assert!(config.state_dir.ends_with("trtfarm/daemon"));
    if let Some(state) = dirs::state_dir() {
        assert_eq!(config.state_dir, state.join("trtfarm/daemon"));
    }
    let cache = dirs::cache_dir().unwrap();
    assert_eq!(
        config.store.url,
        format!("file://{}/trtfarm/store", cache.display())
    );
    assert!(config.store.options.is_empty());
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(config.slots.cpu, cpus);
    assert_eq!(config.slots.gpu_builds_per_gpu, 1);
    let limits = &config.limits;
    assert_eq!(limits.max_queued_jobs, 1024);
    assert_eq!(limits.max_blob_size, 64 * GIB);
    assert_eq!(limits.max_inputs, 4096);
    assert_eq!(limits.max_build_timeout, Duration::from_secs(6 * 3600));
    assert_eq!(limits.worker_memory, None);
    assert_eq!(limits.max_log_size, 16 * MIB);
    assert_eq!(limits.job_history, 10_000);
    assert_eq!(config.toolchains, ToolchainsConfig::default());
    assert_eq!(config.toolchains.tensorrt_lib_dir, None);
    assert_eq!(config.auth, AuthConfig::default());
    assert_eq!(config.auth.token_file, None);
    assert_eq!(config.tls, TlsConfig::default());
    assert_eq!(config.tls.files(), None);
    assert_eq!(config.config_file, None);
    config.validate().unwrap();
}

#[test]
fn an_empty_file_means_the_defaults() {
    let config = parse("# nothing set\n").unwrap();
    assert_eq!(
        config.config_file.as_deref(),
        Some(Path::new("/etc/trtfarm/daemon.toml"))
    );
    assert_eq!(
        DaemonConfig {
            config_file: None,
            ..config
        },
        DaemonConfig::defaults()
    );
}

#[test]
fn unknown_fields_are_named_with_their_line_and_the_valid_ones() {
    let (line, column, message) =
        parse_error("listen = \"127.0.0.1:1\"\n\n[limits]\nmax_blob = \"1GiB\"\n");
    assert_eq!((line, column), (4, 1));
    assert!(message.contains("unknown field `max_blob`"), "{message}");
    assert!(message.contains("`max_blob_size`"), "{message}");

    let (line, _, message) = parse_error("[slot]\ncpu = 2\n");
    assert_eq!(line, 1);
    assert!(message.contains("unknown field `slot`"), "{message}");
    assert!(message.contains("`slots`"), "{message}");

    let error = parse("[store]\nurls = \"x\"\n").unwrap_err().to_string();
    assert!(
        error.starts_with("/etc/trtfarm/daemon.toml:2:1: unknown field `urls`"),
        "{error}"
    );
    assert!(error.ends_with("  2 | urls = \"x\""), "{error}");
}

#[test]
fn sizes_accept_units_and_plain_bytes_and_refuse_the_rest() {
    let config = parse(
        "[limits]\nmax_blob_size = \"1.5 GiB\"\nmax_log_size = 4096\nworker_memory = \"2GB\"\n",
    )
    .unwrap();
    assert_eq!(config.limits.max_blob_size, 3 * GIB / 2);
    assert_eq!(config.limits.max_log_size, 4096);
    assert_eq!(config.limits.worker_memory, Some(2_000_000_000));

    let (line, column, message) = parse_error("[limits]\nmax_blob_size = \"12 parsecs\"\n");
    assert_eq!((line, column), (2, 17));
    assert!(message.contains("invalid size \"12 parsecs\""), "{message}");
    assert!(message.contains("\"16GiB\""), "{message}");

    for bad in [
        "\"-1GiB\"",
        "-5",
        "\"\"",
        "\"GiB\"",
        "\"99999999999EiB\"",
        "true",
    ] {
        let (line, _, message) = parse_error(&format!("[limits]\nmax_log_size = {bad}\n"));
        assert_eq!(line, 2, "{bad}");
        assert!(message.contains("size"), "{bad}: {message}");
    }
}

#[test]
fn durations_need_units() {
    let config =
        parse("drain_timeout = \"1h 30m\"\n[limits]\nmax_build_timeout = \"500ms\"\n").unwrap();
    assert_eq!(config.drain_timeout, Duration::from_secs(5400));
    assert_eq!(config.limits.max_build_timeout, Duration::from_millis(500));

    let (line, column, message) = parse_error("drain_timeout = \"90\"\n");
    assert_eq!((line, column), (1, 17));
    assert!(message.contains("invalid duration \"90\""), "{message}");
    assert!(message.contains("time unit needed"), "{message}");

    let (_, _, message) = parse_error("drain_timeout = 90\n");
    assert!(message.contains("invalid type: integer"), "{message}");
    assert!(message.contains("\"90s\""), "{message}");

    let (_, _, message) = parse_error("drain_timeout = \"5 parsecs\"\n");
    assert!(message.contains("unknown time unit"), "{message}");
}

#[test]
fn addresses_must_be_ip_and_port() {
    let config = parse("listen = \"[::1]:7000\"\nmetrics_listen = \"0.0.0.0:9464\"\n").unwrap();
    assert!(config.is_loopback());
    assert_eq!(config.metrics_listen.unwrap().port(), 9464);
    let open = parse("listen = \"0.0.0.0:50051\"\n[auth]\ntoken_file = \"tokens\"\n").unwrap();
    assert!(!open.is_loopback());

    let (_, _, message) = parse_error("listen = \"localhost:50051\"\n");
    assert!(message.contains("no host names"), "{message}");

    let socket = parse("listen = \"unix:run/trtfarm.sock\"\n").unwrap();
    assert_eq!(
        socket.listen_addr(),
        ListenAddr::Unix("/etc/trtfarm/run/trtfarm.sock".into()),
        "relative to the file's directory"
    );
    assert!(socket.is_loopback());
    // The default socket follows the state directory.
    let moved = parse("state_dir = \"/srv/trtfarm\"\n").unwrap();
    assert_eq!(
        moved.listen_addr(),
        ListenAddr::Unix("/srv/trtfarm/daemon.sock".into())
    );
    let (_, _, message) = parse_error("metrics_listen = \"127.0.0.1\"\n");
    assert!(message.contains("invalid address"), "{message}");
}

#[test]
fn syntax_errors_have_line_and_column() {
    let (line, column, _) = parse_error("listen = \"127.0.0.1:1\"\n[limits\n");
    assert_eq!(line, 2);
    assert!(column > 1);
}

#[test]
fn settings_that_cannot_work_are_refused_by_name() {
    assert_eq!(invalid_field("[gpu]\ndevices = []\n").0, "gpu.devices");
    let (field, message) = invalid_field("[gpu]\ndevices = [0, 1, 0]\n");
    assert_eq!(
        (field, message.as_str()),
        ("gpu.devices", "names GPU 0 twice")
    );
    assert_eq!(
        invalid_field("[slots]\ngpu_builds_per_gpu = 0\n").0,
        "slots.gpu_builds_per_gpu"
    );
    assert_eq!(
        invalid_field("[limits]\nmax_queued_jobs = 0\n").0,
        "limits.max_queued_jobs"
    );
    assert_eq!(
        invalid_field("[limits]\nmax_inputs = 0\n").0,
        "limits.max_inputs"
    );
    assert_eq!(
        invalid_field("[limits]\nmax_blob_size = \"0B\"\n").0,
        "limits.max_blob_size"
    );
    assert_eq!(
        invalid_field("[limits]\nmax_build_timeout = \"0s\"\n").0,
        "limits.max_build_timeout"
    );
    assert_eq!(
        invalid_field("[limits]\nworker_memory = \"16MB\"\n").0,
        "limits.worker_memory"
    );
    assert_eq!(
        invalid_field("action_key_salt = \"\"\n").0,
        "action_key_salt"
    );
    assert_eq!(invalid_field("state_dir = \"\"\n").0, "state_dir");
    assert_eq!(
        invalid_field("listen = \"127.0.0.1:9000\"\nmetrics_listen = \"127.0.0.1:9000\"\n").0,
        "metrics_listen"
    );
    assert_eq!(
        parse("[limits]\njob_history = 0\n")
            .unwrap()
            .limits
            .job_history,
        0
    );
    assert_eq!(
        parse("drain_timeout = \"0s\"\n").unwrap().drain_timeout,
        Duration::ZERO
    );
}

#[test]
fn relative_paths_in_the_file_are_relative_to_its_directory() {
    let text = "state_dir = \"state\"\n\
                [store]\nurl = \"blobs/my store#1\"\n\
                [toolchains]\ntensorrt_lib_dir = \"../lib\"\ntensorrt_rtx_lib_dir = \"~/rtx\"\n";
    let config = DaemonConfig::from_toml_str(text, Path::new("/srv/farm/daemon.toml")).unwrap();
    assert_eq!(config.state_dir, Path::new("/srv/farm/state"));
    assert_eq!(config.store.url, "file:///srv/farm/blobs/my%20store%231");
    assert_eq!(
        config.toolchains.tensorrt_lib_dir.as_deref(),
        Some(Path::new("/srv/farm/../lib"))
    );
    assert_eq!(
        config.toolchains.tensorrt_rtx_lib_dir,
        Some(home().join("rtx"))
    );

    let config = parse(
        "[store]\nurl = \"s3://bucket/prefix\"\n\
         [store.options]\naws_region = \"eu-west-1\"\naws_allow_http = true\nretries = 3\n",
    )
    .unwrap();
    assert_eq!(config.store.url, "s3://bucket/prefix");
    assert_eq!(config.store.options["aws_region"], "eu-west-1");
    assert_eq!(config.store.options["aws_allow_http"], "true");
    assert_eq!(config.store.options["retries"], "3");
    let (line, _, message) = parse_error("[store.options]\nnested = { a = \"b\" }\n");
    assert_eq!(line, 2);
    assert!(message.contains("string, boolean or number"), "{message}");

    let (_, message) = invalid_field("[store]\nurl = \"s3:/bucket\"\n");
    assert!(message.contains("scheme"), "{message}");
}

#[test]
fn zero_cpu_slots_parse_and_mean_queue_but_do_not_build() {
    assert_eq!(parse("[slots]\ncpu = 0\n").unwrap().slots.cpu, 0);
    // The other counts stay at least 1.
    assert_eq!(
        invalid_field("[slots]\ncpu = 0\ngpu_builds_per_gpu = 0\n").0,
        "slots.gpu_builds_per_gpu"
    );
}

#[test]
fn the_default_build_timeout_setting_is_gone() {
    let (line, _, message) = parse_error("[limits]\ndefault_build_timeout = \"1h\"\n");
    assert_eq!(line, 2);
    assert!(
        message.contains("unknown field `default_build_timeout`"),
        "{message}"
    );
}

#[test]
fn the_gpu_table_parses_and_its_paths_are_resolved_against_the_file() {
    let config = DaemonConfig::from_toml_str(
        "[gpu]\ndevices = [1, 3]\nmps = \"own\"\nmps_log_dir = \"mps-log\"\n",
        Path::new("/etc/trtfarm/daemon.toml"),
    )
    .unwrap();
    assert_eq!(config.gpu.devices, Some(vec![1, 3]));
    assert_eq!(config.gpu.mps, MpsMode::Own);
    assert_eq!(
        config.gpu.mps_log_dir.as_deref(),
        Some(Path::new("/etc/trtfarm/mps-log"))
    );
    assert_eq!(DaemonConfig::defaults().gpu.mps, MpsMode::Off);
}

#[test]
fn a_non_loopback_listen_without_a_token_file_is_refused_saying_how_to_fix_it() {
    for listen in ["0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", "0.0.0.0:0"] {
        let error = parse(&format!("listen = \"{listen}\"\n")).unwrap_err();
        let ConfigError::Invalid { field, message } = &error else {
            panic!("expected an invalid setting, got {error:?}");
        };
        assert_eq!(*field, "auth.token_file", "{listen}");
        assert!(
            message.contains(&format!("`listen` ({listen})")),
            "{message}"
        );
        assert!(message.contains("not a loopback address"), "{message}");
        assert!(message.contains("--token-file PATH"), "{message}");
        assert!(message.contains("listen on 127.0.0.1"), "{message}");
        assert!(
            error
                .to_string()
                .starts_with("invalid daemon config: `auth.token_file` is not set, but `listen`"),
            "{error}"
        );
    }
    // With a token file it is accepted, and loopback never needs one (but may have one).
    let config = parse("listen = \"0.0.0.0:50051\"\n[auth]\ntoken_file = \"tokens\"\n").unwrap();
    assert_eq!(
        config.auth.token_file.as_deref(),
        Some(Path::new("/etc/trtfarm/tokens")),
        "relative to the file's directory"
    );
    parse("listen = \"[::1]:50051\"\n").unwrap();
    parse("[auth]\ntoken_file = \"/srv/tokens\"\n").unwrap();
}

#[test]
fn tls_needs_both_the_certificate_and_the_key() {
    let (field, message) = invalid_field("[tls]\ncert_file = \"cert.pem\"\n");
    assert_eq!(field, "tls.key_file");
    assert!(message.contains("give both"), "{message}");
    let (field, message) = invalid_field("[tls]\nkey_file = \"key.pem\"\n");
    assert_eq!(field, "tls.cert_file");
    assert!(message.contains("give both"), "{message}");

    let config = parse(
        "listen = \"0.0.0.0:50051\"\n[auth]\ntoken_file = \"tokens\"\n\
         [tls]\ncert_file = \"tls/cert.pem\"\nkey_file = \"~/key.pem\"\n",
    )
    .unwrap();
    assert_eq!(
        config.tls.files(),
        Some((
            Path::new("/etc/trtfarm/tls/cert.pem"),
            home().join("key.pem").as_path()
        ))
    );
    let (_, _, message) = parse_error("[tls]\ncert = \"cert.pem\"\n");
    assert!(message.contains("`cert_file`"), "{message}");
}

#[test]
fn tls_on_a_unix_socket_is_refused_saying_to_listen_on_tcp() {
    for listen in ["", "listen = \"unix:/run/d.sock\"\n"] {
        let (field, message) = invalid_field(&format!(
            "{listen}[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n"
        ));
        assert_eq!(field, "tls.cert_file", "{listen}");
        assert!(message.contains("is a Unix socket"), "{message}");
        assert!(
            message.contains("remove [tls], or listen on a TCP address"),
            "{message}"
        );
    }
}

#[test]
fn a_socket_path_too_long_for_the_kernel_is_refused_saying_what_to_shorten() {
    let state_dir = format!("/srv/{}", "d".repeat(100));
    let (field, message) = invalid_field(&format!("state_dir = \"{state_dir}\"\n"));
    assert_eq!(field, "listen");
    assert!(
        message.contains(&format!(
            "unix:{state_dir}/daemon.sock) is a socket path of 117 bytes"
        )),
        "{message}"
    );
    assert!(message.contains("at most 107"), "{message}");
    assert!(message.contains("--daemon-dir"), "{message}");
    // The longest path the kernel takes is accepted.
    let longest = format!("/{}", "s".repeat(106));
    parse(&format!("listen = \"unix:{longest}\"\n")).unwrap();
    assert_eq!(
        invalid_field(&format!("listen = \"unix:{longest}x\"\n")).0,
        "listen"
    );
}
