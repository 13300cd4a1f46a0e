//! The manifest a worker gets: one variant rendered as a canonical, single-engine `engine.toml`.
//!
//! The worker used to get the user's manifest verbatim. Its length (comments, key order, other
//! engines) then shaped the worker's heap, and with it the plan bytes: measured for issue 6, a
//! comment of 1 to 1600 characters gave 5 different plans of one dynamic-shape model in 8
//! builds. Here the variant is rendered from its resolved settings, so two requests with the
//! same action key give the worker byte-identical text: nothing the key leaves out (engine
//! name, output path, build timeout, profile names, comments, other engines, and
//! `compatibility.gpu`, which the daemon has already resolved to a GPU) is written.

use std::path::Path;

use manifest_schema::{Flavour, Variant, VersionOp};
use toml::{Table, Value};

/// The name of the one engine in a task manifest.
pub const TASK_VARIANT: &str = "engine";

/// The model path a task manifest names (the worker always reads `inputs/model.onnx`).
const TASK_MODEL_PATH: &str = "model.onnx";

/// The path diagnostics give for a task manifest.
pub const TASK_MANIFEST_PATH: &str = "engine.toml";

/// `variant` as a canonical single-engine manifest whose engine [`TASK_VARIANT`] has the same
/// [`Variant::canonical_encoding`]. Fails (it would be a bug in this renderer, not in the
/// user's manifest) when the rendered text does not parse back to the same settings, so a
/// worker never silently builds something other than what the key describes.
pub fn task_manifest(variant: &Variant) -> Result<String, String> {
    let text = render(variant);
    let parsed = manifest_schema::parse(&text, Path::new(TASK_MANIFEST_PATH)).map_err(|e| {
        format!(
            "engine `{}` does not render as a valid task manifest: {}",
            variant.name,
            e.render_plain()
        )
    })?;
    let rendered = parsed.variant(TASK_VARIANT).ok_or_else(|| {
        format!(
            "the task manifest of engine `{}` lost its engine",
            variant.name
        )
    })?;
    if rendered.canonical_encoding() != variant.canonical_encoding() {
        return Err(format!(
            "the task manifest of engine `{}` does not describe the same build settings:\n{text}",
            variant.name
        ));
    }
    Ok(text)
}

/// Renders every setting the canonical encoding covers, in a fixed order (toml's tables are
/// sorted maps), with values normalised the way the encoding normalises them.
fn render(variant: &Variant) -> String {
    let s = &variant.settings;
    let enterprise = s.toolchain.flavour == Flavour::TensorRt;

    let mut engine = Table::new();
    engine.insert("name".into(), TASK_VARIANT.into());
    engine.insert("toolchain".into(), toolchain_text(variant).into());
    engine.insert("precision".into(), s.precision.as_str().into());
    engine.insert(
        "optimization_level".into(),
        i64::from(s.optimization_level).into(),
    );
    if let Some(streams) = s.max_aux_streams {
        engine.insert("max_aux_streams".into(), i64::from(streams).into());
    }
    // The schema refuses these for TensorRT-RTX even at their defaults.
    if enterprise {
        engine.insert(
            "avg_timing_iterations".into(),
            i64::from(s.avg_timing_iterations).into(),
        );
    }
    if let Some(percentage) = s.mps_percentage {
        engine.insert("mps_percentage".into(), i64::from(percentage).into());
    }
    if let Some(sources) = &s.tactic_sources {
        let list: Vec<Value> = sources.iter().map(|t| t.as_str().into()).collect();
        engine.insert("tactic_sources".into(), list.into());
    }
    engine.insert("tiling_optimization_level".into(), s.tiling.as_str().into());

    let mut pools = Table::new();
    for (name, limit) in [
        ("workspace", s.memory_pools.workspace),
        ("tactic_dram", s.memory_pools.tactic_dram),
        ("tactic_shared_memory", s.memory_pools.tactic_shared_memory),
    ] {
        if let Some(bytes) = limit {
            // Sizes above i64::MAX cannot be written; the round trip then reports the loss.
            pools.insert(name.into(), i64::try_from(bytes).unwrap_or(i64::MAX).into());
        }
    }
    if !pools.is_empty() {
        engine.insert("memory_pools".into(), pools.into());
    }

    let compat = &s.compatibility;
    let mut compatibility = Table::new();
    compatibility.insert("hardware".into(), compat.hardware.as_str().into());
    if compat.version_compatible {
        compatibility.insert("version_compatible".into(), true.into());
    }
    if compat.exclude_lean_runtime {
        compatibility.insert("exclude_lean_runtime".into(), true.into());
    }
    if !compat.compute_capabilities.is_empty() {
        let list: Vec<Value> = compat
            .compute_capabilities
            .iter()
            .map(|cc| cc.to_string().into())
            .collect();
        compatibility.insert("compute_capabilities".into(), list.into());
    }
    engine.insert("compatibility".into(), compatibility.into());

    let mut timing_cache = Table::new();
    timing_cache.insert("policy".into(), s.timing_cache.as_str().into());
    engine.insert("timing_cache".into(), timing_cache.into());

    let mut weights = Table::new();
    weights.insert("refit".into(), s.weights.refit.as_str().into());
    if s.weights.strip {
        weights.insert("strip".into(), true.into());
    }
    engine.insert("weights".into(), weights.into());

    // Only what differs from the built-in conversion: other precisions always carry the
    // default, and the schema refuses an `autocast` table for them.
    let mut autocast = Table::new();
    for (key, ops) in [
        ("keep_fp32", &s.autocast.keep_fp32),
        ("convert", &s.autocast.convert),
    ] {
        if !ops.is_empty() {
            let list: Vec<Value> = ops.iter().map(|op| op.as_str().into()).collect();
            autocast.insert(key.into(), list.into());
        }
    }
    if s.autocast.keep_fp32_io {
        autocast.insert("keep_fp32_io".into(), true.into());
    }
    if !autocast.is_empty() {
        engine.insert("autocast".into(), autocast.into());
    }

    // Profile names are labels, not settings: left out, they default to `profile<index>`.
    let profiles: Vec<Value> = variant
        .profiles
        .iter()
        .map(|profile| {
            let mut inputs = Table::new();
            for (name, range) in &profile.inputs {
                let mut shapes = Table::new();
                for (which, dims) in [
                    ("min", &range.min),
                    ("opt", &range.opt),
                    ("max", &range.max),
                ] {
                    let dims: Vec<Value> = dims.iter().map(|&d| d.into()).collect();
                    shapes.insert(which.into(), dims.into());
                }
                inputs.insert(name.clone(), shapes.into());
            }
            let mut table = Table::new();
            table.insert("inputs".into(), inputs.into());
            Value::Table(table)
        })
        .collect();
    if !profiles.is_empty() {
        engine.insert("profile".into(), profiles.into());
    }

    let mut model = Table::new();
    model.insert("path".into(), TASK_MODEL_PATH.into());
    let mut manifest = Table::new();
    manifest.insert(
        "schema_version".into(),
        i64::from(manifest_schema::SUPPORTED_SCHEMA_VERSION).into(),
    );
    manifest.insert("model".into(), model.into());
    manifest.insert("engine".into(), Value::Array(vec![engine.into()]));
    toml::to_string(&manifest).expect("a toml::Table always serialises")
}

/// The toolchain requirement with its comparators sorted and deduplicated, a bare version for
/// `=` (they mean the same), as the canonical encoding treats them.
fn toolchain_text(variant: &Variant) -> String {
    let requirement = &variant.settings.toolchain;
    let mut terms: Vec<(u8, String)> = requirement
        .versions
        .comparators
        .iter()
        .map(|c| {
            let op = match c.op {
                VersionOp::Prefix | VersionOp::Exact => VersionOp::Prefix,
                other => other,
            };
            (op as u8, format!("{}{}", op.as_str(), c.version))
        })
        .collect();
    terms.sort();
    terms.dedup();
    let terms: Vec<String> = terms.into_iter().map(|(_, text)| text).collect();
    format!("{} {}", requirement.flavour.as_str(), terms.join(", "))
}

#[cfg(test)]
#[path = "task_manifest_tests.rs"]
mod tests;
