//! Checking optimization profiles.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::limits::{MAX_DIMENSION, MAX_PROFILE_INPUTS, MAX_PROFILES, MAX_RANK};
use crate::model::{Profile, ShapeRange};
use crate::raw::{Located, RawProfile, RawShapeRange};
use crate::validate::Checker;

/// A checked list of profiles with where each was written. `spans[i]` belongs to `profiles[i]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckedProfiles {
    pub(crate) profiles: Vec<Profile>,
    pub(crate) spans: Vec<ProfileSpans>,
}

/// Where one profile's parts were written, for diagnostics against the model's inputs. Kept
/// beside [`Profile`] rather than in it, so the public type (its equality, its fields) does not
/// change with the manifest's layout.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProfileSpans {
    /// The `inputs` key (`inputs.x = ...`, `inputs = {...}`) or `[profile.inputs]` header.
    pub(crate) inputs: Range<usize>,
    /// Per input name.
    pub(crate) input: BTreeMap<String, InputSpans>,
}

/// Where one input of a profile was written.
#[derive(Debug, Clone, Default)]
pub(crate) struct InputSpans {
    /// The input's name, as a key.
    pub(crate) key: Range<usize>,
    /// `min`, `opt` and `max`, in that order.
    pub(crate) shapes: [ShapeSpans; 3],
}

/// Where one shape (`min`, `opt` or `max`) was written.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShapeSpans {
    /// The whole array.
    pub(crate) array: Range<usize>,
    /// Each dimension's value.
    pub(crate) dims: Vec<Range<usize>>,
}

impl ShapeSpans {
    fn of(shape: &Located<Vec<Located<i64>>>) -> Self {
        ShapeSpans {
            array: shape.span(),
            dims: shape.get().iter().map(Located::span).collect(),
        }
    }
}

/// Checks a list of profiles (top-level or one engine's) and converts them, keeping order.
pub(crate) fn profiles(
    ck: &mut Checker<'_>,
    raw: &[Located<RawProfile>],
) -> Option<CheckedProfiles> {
    let errors_before = ck.diagnostics.len();
    if let Some(first_over) = raw.get(MAX_PROFILES) {
        ck.error(
            first_over.span(),
            format!(
                "{} optimization profiles, over the limit of {MAX_PROFILES}; this is profile {}",
                raw.len(),
                MAX_PROFILES + 1
            ),
            Some(
                "TensorRT tunes every profile separately: cover the shapes with fewer, wider \
                 profiles, or build several engines"
                    .to_string(),
            ),
        );
        return None;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut result = CheckedProfiles::default();
    for (index, located) in raw.iter().enumerate() {
        let profile = located.get();
        let (name, name_span) = match &profile.name {
            Some(name) => (name.get().clone(), name.span()),
            None => (format!("profile{index}"), located.span()),
        };
        if name.trim().is_empty() {
            ck.error(
                name_span.clone(),
                "profile name is empty",
                Some("leave `name` out to get `profile<index>`".to_string()),
            );
        }
        if let Some(&first) = seen.get(&name) {
            let line = ck.line_of(first);
            ck.error(name_span.clone(), format!("duplicate profile name `{name}`"), Some(format!("the first profile named `{name}` is on line {line}; profile names must be unique")));
        } else {
            seen.insert(name.clone(), name_span.start);
        }
        let input_count = profile.inputs.get().len();
        if input_count > MAX_PROFILE_INPUTS {
            ck.error(
                profile.inputs.span(),
                format!(
                    "profile `{name}` describes {input_count} inputs, over the limit of {MAX_PROFILE_INPUTS}"
                ),
                Some("a profile lists the model's dynamic inputs; no real model has this many".to_string()),
            );
            continue;
        }
        if profile.inputs.get().is_empty() {
            ck.error(profile.inputs.span(), format!("profile `{name}` has no inputs"), Some("give `min`, `opt` and `max` for each dynamic input, or remove the profile for a static-shape model".to_string()));
        }
        let mut inputs = BTreeMap::new();
        let mut spans = ProfileSpans {
            inputs: profile.inputs.span(),
            input: BTreeMap::new(),
        };
        for (input, range) in profile.inputs.get() {
            if let Some(shapes) = shape_range(ck, input.get(), range.get()) {
                inputs.insert(input.get().clone(), shapes);
                let raw = range.get();
                let input_spans = InputSpans {
                    key: input.span(),
                    shapes: [&raw.min, &raw.opt, &raw.max].map(ShapeSpans::of),
                };
                spans.input.insert(input.get().clone(), input_spans);
            }
        }
        result.profiles.push(Profile { name, inputs });
        result.spans.push(spans);
    }
    (ck.diagnostics.len() == errors_before).then_some(result)
}

fn shape_range(ck: &mut Checker<'_>, input: &str, raw: &RawShapeRange) -> Option<ShapeRange> {
    let errors_before = ck.diagnostics.len();
    let shapes = [("min", &raw.min), ("opt", &raw.opt), ("max", &raw.max)];
    for (which, shape) in shapes {
        let rank = shape.get().len();
        if rank > MAX_RANK {
            ck.error(
                shape.span(),
                format!(
                    "input `{input}`: {which} has rank {rank}, over TensorRT's limit of {MAX_RANK}"
                ),
                Some(format!(
                    "TensorRT tensors have at most {MAX_RANK} dimensions"
                )),
            );
            continue;
        }
        for (d, dim) in shape.get().iter().enumerate() {
            let value = *dim.get();
            if value < 1 {
                ck.error(
                    dim.span(),
                    format!(
                        "input `{input}`: {which}[{d}] is {value}; dimensions must be at least 1"
                    ),
                    Some(
                        "profiles give concrete shapes: use 1 or more in every dimension"
                            .to_string(),
                    ),
                );
            } else if value > MAX_DIMENSION {
                ck.error(
                    dim.span(),
                    format!(
                        "input `{input}`: {which}[{d}] is {value}, larger than {MAX_DIMENSION}"
                    ),
                    Some("TensorRT dimensions are 32-bit".to_string()),
                );
            }
        }
    }
    // Ranks and dimensions are in range now; the element count of the largest shape can still
    // overflow the 64-bit count TensorRT (and every runtime) keeps of a tensor's size.
    let max = raw.max.get();
    if ck.diagnostics.len() == errors_before
        && max
            .iter()
            .try_fold(1i64, |count, dim| count.checked_mul(*dim.get()))
            .is_none()
    {
        let shape: Vec<String> = max.iter().map(|d| d.get().to_string()).collect();
        ck.error(
            raw.max.span(),
            format!(
                "input `{input}`: max [{}] has more elements than a 64-bit count holds",
                shape.join(", ")
            ),
            Some(format!(
                "the product of the max dimensions must be at most {} (2^63 - 1); no GPU holds a tensor near that size",
                i64::MAX
            )),
        );
    }
    let min_rank = raw.min.get().len();
    for (which, shape) in [("opt", &raw.opt), ("max", &raw.max)] {
        let rank = shape.get().len();
        if rank != min_rank {
            ck.error(
                shape.span(),
                format!("input `{input}`: min has rank {min_rank} but {which} has rank {rank}"),
                Some("min, opt and max must have the same number of dimensions".to_string()),
            );
        }
    }
    if ck.diagnostics.len() != errors_before {
        return None;
    }
    let values = |shape: &Located<Vec<Located<i64>>>| -> Vec<i64> {
        shape.get().iter().map(|d| *d.get()).collect()
    };
    let range = ShapeRange {
        min: values(&raw.min),
        opt: values(&raw.opt),
        max: values(&raw.max),
    };
    for d in 0..min_rank {
        let (min, opt, max) = (range.min[d], range.opt[d], range.max[d]);
        if min > opt {
            let span = raw.opt.get()[d].span();
            ck.error(
                span,
                format!("input `{input}`: dimension {d} has min {min} > opt {opt}"),
                Some("each dimension needs min <= opt <= max".to_string()),
            );
        } else if opt > max {
            let span = raw.max.get()[d].span();
            ck.error(
                span,
                format!("input `{input}`: dimension {d} has opt {opt} > max {max}"),
                Some("each dimension needs min <= opt <= max".to_string()),
            );
        }
    }
    (ck.diagnostics.len() == errors_before).then_some(range)
}
