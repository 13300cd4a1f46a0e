//! What `submit` prints when it is done: one line per variant on stdout (digest, size, build
//! time or "cached", where the engine went), failures with the end of their build log, or with
//! `--json` one document and nothing else.

use serde::Serialize;

use super::{Outcome, Status};

/// One variant in the `--json` document.
#[derive(Debug, Serialize)]
struct VariantJson<'a> {
    manifest: &'a str,
    variant: &'a str,
    action_key: &'a str,
    toolchain: Option<ToolchainJson<'a>>,
    target: &'a str,
    status: &'static str,
    engine: Option<String>,
    size: Option<u64>,
    duration_ms: Option<u64>,
    job_id: Option<u64>,
    output: Option<String>,
    /// Layers per precision, as the build reported them (absent when it reported none).
    #[serde(skip_serializing_if = "Option::is_none")]
    layers_by_precision: Option<&'a std::collections::BTreeMap<String, u64>>,
    failure: Option<&'a str>,
    log_tail: &'a [String],
}

#[derive(Debug, Serialize)]
struct ToolchainJson<'a> {
    flavour: &'a str,
    version: &'a str,
    library_digest: &'a str,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    ok: bool,
    variants: Vec<VariantJson<'a>>,
    lock_diff: &'a [String],
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Cached => "cached",
        Status::Built => "built",
        Status::Queued => "queued",
        Status::Failed => "failed",
    }
}

fn build_millis(outcome: &Outcome) -> Option<u64> {
    let result = outcome.result.as_ref()?;
    (outcome.status == Status::Built)
        .then(|| (result.finished_at_ms - result.started_at_ms).max(0) as u64)
}

/// Prints the `--json` document for `outcomes` and the rendered lock diffs.
pub fn print_json(outcomes: &[Outcome], lock_diff: &[String]) -> anyhow::Result<()> {
    let variants = outcomes
        .iter()
        .map(|o| {
            let engine = o.result.as_ref().and_then(|r| r.engine.as_ref());
            VariantJson {
                manifest: &o.label,
                variant: &o.variant,
                action_key: &o.action_key,
                toolchain: o.toolchain.as_ref().map(|t| ToolchainJson {
                    flavour: &t.flavour,
                    version: &t.version,
                    library_digest: &t.library_digest,
                }),
                target: &o.target,
                status: status_name(o.status),
                engine: engine.map(ToString::to_string),
                size: engine.map(|d| d.size_bytes),
                duration_ms: build_millis(o),
                job_id: o.job_id,
                output: o.output.as_ref().map(|p| p.display().to_string()),
                layers_by_precision: o
                    .result
                    .as_ref()
                    .map(|r| &r.layers_by_precision)
                    .filter(|m| !m.is_empty()),
                failure: o.failure.as_deref(),
                log_tail: &o.log_tail,
            }
        })
        .collect();
    let document = Document {
        ok: lock_diff.is_empty() && outcomes.iter().all(|o| o.status != Status::Failed),
        variants,
        lock_diff,
    };
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// Prints the outcomes (human lines or `--json`); returns whether every variant succeeded.
pub fn print_report(outcomes: &[Outcome], json: bool) -> anyhow::Result<bool> {
    let ok = outcomes.iter().all(|o| o.status != Status::Failed);
    if json {
        print_json(outcomes, &[])?;
        return Ok(ok);
    }
    for outcome in outcomes {
        println!("{}", human_line(outcome));
        if outcome.status == Status::Failed && !outcome.log_tail.is_empty() {
            eprintln!("  last lines of the build log:");
            for line in &outcome.log_tail {
                eprintln!("  | {line}");
            }
        }
    }
    let count = |status| outcomes.iter().filter(|o| o.status == status).count();
    if outcomes.len() > 1 {
        println!(
            "{} variants: {} built, {} cached, {} queued, {} failed",
            outcomes.len(),
            count(Status::Built),
            count(Status::Cached),
            count(Status::Queued),
            count(Status::Failed)
        );
    }
    Ok(ok)
}

/// `manifest#variant  built 0.8 s  blake3:<hex>/<size> (1.2 MiB)  layers: fp16 40, fp32 3  -> path`.
fn human_line(o: &Outcome) -> String {
    let name = format!("{}#{}", o.label, o.variant);
    let engine = o.result.as_ref().and_then(|r| r.engine.as_ref());
    let status = match (o.status, build_millis(o)) {
        (Status::Failed, _) => {
            let message = o.failure.as_deref().unwrap_or("failed");
            return format!("{name}  FAILED: {}", message.replace('\n', "\n    "));
        }
        (Status::Queued, _) => return format!("{name}  queued as job {}", o.job_id.unwrap_or(0)),
        (Status::Cached, _) => "cached".to_string(),
        (Status::Built, millis) => format!("built {:.1} s", millis.unwrap_or(0) as f64 / 1000.0),
    };
    let mut line = format!("{name}  {status}");
    if let Some(engine) = engine {
        line.push_str(&format!(
            "  {} ({})",
            engine,
            render_human_size(engine.size_bytes)
        ));
    }
    if let Some(layers) = o.result.as_ref().and_then(|r| r.precision_summary()) {
        line.push_str(&format!("  layers: {layers}"));
    }
    if let Some(output) = &o.output {
        line.push_str(&format!("  -> {}", output.display()));
    }
    line
}

/// `812 B`, `120.6 KiB`, `1.3 MiB`, `2.0 GiB`.
pub fn render_human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use trtfarm_proto::v1;

    #[test]
    fn a_line_per_variant_says_digest_size_time_and_destination() {
        let digest = v1::Digest {
            blake3: "ab".repeat(32),
            size_bytes: 123_456,
        };
        let mut outcome = super::super::blank_outcome(0, "cnn/engine.toml", "fp32");
        outcome.status = Status::Built;
        outcome.result = Some(v1::ActionResult {
            engine: Some(digest),
            started_at_ms: 1_000,
            finished_at_ms: 2_250,
            ..v1::ActionResult::default()
        });
        outcome.output = Some("cnn/build/a.engine".into());
        assert_eq!(
            human_line(&outcome),
            format!(
                "cnn/engine.toml#fp32  built 1.2 s  blake3:{}/123456 (120.6 KiB)  -> cnn/build/a.engine",
                "ab".repeat(32)
            )
        );
        if let Some(result) = outcome.result.as_mut() {
            result.layers_by_precision = [("fp16".to_string(), 40), ("fp32".to_string(), 3)].into();
        }
        assert!(
            human_line(&outcome)
                .ends_with("(120.6 KiB)  layers: fp16 40, fp32 3  -> cnn/build/a.engine"),
            "{}",
            human_line(&outcome)
        );
        outcome.status = Status::Cached;
        assert!(human_line(&outcome).starts_with("cnn/engine.toml#fp32  cached  blake3:"));
        outcome.fail("precision fp16 is not supported yet".into());
        assert_eq!(
            human_line(&outcome),
            "cnn/engine.toml#fp32  FAILED: precision fp16 is not supported yet"
        );
        assert_eq!(render_human_size(812), "812 B");
        assert_eq!(render_human_size(3 << 30), "3.0 GiB");
    }
}
