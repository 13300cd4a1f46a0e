//! `trtfarm inspect`: what an engine is. The engine (a file, a digest or `MANIFEST#ENGINE`) is
//! found in an `engine.lock`, whose entry gives its action key; the daemon's result for that key
//! says how it was built, and its provenance statement what went in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use trtfarm::digest_cache::DigestCache;
use trtfarm::lock::{LockedEngine, lock_path, read_lock};
use trtfarm::transfer::download_to_writer;
use trtfarm_proto::v1;
use trtfarm_types::BlobDigest;

use super::engine_ref::{EngineRef, locked_entry, parse_engine_ref};
use super::jobs::time_of;
use crate::cli::{DaemonArgs, InspectArgs};
use crate::connect::{FarmConnection, connect, rpc_error};
use crate::discover::find_manifests;
use crate::term::LABEL_WIDTH;

/// The most of a provenance statement read into memory (real ones are a few KiB).
const MAX_PROVENANCE_BYTES: u64 = 4 << 20;

/// What `inspect` was asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    /// An engine file, hashed and looked up in the locks under the current directory.
    File(PathBuf),
    /// An engine digest, looked up in the locks under the current directory.
    Digest(BlobDigest),
    /// An engine variant, resolved through the `engine.lock` beside the manifest.
    Locked { manifest: PathBuf, engine: String },
}

/// One lock entry naming the engine.
#[derive(Debug, Clone, Serialize)]
struct LockEntry {
    /// The manifest beside the lock.
    manifest: PathBuf,
    /// The entry, as `engine.lock` holds it.
    #[serde(flatten)]
    entry: LockedEngine,
}

/// The `--json` document (and what the text is printed from).
#[derive(Debug, Serialize)]
struct Inspection {
    /// The engine's digest.
    engine: String,
    /// The file inspected, when a file was given.
    file: Option<PathBuf>,
    /// Every lock entry naming the engine; the first one's action key was asked about.
    locks: Vec<LockEntry>,
    /// Whether the daemon has a result for that action key.
    daemon_record: bool,
    /// The daemon's result.
    result: Option<ResultView>,
    /// The provenance statement (in-toto), as stored.
    provenance: Option<Value>,
    /// The variant's optimization profiles, from its manifest (none for static shapes).
    profiles: Option<Vec<manifest_schema::Profile>>,
    /// Things worth knowing that are not failures (no record, an unreadable manifest, ...).
    notes: Vec<String>,
}

/// The daemon's `ActionResult`, in plain terms.
#[derive(Debug, Serialize)]
struct ResultView {
    toolchain: Option<ToolchainView>,
    built_by: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    build_seconds: Option<f64>,
    layers_by_precision: BTreeMap<String, u64>,
    /// Why there is no layer JSON, when there is none.
    layer_info_unavailable: Option<String>,
    /// Every blob the result names (engine, build log, provenance, ...), by field name.
    blobs: BTreeMap<&'static str, String>,
    /// `layers_by_precision` as `status` prints it.
    #[serde(skip)]
    precision_summary: Option<String>,
}

#[derive(Debug, Serialize)]
struct ToolchainView {
    flavour: String,
    version: String,
    library_digest: String,
}

/// Runs `trtfarm inspect`.
pub async fn run(daemon: &DaemonArgs, args: &InspectArgs) -> anyhow::Result<bool> {
    let wanted = parse_wanted(&args.what)?;
    let (engine, file, locks) = resolve(&wanted)?;
    let mut inspection = Inspection {
        engine: engine.to_string(),
        file,
        daemon_record: false,
        result: None,
        provenance: None,
        profiles: None,
        notes: Vec::new(),
        locks,
    };
    let first = inspection.locks[0].clone();
    match manifest_schema::load(&first.manifest) {
        Ok(manifest) => match manifest.variant(&first.entry.name) {
            Some(variant) => inspection.profiles = Some(variant.profiles.clone()),
            None => inspection.notes.push(format!(
                "{} no longer has an engine `{}`",
                first.manifest.display(),
                first.entry.name
            )),
        },
        Err(_) => inspection.notes.push(format!(
            "{} does not load now (`trtfarm check {}` says why); its profiles are not shown",
            first.manifest.display(),
            first.manifest.display()
        )),
    }

    let mut client = connect(daemon).await?;
    let key = first.entry.action_key.to_string();
    let request = v1::GetActionResultRequest {
        action_key: key.clone(),
    };
    match client.get_action_result(request).await {
        Ok(response) => {
            let result = response.into_inner();
            inspection.daemon_record = true;
            if result.engine.as_ref().map(v1::Digest::to_string) != Some(engine.to_string()) {
                inspection.notes.push(format!(
                    "the daemon's result for this action key is another engine, {} (rebuilt \
                     since the lock was written); what follows describes that build",
                    result
                        .engine
                        .as_ref()
                        .map(v1::Digest::to_string)
                        .unwrap_or_default()
                ));
            }
            if let Some(digest) = &result.provenance {
                match fetch_provenance(&mut client, digest).await {
                    Ok(statement) => inspection.provenance = Some(statement),
                    Err(error) => inspection
                        .notes
                        .push(format!("cannot read the provenance {digest}: {error:#}")),
                }
            }
            inspection.result = Some(view(&result));
        }
        Err(status) if status.code() == tonic::Code::NotFound => {
            inspection.notes.push(format!(
                "the daemon has no record of action key {key} (its store was collected since, or \
                 another daemon built it); shown is what engine.lock says"
            ));
        }
        Err(status) => {
            return Err(rpc_error(
                format_args!("cannot ask the daemon how {} was built", inspection.engine),
                status.into(),
            ));
        }
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", describe(&inspection));
        for note in &inspection.notes {
            eprintln!("note: {note}");
        }
    }
    Ok(true)
}

/// Reads the argument: an existing file first (a path may contain `#`), then a digest or
/// `MANIFEST#ENGINE`.
fn parse_wanted(text: &str) -> anyhow::Result<Wanted> {
    if Path::new(text).is_file() {
        return Ok(Wanted::File(PathBuf::from(text)));
    }
    match parse_engine_ref(text) {
        Ok(EngineRef::Digest(digest)) => Ok(Wanted::Digest(digest)),
        Ok(EngineRef::Locked { manifest, engine }) => Ok(Wanted::Locked { manifest, engine }),
        Err(error) if text.starts_with("blake3:") => Err(error),
        Err(_) => anyhow::bail!(
            "`{text}` is not an engine file (no such file), a digest \
             (blake3:<64 hex digits>/<size>) or MANIFEST#ENGINE"
        ),
    }
}

/// The engine's digest, the file given (if any), and the lock entries naming the engine (at
/// least one, or an error saying how to find it).
fn resolve(wanted: &Wanted) -> anyhow::Result<(BlobDigest, Option<PathBuf>, Vec<LockEntry>)> {
    match wanted {
        Wanted::Locked { manifest, engine } => {
            let entry = locked_entry(manifest, engine)?;
            Ok((
                entry.engine,
                None,
                vec![LockEntry {
                    manifest: manifest.clone(),
                    entry,
                }],
            ))
        }
        Wanted::File(path) => {
            let (digest, _) = DigestCache::open_default().digest(path)?;
            let digest = digest
                .to_blob_digest()
                .with_context(|| format!("cannot digest {}", path.display()))?;
            let locks = locks_naming(&digest, &format!("{} ({digest})", path.display()))?;
            Ok((digest, Some(path.clone()), locks))
        }
        Wanted::Digest(digest) => {
            let locks = locks_naming(digest, &digest.to_string())?;
            Ok((*digest, None, locks))
        }
    }
}

/// The entries of the `engine.lock` files under the current directory that name `engine`;
/// an error, saying how to inspect it, when none does. `what` names the engine in messages.
fn locks_naming(engine: &BlobDigest, what: &str) -> anyhow::Result<Vec<LockEntry>> {
    // No manifest here (or a search that stopped) is the same answer as no lock naming the
    // engine, with the reason added to it.
    let (manifests, searched) = match find_manifests(&[]) {
        Ok(manifests) => (manifests, String::new()),
        Err(error) => (Vec::new(), format!(" ({error:#})")),
    };
    let mut found = Vec::new();
    for manifest in manifests {
        let lock = match read_lock(&manifest) {
            Ok(Some(lock)) => lock,
            Ok(None) => continue,
            Err(error) => {
                eprintln!(
                    "warning: skipping {}: {error:#}",
                    lock_path(&manifest).display()
                );
                continue;
            }
        };
        // `cnn/engine.toml`, not `./cnn/engine.toml`: as the user would type it.
        let shown = manifest.strip_prefix(".").unwrap_or(&manifest);
        for entry in lock.engines.into_iter().filter(|e| e.engine == *engine) {
            found.push(LockEntry {
                manifest: shown.to_path_buf(),
                entry,
            });
        }
    }
    let here = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| ".".to_string());
    anyhow::ensure!(
        !found.is_empty(),
        "no engine.lock under {here} names {what}{searched}, so there is no build to describe: run \
         `trtfarm inspect` in the directory of the project that built it, or name the engine as \
         MANIFEST#ENGINE (for example `trtfarm inspect path/to/engine.toml#fp16`)"
    );
    Ok(found)
}

/// Downloads the provenance statement (verified) and parses it.
async fn fetch_provenance(
    client: &mut FarmConnection,
    digest: &v1::Digest,
) -> anyhow::Result<Value> {
    anyhow::ensure!(
        digest.size_bytes <= MAX_PROVENANCE_BYTES,
        "it is {} bytes, more than a provenance statement ever is",
        digest.size_bytes
    );
    let mut bytes = Vec::new();
    download_to_writer(client, digest, &mut bytes)
        .await
        .map_err(|error| rpc_error("cannot download it", error))?;
    serde_json::from_slice(&bytes).context("it is not JSON")
}

/// The result in plain terms.
fn view(result: &v1::ActionResult) -> ResultView {
    let started = time_of(result.started_at_ms);
    let finished = time_of(result.finished_at_ms);
    let rfc3339 = |t: Option<std::time::SystemTime>| {
        t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
    };
    ResultView {
        toolchain: result.toolchain.as_ref().map(|t| ToolchainView {
            flavour: t.flavour.clone(),
            version: t.version.clone(),
            library_digest: t.library_digest.clone(),
        }),
        built_by: result.built_by.clone(),
        started_at: rfc3339(started),
        finished_at: rfc3339(finished),
        build_seconds: (started.is_some() && finished.is_some())
            .then(|| result.build_duration().as_secs_f64()),
        layers_by_precision: result.layers_by_precision.clone().into_iter().collect(),
        layer_info_unavailable: (!result.layer_info_unavailable.is_empty())
            .then(|| result.layer_info_unavailable.clone()),
        blobs: result
            .blobs()
            .map(|(what, digest)| (what, digest.to_string()))
            .collect(),
        precision_summary: result.precision_summary(),
    }
}

/// The text `inspect` prints: `label  value` lines.
fn describe(inspection: &Inspection) -> String {
    let mut out = String::new();
    let mut line =
        |label: &str, value: String| out.push_str(&format!("{label:<LABEL_WIDTH$}{value}\n"));
    line("engine", inspection.engine.clone());
    if let Some(file) = &inspection.file {
        line("file", file.display().to_string());
    }
    for lock in &inspection.locks {
        line(
            "locked as",
            format!("{}#{}", lock.manifest.display(), lock.entry.name),
        );
    }
    let entry = &inspection.locks[0].entry;
    line("action key", entry.action_key.to_string());
    line(
        "toolchain",
        format!(
            "{} {} (library {})",
            entry.toolchain.flavour, entry.toolchain.version, entry.toolchain.library
        ),
    );
    line("target", entry.target.clone());
    if let Some(cache) = &entry.timing_cache {
        line("timing cache", cache.to_string());
    }
    match &inspection.result {
        None => line("daemon", "no record of this build".to_string()),
        Some(result) => {
            if !result.built_by.is_empty() {
                line("built by", result.built_by.clone());
            }
            if let Some(finished) = &result.finished_at {
                let took = result
                    .build_seconds
                    .map(|s| format!(" (took {s:.1} s)"))
                    .unwrap_or_default();
                line("built", format!("{finished}{took}"));
            }
            if let Some(layers) = &result.precision_summary {
                line("layers", layers.clone());
            }
            for (what, digest) in &result.blobs {
                if *what != "engine" {
                    line(&what.replace('_', " "), digest.clone());
                }
            }
            if let Some(why) = &result.layer_info_unavailable {
                line("layer info", format!("unavailable: {why}"));
            }
        }
    }
    if let Some(statement) = &inspection.provenance {
        for (label, value) in provenance_lines(statement) {
            line(label, value);
        }
    }
    match &inspection.profiles {
        Some(profiles) if profiles.is_empty() => line(
            "profiles",
            "none (the model's inputs are static)".to_string(),
        ),
        Some(profiles) => {
            for profile in profiles {
                for (input, range) in &profile.inputs {
                    line(
                        "profile",
                        format!(
                            "{}: {input} min {:?} opt {:?} max {:?}",
                            profile.name, range.min, range.opt, range.max
                        ),
                    );
                }
            }
        }
        None => {}
    }
    out
}

/// The key facts of a provenance statement as (label, value) lines: who built it, from which
/// inputs, with which settings. Fields it lacks are left out.
fn provenance_lines(statement: &Value) -> Vec<(&'static str, String)> {
    let predicate = &statement["predicate"];
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut lines = Vec::new();
    let builder = &predicate["builder"];
    if let Some(host) = text(&builder["host"]) {
        let mut value = host;
        if let Some(version) = text(&builder["daemonVersion"]) {
            value.push_str(&format!(", trtfarmd {version}"));
        }
        if let Some(gpu) = text(&builder["gpu"]["uuid"]) {
            value.push_str(&format!(", GPU {gpu}"));
        }
        lines.push(("builder", value));
    }
    if let (Some(path), Some(variant)) = (
        text(&predicate["manifest"]["path"]),
        text(&predicate["manifest"]["variant"]),
    ) {
        lines.push(("built from", format!("{path}#{variant}")));
    }
    for input in predicate["inputs"].as_array().into_iter().flatten() {
        let role = text(&input["role"]).unwrap_or_default();
        let name = text(&input["path"])
            .or_else(|| input["index"].as_u64().map(|i| format!("#{i}")))
            .unwrap_or_default();
        let digest = match (text(&input["digest"]["blake3"]), input["size"].as_u64()) {
            (Some(hex), Some(size)) => format!("blake3:{hex}/{size}"),
            _ => String::new(),
        };
        lines.push((
            "input",
            format!("{role} {name} {digest}").trim().to_string(),
        ));
    }
    let mut settings = Vec::new();
    flatten("", &predicate["settings"], &mut settings);
    for (key, value) in settings {
        lines.push(("setting", format!("{key} = {value}")));
    }
    lines
}

/// `value`'s leaves as (`a.b`, JSON text), nulls left out (an unset optional setting).
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, value, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEX: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn arguments_are_files_then_digests_then_manifest_and_engine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("odd#name.engine");
        std::fs::write(&file, b"plan").unwrap();
        let file_text = file.to_str().unwrap();
        assert_eq!(parse_wanted(file_text).unwrap(), Wanted::File(file.clone()));
        let digest = format!("blake3:{HEX}/12");
        assert_eq!(
            parse_wanted(&digest).unwrap(),
            Wanted::Digest(digest.parse().unwrap())
        );
        assert_eq!(
            parse_wanted("models/engine.toml#fp16").unwrap(),
            Wanted::Locked {
                manifest: PathBuf::from("models/engine.toml"),
                engine: "fp16".into()
            }
        );
        let error = parse_wanted(&format!("blake3:{HEX}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("blake3:<64 hex digits>/<size"), "{error}");
        let error = parse_wanted("missing.engine").unwrap_err().to_string();
        assert!(error.contains("MANIFEST#ENGINE"), "{error}");
    }

    #[test]
    fn provenance_shows_builder_inputs_and_set_settings() {
        let statement = json!({
            "predicate": {
                "builder": { "host": "gpu-7", "daemonVersion": "0.1.0", "gpu": null },
                "manifest": { "path": "cnn/engine.toml", "variant": "fp16" },
                "inputs": [
                    { "role": "model", "path": "net.onnx", "digest": { "blake3": HEX }, "size": 9 },
                    { "role": "plugin", "index": 0, "digest": { "blake3": HEX }, "size": 3 },
                ],
                "settings": {
                    "precision": "fp16",
                    "max_aux_streams": null,
                    "compatibility": { "compute_capabilities": ["8.6"], "gpu": null },
                },
            }
        });
        let lines = provenance_lines(&statement);
        let expected: Vec<(&str, String)> = vec![
            ("builder", "gpu-7, trtfarmd 0.1.0".into()),
            ("built from", "cnn/engine.toml#fp16".into()),
            ("input", format!("model net.onnx blake3:{HEX}/9")),
            ("input", format!("plugin #0 blake3:{HEX}/3")),
            (
                "setting",
                "compatibility.compute_capabilities = [\"8.6\"]".into(),
            ),
            ("setting", "precision = \"fp16\"".into()),
        ];
        assert_eq!(lines, expected);
        assert_eq!(provenance_lines(&json!({})), []);
    }

    #[test]
    fn every_label_stands_apart_from_its_value() {
        let digest = BlobDigest::of_bytes(b"plan");
        let entry = LockedEngine {
            name: "fp16".into(),
            toolchain: trtfarm::lock::LockedToolchain {
                flavour: trtfarm_types::Flavour::TensorRtRtx,
                version: "1.7.1.116".parse().unwrap(),
                library: trtfarm_types::Blake3Digest([0xab; 32]),
            },
            target: "sm86,sm89".into(),
            timing_cache: Some(digest),
            action_key: trtfarm_types::ActionKey([1; 32]),
            engine: digest,
            inputs: Default::default(),
            settings: Default::default(),
        };
        let wire = Some(v1::Digest::from(&digest));
        let mut result = v1::ActionResult {
            engine: wire.clone(),
            timing_cache_loaded: wire.clone(),
            transformed_model: wire,
            built_by: "gpu-7".into(),
            started_at_ms: 1_000,
            finished_at_ms: 3_500,
            ..Default::default()
        };
        result.layers_by_precision.insert("fp16".into(), 40);
        result.layers_by_precision.insert("fp32".into(), 3);
        let inspection = Inspection {
            engine: digest.to_string(),
            file: Some(PathBuf::from("build/fp16.engine")),
            locks: vec![LockEntry {
                manifest: PathBuf::from("cnn/engine.toml"),
                entry,
            }],
            daemon_record: true,
            result: Some(view(&result)),
            provenance: None,
            profiles: Some(Vec::new()),
            notes: Vec::new(),
        };
        let text = describe(&inspection);
        for expected in [
            "locked as           cnn/engine.toml#fp16\n",
            "target              sm86,sm89\n",
            "layers              fp16 40, fp32 3\n",
            "built               1970-01-01T00:00:03Z (took 2.5 s)\n",
            "timing cache loaded blake3:",
            "transformed model   blake3:",
            "profiles            none",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
        for line in text.lines() {
            let (label, value) = line.split_at(LABEL_WIDTH.min(line.len()));
            assert!(label.ends_with(' ') && !value.starts_with(' '), "{line:?}");
        }
        let json = serde_json::to_value(&inspection).unwrap();
        assert_eq!(json["locks"][0]["name"], "fp16");
        assert_eq!(json["locks"][0]["manifest"], "cnn/engine.toml");
        assert_eq!(json["result"]["layers_by_precision"]["fp16"], 40);
        assert_eq!(json["result"]["blobs"]["engine"], digest.to_string());
    }
}
