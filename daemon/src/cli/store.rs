//! `trtfarmd store`: store maintenance from the command line.
//!
//! `store gc` deletes blobs no action result, lock or keep list references once they are older
//! than `--older-than`, action results whose blobs are gone, and old quarantined blobs (see
//! `trtfarm_store::gc`). It reads the action cache as this daemon writes it: `ActionResult`
//! protobufs and the timing-cache registry's JSON records.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use trtfarm_proto::v1;
use trtfarm_store::BlobDigest;
use trtfarm_store::gc::{CacheEntry, Collector, GcOptions, GcReport, Removal, RemovalKind};
use trtfarm_types::lock::Lock;

/// `trtfarmd store …`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Delete blobs nothing references once older than --older-than, action results whose blobs
    /// are gone, and quarantined blobs older than --older-than.
    Gc(GcArgs),
}

/// `trtfarmd store gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The store: file:///absolute/dir, s3://bucket/prefix, az://container/prefix, gs://…
    #[arg(long, env = "TRTFARMD_STORE", value_name = "URL")]
    pub store: String,

    /// Store backend option, repeatable (as for `serve`); env: comma-separated.
    #[arg(
        long = "store-option",
        env = "TRTFARMD_STORE_OPTION",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_store_option
    )]
    pub store_options: Vec<(String, String)>,

    /// Never delete anything younger than this: builds upload blobs before the result that
    /// names them, so a young unreferenced blob may be one being published right now.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub older_than: Duration,

    /// An engine.lock whose engines and timing caches are kept; repeatable.
    #[arg(long = "lock", value_name = "PATH")]
    pub locks: Vec<PathBuf>,

    /// A blob to keep, as blake3:<hex>/<size>; repeatable.
    #[arg(long = "keep", value_name = "DIGEST")]
    pub keep: Vec<BlobDigest>,

    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `store` subcommand; `Ok(false)` when it ran but something failed (exit status 1).
pub fn store_main(args: &StoreArgs) -> anyhow::Result<bool> {
    let StoreCommand::Gc(gc) = &args.command;
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(collect(gc))?;
    if gc.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print_report(&gc.store, gc.older_than, &report);
    }
    Ok(report.failures.is_empty())
}

/// Opens the store and runs one collection with the keep list from `--keep` and `--lock`.
pub async fn collect(args: &GcArgs) -> anyhow::Result<GcReport> {
    let mut keep = args.keep.clone();
    for lock in &args.locks {
        keep.extend(lock_digests(lock)?);
    }
    let collector = Collector::new(trtfarm_store::open(&args.store, &args.store_options)?);
    let options = GcOptions {
        older_than: args.older_than,
        keep,
        dry_run: args.dry_run,
    };
    Ok(collector.collect(&options, &decode_entry).await?)
}

/// The engine and timing-cache digests an `engine.lock` names. A lock that is missing or not
/// readable as this release's format is an error, never skipped: collecting without it could
/// delete what it pins.
pub fn lock_digests(path: &Path) -> anyhow::Result<Vec<BlobDigest>> {
    let pins = "collecting without it could delete what it pins";
    let lock = Lock::read_file(path)
        .map_err(|error| anyhow::anyhow!("{error}; {pins}"))?
        .ok_or_else(|| anyhow::anyhow!("there is no lock at {}; {pins}", path.display()))?;
    Ok(lock.blob_digests())
}

/// Reads an action-cache entry: a converted model's record, a JSON timing-cache registry record
/// (index or version), or an encoded `ActionResult`.
pub fn decode_entry(bytes: &[u8]) -> Result<CacheEntry, String> {
    if bytes.starts_with(br#"{"prepared_model":"#) {
        let record =
            crate::build::prepare::PreparedModelRecord::decode(bytes).map_err(|e| e.to_string())?;
        return record
            .blobs()
            .map(CacheEntry::Result)
            .map_err(|e| e.to_string());
    }
    if bytes.first() == Some(&b'{') {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a registry record: {e}"))?;
        let versions = match value.get("versions") {
            Some(serde_json::Value::Array(versions)) => versions.iter().collect(),
            Some(_) => return Err("a registry index whose versions are not a list".into()),
            None => vec![&value],
        };
        let mut digests = Vec::new();
        for version in versions {
            digests.extend(registry_version_digests(version)?);
        }
        return Ok(CacheEntry::Record(digests));
    }
    let result = <v1::ActionResult as prost::Message>::decode(bytes)
        .map_err(|e| format!("not an action result: {e}"))?;
    result
        .blobs()
        .map(|(what, d)| {
            BlobDigest::parse(&d.blake3, d.size_bytes).map_err(|e| format!("`{what}`: {e}"))
        })
        .collect::<Result<_, _>>()
        .map(CacheEntry::Result)
}

/// A registry version record's cache blob and its parent's:
/// `{"blake3": hex, "size": n, "parent": [hex, n] | null, …}`.
fn registry_version_digests(version: &serde_json::Value) -> Result<Vec<BlobDigest>, String> {
    let digest = |hex: Option<&serde_json::Value>, size: Option<&serde_json::Value>| match (
        hex.and_then(|h| h.as_str()),
        size.and_then(|s| s.as_u64()),
    ) {
        (Some(hex), Some(size)) => BlobDigest::parse(hex, size).map_err(|e| e.to_string()),
        _ => Err(format!(
            "a registry record without blake3 and size: {version}"
        )),
    };
    let mut digests = vec![digest(version.get("blake3"), version.get("size"))?];
    if let Some(serde_json::Value::Array(parent)) = version.get("parent") {
        digests.push(digest(parent.first(), parent.get(1))?);
    }
    Ok(digests)
}

fn parse_store_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "invalid store option {text:?}: expected KEY=VALUE, like aws_region=eu-west-1"
        )),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|why| {
        format!(
            "invalid duration {text:?}: {why}; expected a duration like \"7d\", \"36h\" or \"0s\""
        )
    })
}

fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

fn print_report(store: &str, older_than: Duration, r: &GcReport) {
    let (verb, listed) = match r.dry_run {
        true => ("would delete", "dry run: nothing was deleted"),
        false => ("deleted", "done"),
    };
    if r.dry_run {
        for removal in &r.removals {
            println!("{verb} {}", removal_line(removal));
        }
    }
    let older = humantime::format_duration(older_than);
    println!("store gc of {store} ({listed}; retention {older})");
    println!(
        "  action cache: {} entries read, {} unreadable (left alone); {verb} {} dangling results",
        r.entries_scanned,
        r.entries_unreadable.len(),
        r.results_removed.objects
    );
    println!(
        "  blobs: {} scanned ({}); kept {} referenced ({}), {} by lock or --keep ({}), {} younger \
         than {older} ({}); {verb} {} ({})",
        r.blobs_scanned.objects,
        size(r.blobs_scanned.bytes),
        r.blobs_referenced.objects,
        size(r.blobs_referenced.bytes),
        r.blobs_kept.objects,
        size(r.blobs_kept.bytes),
        r.blobs_young.objects,
        size(r.blobs_young.bytes),
        r.blobs_removed.objects,
        size(r.blobs_removed.bytes)
    );
    println!(
        "  quarantine: {} scanned ({}); {verb} {} ({})",
        r.quarantine_scanned.objects,
        size(r.quarantine_scanned.bytes),
        r.quarantine_removed.objects,
        size(r.quarantine_removed.bytes)
    );
    for entry in &r.entries_unreadable {
        eprintln!("warning: unreadable action-cache entry {entry}");
    }
    if !r.foreign.is_empty() {
        eprintln!(
            "warning: {} objects outside the store layout were left alone, e.g. {}",
            r.foreign.len(),
            r.foreign[0]
        );
    }
    for failure in &r.failures {
        eprintln!("error: {failure}");
    }
}

fn removal_line(removal: &Removal) -> String {
    let kind = match removal.kind {
        RemovalKind::Blob => "unreferenced blob",
        RemovalKind::DanglingResult => "dangling action result",
        RemovalKind::Quarantined => "quarantined blob",
    };
    format!(
        "{kind} {} ({}, {} old)",
        removal.location,
        size(removal.bytes),
        humantime::format_duration(Duration::from_secs(removal.age.as_secs()))
    )
}

fn report_json(r: &GcReport) -> serde_json::Value {
    let tally =
        |t: &trtfarm_store::gc::Tally| serde_json::json!({"objects": t.objects, "bytes": t.bytes});
    let removals: Vec<serde_json::Value> = r
        .removals
        .iter()
        .map(|removal| {
            serde_json::json!({
                "kind": match removal.kind {
                    RemovalKind::Blob => "blob",
                    RemovalKind::DanglingResult => "dangling_result",
                    RemovalKind::Quarantined => "quarantined",
                },
                "location": removal.location,
                "bytes": removal.bytes,
                "age_s": removal.age.as_secs(),
            })
        })
        .collect();
    serde_json::json!({
        "dry_run": r.dry_run,
        "blobs_scanned": tally(&r.blobs_scanned),
        "blobs_referenced": tally(&r.blobs_referenced),
        "blobs_kept": tally(&r.blobs_kept),
        "blobs_young": tally(&r.blobs_young),
        "blobs_removed": tally(&r.blobs_removed),
        "entries_scanned": r.entries_scanned,
        "entries_unreadable": r.entries_unreadable,
        "results_removed": tally(&r.results_removed),
        "quarantine_scanned": tally(&r.quarantine_scanned),
        "quarantine_removed": tally(&r.quarantine_removed),
        "foreign": r.foreign,
        "removals": removals,
        "failures": r.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 1

[[engine]]
name = "fp32"
toolchain = { flavour = "tensorrt-rtx", version = "1.7.1.116", library = "blake3:8280298f8cecc5f9e0c27b3cb26e9dba1b842f9a7c7f839a74d0b6c738e1c622" }
target = "sm86,sm89"
action_key = "a861081e01c3f4d3d4830d2175450baf20eb4c881c819ef403cd7c9c789cbc77"
engine = "ENGINE"
"#;

    fn gc_args(store: String, locks: Vec<PathBuf>) -> GcArgs {
        GcArgs {
            store,
            store_options: Vec::new(),
            older_than: Duration::ZERO,
            locks,
            keep: Vec::new(),
            dry_run: false,
            json: false,
        }
    }

    #[test]
    fn a_lock_names_its_engines_and_timing_caches() {
        let dir = tempfile::tempdir().unwrap();
        let engine = BlobDigest::of_bytes(b"engine");
        let cache = BlobDigest::of_bytes(b"cache");
        let text = LOCK.replace("ENGINE", &engine.to_string())
            + &format!(
                "\n[[engine]]\nname = \"b\"\ntoolchain = {{ flavour = \"tensorrt\", version = \"11.4.0.106\", library = \"blake3:{}\" }}\ntarget = \"t\"\ntiming_cache = \"{cache}\"\naction_key = \"{}\"\nengine = \"{engine}\"\n",
                "ab".repeat(32),
                "cd".repeat(32)
            );
        let path = dir.path().join("engine.lock");
        std::fs::write(&path, text).unwrap();
        assert_eq!(lock_digests(&path).unwrap(), vec![engine, engine, cache]);

        std::fs::write(&path, "version = 2\n").unwrap();
        let error = format!("{:#}", lock_digests(&path).unwrap_err());
        assert!(error.contains("version 2"), "{error}");
        assert!(error.contains("could delete what it pins"), "{error}");
        // Every value is checked on reading, with the line it is on.
        std::fs::write(&path, LOCK.replace("ENGINE", "sha256:00/1")).unwrap();
        let error = format!("{:#}", lock_digests(&path).unwrap_err());
        assert!(
            error.contains("engine = \"sha256:00/1\"") && error.contains("blake3:"),
            "{error}"
        );
        let missing = dir.path().join("none.lock");
        let error = format!("{:#}", lock_digests(&missing).unwrap_err());
        assert!(error.contains("there is no lock at"), "{error}");
    }

    #[test]
    fn entries_decode_as_results_or_registry_records() {
        let engine = BlobDigest::of_bytes(b"engine");
        let log = BlobDigest::of_bytes(b"log");
        let wire = |d: &BlobDigest| v1::Digest {
            blake3: d.hex(),
            size_bytes: d.size,
        };
        let result = v1::ActionResult {
            engine: Some(wire(&engine)),
            build_log: Some(wire(&log)),
            ..v1::ActionResult::default()
        };
        let encoded = prost::Message::encode_to_vec(&result);
        assert_eq!(
            decode_entry(&encoded).unwrap(),
            CacheEntry::Result(vec![engine, log])
        );

        let version = format!(
            r#"{{"blake3":"{}","size":{},"scope":{{}},"parent":["{}",{}],"recorded_by":"k","recorded_at_ms":1}}"#,
            engine.hex(),
            engine.size,
            log.hex(),
            log.size
        );
        assert_eq!(
            decode_entry(version.as_bytes()).unwrap(),
            CacheEntry::Record(vec![engine, log])
        );
        let index = format!(r#"{{"scope":{{}},"versions":[{version}]}}"#);
        assert_eq!(
            decode_entry(index.as_bytes()).unwrap(),
            CacheEntry::Record(vec![engine, log])
        );
        // A converted model's record behaves as a result: gone with its blobs.
        let prepared = crate::build::prepare::PreparedModelRecord {
            prepared_model: crate::build::prepare::PreparedModel {
                transform: "fp16".into(),
                pass_version: 1,
                model: crate::build::prepare::StoredFile::new("model.onnx", &engine),
                external_data: None,
                log: Vec::new(),
            },
        };
        assert_eq!(
            decode_entry(&prepared.encode()).unwrap(),
            CacheEntry::Result(vec![engine])
        );
        assert!(decode_entry(b"{\"what\": 1}").is_err());
        assert!(decode_entry(b"\xff\xff\xff").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn locked_engines_survive_a_collection_and_orphans_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("store").display());
        let store = trtfarm_store::open(&url, &[]).unwrap();
        let put = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let locked = store
            .put_file(&put("locked", b"a locked engine"), None)
            .await
            .unwrap()
            .digest;
        let orphan = store
            .put_file(&put("orphan", b"an engine nobody names"), None)
            .await
            .unwrap()
            .digest;
        let lock = put(
            "engine.lock",
            LOCK.replace("ENGINE", &locked.to_string()).as_bytes(),
        );

        let dry = collect(&GcArgs {
            dry_run: true,
            ..gc_args(url.clone(), vec![lock.clone()])
        })
        .await
        .unwrap();
        assert_eq!(dry.blobs_removed.objects, 1);
        assert!(
            store.contains(&orphan).await.unwrap(),
            "a dry run deletes nothing"
        );
        let json = report_json(&dry);
        assert_eq!(json["removals"][0]["kind"], "blob");

        let report = collect(&gc_args(url, vec![lock])).await.unwrap();
        assert!(store.contains(&locked).await.unwrap());
        assert!(!store.contains(&orphan).await.unwrap());
        assert_eq!(report.blobs_kept.objects, 1);
        assert_eq!(report.blobs_removed.objects, 1);
    }
}
