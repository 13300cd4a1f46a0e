//! What `submit` prints when it is done: one line per variant on stdout (digest, size, build
//! time or "cached", where the engine went), failures with the end of their build log, or with
//! `--json` one document and nothing else.

use serde::Serialize;

use super::{Outcome, Status};
use crate::term::{Style, Verbosity, pad, paint, width};

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
    /// The manifest setting a refusal is about (e.g. `toolchain`), when the daemon named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    refused_setting: Option<&'a str>,
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
    /// With `--locked`: one object per engine that differs from `engine.lock`.
    lock_diff: &'a [serde_json::Value],
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
    (outcome.status == Status::Built).then(|| result.build_duration().as_millis() as u64)
}

/// Prints the `--json` document for `outcomes` and the lock diffs.
pub fn print_json(outcomes: &[Outcome], lock_diff: &[serde_json::Value]) -> anyhow::Result<()> {
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
                refused_setting: o.refused_setting.as_deref(),
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
    print_timed_report(outcomes, json, None)
}

/// [`print_report`], with how long the round took in the summary line.
pub fn print_timed_report(
    outcomes: &[Outcome],
    json: bool,
    took: Option<std::time::Duration>,
) -> anyhow::Result<bool> {
    let ok = outcomes.iter().all(|o| o.status != Status::Failed);
    if json {
        print_json(outcomes, &[])?;
        return Ok(ok);
    }
    let term = crate::term::get();
    let how = Render {
        short_digests: term.stdout_is_terminal,
        color: term.color_stdout,
        whole_logs: term.verbosity == Verbosity::Verbose,
    };
    print!("{}", render_report(outcomes, &how, took));
    Ok(ok)
}

/// How the human report is drawn.
#[derive(Debug, Clone, Copy, Default)]
struct Render {
    /// `blake3:<12 hex>` instead of the whole digest (a terminal; the lock and `--json` keep
    /// them whole).
    short_digests: bool,
    color: bool,
    /// Every log line a failure carries, not the last few.
    whole_logs: bool,
}

/// Log lines a failure shows without `-v`.
const LOG_TAIL_LINES: usize = 12;

/// The report: one aligned line per variant, a failure's detail under its line (said once:
/// what failed, why, the end of its log, where to see all of it), then a summary line when there
/// are several variants.
fn render_report(outcomes: &[Outcome], how: &Render, took: Option<std::time::Duration>) -> String {
    let rows: Vec<Vec<String>> = outcomes.iter().map(|o| columns(o, how)).collect();
    // A row's last cell (where the engine went, or why it failed) runs on: it sets no width.
    let widths: Vec<usize> = (0..rows.iter().map(Vec::len).max().unwrap_or(0))
        .map(|c| {
            (rows
                .iter()
                .filter(|r| c + 1 < r.len())
                .map(|r| width(&r[c])))
            .max()
            .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (outcome, row) in outcomes.iter().zip(&rows) {
        // A column no row fills (no build times, no layer counts) takes no room.
        let cells: Vec<String> = (row.iter().enumerate())
            .filter(|(c, _)| c + 1 == row.len() || widths[*c] > 0)
            .map(|(c, cell)| match c + 1 == row.len() {
                true => cell.clone(),
                false => pad(cell, widths[c]),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if outcome.status == Status::Failed {
            out.push_str(&failure_detail(outcome, how));
        }
    }
    if outcomes.len() > 1 {
        let count = |status| outcomes.iter().filter(|o| o.status == status).count();
        let mut parts = Vec::new();
        for (status, word, style) in [
            (Status::Built, "built", Style::Good),
            (Status::Cached, "cached", Style::Calm),
            (Status::Queued, "queued", Style::Notice),
            (Status::Failed, "failed", Style::Bad),
        ] {
            if count(status) > 0 {
                parts.push(paint(
                    &format!("{} {word}", count(status)),
                    style,
                    how.color,
                ));
            }
        }
        let took = took
            .map(|t| format!(" in {:.1} s", t.as_secs_f64()))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} engines: {}{took}\n",
            outcomes.len(),
            parts.join(", ")
        ));
    }
    out
}

/// A variant's cells: name, status, build time, engine digest, size, layers, destination.
fn columns(o: &Outcome, how: &Render) -> Vec<String> {
    let name = format!("{}#{}", o.label, o.variant);
    let (status, style) = match o.status {
        Status::Built => ("built", Style::Good),
        Status::Cached => ("cached", Style::Calm),
        Status::Queued => ("queued", Style::Notice),
        Status::Failed => ("FAILED", Style::Bad),
    };
    let status = paint(status, style, how.color);
    match o.status {
        Status::Failed => {
            let why = o.failure.as_deref().unwrap_or("failed");
            let first = why.lines().next().unwrap_or("");
            return vec![name, status, shorten(first, how.short_digests)];
        }
        Status::Queued => {
            return vec![name, format!("{status} as job {}", o.job_id.unwrap_or(0))];
        }
        Status::Built | Status::Cached => {}
    }
    let time = build_millis(o)
        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let engine = o.result.as_ref().and_then(|r| r.engine.as_ref());
    let digest = engine
        .map(|d| match how.short_digests {
            true => format!("blake3:{}", &d.blake3[..d.blake3.len().min(12)]),
            false => d.to_string(),
        })
        .unwrap_or_default();
    let size = engine
        .map(|d| render_human_size(d.size_bytes))
        .unwrap_or_default();
    let layers = (o.result.as_ref())
        .and_then(|r| r.precision_summary())
        .map(|l| format!("layers: {l}"))
        .unwrap_or_default();
    let output = (o.output.as_ref())
        .map(|p| format!("-> {}", p.display()))
        .unwrap_or_default();
    vec![
        name,
        status,
        time,
        paint(&digest, Style::Dim, how.color),
        size,
        layers,
        output,
    ]
}

/// Characters of a failure's first line shown on a terminal; TensorRT's own errors can run to
/// hundreds (the whole text is in `--json`, `trtfarm status` and the log).
const FIRST_LINE_CHARS: usize = 240;

/// `text`, cut to [`FIRST_LINE_CHARS`] with an ellipsis when `cut` (a terminal) and longer.
fn shorten(text: &str, cut: bool) -> String {
    match text.char_indices().nth(FIRST_LINE_CHARS) {
        Some((end, _)) if cut => format!("{}…", &text[..end]),
        _ => text.to_string(),
    }
}

/// Whether a build-log line is worth showing under a failure without `-v`: TensorRT's errors
/// and warnings, and the worker's own lines, not its informational chatter.
fn worth_showing(line: &str) -> bool {
    !["info: ", "verbose: ", "[info] ", "[verbose] "]
        .iter()
        .any(|prefix| line.trim_start().starts_with(prefix))
}

/// Under a failed variant's line: the rest of its message, the end of its build log, and
/// where to read the whole log.
fn failure_detail(o: &Outcome, how: &Render) -> String {
    let mut out = String::new();
    let message = o.failure.as_deref().unwrap_or_default();
    for line in message.lines().skip(1) {
        out.push_str(&format!("    {line}\n"));
    }
    let shown: Vec<&String> = (o.log_tail.iter())
        .filter(|line| how.whole_logs || worth_showing(line))
        .collect();
    if !shown.is_empty() {
        let skip = match how.whole_logs {
            true => 0,
            false => shown.len().saturating_sub(LOG_TAIL_LINES),
        };
        out.push_str("    last lines of the build log:\n");
        for line in &shown[skip..] {
            out.push_str(&format!("    | {line}\n"));
        }
    }
    if let Some(job) = o.job_id {
        out.push_str(&format!(
            "    the whole log: `trtfarm logs {job}`; the job: `trtfarm status {job}`\n"
        ));
    }
    out
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

    fn built(label: &str, variant: &str, millis: i64) -> Outcome {
        let mut outcome = super::super::blank_outcome(0, label, variant);
        outcome.status = Status::Built;
        outcome.result = Some(v1::ActionResult {
            engine: Some(v1::Digest {
                blake3: "ab".repeat(32),
                size_bytes: 123_456,
            }),
            started_at_ms: 1_000,
            finished_at_ms: 1_000 + millis,
            ..v1::ActionResult::default()
        });
        outcome
    }

    #[test]
    fn a_line_per_variant_says_digest_size_time_and_destination() {
        let mut outcome = built("cnn/engine.toml", "fp32", 1_250);
        outcome.output = Some("cnn/build/a.engine".into());
        let full = Render::default();
        assert_eq!(
            render_report(std::slice::from_ref(&outcome), &full, None),
            format!(
                "cnn/engine.toml#fp32  built  1.2 s  blake3:{}/123456  120.6 KiB  -> cnn/build/a.engine\n",
                "ab".repeat(32)
            )
        );
        if let Some(result) = outcome.result.as_mut() {
            result.layers_by_precision = [("fp16".to_string(), 40), ("fp32".to_string(), 3)].into();
        }
        let short = Render {
            short_digests: true,
            ..Render::default()
        };
        assert_eq!(
            render_report(std::slice::from_ref(&outcome), &short, None),
            format!(
                "cnn/engine.toml#fp32  built  1.2 s  blake3:{}  120.6 KiB  layers: fp16 40, fp32 3  -> cnn/build/a.engine\n",
                "ab".repeat(6)
            )
        );
        assert_eq!(render_human_size(812), "812 B");
        assert_eq!(render_human_size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn columns_line_up_and_a_summary_counts_the_variants() {
        let long = built("models/detector/engine.toml", "fp16", 3_400);
        let mut cached = built("cnn/engine.toml", "fp32", 0);
        cached.status = Status::Cached;
        let report = render_report(
            &[long, cached],
            &Render::default(),
            Some(std::time::Duration::from_millis(4_200)),
        );
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), 3, "{report}");
        let column = |line: &str, word: &str| line.find(word).unwrap();
        assert_eq!(column(lines[0], "built"), column(lines[1], "cached"));
        assert_eq!(column(lines[0], "blake3:"), column(lines[1], "blake3:"));
        assert_eq!(lines[2], "2 engines: 1 built, 1 cached in 4.2 s");
    }

    #[test]
    fn a_failure_is_said_once_with_its_log_and_where_to_read_more() {
        let mut failed = super::super::blank_outcome(0, "det/engine.toml", "bf16");
        failed.fail("TensorRT refused the network\nhint: keep ConvTranspose in fp32".into());
        failed.job_id = Some(12);
        failed.log_tail = (1..=20).map(|n| format!("line {n}")).collect();
        failed.log_tail.push("info: Opset version: 12".into());
        let report = render_report(&[failed.clone()], &Render::default(), None);
        assert_eq!(report.matches("TensorRT refused the network").count(), 1);
        assert!(report.starts_with("det/engine.toml#bf16  FAILED  TensorRT refused"));
        assert!(
            report.contains("    hint: keep ConvTranspose in fp32\n"),
            "{report}"
        );
        assert!(report.contains("| line 20\n") && !report.contains("| line 8\n"));
        assert!(report.contains("`trtfarm logs 12`"), "{report}");
        let whole = Render {
            whole_logs: true,
            ..Render::default()
        };
        assert!(
            !report.contains("Opset"),
            "informational lines only with -v: {report}"
        );
        let everything = render_report(std::slice::from_ref(&failed), &whole, None);
        assert!(everything.contains("| line 1\n") && everything.contains("Opset"));
        // On a terminal an endless first line is cut; the rest of the report lines up.
        failed.failure = Some("x".repeat(1000));
        let mut cached = built("a/engine.toml", "fp32", 0);
        cached.status = Status::Cached;
        let short = Render {
            short_digests: true,
            ..Render::default()
        };
        let report = render_report(&[failed, cached], &short, None);
        assert!(report.contains(&format!("{}…", "x".repeat(FIRST_LINE_CHARS))));
        let cached_line = report.lines().find(|l| l.contains("cached")).unwrap();
        assert!(cached_line.len() < 80, "{cached_line}");
    }
}
