//! Tests that `examples/daemon.toml`, `docs/daemon-config.md` and the flags cover every setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::CommandFactory;
use serde::de::{self, DeserializeOwned, Visitor};

use super::*;

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn home() -> PathBuf {
    dirs::home_dir().expect("tests need a home directory")
}

#[test]
fn the_example_file_parses_with_every_field() {
    let path = workspace_file("examples/daemon.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = DaemonConfig::from_toml_str(&text, &path).unwrap();
    assert_eq!(config.listen, None, "optional: commented out");
    assert_eq!(
        config.listen_addr(),
        ListenAddr::Unix(home().join(".local/state/trtfarm/daemon/daemon.sock"))
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
    assert_eq!(full.listen, Some("127.0.0.1:50051".parse().unwrap()));
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
        full.toolchains.builder.as_deref(),
        Some(Path::new("/opt/trtfarm/bin/trtfarm-builder"))
    );
    assert_eq!(
        full.auth.token_file.as_deref(),
        Some(Path::new("/etc/trtfarm/tokens"))
    );
    assert_eq!(
        full.tls.files(),
        Some((
            Path::new("/etc/trtfarm/tls/cert.pem"),
            Path::new("/etc/trtfarm/tls/key.pem")
        ))
    );
    assert_eq!(config.auth.token_file, None, "optional: commented out");
    assert_eq!(config.tls.files(), None, "optional: commented out");
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

/// Every setting's dotted name (`listen`, `limits.max_blob_size`, ...), read from the serde
/// derives so that a new field cannot be forgotten by these tests.
fn setting_names() -> Vec<String> {
    let tables = [
        ("store", fields_of::<StoreConfig>()),
        ("slots", fields_of::<SlotsConfig>()),
        ("limits", fields_of::<LimitsConfig>()),
        ("toolchains", fields_of::<ToolchainsConfig>()),
        ("gpu", fields_of::<GpuConfig>()),
        ("auth", fields_of::<AuthConfig>()),
        ("tls", fields_of::<TlsConfig>()),
        ("queue", fields_of::<QueueConfig>()),
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
