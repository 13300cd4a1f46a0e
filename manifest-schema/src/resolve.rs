//! From the raw TOML to the public [`Manifest`]: apply defaults, choose profiles, and collect
//! every semantic error on the way.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::autocast::{check_defaults_used, check_engine_applies};
use crate::diagnostic::{Diagnostic, SourceFile, sort_and_dedup};
use crate::limits::MAX_ENGINES;
use crate::model::{
    Blake3Digest, Manifest, Model, ModelSpans, PluginLibrary, SettingSpans, Variant, manifest_dir,
};
use crate::profiles::{CheckedProfiles, ProfileSpans, profiles};
use crate::raw::{Located, OpTypeText, Overlay, RawEngine, RawManifest, RawModel, RawSettings};
use crate::validate::{Checker, build_settings};

/// Where the settings a variant resolved from (`[defaults]` overlaid with its engine's own)
/// were written.
fn spans_of(settings: &RawSettings) -> SettingSpans {
    let autocast = settings.autocast.as_ref();
    SettingSpans {
        toolchain: settings.toolchain.as_ref().map_or(0..0, Located::span),
        refusable: refusable_spans(settings),
        keep_fp32: entry_spans(autocast.and_then(|a| a.keep_fp32.as_ref())),
        convert: entry_spans(autocast.and_then(|a| a.convert.as_ref())),
    }
}

/// Where the settings a daemon may refuse are written (see `Manifest::setting_place`).
fn refusable_spans(settings: &RawSettings) -> BTreeMap<&'static str, Range<usize>> {
    let compatibility = settings.compatibility.as_ref();
    let timing_cache = settings.timing_cache.as_ref();
    [
        (
            "compatibility.gpu",
            compatibility
                .and_then(|c| c.gpu.as_ref())
                .map(Located::span),
        ),
        (
            "mps_percentage",
            settings.mps_percentage.as_ref().map(Located::span),
        ),
        (
            "build_timeout",
            settings.build_timeout.as_ref().map(Located::span),
        ),
        (
            "timing_cache.policy",
            timing_cache
                .and_then(|t| t.policy.as_ref())
                .map(Located::span),
        ),
    ]
    .into_iter()
    .filter_map(|(key, span)| Some((key, span?)))
    .collect()
}

/// Each entry of an operator list, with the first place it is written.
fn entry_spans(list: Option<&Located<Vec<Located<OpTypeText>>>>) -> BTreeMap<String, Range<usize>> {
    let mut spans = BTreeMap::new();
    for entry in list.map(|l| l.get().as_slice()).unwrap_or_default() {
        spans
            .entry(entry.get().clone())
            .or_insert_with(|| entry.span());
    }
    spans
}

/// The only `schema_version` this release reads.
pub const SUPPORTED_SCHEMA_VERSION: u32 = 1;

/// Name of the variant built when the manifest has no `[[engine]]`.
pub const IMPLICIT_VARIANT_NAME: &str = "default";

pub(crate) fn resolve(raw: RawManifest, source: SourceFile) -> Result<Manifest, Vec<Diagnostic>> {
    let mut ck = Checker::new(&source);
    let schema_version = schema_version(&mut ck, raw.schema_version.as_ref());
    let model = model(&mut ck, &source, raw.model.get());

    let defaults = raw
        .defaults
        .as_ref()
        .map(|d| d.get().clone())
        .unwrap_or_default();
    // Values in [defaults] are checked even where every engine overrides them.
    build_settings(&mut ck, &defaults, None);
    let shared_profiles = profiles(&mut ck, raw.profile.as_deref().unwrap_or_default());

    let mut variants = Vec::new();
    let mut profile_spans = Vec::new();
    let mut setting_spans = Vec::new();
    let engines = raw.engine.as_deref().unwrap_or_default();
    let mut any_engine_autocast = false;
    if engines.is_empty() {
        any_engine_autocast = defaults.precision().is_autocast();
        let anchor = raw.defaults.as_ref().map_or(0..0, Located::span);
        let settings = build_settings(&mut ck, &defaults, Some((IMPLICIT_VARIANT_NAME, anchor)));
        if let (Some(settings), Some(shared)) = (settings, shared_profiles.clone()) {
            variants.push(Variant {
                name: IMPLICIT_VARIANT_NAME.to_string(),
                output: None,
                settings,
                profiles: shared.profiles,
            });
            profile_spans.push(shared.spans);
            setting_spans.push(spans_of(&defaults));
        }
    }
    if let Some(first_over) = engines.get(MAX_ENGINES) {
        ck.error(
            first_over.get().name.span(),
            format!(
                "the manifest has {} `[[engine]]` tables, over the limit of {MAX_ENGINES}; this is \
                 engine {}",
                engines.len(),
                MAX_ENGINES + 1
            ),
            Some(
                "split the engines over several manifests (each may name the same model)"
                    .to_string(),
            ),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    // Past the limit nothing is resolved: the error above is all a hostile manifest gets.
    for engine in engines.iter().take(MAX_ENGINES) {
        any_engine_autocast |= defaults
            .overlay(&engine.get().settings())
            .precision()
            .is_autocast();
        let variant = engine_variant(
            &mut ck,
            &source,
            &defaults,
            engine.get(),
            shared_profiles.as_ref(),
            &mut names,
        );
        if let Some((variant, spans)) = variant {
            variants.push(variant);
            profile_spans.push(spans);
            setting_spans.push(spans_of(&defaults.overlay(&engine.get().settings())));
        }
    }

    check_defaults_used(&mut ck, defaults.autocast.as_ref(), any_engine_autocast);

    let mut diagnostics = ck.diagnostics;
    if !diagnostics.is_empty() {
        sort_and_dedup(&mut diagnostics);
        return Err(diagnostics);
    }
    match (schema_version, model) {
        (Some(schema_version), Some(model)) => Ok(Manifest {
            path: source.path().to_path_buf(),
            schema_version,
            model,
            variants,
            profile_spans,
            setting_spans,
            source,
        }),
        // Unreachable in practice: a `None` above always comes with a diagnostic.
        _ => Err(vec![source.error(
            0..0,
            "manifest could not be resolved",
            None,
        )]),
    }
}

fn schema_version(ck: &mut Checker<'_>, value: Option<&Located<i64>>) -> Option<u32> {
    let Some(value) = value else {
        ck.error(
            0..0,
            "missing `schema_version`",
            Some(format!(
                "add `schema_version = {SUPPORTED_SCHEMA_VERSION}` at the top of the file"
            )),
        );
        return None;
    };
    if *value.get() == i64::from(SUPPORTED_SCHEMA_VERSION) {
        Some(SUPPORTED_SCHEMA_VERSION)
    } else {
        ck.error(value.span(), format!("unsupported schema_version {}", value.get()), Some(format!("this trtfarm reads schema_version = {SUPPORTED_SCHEMA_VERSION}; a newer manifest needs a newer trtfarm")));
        None
    }
}

/// The hint for an input that would leave the project root.
pub(crate) const STAY_INSIDE_HINT: &str = "a manifest reads files only inside its project: the nearest \
     directory above engine.toml that holds `.git` (else engine.toml's own directory); move the \
     file there, or name the directory it is in in TRTFARM_INPUT_ROOTS (absolute paths, \
     `:`-separated)";

/// The hint for an output path with `..`.
const OUTPUT_BELOW_HINT: &str = "`trtfarm submit` writes engines below the manifest's directory; \
     write e.g. output = \"build/net.engine\"";

/// Checks a path written in the manifest (`model.path`, `plugins`, `output`): relative to the
/// manifest's directory, non-empty, written with `/`. Inputs (`allow_parent`) may climb with
/// `..`, since models are often shared between manifests, but must stay inside the project root
/// with symbolic links resolved; that needs the filesystem and is checked by
/// [`crate::Manifest::check_inputs`] (and, for the model's external-data files, by the client).
/// `output`, where `trtfarm submit` writes, has no `..` at all (not even one that comes back
/// down: `a/../b` through a symlinked `a` lands elsewhere), so a manifest from an untrusted
/// change cannot make it overwrite files outside its directory. Returns whether the path passes.
fn check_relative_path(
    ck: &mut Checker<'_>,
    value: &Located<String>,
    key: &str,
    allow_parent: bool,
) -> bool {
    let text = value.get();
    if text.trim().is_empty() {
        ck.error(
            value.span(),
            format!("`{key}` is empty"),
            Some("give a path relative to the manifest's directory".to_string()),
        );
        return false;
    }
    let bytes = text.as_bytes();
    let windows_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if text.starts_with('/') || text.starts_with('\\') || windows_drive {
        ck.error(value.span(), format!("`{key}` is an absolute path"), Some("paths are relative to the manifest's directory, so the manifest can move with its model".to_string()));
        return false;
    }
    if text.contains('\\') || text.contains('\0') {
        ck.error(
            value.span(),
            format!(
                "`{key}` `{}` has a backslash or a NUL character",
                text.escape_debug()
            ),
            Some("write paths with `/` between directories, e.g. \"models/net.onnx\"".to_string()),
        );
        return false;
    }
    if !allow_parent && text.split('/').any(|part| part == "..") {
        ck.error(
            value.span(),
            format!("`{key}` `{text}` leaves the manifest's directory with `..`"),
            Some(OUTPUT_BELOW_HINT.to_string()),
        );
        return false;
    }
    true
}

fn model(ck: &mut Checker<'_>, source: &SourceFile, raw: &RawModel) -> Option<Model> {
    let dir = manifest_dir(source.path());
    let mut ok = check_relative_path(ck, &raw.path, "model.path", true);
    let digest = match &raw.digest {
        None => None,
        Some(text) => match text.get().trim().parse::<Blake3Digest>() {
            Ok(digest) => Some(digest),
            Err(e) => {
                ok = false;
                ck.error(text.span(), e.to_string(), Some("write `blake3:` and the 64 lower-case hex digits `b3sum` prints for the model, or remove `digest`".to_string()));
                None
            }
        },
    };
    let mut plugins = Vec::new();
    for plugin in raw.plugins.as_deref().unwrap_or_default() {
        ok &= check_relative_path(ck, plugin, "plugins", true);
        plugins.push(PluginLibrary {
            path: plugin.get().clone(),
            resolved_path: dir.join(plugin.get()),
            span: plugin.span(),
        });
    }
    ok.then(|| Model {
        path: raw.path.get().clone(),
        resolved_path: dir.join(raw.path.get()),
        digest,
        plugins,
        spans: ModelSpans {
            path: raw.path.span(),
            digest: raw.digest.as_ref().map(Located::span),
        },
    })
}

fn engine_name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn engine_variant<'r>(
    ck: &mut Checker<'_>,
    source: &SourceFile,
    defaults: &RawSettings,
    engine: &'r RawEngine,
    shared_profiles: Option<&CheckedProfiles>,
    names: &mut HashMap<&'r str, usize>,
) -> Option<(Variant, Vec<ProfileSpans>)> {
    let name = engine.name.get();
    let name_span: Range<usize> = engine.name.span();
    let mut ok = true;
    if !engine_name_is_valid(name) {
        ok = false;
        ck.error(
            name_span.clone(),
            format!("invalid engine name `{name}`"),
            Some("engine names use letters, digits, `.`, `_` and `-`".to_string()),
        );
    }
    if let Some(&first) = names.get(name.as_str()) {
        ok = false;
        let line = ck.line_of(first);
        ck.error(
            name_span.clone(),
            format!("duplicate engine name `{name}`"),
            Some(format!(
                "the first engine named `{name}` is on line {line}; engine names must be unique"
            )),
        );
    } else {
        names.insert(name, name_span.start);
    }
    let output = match &engine.output {
        Some(output) if check_relative_path(ck, output, "output", false) => {
            Some(manifest_dir(source.path()).join(output.get()))
        }
        Some(_) => {
            ok = false;
            None
        }
        None => None,
    };
    let own_profiles = engine.profile.as_deref().map(|list| profiles(ck, list));
    let merged = defaults.overlay(&engine.settings());
    check_engine_applies(ck, name, engine.autocast.as_ref(), merged.precision());
    let settings = build_settings(ck, &merged, Some((name, name_span)));
    let profiles = match own_profiles {
        Some(own) => own,
        None => shared_profiles.cloned(),
    };
    if !ok {
        return None;
    }
    let CheckedProfiles { profiles, spans } = profiles?;
    let variant = Variant {
        name: name.clone(),
        output,
        settings: settings?,
        profiles,
    };
    Some((variant, spans))
}
