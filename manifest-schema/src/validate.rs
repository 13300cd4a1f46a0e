//! Checking build-setting values and turning them into typed [`BuildSettings`].

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use crate::autocast::autocast;
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::enums::{Flavour, HardwareCompatibility, RefitMode, TilingLevel, TimingCachePolicy};
use crate::limits::MAX_POOL_BYTES;
use crate::model::{
    Autocast, BuildSettings, Compatibility, ComputeCapability, GpuSelector, GpuSelectorParseError,
    MemoryPools, Weights,
};
use crate::raw::{Located, RawMemoryPools, RawSettings};
use crate::size::{SizeValue, parse_size};
use crate::toolchain::ToolchainRequirement;

/// Default build deadline.
const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Collects diagnostics against one source file.
pub(crate) struct Checker<'a> {
    pub(crate) source: &'a SourceFile,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(source: &'a SourceFile) -> Self {
        Checker {
            source,
            diagnostics: Vec::new(),
        }
    }

    /// Records an error at `span`.
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let diagnostic = self.source.error(span, message, hint.into());
        self.diagnostics.push(diagnostic);
    }

    /// The 1-based line a byte offset is on.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.source.error(offset..offset, "", None).line
    }

    /// An integer setting that must lie in `range`; `None` (and an error) when it does not.
    fn integer_in(
        &mut self,
        value: &Located<i64>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        why: &str,
    ) -> Option<i64> {
        let n = *value.get();
        if range.contains(&n) {
            Some(n)
        } else {
            self.error(
                value.span(),
                format!("`{key}` is {n}, outside {}–{}", range.start(), range.end()),
                Some(why.to_string()),
            );
            None
        }
    }

    fn size(&mut self, value: &Option<Located<SizeValue>>, key: &str) -> Option<u64> {
        let value = value.as_ref()?;
        let parsed = match value.get() {
            SizeValue::Integer(n) if *n > 0 => Ok(n.unsigned_abs()),
            SizeValue::Integer(n) => Err((format!("`memory_pools.{key}` is {n}"), None)),
            SizeValue::Text(text) => match parse_size(text) {
                Ok(0) => Err((format!("`memory_pools.{key}` is zero"), None)),
                Ok(bytes) => Ok(bytes),
                Err(e) => Err((e.message, e.hint)),
            },
        };
        let parsed = parsed.and_then(|bytes| {
            if bytes <= MAX_POOL_BYTES {
                return Ok(bytes);
            }
            Err((
                format!(
                    "`memory_pools.{key}` is {bytes} bytes ({:.1} TiB), over the limit of 1 TiB",
                    bytes as f64 / MAX_POOL_BYTES as f64
                ),
                Some(
                    "no GPU has that much memory: check the unit (\"64GiB\", not \"64TiB\"), or \
                     leave the key out for the toolchain's default"
                        .to_string(),
                ),
            ))
        });
        match parsed {
            Ok(bytes) => Some(bytes),
            Err((message, hint)) => {
                let hint = hint.or_else(|| {
                    Some("a pool size must be positive; leave the key out for the toolchain's default".to_string())
                });
                self.error(value.span(), message, hint);
                None
            }
        }
    }
}

/// Converts build settings, reporting every bad value. With `anchor` (the variant being
/// resolved, and where to point if its toolchain is missing) it also runs the checks that
/// combine several settings; without it (the `[defaults]` table on its own) only values are
/// checked. Returns `None` when anything was wrong.
pub(crate) fn build_settings(
    ck: &mut Checker<'_>,
    raw: &RawSettings,
    anchor: Option<(&str, Range<usize>)>,
) -> Option<BuildSettings> {
    let errors_before = ck.diagnostics.len();
    let toolchain =
        raw.toolchain
            .as_ref()
            .and_then(|t| match t.get().parse::<ToolchainRequirement>() {
                Ok(requirement) => Some(requirement),
                Err(e) => {
                    ck.error(t.span(), e.message, e.hint);
                    None
                }
            });
    let optimization_level = raw.optimization_level.as_ref().map(|v| {
        ck.integer_in(
            v,
            "optimization_level",
            0..=5,
            "TensorRT builder optimization levels are 0–5 (default 3)",
        )
    });
    let max_aux_streams = raw.max_aux_streams.as_ref().map(|v| {
        ck.integer_in(
            v,
            "max_aux_streams",
            0..=64,
            "use 0–64, or leave it out to let the toolchain choose",
        )
    });
    let avg_timing_iterations = raw.avg_timing_iterations.as_ref().map(|v| {
        ck.integer_in(
            v,
            "avg_timing_iterations",
            1..=1000,
            "use 1–1000 timing iterations per tactic (default 1)",
        )
    });
    let mps_percentage = raw.mps_percentage.as_ref().map(|v| {
        ck.integer_in(
            v,
            "mps_percentage",
            1..=100,
            "an MPS active-thread percentage is 1–100; leave it out for no limit",
        )
    });
    let build_timeout = match &raw.build_timeout {
        None => DEFAULT_BUILD_TIMEOUT,
        Some(text) => match humantime::parse_duration(text.get().trim()) {
            Ok(d) if d.is_zero() => {
                ck.error(
                    text.span(),
                    "`build_timeout` is zero",
                    Some("give a positive duration such as \"20m\"".to_string()),
                );
                DEFAULT_BUILD_TIMEOUT
            }
            Ok(d) => d,
            Err(e) => {
                ck.error(
                    text.span(),
                    format!("`build_timeout` `{}` is not a duration: {e}", text.get()),
                    Some("write a duration such as \"90s\", \"20m\" or \"2h\"".to_string()),
                );
                DEFAULT_BUILD_TIMEOUT
            }
        },
    };
    let memory_pools = memory_pools(ck, raw.memory_pools.as_ref());
    let compat = raw.compatibility.clone().unwrap_or_default();
    let compute_capabilities = compat.compute_capabilities.as_ref().map(|list| {
        let mut set = BTreeSet::new();
        for item in list.get() {
            let text = item.get().trim();
            match text.parse::<ComputeCapability>() {
                Ok(cc) => {
                    set.insert(cc);
                }
                // The manifest's own wording (the hint says what to write instead).
                Err(_) => ck.error(
                    item.span(),
                    format!("`{text}` is not a compute capability"),
                    Some(
                        "write compute capabilities as \"major.minor\", e.g. \"8.6\" or \"12.0\""
                            .to_string(),
                    ),
                ),
            }
        }
        set
    });
    let gpu = compat.gpu.as_ref().and_then(|g| match g.get().parse::<GpuSelector>() {
        Ok(selector) => Some(selector),
        Err(e) => {
            let hint = match e {
                GpuSelectorParseError::Empty => "give a compute capability such as \"9.0\" or part of the GPU's name such as \"H100\", or leave `gpu` out to build on any GPU",
                GpuSelectorParseError::BadComputeCapability(_) => "write a compute capability as \"major.minor\", e.g. \"9.0\", or give part of the GPU's name such as \"H100\"",
            };
            ck.error(g.span(), e.to_string(), Some(hint.to_string()));
            None
        }
    });
    let timing = raw.timing_cache.clone().unwrap_or_default();
    let weights = raw.weights.clone().unwrap_or_default();
    let autocast = autocast(ck, raw.autocast.as_ref());

    let (variant, anchor_span) = anchor?;
    let Some(toolchain) = toolchain else {
        if raw.toolchain.is_none() {
            ck.error(
                anchor_span,
                format!("engine `{variant}` has no toolchain"),
                Some("set `toolchain` in [defaults] or in this [[engine]], e.g. toolchain = \"tensorrt-rtx 1.7\"".to_string()),
            );
        }
        return None;
    };
    let precision = raw.precision();
    let settings = BuildSettings {
        precision,
        optimization_level: flatten_u(optimization_level, 3)?,
        max_aux_streams: match max_aux_streams {
            None => None,
            Some(v) => Some(u32::try_from(v?).ok()?),
        },
        avg_timing_iterations: flatten_u(avg_timing_iterations, 1)?,
        tactic_sources: raw
            .tactic_sources
            .as_ref()
            .map(|list| list.get().iter().map(|s| *s.get()).collect()),
        tiling: raw
            .tiling_optimization_level
            .as_ref()
            .map_or(TilingLevel::None, |t| *t.get()),
        mps_percentage: match mps_percentage {
            None => None,
            Some(v) => Some(u8::try_from(v?).ok()?),
        },
        build_timeout,
        memory_pools,
        compatibility: Compatibility {
            hardware: compat
                .hardware
                .as_ref()
                .map_or(HardwareCompatibility::None, |h| *h.get()),
            version_compatible: compat.version_compatible.as_ref().is_some_and(|v| *v.get()),
            exclude_lean_runtime: compat
                .exclude_lean_runtime
                .as_ref()
                .is_some_and(|v| *v.get()),
            compute_capabilities: compute_capabilities.unwrap_or_default(),
            gpu,
        },
        timing_cache: timing
            .policy
            .as_ref()
            .map_or(TimingCachePolicy::Off, |p| *p.get()),
        weights: Weights {
            refit: weights.refit.as_ref().map_or(RefitMode::None, |r| *r.get()),
            strip: weights.strip.as_ref().is_some_and(|s| *s.get()),
        },
        // Inherited autocast settings do not apply to an engine that is not autocast (`resolve`
        // reports them where they cannot apply at all).
        autocast: if precision.is_autocast() {
            autocast
        } else {
            Autocast::default()
        },
        toolchain,
    };
    cross_checks(ck, raw, &settings);
    (ck.diagnostics.len() == errors_before).then_some(settings)
}

/// A checked optional integer: `None` → default, `Some(None)` (already reported) → `None`.
fn flatten_u<T: TryFrom<i64>>(value: Option<Option<i64>>, default: T) -> Option<T> {
    match value {
        None => Some(default),
        Some(v) => T::try_from(v?).ok(),
    }
}

fn memory_pools(ck: &mut Checker<'_>, raw: Option<&RawMemoryPools>) -> MemoryPools {
    let Some(raw) = raw else {
        return MemoryPools::default();
    };
    MemoryPools {
        workspace: ck.size(&raw.workspace, "workspace"),
        tactic_dram: ck.size(&raw.tactic_dram, "tactic_dram"),
        tactic_shared_memory: ck.size(&raw.tactic_shared_memory, "tactic_shared_memory"),
    }
}

/// Checks that need several settings at once (mostly: what each flavour supports).
fn cross_checks(ck: &mut Checker<'_>, raw: &RawSettings, s: &BuildSettings) {
    let compat = raw.compatibility.clone().unwrap_or_default();
    let timing = raw.timing_cache.clone().unwrap_or_default();
    let weights = raw.weights.clone().unwrap_or_default();
    let toolchain_span = raw.toolchain.as_ref().map_or(0..0, Located::span);
    match s.toolchain.flavour {
        Flavour::TensorRtRtx => {
            match &compat.compute_capabilities {
                None => ck.error(
                    toolchain_span,
                    format!("toolchain `{}` needs `compatibility.compute_capabilities`", s.toolchain),
                    Some("TensorRT-RTX builds ahead of time for listed GPUs: add compatibility.compute_capabilities = [\"8.6\", \"8.9\"]".to_string()),
                ),
                Some(list) if list.get().is_empty() => ck.error(
                    list.span(),
                    "`compute_capabilities` is empty",
                    Some("TensorRT-RTX needs at least one target GPU, e.g. [\"8.6\"]".to_string()),
                ),
                Some(_) => {}
            }
            if let Some(h) = compat
                .hardware
                .as_ref()
                .filter(|h| *h.get() != HardwareCompatibility::None)
            {
                ck.error(h.span(), format!("hardware compatibility `{}` is not supported by TensorRT-RTX", h.get()), Some("TensorRT-RTX rejects hardware-compatibility levels: remove it or use hardware = \"none\"; list target GPUs in compute_capabilities instead".to_string()));
            }
            if let Some(v) = compat.version_compatible.as_ref().filter(|v| *v.get()) {
                ck.error(
                    v.span(),
                    "`version_compatible` is not supported by TensorRT-RTX",
                    Some(
                        "version-compatible engines are a TensorRT Enterprise feature: remove it"
                            .to_string(),
                    ),
                );
            }
            if let Some(p) = timing
                .policy
                .as_ref()
                .filter(|p| *p.get() != TimingCachePolicy::Off)
            {
                ck.error(
                    p.span(),
                    format!(
                        "timing cache policy `{}` has no effect with TensorRT-RTX",
                        p.get()
                    ),
                    Some(
                        "TensorRT-RTX's timing cache is a no-op: use policy = \"off\"".to_string(),
                    ),
                );
            }
            if let Some(m) = &raw.mps_percentage {
                ck.error(
                    m.span(),
                    "`mps_percentage` does not apply to TensorRT-RTX",
                    Some(
                        "TensorRT-RTX builds on the CPU and does not time tactics: remove it"
                            .to_string(),
                    ),
                );
            }
            if let Some(g) = &compat.gpu {
                ck.error(
                    g.span(),
                    "`gpu` does not apply to TensorRT-RTX",
                    Some("TensorRT-RTX builds on the CPU for the GPUs listed in compute_capabilities: remove `gpu` and list the target's capability there, e.g. compute_capabilities = [\"8.9\"]".to_string()),
                );
            }
            if let Some(a) = &raw.avg_timing_iterations {
                ck.error(
                    a.span(),
                    "`avg_timing_iterations` does not apply to TensorRT-RTX",
                    Some("TensorRT-RTX does not time tactics: remove it".to_string()),
                );
            }
        }
        Flavour::TensorRt => {
            if let Some(list) = &compat.compute_capabilities {
                ck.error(list.span(), "`compute_capabilities` does not apply to TensorRT Enterprise", Some("TensorRT Enterprise builds for the GPU it runs on: remove it (use `hardware` for wider compatibility)".to_string()));
            }
        }
    }
    if let Some(e) = compat.exclude_lean_runtime.as_ref().filter(|e| *e.get())
        && !s.compatibility.version_compatible
    {
        ck.error(e.span(), "`exclude_lean_runtime` needs `version_compatible = true`", Some("the lean runtime is only embedded in version-compatible plans: set version_compatible = true or remove this".to_string()));
    }
    if let Some(p) = timing
        .policy
        .as_ref()
        .filter(|p| *p.get() == TimingCachePolicy::Locked)
        && s.optimization_level == 0
    {
        ck.error(p.span(), "timing cache policy `locked` cannot be used with `optimization_level = 0`", Some("optimization level 0 ignores the timing cache: raise optimization_level or use policy = \"off\"".to_string()));
    }
    if let Some(strip) = weights.strip.as_ref().filter(|s| *s.get())
        && s.weights.refit == RefitMode::None
    {
        ck.error(
            strip.span(),
            "`strip = true` needs refittable weights",
            Some(
                "set weights.refit to \"all\", \"individual\" or \"identical\", or remove strip"
                    .to_string(),
            ),
        );
    }
}
