//! The profile `trtfarm check` and `trtfarm init` suggest: a ready-to-paste
//! `inputs.<name> = { min = [...], opt = [...], max = [...] }` line per dynamic input, the
//! model's fixed sizes as they are, and placeholder sizes, said to be placeholders, for the
//! dynamic dimensions nothing else determines.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::model_inputs::{ModelDim, ModelInput, ModelView};
use crate::suggest::and_list;

/// Sizes suggested for a dynamic first dimension nothing else determines (a batch, most
/// often), as min, opt and max.
const EXAMPLE_BATCH: [i64; 3] = [1, 8, 32];

/// Sizes suggested for any other dynamic dimension (an image side, a sequence length): multiples
/// of 32, the stride of most networks that downsample, so that the suggestion builds as it is
/// for more models than not.
const EXAMPLE_SIZES: [i64; 3] = [32, 256, 1024];

/// The example sizes for a dynamic dimension at `position` in its input's shape.
fn example_sizes(position: usize) -> [i64; 3] {
    match position {
        0 => EXAMPLE_BATCH,
        _ => EXAMPLE_SIZES,
    }
}

/// The profile `trtfarm check` suggests for a model without one: for each input with a dynamic
/// dimension (first of each name, in model order), that input and its ready-to-paste
/// `inputs.<name> = { min = [...], opt = [...], max = [...] }` line, fixed sizes as they are and
/// example sizes for every dynamic dimension (see [`example_sizes`]), so dimensions that share a
/// name agree.
pub fn suggested_profile(inputs: &[ModelInput]) -> Vec<(&ModelInput, String)> {
    let view = ModelView::new(inputs);
    let dynamic: Vec<&ModelInput> = view.dynamic_inputs().collect();
    let examples = with_examples(&dynamic, &HashMap::new());
    dynamic
        .into_iter()
        .map(|input| (input, profile_line(input, &examples)))
        .collect()
}

/// `known` with example sizes added for every other named dynamic dimension of `inputs`, chosen
/// by where the name first appears (a first dimension is most often a batch), so that one name
/// gets one size in every input of a suggestion.
pub(crate) fn with_examples<'m>(
    inputs: &[&'m ModelInput],
    known: &HashMap<&'m str, [i64; 3]>,
) -> HashMap<&'m str, [i64; 3]> {
    let mut sizes = known.clone();
    for input in inputs {
        for (position, dim) in input.dims.iter().flatten().enumerate() {
            if let (true, Some(symbol)) = (dim.is_dynamic(), dim.symbol()) {
                sizes.entry(symbol).or_insert(example_sizes(position));
            }
        }
    }
    sizes
}

/// Which sizes of a suggestion are invented (the dynamic dimensions nothing else determines):
/// they are placeholders the user must choose, and a network that downsamples rejects most of
/// them. `None` when the suggestion invents nothing.
pub(crate) fn example_note(
    inputs: &[&ModelInput],
    known: &HashMap<&str, [i64; 3]>,
) -> Option<String> {
    let mut invented: Vec<String> = Vec::new();
    for input in inputs {
        for dim in input.dims.iter().flatten() {
            let text = format!("`{dim}`");
            let is_known = dim.symbol().is_some_and(|s| known.contains_key(s));
            if dim.is_dynamic() && !is_known && !invented.contains(&text) {
                invented.push(text);
            }
        }
    }
    (!invented.is_empty()).then(|| {
        format!(
            "the sizes of {} ({:?} as min, opt and max for a first dimension, {:?} for others) \
             are placeholders, not read from the model: replace them with the smallest, typical \
             and largest sizes you will run (networks that downsample, such as detectors, \
             usually need multiples of their stride, often 32)",
            and_list(&invented),
            EXAMPLE_BATCH,
            EXAMPLE_SIZES
        )
    })
}

/// `inputs.<name> = { min = [...], opt = [...], max = [...] }` for `input`: fixed sizes as they
/// are, named dimensions as `known` gives them, other dynamic ones [`example_sizes`].
pub(crate) fn profile_line(input: &ModelInput, known: &HashMap<&str, [i64; 3]>) -> String {
    let dims = input.dims.as_deref().unwrap_or_default();
    let shape = |w: usize| -> String {
        let sizes: Vec<String> = dims
            .iter()
            .enumerate()
            .map(|(position, dim)| match dim {
                ModelDim::Fixed(size) => size.to_string(),
                _ => dim
                    .symbol()
                    .and_then(|s| known.get(s))
                    .map_or(example_sizes(position)[w], |sizes| sizes[w])
                    .to_string(),
            })
            .collect();
        format!("[{}]", sizes.join(", "))
    };
    format!(
        "inputs.{} = {{ min = {}, opt = {}, max = {} }}",
        toml_key(&input.name),
        shape(0),
        shape(1),
        shape(2)
    )
}

/// A TOML key for `name`: bare when it can be, else a quoted basic string (TOML's escapes).
pub fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return name.to_string();
    }
    let mut quoted = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(toml_key("images"), "images");
        assert_eq!(toml_key("input_ids-2"), "input_ids-2");
        assert_eq!(toml_key("input.1"), "\"input.1\"");
        assert_eq!(toml_key("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(toml_key("x\ty"), "\"x\\u0009y\"");
        assert_eq!(toml_key(""), "\"\"");
    }

    #[test]
    fn the_suggested_profile_covers_dynamic_inputs_only_with_shared_names_agreeing() {
        let input = |name: &str, dims: Vec<ModelDim>| ModelInput {
            name: name.into(),
            dims: Some(dims),
        };
        let inputs = [
            input(
                "ids",
                vec![ModelDim::Symbolic("batch".into()), ModelDim::Unknown],
            ),
            input("scale", vec![ModelDim::Fixed(4)]),
            input(
                "mask.0",
                vec![ModelDim::Symbolic("batch".into()), ModelDim::Fixed(2)],
            ),
        ];
        let lines: Vec<(&str, String)> = suggested_profile(&inputs)
            .into_iter()
            .map(|(input, line)| (input.name.as_str(), line))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "ids",
                    "inputs.ids = { min = [1, 32], opt = [8, 256], max = [32, 1024] }".to_string()
                ),
                (
                    "mask.0",
                    "inputs.\"mask.0\" = { min = [1, 2], opt = [8, 2], max = [32, 2] }".to_string()
                ),
            ]
        );
    }
}
