//! `trtfarm check`: validate manifests, the files they name, and their profiles against the
//! model's inputs, without building anything.

mod daemon;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use manifest_schema::{Diagnostic, Manifest, ManifestErrors, Severity};
use serde::Serialize;

use crate::cli::DaemonArgs;
use crate::discover::find_manifests;
use daemon::{DaemonJson, DaemonToolchains};
use trtfarm::model_facts::model_nodes;

/// The outcome of checking one manifest.
#[derive(Debug, Serialize)]
pub struct ManifestReport {
    /// The manifest file.
    pub path: PathBuf,
    /// True when no diagnostic is an error.
    pub ok: bool,
    /// The engine variants the manifest resolves to (empty when it does not parse).
    pub engines: Vec<EngineSummary>,
    /// Every problem found, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// The diagnostics rendered with their source snippets (not part of the JSON document).
    #[serde(skip)]
    errors: Option<ManifestErrors>,
}

/// One resolved engine variant, as `check --json` lists it.
#[derive(Debug, Serialize)]
pub struct EngineSummary {
    /// The variant's name.
    pub name: String,
    /// The toolchain requirement, as written.
    pub toolchain: String,
    /// The precision the engine is built in.
    pub precision: String,
    /// Where the engine is written, if the manifest says.
    pub output: Option<PathBuf>,
}

/// The whole `check --json` document.
#[derive(Debug, Serialize)]
struct CheckDocument<'a> {
    ok: bool,
    /// Whether toolchains were checked against a daemon, which, and what it has.
    daemon: DaemonJson,
    manifests: &'a [ManifestReport],
}

/// Runs `trtfarm check`. Returns whether every manifest is free of errors. Toolchains are
/// checked against the daemon `daemon` names, or the local daemon if one runs; none is started.
pub fn run(paths: &[PathBuf], json: bool, daemon: &DaemonArgs) -> anyhow::Result<bool> {
    let manifests = find_manifests(paths)?;
    // A model checked before (same bytes, per the digest cache) is not read again.
    let cache = trtfarm::digest_cache::DigestCache::open_default();
    let toolchains = daemon::ask(daemon);
    let reports: Vec<ManifestReport> = manifests
        .iter()
        .map(|path| check_manifest(path, &cache, &toolchains))
        .collect();
    let ok = reports.iter().all(|report| report.ok);
    if json {
        let document = CheckDocument {
            ok,
            daemon: toolchains.to_json(),
            manifests: &reports,
        };
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        if let DaemonToolchains::Unchecked { note } = &toolchains {
            eprintln!("note: {note}");
        }
        print_human(&reports);
    }
    Ok(ok)
}

/// Checks one manifest: syntax and semantics, its toolchains against the daemon's (when one was
/// asked), then the files it names, then its profiles against the model's inputs and its
/// `autocast.keep_fp32` against the model's operators (only once the model is known to be
/// readable).
pub fn check_manifest(
    path: &Path,
    cache: &trtfarm::digest_cache::DigestCache,
    toolchains: &DaemonToolchains,
) -> ManifestReport {
    let manifest = match manifest_schema::load(path) {
        Ok(manifest) => manifest,
        Err(errors) => return report(path, Vec::new(), errors),
    };
    let engines = summarize(&manifest);
    let mut diagnostics = match toolchains {
        DaemonToolchains::Known { daemon, toolchains } => {
            manifest.check_toolchains(daemon, toolchains)
        }
        DaemonToolchains::Unchecked { .. } => Vec::new(),
    };
    let (found, model) = trtfarm::inputs::diagnose(&manifest, cache);
    diagnostics.extend(found);
    if model.is_some() {
        diagnostics.extend(check_autocast_ops(&manifest));
    }
    report(path, engines, manifest.errors(diagnostics))
}

/// `autocast.keep_fp32` and `autocast.convert` against the model's operator types; the model
/// is read only when some engine lists operators.
fn check_autocast_ops(manifest: &Manifest) -> Vec<Diagnostic> {
    if !manifest.lists_autocast_ops() {
        return Vec::new();
    }
    match model_nodes(&manifest.model.resolved_path) {
        Ok(nodes) => manifest.check_autocast_ops(&nodes),
        Err(error) => vec![manifest.model_diagnostic(
            format!("cannot read the model's operators to check its `autocast` lists: {error}"),
            None,
        )],
    }
}

fn report(path: &Path, engines: Vec<EngineSummary>, errors: ManifestErrors) -> ManifestReport {
    let diagnostics = errors.diagnostics().to_vec();
    let ok = !diagnostics.iter().any(|d| d.severity == Severity::Error);
    ManifestReport {
        path: path.to_path_buf(),
        ok,
        engines,
        errors: (!diagnostics.is_empty()).then_some(errors),
        diagnostics,
    }
}

fn summarize(manifest: &Manifest) -> Vec<EngineSummary> {
    manifest
        .variants()
        .iter()
        .map(|variant| EngineSummary {
            name: variant.name.clone(),
            toolchain: variant.settings.toolchain.to_string(),
            precision: variant.settings.precision.as_str().to_string(),
            output: variant.output.clone(),
        })
        .collect()
}

/// Diagnostics go to stderr (with colour and box drawing on a terminal), one status line per
/// manifest and a summary to stdout.
fn print_human(reports: &[ManifestReport]) {
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let color = stderr_is_terminal && std::env::var_os("NO_COLOR").is_none();
    for report in reports {
        if let Some(errors) = &report.errors {
            let rendered = if stderr_is_terminal {
                errors.render_fancy(color)
            } else {
                errors.render_plain()
            };
            eprint!("{rendered}");
        }
        let status = if report.ok { "ok  " } else { "FAIL" };
        let names: Vec<&str> = report.engines.iter().map(|e| e.name.as_str()).collect();
        let detail = match (report.ok, names.len()) {
            (false, _) => plural(
                report
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .count(),
                "error",
            ),
            (true, n) => format!("{}: {}", plural(n, "engine"), names.join(", ")),
        };
        println!("{status} {} ({detail})", report.path.display());
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    println!(
        "checked {}: {} ok, {failed} failed",
        plural(reports.len(), "manifest"),
        reports.len() - failed
    );
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
