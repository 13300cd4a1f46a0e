//! Tests of `daemon.toml` parsing, flag and environment overlay, and the docs staying in step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use serde::de::{self, DeserializeOwned, Visitor};

use super::*;

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

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
    assert_eq!(
        config.listen,
        "127.0.0.1:50051".parse::<SocketAddr>().unwrap()
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
    assert_eq!(config.slots.cpu, (cpus / 2).max(1));
    assert_eq!(config.slots.gpu_builds_per_gpu, 1);
    let limits = &config.limits;
    assert_eq!(limits.max_queued_jobs, 1024);
    assert_eq!(limits.max_blob_size, 64 * GIB);
    assert_eq!(limits.max_inputs, 4096);
    assert_eq!(limits.default_build_timeout, Duration::from_secs(3600));
    assert_eq!(limits.max_build_timeout, Duration::from_secs(6 * 3600));
    assert_eq!(limits.worker_memory, None);
    assert_eq!(limits.max_log_size, 16 * MIB);
    assert_eq!(limits.job_history, 10_000);
    assert_eq!(config.toolchains, ToolchainsConfig::default());
    assert_eq!(config.toolchains.tensorrt_lib_dir, None);
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
fn the_example_file_parses_with_every_field() {
    let path = workspace_file("examples/daemon.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = DaemonConfig::from_toml_str(&text, &path).unwrap();
    assert_eq!(
        config.listen,
        "127.0.0.1:50051".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9464".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(config.state_dir, home().join(".local/state/trtfarm/daemon"));
    assert_eq!(config.drain_timeout, Duration::from_secs(60));
    assert_eq!(
        config.store.url,
        format!("file://{}/.cache/trtfarm/store", home().display())
    );
    assert_eq!(config.slots.cpu, 4);
    assert_eq!(config.slots.gpu_builds_per_gpu, 1);
    assert_eq!(config.limits.max_queued_jobs, 1024);
    assert_eq!(config.limits.max_blob_size, 64 * GIB);
    assert_eq!(
        config.limits.default_build_timeout,
        Duration::from_secs(3600)
    );
    assert_eq!(
        config.limits.max_build_timeout,
        Duration::from_secs(6 * 3600)
    );
    assert_eq!(config.limits.max_log_size, 16 * MIB);

    // The optional settings are shown commented out (`#key = value`): they must parse too.
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let full = DaemonConfig::from_toml_str(&uncommented, &path).unwrap();
    assert_eq!(full.action_key_salt.as_deref(), Some("2026-11-incident-42"));
    assert_eq!(full.limits.worker_memory, Some(32 * GIB));
    assert_eq!(
        full.toolchains.tensorrt_rtx_lib_dir.as_deref(),
        Some(Path::new("/opt/tensorrt-rtx/lib"))
    );
    assert_eq!(
        full.toolchains.tensorrt_lib_dir.as_deref(),
        Some(Path::new("/opt/tensorrt/lib"))
    );
    assert_eq!(
        full.store.options,
        BTreeMap::from([
            ("aws_allow_http".to_string(), "true".to_string()),
            (
                "aws_endpoint".to_string(),
                "http://127.0.0.1:9000".to_string()
            ),
        ])
    );

    // Every setting appears in the fully uncommented example.
    let table: toml::Table = toml::from_str(&uncommented).unwrap();
    for key in setting_names() {
        let mut value = Some(&table);
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let item = value.and_then(|table| table.get(part));
            if parts.peek().is_some() {
                value = item.and_then(toml::Value::as_table);
            } else {
                assert!(item.is_some(), "examples/daemon.toml does not show `{key}`");
            }
        }
    }
}

#[test]
fn the_docs_name_every_setting_flag_and_environment_variable() {
    let docs = std::fs::read_to_string(workspace_file("docs/daemon-config.md")).unwrap();
    for key in setting_names() {
        assert!(
            docs.contains(&format!("### `{key}`")),
            "docs/daemon-config.md has no section for `{key}`"
        );
    }
    for arg in ServeArgs::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        assert!(docs.contains(&format!("`--{long} <")), "docs lack --{long}");
        let env = arg.get_env().unwrap().to_str().unwrap();
        assert!(docs.contains(&format!("`{env}`")), "docs lack {env}");
    }
}

#[test]
fn every_flag_has_an_environment_variable_named_after_it() {
    let mut flags = 0;
    for arg in ServeArgs::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let expected = format!("TRTFARMD_{}", long.to_uppercase().replace('-', "_"));
        assert_eq!(
            arg.get_env().and_then(|env| env.to_str()),
            Some(expected.as_str()),
            "--{long}"
        );
        flags += 1;
    }
    // One flag per setting, plus --config.
    assert_eq!(flags, setting_names().len() + 1);
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
    let config = parse("drain_timeout = \"1h 30m\"\n[limits]\nmax_build_timeout = \"90s\"\ndefault_build_timeout = \"500ms\"\n").unwrap();
    assert_eq!(config.drain_timeout, Duration::from_secs(5400));
    assert_eq!(config.limits.max_build_timeout, Duration::from_secs(90));
    assert_eq!(
        config.limits.default_build_timeout,
        Duration::from_millis(500)
    );

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
    assert!(!parse("listen = \"0.0.0.0:50051\"\n").unwrap().is_loopback());

    let (_, _, message) = parse_error("listen = \"localhost:50051\"\n");
    assert!(message.contains("no host names"), "{message}");
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
    let (field, message) =
        invalid_field("[limits]\ndefault_build_timeout = \"2h\"\nmax_build_timeout = \"1h\"\n");
    assert_eq!(field, "limits.default_build_timeout");
    assert!(
        message.contains("2h") && message.contains("1h"),
        "{message}"
    );

    assert_eq!(invalid_field("[slots]\ncpu = 0\n").0, "slots.cpu");
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

    let config =
        parse("[store]\nurl = \"s3://bucket/prefix\"\noptions = { aws_region = \"eu-west-1\" }\n")
            .unwrap();
    assert_eq!(config.store.url, "s3://bucket/prefix");
    assert_eq!(config.store.options["aws_region"], "eu-west-1");

    let (_, message) = invalid_field("[store]\nurl = \"s3:/bucket\"\n");
    assert!(message.contains("scheme"), "{message}");
}

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
        "--default-build-timeout",
        "10m",
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
            default_build_timeout: Some(Duration::from_secs(600)),
            max_build_timeout: Some(Duration::from_secs(7200)),
            worker_memory: Some(8 * GIB),
            max_log_size: Some(MIB),
            job_history: Some(5),
            tensorrt_rtx_lib_dir: Some("/opt/rtx".into()),
            tensorrt_lib_dir: Some("/opt/trt".into()),
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
         [limits]\nmax_inputs = 9\nmax_build_timeout = \"10h\"\ndefault_build_timeout = \"8h\"\n",
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
    assert_eq!(config.listen.port(), 7002);
    assert_eq!(
        config.limits.max_build_timeout,
        Duration::from_secs(9 * 3600)
    );
    // File over default.
    assert_eq!(config.drain_timeout, Duration::from_secs(300));
    assert_eq!(config.limits.max_inputs, 9);
    assert_eq!(
        config.limits.default_build_timeout,
        Duration::from_secs(8 * 3600)
    );
    assert_eq!(config.store.url, "memory://");
    // Default where neither says.
    assert_eq!(config.limits.max_queued_jobs, 1024);
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
        max_build_timeout: Some(Duration::from_secs(3600)),
        ..ServeArgs::default()
    };
    match DaemonConfig::load_with_default_file(&args, None) {
        Err(ConfigError::Invalid { field, .. }) => {
            assert_eq!(field, "limits.default_build_timeout")
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
fn build_timeouts_above_the_maximum_are_refused_not_clamped() {
    let limits = LimitsConfig::default();
    assert_eq!(limits.build_timeout(None), Ok(Duration::from_secs(3600)));
    let six_hours = Duration::from_secs(6 * 3600);
    assert_eq!(limits.build_timeout(Some(six_hours)), Ok(six_hours));
    let error = limits
        .build_timeout(Some(six_hours + Duration::from_secs(1)))
        .unwrap_err();
    assert_eq!(error.max, six_hours);
    assert!(
        error.to_string().contains("limits.max_build_timeout"),
        "{error}"
    );
}

/// Every setting's dotted name (`listen`, `limits.max_blob_size`, ...), read from the serde
/// derives so that a new field cannot be forgotten by these tests.
fn setting_names() -> Vec<String> {
    let tables = [
        ("store", fields_of::<StoreConfig>()),
        ("slots", fields_of::<SlotsConfig>()),
        ("limits", fields_of::<LimitsConfig>()),
        ("toolchains", fields_of::<ToolchainsConfig>()),
    ];
    let mut names = Vec::new();
    for field in fields_of::<DaemonConfig>() {
        match tables.iter().find(|(table, _)| table == field) {
            Some((table, fields)) => names.extend(fields.iter().map(|f| format!("{table}.{f}"))),
            None => names.push(field.to_string()),
        }
    }
    names
}

/// The field names serde's derive declares for `T`.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldLister(&mut fields));
    fields.expect("a struct")
}

/// A deserializer that only records the field list a derived struct asks for.
struct FieldLister<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for FieldLister<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs are listed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("listed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
