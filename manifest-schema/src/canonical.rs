//! The canonical byte encoding of a variant: everything that can change the engine, framed so
//! that no two different variants encode the same. Hashed into the build's action key.
//!
//! Layout: `MAGIC`, `CANONICAL_ENCODING_VERSION` (u16 LE), then each field in a fixed order as
//! `tag: u16 LE`, `length: u64 LE`, `payload`. Inside payloads, strings and sequences are
//! length-prefixed (u64 LE), integers are fixed-width little-endian, options carry a presence
//! byte (0 or 1), sets are written sorted and enumerations as their manifest spelling.
//! Bump the version whenever the layout or the meaning of a field changes.
//!
//! Fields added after version 1 (the `autocast` settings, tags 20–22) come after the profiles
//! and are written only when they differ from their default. Their default is what every build
//! did before they existed, so a variant that does not use them keeps its exact earlier
//! encoding (and action key), and the tags keep every other encoding unambiguous.
//!
//! Deliberately left out: `compatibility.gpu`. It selects the build GPU; the daemon puts the
//! GPU it resolved to (model and compute capability) into the action key, so two selectors that
//! pick the same GPU share one cache entry.

use crate::enums::{TacticSource, TimingCachePolicy};
use crate::model::{Autocast, BuildSettings, Profile, Variant};
use crate::toolchain::{Comparator, VersionOp};

/// Version of the canonical encoding; the second thing in every encoding.
pub const CANONICAL_ENCODING_VERSION: u16 = 1;

/// Leading bytes that say what the encoding is.
const MAGIC: &[u8] = b"trtfarm.variant\0";

/// Field tags. Never reuse a retired number.
mod tag {
    pub(super) const TOOLCHAIN: u16 = 1;
    pub(super) const PRECISION: u16 = 2;
    pub(super) const OPTIMIZATION_LEVEL: u16 = 3;
    pub(super) const MAX_AUX_STREAMS: u16 = 4;
    pub(super) const AVG_TIMING_ITERATIONS: u16 = 5;
    pub(super) const TACTIC_SOURCES: u16 = 6;
    pub(super) const TILING: u16 = 7;
    pub(super) const MPS_PERCENTAGE: u16 = 8;
    pub(super) const WORKSPACE: u16 = 9;
    pub(super) const TACTIC_DRAM: u16 = 10;
    pub(super) const TACTIC_SHARED_MEMORY: u16 = 11;
    pub(super) const HARDWARE: u16 = 12;
    pub(super) const VERSION_COMPATIBLE: u16 = 13;
    pub(super) const EXCLUDE_LEAN_RUNTIME: u16 = 14;
    pub(super) const COMPUTE_CAPABILITIES: u16 = 15;
    pub(super) const TIMING_CACHE: u16 = 16;
    pub(super) const REFIT: u16 = 17;
    pub(super) const STRIP: u16 = 18;
    pub(super) const PROFILES: u16 = 19;
    // Written only when not at their default (see the module documentation).
    pub(super) const AUTOCAST_KEEP_FP32: u16 = 20;
    pub(super) const AUTOCAST_CONVERT: u16 = 21;
    pub(super) const AUTOCAST_KEEP_FP32_IO: u16 = 22;
}

/// Appends framed values to a buffer.
struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.bytes.extend_from_slice(s.as_bytes());
    }

    fn option<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                write(self, v);
            }
        }
    }

    /// `tag`, then the payload `write` produces, prefixed by its length.
    fn field(&mut self, tag: u16, write: impl FnOnce(&mut Self)) {
        self.u16(tag);
        let length_at = self.bytes.len();
        self.u64(0);
        let start = self.bytes.len();
        write(self);
        let length = (self.bytes.len() - start) as u64;
        self.bytes[length_at..start].copy_from_slice(&length.to_le_bytes());
    }
}

fn op_code(op: VersionOp) -> u8 {
    match op {
        // A bare version and `=` mean the same thing.
        VersionOp::Prefix | VersionOp::Exact => 0,
        VersionOp::GreaterEq => 1,
        VersionOp::LessEq => 2,
        VersionOp::Greater => 3,
        VersionOp::Less => 4,
    }
}

impl Variant {
    /// The canonical encoding of everything in this variant that can change the engine: all
    /// build settings and profiles, but not `name`, `output`, `build_timeout`, profile names or
    /// `compatibility.gpu` (the daemon keys by the GPU it resolves to).
    /// Model and plugin contents are not part of a variant; the action key adds their digests.
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let mut e = Encoder {
            bytes: Vec::with_capacity(256),
        };
        e.bytes.extend_from_slice(MAGIC);
        e.u16(CANONICAL_ENCODING_VERSION);
        encode_settings(&mut e, &self.settings);
        e.field(tag::PROFILES, |e| encode_profiles(e, &self.profiles));
        encode_autocast(&mut e, &self.settings.autocast);
        e.bytes
    }
}

fn encode_settings(e: &mut Encoder, s: &BuildSettings) {
    e.field(tag::TOOLCHAIN, |e| {
        e.str(s.toolchain.flavour.as_str());
        let mut comparators: Vec<(u8, &Comparator)> = s
            .toolchain
            .versions
            .comparators
            .iter()
            .map(|c| (op_code(c.op), c))
            .collect();
        comparators.sort_by(|a, b| (a.0, &a.1.version).cmp(&(b.0, &b.1.version)));
        comparators.dedup_by(|a, b| a.0 == b.0 && a.1.version == b.1.version);
        e.len(comparators.len());
        for (op, c) in comparators {
            e.u8(op);
            e.len(c.version.components().len());
            for &component in c.version.components() {
                e.u32(component);
            }
        }
    });
    e.field(tag::PRECISION, |e| e.str(s.precision.as_str()));
    e.field(tag::OPTIMIZATION_LEVEL, |e| e.u8(s.optimization_level));
    e.field(tag::MAX_AUX_STREAMS, |e| {
        e.option(s.max_aux_streams, Encoder::u32)
    });
    e.field(tag::AVG_TIMING_ITERATIONS, |e| {
        e.u32(s.avg_timing_iterations)
    });
    e.field(tag::TACTIC_SOURCES, |e| {
        e.option(s.tactic_sources.as_ref(), |e, set| {
            e.len(set.len());
            // A BTreeSet iterates in sorted order.
            for source in set {
                e.str(TacticSource::as_str(*source));
            }
        });
    });
    e.field(tag::TILING, |e| e.str(s.tiling.as_str()));
    e.field(tag::MPS_PERCENTAGE, |e| {
        e.option(s.mps_percentage, Encoder::u8)
    });
    e.field(tag::WORKSPACE, |e| {
        e.option(s.memory_pools.workspace, Encoder::u64)
    });
    e.field(tag::TACTIC_DRAM, |e| {
        e.option(s.memory_pools.tactic_dram, Encoder::u64)
    });
    e.field(tag::TACTIC_SHARED_MEMORY, |e| {
        e.option(s.memory_pools.tactic_shared_memory, Encoder::u64)
    });
    e.field(tag::HARDWARE, |e| e.str(s.compatibility.hardware.as_str()));
    e.field(tag::VERSION_COMPATIBLE, |e| {
        e.bool(s.compatibility.version_compatible)
    });
    e.field(tag::EXCLUDE_LEAN_RUNTIME, |e| {
        e.bool(s.compatibility.exclude_lean_runtime)
    });
    e.field(tag::COMPUTE_CAPABILITIES, |e| {
        e.len(s.compatibility.compute_capabilities.len());
        for cc in &s.compatibility.compute_capabilities {
            // Two u16s, as when the manifest had its own type: a manifest's capability has
            // at most three digits per part, so the narrowing never fails.
            e.u16(u16::try_from(cc.major).expect("a three-digit major version"));
            e.u16(u16::try_from(cc.minor).expect("a three-digit minor version"));
        }
    });
    e.field(tag::TIMING_CACHE, |e| {
        e.str(TimingCachePolicy::as_str(s.timing_cache))
    });
    e.field(tag::REFIT, |e| e.str(s.weights.refit.as_str()));
    e.field(tag::STRIP, |e| e.bool(s.weights.strip));
}

/// The autocast settings that differ from the default, each as its own field.
fn encode_autocast(e: &mut Encoder, autocast: &Autocast) {
    for (tag, ops) in [
        (tag::AUTOCAST_KEEP_FP32, &autocast.keep_fp32),
        (tag::AUTOCAST_CONVERT, &autocast.convert),
    ] {
        if !ops.is_empty() {
            e.field(tag, |e| {
                e.len(ops.len());
                // A BTreeSet iterates in sorted order.
                for op in ops {
                    e.str(op);
                }
            });
        }
    }
    if autocast.keep_fp32_io {
        e.field(tag::AUTOCAST_KEEP_FP32_IO, |e| e.bool(true));
    }
}

fn encode_profiles(e: &mut Encoder, profiles: &[Profile]) {
    e.len(profiles.len());
    for profile in profiles {
        // Inputs are a BTreeMap: sorted by name.
        e.len(profile.inputs.len());
        for (input, range) in &profile.inputs {
            e.str(input);
            for shape in [&range.min, &range.opt, &range.max] {
                e.len(shape.len());
                for &dim in shape {
                    e.i64(dim);
                }
            }
        }
    }
}
