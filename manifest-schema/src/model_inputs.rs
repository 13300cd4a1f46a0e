//! Checking optimization profiles against the model's graph inputs.
//!
//! This crate does not read ONNX: the caller reads the model's inputs with another crate,
//! converts them to [`ModelInput`]s and calls [`Manifest::check_against_model`].

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

use crate::diagnostic::{Diagnostic, sort_and_dedup};
use crate::model::{Manifest, Profile};
use crate::profile_suggestion::{example_note, profile_line, toml_key, with_examples};
use crate::profiles::{InputSpans, ProfileSpans};
use crate::suggest::{and_list, did_you_mean, quoted_list};

/// One graph input of the model (weights with defaults left out), as the manifest checks see
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelInput {
    /// The input's name: the key a profile gives its shapes under (`inputs.<name>`).
    pub name: String,
    /// The shape, one entry per dimension; `None` when the model does not say the rank (then
    /// only the name is checked).
    pub dims: Option<Vec<ModelDim>>,
}

impl ModelInput {
    /// Whether some dimension is only known at run time, so every profile must give this
    /// input's shapes.
    pub fn is_dynamic(&self) -> bool {
        self.dims
            .as_ref()
            .is_some_and(|dims| dims.iter().any(ModelDim::is_dynamic))
    }
}

/// One dimension of a model input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelDim {
    /// A fixed size: a profile that gives the input must use exactly this in `min`, `opt` and
    /// `max`.
    Fixed(u64),
    /// A size chosen at run time, with a name (ONNX `dim_param`). TensorRT's ONNX parser treats
    /// every dimension with the same name as one dimension, within an input and across inputs,
    /// so a profile must give them equal sizes. An empty name reads as [`ModelDim::Unknown`].
    Symbolic(String),
    /// A size chosen at run time, without a name: independent of every other dimension.
    Unknown,
}

impl ModelDim {
    /// Whether the size is only known at run time.
    pub fn is_dynamic(&self) -> bool {
        !matches!(self, ModelDim::Fixed(_))
    }

    /// The dimension's name, if it has one.
    pub(crate) fn symbol(&self) -> Option<&str> {
        match self {
            ModelDim::Symbolic(name) if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for ModelDim {
    /// The size, the name, or `?` for an unnamed dynamic dimension.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.symbol()) {
            (ModelDim::Fixed(size), _) => write!(f, "{size}"),
            (_, Some(name)) => f.write_str(name),
            _ => f.write_str("?"),
        }
    }
}

/// `min`, `opt`, `max`: the order of [`InputSpans::shapes`] and of the values below.
const WHICH: [&str; 3] = ["min", "opt", "max"];

/// Model inputs listed in full in a hint; beyond this, "and N more".
const LISTED_INPUTS: usize = 10;

/// The model's inputs, indexed for the checks.
pub(crate) struct ModelView<'m> {
    /// Inputs in model order, first of each name only.
    pub(crate) inputs: Vec<&'m ModelInput>,
    by_name: HashMap<&'m str, &'m ModelInput>,
    /// Each dimension name used more than once, with every (input, dimension index) it names,
    /// in model order; names in order of first use.
    shared: Vec<(&'m str, Vec<(&'m str, usize)>)>,
}

impl<'m> ModelView<'m> {
    pub(crate) fn new(all: &'m [ModelInput]) -> Self {
        let mut by_name = HashMap::new();
        let mut inputs = Vec::new();
        for input in all {
            if !by_name.contains_key(input.name.as_str()) {
                by_name.insert(input.name.as_str(), input);
                inputs.push(input);
            }
        }
        let mut uses: Vec<(&str, Vec<(&str, usize)>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for input in &inputs {
            for (d, dim) in input.dims.iter().flatten().enumerate() {
                let Some(symbol) = dim.symbol() else { continue };
                let i = *index.entry(symbol).or_insert_with(|| {
                    uses.push((symbol, Vec::new()));
                    uses.len() - 1
                });
                uses[i].1.push((input.name.as_str(), d));
            }
        }
        uses.retain(|(_, places)| places.len() > 1);
        ModelView {
            inputs,
            by_name,
            shared: uses,
        }
    }

    pub(crate) fn dynamic_inputs(&self) -> impl Iterator<Item = &'m ModelInput> + '_ {
        self.inputs.iter().copied().filter(|i| i.is_dynamic())
    }

    /// The model input a name the model lacks most likely means, when one is close.
    fn closest_input(&self, name: &str) -> Option<&'m str> {
        let names: Vec<&'m str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        did_you_mean(name, &names)
    }

    /// The model input a profile means by the one name the model lacks, found by elimination:
    /// the only dynamic input the profile leaves without shapes, with the rank given. `None`
    /// unless exactly one name is unknown and exactly one such input is left.
    fn renamed_input(&self, profile: &Profile) -> Option<&'m ModelInput> {
        let mut unknown =
            (profile.inputs.iter()).filter(|(n, _)| !self.by_name.contains_key(n.as_str()));
        let (_, range) = unknown.next()?;
        if unknown.next().is_some() {
            return None;
        }
        let mut left = self
            .dynamic_inputs()
            .filter(|i| !profile.inputs.contains_key(&i.name));
        let input = left.next()?;
        let same_rank = input
            .dims
            .as_ref()
            .is_none_or(|d| d.len() == range.min.len());
        (left.next().is_none() && same_rank).then_some(input)
    }

    /// Hint for a profile input the model lacks.
    fn unknown_input_hint(&self, name: &str) -> String {
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        if names.is_empty() {
            return "the model has no inputs (weights with defaults do not count)".to_string();
        }
        let mut listed = quoted_list(&names[..names.len().min(LISTED_INPUTS)]);
        if names.len() > LISTED_INPUTS {
            let _ = write!(listed, " and {} more", names.len() - LISTED_INPUTS);
        }
        match did_you_mean(name, &names) {
            Some(best) => format!("did you mean `{best}`? the model's inputs are {listed}"),
            None => format!("the model's inputs are {listed}"),
        }
    }
}

/// A profile's shapes for one input that has the model's rank: `values[w][d]` is `WHICH[w]`'s
/// size of dimension `d`.
struct Given<'p> {
    values: [&'p [i64]; 3],
    spans: &'p InputSpans,
}

impl Manifest {
    /// Checks every variant's optimization profiles against the model's graph inputs:
    ///
    /// - every input a profile names exists in the model;
    /// - every profile gives every input that has a dynamic dimension, and a variant without
    ///   profiles is an error when the model has dynamic inputs;
    /// - the shapes have the input's rank, and a fixed dimension gets exactly its size;
    /// - dimensions that share a name (which TensorRT's ONNX parser treats as one dimension) get
    ///   equal sizes in each of `min`, `opt` and `max`.
    ///
    /// Each diagnostic points at the input's key or the offending value; profiles shared by
    /// several variants are reported once. Sorted by position; empty when the profiles fit.
    pub fn check_against_model(&self, inputs: &[ModelInput]) -> Vec<Diagnostic> {
        let model = ModelView::new(inputs);
        let mut out = Vec::new();
        let mut without_profiles = Vec::new();
        for (variant, spans) in self.variants.iter().zip(&self.profile_spans) {
            if variant.profiles.is_empty() {
                without_profiles.push(variant.name.as_str());
            }
            for (profile, spans) in variant.profiles.iter().zip(spans) {
                self.check_profile(&model, profile, spans, &mut out);
            }
        }
        if !without_profiles.is_empty() {
            self.check_without_profiles(&model, &without_profiles, &mut out);
        }
        sort_and_dedup(&mut out);
        out
    }

    fn check_profile(
        &self,
        model: &ModelView<'_>,
        profile: &Profile,
        spans: &ProfileSpans,
        out: &mut Vec<Diagnostic>,
    ) {
        let name = &profile.name;
        // Inputs whose shapes have the model's rank, for the shared-name check.
        let mut given: HashMap<&str, Given<'_>> = HashMap::new();
        // Model inputs the profile seems to mean under another name.
        let mut misspelt: HashSet<&str> = HashSet::new();
        let renamed = model.renamed_input(profile);
        for (input_name, range) in &profile.inputs {
            let Some(input_spans) = spans.input.get(input_name) else {
                continue;
            };
            let Some(input) = model.by_name.get(input_name.as_str()) else {
                let hint = match (model.closest_input(input_name), renamed) {
                    (Some(meant), _) => {
                        misspelt.insert(meant);
                        model.unknown_input_hint(input_name)
                    }
                    (None, Some(meant)) => {
                        misspelt.insert(meant.name.as_str());
                        format!(
                            "the model's only input this profile leaves without shapes is `{}` \
                             (`{}`), of the same rank: rename `{input_name}` to `{}`",
                            meant.name,
                            shape_text(meant.dims.as_deref().unwrap_or_default()),
                            toml_key(&meant.name)
                        )
                    }
                    (None, None) => model.unknown_input_hint(input_name),
                };
                out.push(self.source.error(
                    input_spans.key.clone(),
                    format!(
                        "profile `{name}` gives input `{input_name}`, but the model has no such input"
                    ),
                    Some(hint),
                ));
                continue;
            };
            let Some(dims) = &input.dims else { continue };
            let values = [&range.min[..], &range.opt[..], &range.max[..]];
            if values[0].len() != dims.len() {
                let rank = dims.len();
                out.push(self.source.error(
                    input_spans.shapes[0].array.clone(),
                    format!(
                        "input `{input_name}` has rank {rank} in the model (`{}`), but profile `{name}` gives it {} dimensions",
                        shape_text(dims),
                        values[0].len()
                    ),
                    Some(format!(
                        "min, opt and max need {rank} dimensions each, for example `{}`",
                        profile_line(input, &with_examples(&[input], &HashMap::new()))
                    )),
                ));
                continue;
            }
            for (d, dim) in dims.iter().enumerate() {
                if let ModelDim::Fixed(size) = dim {
                    self.check_fixed(input_name, name, d, *size, values, input_spans, out);
                }
            }
            given.insert(
                input_name,
                Given {
                    values,
                    spans: input_spans,
                },
            );
        }

        let known = known_sizes(model, &given);
        let examples = with_examples(&model.dynamic_inputs().collect::<Vec<_>>(), &known);
        for input in model.dynamic_inputs() {
            // A misspelt name already has its error, with the rename as the fix.
            if profile.inputs.contains_key(&input.name) || misspelt.contains(input.name.as_str()) {
                continue;
            }
            let dims = input.dims.as_deref().unwrap_or_default();
            out.push(self.source.error(
                spans.inputs.clone(),
                format!(
                    "profile `{name}` gives no shapes for input `{}`, which is dynamic in the model: `{}`",
                    input.name,
                    shape_text(dims)
                ),
                Some(format!(
                    "every profile needs min, opt and max for each dynamic input; add `{}`{}",
                    profile_line(input, &examples),
                    example_note(&[input], &known)
                        .map(|note| format!("\n{note}"))
                        .unwrap_or_default()
                )),
            ));
        }

        for (symbol, places) in &model.shared {
            let places: Vec<(&str, usize, &Given<'_>)> = places
                .iter()
                .filter_map(|&(input, d)| given.get(input).map(|g| (input, d, g)))
                .collect();
            if places.len() < 2 {
                continue;
            }
            for (w, which) in WHICH.iter().enumerate() {
                let first = places[0].2.values[w][places[0].1];
                let Some(&(_, d, bad)) = places.iter().find(|(_, d, g)| g.values[w][*d] != first)
                else {
                    continue;
                };
                let mut sizes: Vec<i64> = Vec::new();
                for (_, d, g) in &places {
                    let size = g.values[w][*d];
                    if !sizes.contains(&size) {
                        sizes.push(size);
                    }
                }
                let sizes: Vec<String> = sizes.iter().map(i64::to_string).collect();
                out.push(self.source.error(
                    bad.spans.shapes[w].dims[d].clone(),
                    format!(
                        "`{symbol}` is one dimension in the model ({}), but profile `{name}` gives {which} {}",
                        places_text(&places),
                        and_list(&sizes)
                    ),
                    Some(format!(
                        "TensorRT's ONNX parser treats dimensions with the same name as one, so the build would fail (\"Profile k{} values are not self-consistent. Dimensions with name {symbol} must be equal\" or \"contradictory IOptimizationProfile kMIN/kMAX constraints\"); give every `{symbol}` the same {which}",
                        which.to_uppercase()
                    )),
                ));
            }
        }
    }

    /// A fixed model dimension must get its size in min, opt and max.
    #[allow(clippy::too_many_arguments)]
    fn check_fixed(
        &self,
        input: &str,
        profile: &str,
        d: usize,
        size: u64,
        values: [&[i64]; 3],
        spans: &InputSpans,
        out: &mut Vec<Diagnostic>,
    ) {
        let wrong: Vec<usize> = (0..3)
            .filter(|&w| u64::try_from(values[w][d]) != Ok(size))
            .collect();
        let Some(&first) = wrong.first() else { return };
        let gives: Vec<String> = wrong
            .iter()
            .map(|&w| format!("{} {}", WHICH[w], values[w][d]))
            .collect();
        out.push(self.source.error(
            spans.shapes[first].dims[d].clone(),
            format!(
                "input `{input}` dimension {d} is fixed to {size} in the model, but profile `{profile}` gives {}",
                and_list(&gives)
            ),
            Some(format!(
                "only dynamic dimensions may vary; use {size} at index {d} of min, opt and max"
            )),
        ));
    }

    /// Variants without profiles cannot build a model with dynamic inputs.
    fn check_without_profiles(
        &self,
        model: &ModelView<'_>,
        variants: &[&str],
        out: &mut Vec<Diagnostic>,
    ) {
        let dynamic: Vec<&ModelInput> = model.dynamic_inputs().collect();
        if dynamic.is_empty() {
            return;
        }
        let listed: Vec<String> = dynamic
            .iter()
            .map(|i| {
                format!(
                    "`{}` `{}`",
                    i.name,
                    shape_text(i.dims.as_deref().unwrap_or_default())
                )
            })
            .collect();
        let inputs = format!(
            "model `{}` has dynamic input{} {}",
            self.model.path,
            if dynamic.len() == 1 { "" } else { "s" },
            and_list(&listed)
        );
        let (message, header) = if variants.len() == self.variants.len() {
            (
                format!(
                    "{inputs}, but the manifest has no optimization profile to give {} shapes",
                    if dynamic.len() == 1 { "its" } else { "their" }
                ),
                "[[profile]]",
            )
        } else {
            let names: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
            let engines = if variants.len() == 1 {
                format!("engine {} has", names[0])
            } else {
                format!("engines {} have", and_list(&names))
            };
            (
                format!("{engines} no optimization profile, but {inputs}"),
                "[[engine.profile]]",
            )
        };
        let none = HashMap::new();
        let examples = with_examples(&dynamic, &none);
        let mut hint = format!(
            "TensorRT needs a profile with min, opt and max shapes for every dynamic input; add one, for example:\n{header}"
        );
        for input in &dynamic {
            hint.push('\n');
            hint.push_str(&profile_line(input, &examples));
        }
        if let Some(note) = example_note(&dynamic, &none) {
            hint.push('\n');
            hint.push_str(&note);
        }
        out.push(
            self.source
                .error(self.model.spans.path.clone(), message, Some(hint)),
        );
    }
}

/// Sizes a profile already gives to named dimensions (first use wins), for suggestions that
/// agree with them.
fn known_sizes<'m>(
    model: &ModelView<'m>,
    given: &HashMap<&str, Given<'_>>,
) -> HashMap<&'m str, [i64; 3]> {
    let mut known = HashMap::new();
    for input in &model.inputs {
        let Some(g) = given.get(input.name.as_str()) else {
            continue;
        };
        for (d, dim) in input.dims.iter().flatten().enumerate() {
            if let Some(symbol) = dim.symbol() {
                known
                    .entry(symbol)
                    .or_insert([g.values[0][d], g.values[1][d], g.values[2][d]]);
            }
        }
    }
    known
}

/// `[N, 3, 64, 64]`
fn shape_text(dims: &[ModelDim]) -> String {
    let dims: Vec<String> = dims.iter().map(ModelDim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// "input `x` dims 0 and 2", or "inputs `a` dim 0 and `b` dim 0".
fn places_text(places: &[(&str, usize, &Given<'_>)]) -> String {
    let first = places[0].0;
    if places.iter().all(|(input, _, _)| *input == first) {
        let dims: Vec<String> = places.iter().map(|(_, d, _)| d.to_string()).collect();
        format!("input `{first}` dims {}", and_list(&dims))
    } else {
        let items: Vec<String> = places
            .iter()
            .map(|(input, d, _)| format!("`{input}` dim {d}"))
            .collect();
        format!("inputs {}", and_list(&items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_print_names_sizes_and_question_marks() {
        let dims = [
            ModelDim::Symbolic("N".into()),
            ModelDim::Fixed(3),
            ModelDim::Unknown,
            ModelDim::Symbolic(String::new()),
        ];
        assert_eq!(shape_text(&dims), "[N, 3, ?, ?]");
    }
}
