//! `trtfarm timing-cache`: what the farm's registry holds for TensorRT Enterprise timing caches.
//!
//! - `ls [PATH…]`: each engine's scope (toolchain, GPU, MPS share, timing settings), the
//!   versions recorded for it, and which of the given manifests' engine.lock files pin each.
//! - `show DIGEST`: one version's record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;
use trtfarm::digest_cache::DigestCache;
use trtfarm::lock::read_lock;
use trtfarm_proto::v1;
use trtfarm_types::BlobDigest;

use super::jobs::{age, align, time_of};
use super::submit::{Options, prepare_all, request};
use crate::cli::DaemonArgs;
use crate::connect::{connect, describe_status};
use crate::discover::find_manifests;

/// Runs `trtfarm timing-cache ls`.
pub async fn list(daemon: &DaemonArgs, paths: &[PathBuf], json: bool) -> anyhow::Result<bool> {
    let cache = Arc::new(DigestCache::open_default());
    let Some(prepared) = prepare_all(&find_manifests(paths)?, &cache) else {
        return Ok(false);
    };
    // Every pin of every given lock, by digest: "which locks pin it".
    let mut pins: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &prepared {
        for engine in read_lock(&p.path)?.map(|l| l.engines).unwrap_or_default() {
            if let Some(cache) = engine.timing_cache {
                let entry = format!("{}#{}", p.label, engine.name);
                pins.entry(cache.to_string()).or_default().push(entry);
            }
        }
    }
    let mut client = connect(daemon).await?;
    let mut lines = Vec::new();
    let mut ok = true;
    for p in &prepared {
        for variant in p.manifest.variants() {
            let engine = format!("{}#{}", p.label, variant.name);
            let req = request(p, &variant.name, &Options::default());
            match client.list_timing_caches(req).await {
                Ok(line) => lines.push((engine, line.into_inner())),
                Err(status) => {
                    ok = false;
                    eprintln!("error: {engine}: {}", describe_status(&status));
                }
            }
        }
    }
    if json {
        let engines: Vec<_> = lines
            .iter()
            .map(|(engine, line)| line_json(engine, line, &pins))
            .collect();
        println!("{:#}", json!({ "engines": engines }));
    } else {
        print!("{}", describe_lines(&lines, &pins, SystemTime::now()));
    }
    Ok(ok)
}

/// Runs `trtfarm timing-cache show DIGEST`.
pub async fn show(daemon: &DaemonArgs, digest: &str, json: bool) -> anyhow::Result<bool> {
    let parsed: BlobDigest = digest.parse().map_err(|e| {
        anyhow::anyhow!("`{digest}` is not a digest ({e}); write it as blake3:<hex>/<size>")
    })?;
    let mut client = connect(daemon).await?;
    let version = client
        .get_timing_cache(v1::GetTimingCacheRequest {
            digest: Some((&parsed).into()),
        })
        .await
        .map_err(|status| anyhow::anyhow!("{}", describe_status(&status)))?
        .into_inner();
    if json {
        println!("{:#}", version_json(&version, &BTreeMap::new()));
    } else {
        print!("{}", describe_version(&version, SystemTime::now()));
    }
    Ok(true)
}

fn digest_text(digest: Option<&v1::Digest>) -> String {
    digest.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// `blake3:0123456789ab…/1234`: enough of the hash to tell versions apart in a table.
fn short(digest: Option<&v1::Digest>) -> String {
    match digest {
        Some(d) => format!(
            "blake3:{}…/{}",
            &d.blake3[..d.blake3.len().min(12)],
            d.size_bytes
        ),
        None => "-".to_owned(),
    }
}

fn when(ms: i64, now: SystemTime) -> String {
    time_of(ms).map_or_else(|| "-".to_owned(), |t| format!("{} ago", age(t, now)))
}

/// What `ls` prints: per engine its policy and scope, then one aligned row per version.
fn describe_lines(
    lines: &[(String, v1::TimingCacheLine)],
    pins: &BTreeMap<String, Vec<String>>,
    now: SystemTime,
) -> String {
    let mut out = String::new();
    for (engine, line) in lines {
        if line.scope.is_empty() {
            out.push_str(&format!(
                "{engine}: no timing cache (policy `{}`{})\n",
                line.policy,
                if line.policy == "off" {
                    ""
                } else {
                    "; only TensorRT Enterprise builds time tactics"
                }
            ));
            continue;
        }
        out.push_str(&format!(
            "{engine}: policy `{}`, scope {}\n",
            line.policy, line.scope
        ));
        if line.versions.is_empty() {
            out.push_str(
                "  nothing recorded yet: build it once with timing_cache.policy = \"record\"\n",
            );
            continue;
        }
        let mut rows = vec![["  DIGEST", "RECORDED", "BY BUILD", "PINNED BY"].map(String::from)];
        for version in &line.versions {
            let pinned = version
                .digest
                .as_ref()
                .and_then(|d| pins.get(&d.to_string()))
                .map_or_else(|| "-".to_owned(), |p| p.join(", "));
            rows.push([
                format!("  {}", short(version.digest.as_ref())),
                when(version.recorded_at_ms, now),
                version.recorded_by.chars().take(12).collect(),
                pinned,
            ]);
        }
        out.push_str(&align(&rows));
    }
    out
}

fn describe_version(version: &v1::TimingCacheVersion, now: SystemTime) -> String {
    format!(
        "timing cache {}\n  scope:       {}\n  recorded:    {}\n  by build:    {}\n  \
         started from: {}\n",
        digest_text(version.digest.as_ref()),
        version.scope,
        when(version.recorded_at_ms, now),
        version.recorded_by,
        digest_text(version.parent.as_ref()),
    )
}

fn version_json(
    version: &v1::TimingCacheVersion,
    pins: &BTreeMap<String, Vec<String>>,
) -> serde_json::Value {
    let digest = digest_text(version.digest.as_ref());
    json!({
        "digest": digest,
        "parent": version.parent.as_ref().map(ToString::to_string),
        "scope": version.scope,
        "recorded_by": version.recorded_by,
        "recorded_at_ms": version.recorded_at_ms,
        "pinned_by": pins.get(&digest).cloned().unwrap_or_default(),
    })
}

fn line_json(
    engine: &str,
    line: &v1::TimingCacheLine,
    pins: &BTreeMap<String, Vec<String>>,
) -> serde_json::Value {
    let scope: serde_json::Value = if line.scope_json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&line.scope_json).unwrap_or(serde_json::Value::Null)
    };
    json!({
        "engine": engine,
        "policy": line.policy,
        "scope": scope,
        "versions": line.versions.iter().map(|v| version_json(v, pins)).collect::<Vec<_>>(),
    })
}
