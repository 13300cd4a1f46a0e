//! `trtfarm verify`: rebuild every locked variant bypassing the cache and compare the new engine
//! with `engine.lock`. TensorRT-RTX plans are compared byte for byte (by digest); TensorRT
//! Enterprise plans are not byte-reproducible, so for them the engine inspector's layer JSON of
//! the locked build and of the rebuild are compared instead (same layers, same tactics).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use trtfarm::digest_cache::DigestCache;
use trtfarm::lock::{LockedEngine, read_lock};
use trtfarm::transfer::download_stream;
use trtfarm_proto::v1;
use trtfarm_types::Flavour;

use super::submit::{
    Options, Prepared, Session, Status, blank_outcome, prepare_all, request, run_variant,
    upload_missing,
};
use crate::cli::DaemonArgs;
use crate::connect::{FarmConnection, connect};
use crate::discover::find_manifests;
use crate::progress::Display;

/// Largest layer JSON read into memory for a comparison.
const MAX_LAYER_JSON: u64 = 256 << 20;

/// The verdict on one variant.
#[derive(Debug, Serialize)]
struct Verdict {
    manifest: String,
    variant: String,
    /// `match`, `differs`, `stale` (the lock no longer describes the manifest), `unlocked` or
    /// `failed`.
    verdict: &'static str,
    locked_engine: Option<String>,
    rebuilt_engine: Option<String>,
    /// What was compared: `engine digest` or `layer JSON`.
    compared: Option<&'static str>,
    detail: Option<String>,
}

/// Runs `trtfarm verify`. `Ok(false)` when any variant differs, is not locked or fails.
pub async fn run(daemon: &DaemonArgs, paths: &[PathBuf], json: bool) -> anyhow::Result<bool> {
    let cache = Arc::new(DigestCache::open_default());
    let Some(prepared) = prepare_all(&find_manifests(paths)?, &cache) else {
        return Ok(false);
    };
    let session = Session {
        client: connect(daemon).await?,
        cache,
        display: Arc::new(Display::new()),
        reconnect: crate::connect::Reconnect::new(daemon),
        following: Default::default(),
    };
    upload_missing(&mut session.client.clone(), &prepared).await?;
    let mut verdicts = Vec::new();
    let mut rebuilds = Vec::new();
    for (index, p) in prepared.iter().enumerate() {
        let lock = read_lock(&p.path)?.unwrap_or_default();
        for variant in p.manifest.variants() {
            match lock.engine(&variant.name) {
                Some(locked) => rebuilds.push((index, locked.clone())),
                None => verdicts.push(
                    verdict(p, &variant.name, "unlocked", None)
                        .detail("not in engine.lock; `trtfarm submit` records it".into()),
                ),
            }
        }
        for locked in lock
            .engines
            .iter()
            .filter(|e| p.manifest.variant(&e.name).is_none())
        {
            verdicts.push(verdict(p, &locked.name, "stale", Some(locked)).detail(
                "in engine.lock but no longer in the manifest; `trtfarm submit` drops it".into(),
            ));
        }
    }
    let options = Options {
        skip_cache: true,
        ..Options::default()
    };
    let lines = session.display.lines(
        (rebuilds.iter())
            .map(|(index, locked)| format!("{}#{} (rebuild)", prepared[*index].label, locked.name))
            .collect(),
    );
    let tasks = rebuilds.iter().zip(lines).map(|((index, locked), line)| {
        let p = &prepared[*index];
        let req = request(p, &locked.name, &options);
        run_variant(
            &session,
            req,
            line,
            blank_outcome(*index, &p.label, &locked.name),
            false,
        )
    });
    let outcomes = futures::future::join_all(tasks).await;
    session.display.finish_round();
    for ((index, locked), mut outcome) in rebuilds.iter().zip(outcomes) {
        let p = &prepared[*index];
        outcome.locate_refusal(&p.manifest);
        let mut v = verdict(p, &locked.name, "failed", Some(locked));
        if outcome.status == Status::Failed {
            v.detail = outcome.failure;
        } else if outcome.action_key != locked.action_key.to_string() {
            v.verdict = "stale";
            v.detail = Some(format!(
                "the manifest or its inputs changed since the lock was written (action key {} \
                 locked, {} now); run `trtfarm submit`",
                locked.action_key, outcome.action_key
            ));
        } else if let Some(result) = &outcome.result {
            compare(&mut session.client.clone(), locked, result, &mut v).await;
        }
        verdicts.push(v);
    }
    let ok = verdicts.iter().all(|v| v.verdict == "match");
    if json {
        let document = serde_json::json!({ "ok": ok, "variants": verdicts });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print_verdicts(&verdicts);
    }
    Ok(ok)
}

fn verdict(
    p: &Prepared,
    variant: &str,
    kind: &'static str,
    locked: Option<&LockedEngine>,
) -> Verdict {
    Verdict {
        manifest: p.label.clone(),
        variant: variant.to_string(),
        verdict: kind,
        locked_engine: locked.map(|l| l.engine.to_string()),
        rebuilt_engine: None,
        compared: None,
        detail: None,
    }
}

impl Verdict {
    fn detail(mut self, text: String) -> Self {
        self.detail = Some(text);
        self
    }
}

/// Compares a rebuild with its lock entry: the engine digest for TensorRT-RTX, the layer JSON
/// (of the locked build's stored result and of the rebuild) for Enterprise.
async fn compare(
    client: &mut FarmConnection,
    locked: &LockedEngine,
    rebuilt: &v1::ActionResult,
    v: &mut Verdict,
) {
    v.rebuilt_engine = rebuilt.engine.as_ref().map(v1::Digest::to_string);
    if locked.toolchain.flavour != Flavour::TensorRt {
        v.compared = Some("engine digest");
        let rebuilt = rebuilt.engine.as_ref().map(v1::Digest::to_blob_digest);
        v.verdict = if rebuilt == Some(Ok(locked.engine)) {
            "match"
        } else {
            "differs"
        };
        return;
    }
    v.compared = Some("layer JSON");
    match compare_layers(client, locked, rebuilt).await {
        Ok(differences) if differences.is_empty() => v.verdict = "match",
        Ok(differences) => {
            v.verdict = "differs";
            v.detail = Some(differences.join("\n"));
        }
        Err(error) => v.detail = Some(format!("cannot compare layer JSON: {error:#}")),
    }
}

async fn compare_layers(
    client: &mut FarmConnection,
    locked: &LockedEngine,
    rebuilt: &v1::ActionResult,
) -> anyhow::Result<Vec<String>> {
    let stored = client
        .get_action_result(v1::GetActionResultRequest {
            action_key: locked.action_key.to_string(),
        })
        .await?
        .into_inner();
    let layer_json = |result: &v1::ActionResult, which: &str| {
        result.layer_info.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "the {which} build has no layer JSON: {}",
                result.layer_info_unavailable
            )
        })
    };
    let old = download_json(client, &layer_json(&stored, "locked")?).await?;
    let new = download_json(client, &layer_json(rebuilt, "rebuilt")?).await?;
    Ok(layer_differences(&old, &new))
}

/// Downloads a small JSON blob into memory, checking its digest.
async fn download_json(client: &mut FarmConnection, digest: &v1::Digest) -> anyhow::Result<Value> {
    anyhow::ensure!(
        digest.size_bytes <= MAX_LAYER_JSON,
        "the layer JSON is {} bytes, more than this client reads ({MAX_LAYER_JSON})",
        digest.size_bytes
    );
    let mut stream = download_stream(client, digest).await?;
    let mut bytes = Vec::with_capacity(digest.size_bytes as usize);
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
        anyhow::ensure!(
            bytes.len() as u64 <= digest.size_bytes,
            "the daemon sent too many bytes"
        );
    }
    anyhow::ensure!(
        blake3::hash(&bytes).to_hex().as_str() == digest.blake3,
        "the layer JSON does not match its digest"
    );
    Ok(serde_json::from_slice(&bytes)?)
}

/// What differs between two engine-inspector documents (`{"Layers": [...], "Bindings": [...]}`),
/// layer by layer with the keys that changed; empty when they are the same. Object key order
/// does not matter; layer order does (it is the execution order).
pub fn layer_differences(locked: &Value, rebuilt: &Value) -> Vec<String> {
    let layers = |v: &Value| v.get("Layers").and_then(Value::as_array).cloned();
    let (Some(old), Some(new)) = (layers(locked), layers(rebuilt)) else {
        return match locked == rebuilt {
            true => Vec::new(),
            false => vec!["the layer JSON differs (no `Layers` list to compare)".into()],
        };
    };
    let mut out = Vec::new();
    if old.len() != new.len() {
        out.push(format!(
            "{} layers locked, {} rebuilt",
            old.len(),
            new.len()
        ));
    }
    for (index, (a, b)) in old.iter().zip(&new).enumerate() {
        if a == b {
            continue;
        }
        let name = a
            .get("Name")
            .and_then(Value::as_str)
            .or(a.as_str())
            .unwrap_or("?");
        let keys = match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => {
                let mut keys: Vec<&str> = a.keys().chain(b.keys()).map(String::as_str).collect();
                keys.sort_unstable();
                keys.dedup();
                keys.into_iter()
                    .filter(|k| a.get(*k) != b.get(*k))
                    .map(|k| format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k))))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            _ => format!("{a} -> {b}"),
        };
        out.push(format!("layer {index} `{name}`: {keys}"));
    }
    let without_layers = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("Layers");
        }
        v
    };
    if without_layers(locked) != without_layers(rebuilt) {
        out.push("the bindings or other engine-level fields differ".into());
    }
    out
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".to_string(), Value::to_string)
}

fn print_verdicts(verdicts: &[Verdict]) {
    for v in verdicts {
        let name = format!("{}#{}", v.manifest, v.variant);
        let compared = v.compared.map(|c| format!(" ({c})")).unwrap_or_default();
        match v.verdict {
            "match" => println!(
                "{name}  match{compared}  {}",
                v.locked_engine.as_deref().unwrap_or("")
            ),
            "differs" => {
                println!("{name}  DIFFERS{compared}");
                println!("    locked:  {}", v.locked_engine.as_deref().unwrap_or("?"));
                println!(
                    "    rebuilt: {}",
                    v.rebuilt_engine.as_deref().unwrap_or("?")
                );
            }
            other => println!("{name}  {}", other.to_uppercase()),
        }
        if let Some(detail) = &v.detail {
            println!("    {}", detail.replace('\n', "\n    "));
        }
    }
    let matched = verdicts.iter().filter(|v| v.verdict == "match").count();
    println!(
        "verified {} variants: {matched} match, {} do not",
        verdicts.len(),
        verdicts.len() - matched
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inspector(tactic: &str) -> Value {
        json!({
            "Layers": [
                {"Name": "conv1", "LayerType": "CaskConvolution", "TacticName": tactic, "TacticValue": "0x1"},
                {"Name": "relu1", "LayerType": "PointWise", "TacticValue": "0x2"}
            ],
            "Bindings": ["images", "scores"]
        })
    }

    #[test]
    fn identical_layer_json_matches_whatever_the_key_order() {
        let reordered: Value = serde_json::from_str(
            r#"{"Bindings": ["images", "scores"], "Layers": [
                {"TacticValue": "0x1", "TacticName": "sm90_xmma", "LayerType": "CaskConvolution", "Name": "conv1"},
                {"TacticValue": "0x2", "LayerType": "PointWise", "Name": "relu1"}]}"#,
        )
        .unwrap();
        assert_eq!(
            layer_differences(&inspector("sm90_xmma"), &reordered),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_different_tactic_is_named_with_its_layer() {
        let differences =
            layer_differences(&inspector("sm90_xmma"), &inspector("sm90_implicit_gemm"));
        assert_eq!(
            differences,
            ["layer 0 `conv1`: TacticName: \"sm90_xmma\" -> \"sm90_implicit_gemm\""]
        );
    }

    #[test]
    fn missing_layers_bindings_and_name_only_documents_differ() {
        let mut fewer = inspector("a");
        fewer["Layers"].as_array_mut().unwrap().pop();
        fewer["Bindings"] = json!(["images"]);
        let differences = layer_differences(&inspector("a"), &fewer);
        assert_eq!(differences[0], "2 layers locked, 1 rebuilt");
        assert!(
            differences.iter().any(|d| d.contains("bindings")),
            "{differences:?}"
        );

        let names = |n: &str| json!({"Layers": ["conv1", n], "Bindings": []});
        assert_eq!(
            layer_differences(&names("relu1"), &names("relu1")),
            Vec::<String>::new()
        );
        assert_eq!(
            layer_differences(&names("relu1"), &names("gelu1")),
            ["layer 1 `relu1`: \"relu1\" -> \"gelu1\""]
        );
        assert_eq!(layer_differences(&json!([1]), &json!([2])).len(), 1);
    }
}
