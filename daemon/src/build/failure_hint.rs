//! When TensorRT rejects a converted (fp16/bf16) model, the fix is usually to keep the operator
//! it choked on in fp32. TensorRT says so in its own terms: a node name, or Myelin's name for an
//! operation ("deconv"). This turns that into the operator type and the manifest line to add.
//! A build held to a timing cache that fails gets the other fix it may need: record again.
//! A profile whose shapes the network cannot take (TensorRT's "violate shape constraints") gets
//! the profile and input to change, in the manifest's terms.

use std::collections::BTreeMap;
use std::path::Path;

use manifest_schema::{Profile, ShapeRange, Variant};
use onnx_graph::NodeName;

use super::failure_message;

use crate::ingest::request::PreparedBuild;

/// Myelin's words for operations, and the ONNX operator types they come from; only used when
/// the model has a node of that type. Only words seen in TensorRT-RTX 1.7's messages are here
/// (`deconv`: a bf16 `ConvTranspose` of the PP-OCRv4 text detector).
const MYELIN_WORDS: &[(&str, &str)] = &[("deconv", "ConvTranspose")];

/// Operator types autocast itself adds; keeping them in fp32 means nothing.
const INSERTED_OPS: &[&str] = &["Cast"];

/// The fix for a failed build held to a timing cache: a `locked` build never times tactics, so
/// a layer its cache has no entry for (TensorRT's message names it) fails the build, and only
/// a new recording on the same GPU adds it. `None` for any other build.
pub fn locked_timing_cache_hint(prepared: &PreparedBuild) -> Option<String> {
    let plan = prepared.timing_cache.as_ref()?;
    let pin = plan.pin.as_ref()?;
    let scope = prepared.timing_scope.as_ref()?;
    Some(format!(
        "hint: engine `{}` is locked to timing cache {} and fails on any layer that cache has no \
         timing for (TensorRT names the layer above). Record again on {} ({}): set \
         timing_cache.policy = \"record\" and submit, then set it back to \"locked\" and submit; \
         engine.lock then pins the new cache",
        prepared.variant.name, pin.digest, scope.gpu_model, scope.compute_capability
    ))
}

/// The message of a build TensorRT failed with `message`, as the user reads it: TensorRT's
/// error said once ([`failure_message::shape`]), then the fix where one is recognisable: change
/// a profile TensorRT found inconsistent, else (when `converted`) keep an operator in fp32. `model`
/// is the model the builder read. Reads the model, so call it off the async threads.
pub fn build_failure_message(
    message: &str,
    variant: &Variant,
    model: &Path,
    converted: bool,
) -> String {
    let mut text = failure_message::shape(message);
    // A profile TensorRT cannot take names a layer too, but keeping its operator in fp32 would
    // not help: the profile's hint alone is the fix.
    let shape_hint = profile_shape_hint(message, variant, model);
    let hints = [
        (converted && shape_hint.is_none())
            .then(|| autocast_failure_hint(message, model))
            .flatten(),
        shape_hint,
    ];
    for hint in hints.into_iter().flatten() {
        text.push('\n');
        text.push_str(&hint);
    }
    text
}

/// Sizes of a network that downsamples are most often multiples of this (the stride of the
/// common detector and segmenter backbones).
const STRIDE: i64 = 32;

/// Which of a profile's shapes TensorRT rejected, as it names them.
const WHICH: [(&str, &str); 3] = [("kMIN", "min"), ("kOPT", "opt"), ("kMAX", "max")];

/// What a TensorRT shape-constraint error says: which shapes (min, opt or max; `None`: not
/// said), of which profile (its index), and the layer that could not take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// Index into [`WHICH`].
    pub which: Option<usize>,
    /// The profile's index in the engine.
    pub profile: Option<usize>,
    /// The layer TensorRT names.
    pub layer: Option<String>,
}

/// Recognises TensorRT's errors for a profile whose shapes the network cannot take:
/// "kOPT values for profile 0 violate shape constraints: <layer>: ..." (TensorRT-RTX 1.7, when
/// min, opt and max differ), "IElementWiseLayer <layer>: broadcast dimensions must be conformable"
/// (when they are equal) and "Profile kMIN values are not self-consistent. <layer>: ...".
pub fn shape_error(message: &str) -> Option<ShapeError> {
    const MARKERS: [&str; 3] = [
        "violate shape constraints",
        "broadcast dimensions must be conformable",
        "values are not self-consistent",
    ];
    let at = MARKERS.iter().filter_map(|m| message.find(m)).min()?;
    // The line of the first marker: what follows (TensorRT's last messages) may name other
    // profiles and bounds.
    let line_start = message[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = message[line_start..].lines().next().unwrap_or_default();
    let which = WHICH.iter().position(|(k, _)| line.contains(k));
    let profile = line
        .split_once("for profile ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok());
    let layer = [
        "shape constraints: ",
        "self-consistent. ",
        "IElementWiseLayer ",
    ]
    .iter()
    .find_map(|lead| line.split_once(lead))
    .and_then(|(_, rest)| rest.split(':').next())
    .map(|name| name.trim().to_owned())
    .filter(|name| !name.is_empty() && !name.contains(' '));
    Some(ShapeError {
        which,
        profile,
        layer,
    })
}

/// The fix for a build TensorRT failed because a profile's shapes do not fit the network:
/// which profile and input to change, and a ready-to-paste line with the sizes rounded up to
/// multiples of [`STRIDE`]. `None` when `message` is no shape-constraint error.
pub fn profile_shape_hint(message: &str, variant: &Variant, model: &Path) -> Option<String> {
    let error = shape_error(message)?;
    let dynamic = onnx_graph::read_graph_inputs(model).ok().map(|inputs| {
        inputs
            .into_iter()
            .map(|input| {
                let dims = input.dims.unwrap_or_default();
                let dynamic = dims.iter().map(onnx_graph::Dim::is_dynamic).collect();
                (input.name, dynamic)
            })
            .collect::<BTreeMap<String, Vec<bool>>>()
    });
    shape_hint_text(&error, &variant.profiles, dynamic.as_ref())
}

/// The hint for `error` over `profiles`; `dynamic[input][d]` says which dimensions the model
/// leaves dynamic (unknown: those whose min and max differ).
fn shape_hint_text(
    error: &ShapeError,
    profiles: &[Profile],
    dynamic: Option<&BTreeMap<String, Vec<bool>>>,
) -> Option<String> {
    let chosen: Vec<&Profile> = match error.profile {
        Some(index) => profiles.get(index).into_iter().collect(),
        None => profiles.iter().collect(),
    };
    let which: Vec<usize> = match error.which {
        Some(w) => vec![w],
        None => vec![0, 1, 2],
    };
    let what = match error.which {
        Some(w) => format!("{} shapes", WHICH[w].1),
        None => "shapes".to_owned(),
    };
    let layer = error
        .layer
        .as_ref()
        .map(|l| format!(" (layer `{l}` cannot combine its inputs at those sizes)"))
        .unwrap_or_default();
    let mut fixes = Vec::new();
    for profile in &chosen {
        for (input, range) in &profile.inputs {
            let spatial = spatial_dims(range, dynamic.and_then(|d| d.get(input)));
            let off = spatial
                .iter()
                .any(|&d| which.iter().any(|&w| shape(range, w)[d] % STRIDE != 0));
            if off {
                fixes.push((
                    profile.name.as_str(),
                    input.as_str(),
                    rounded(input, range, &spatial),
                ));
            }
        }
    }
    let profile_names: Vec<String> = chosen.iter().map(|p| format!("`{}`", p.name)).collect();
    if fixes.is_empty() {
        if profile_names.is_empty() {
            return None;
        }
        return Some(format!(
            "help: TensorRT rejected the {what} of profile {}{layer}: the network cannot run at \
             those sizes; change that profile's sizes in engine.toml to ones the network \
             accepts (networks that downsample need multiples of their stride, often {STRIDE})",
            profile_names.join(", ")
        ));
    }
    let mut text = String::new();
    for (profile, input, _) in &fixes {
        let names = what.replace(" shapes", "");
        text.push_str(&format!(
            "help: TensorRT rejected the {what} of profile `{profile}`{layer}: raise {names} \
             for input `{input}` to multiples of {STRIDE}, the stride of most networks that \
             downsample (detectors, segmenters)\n"
        ));
    }
    text.push_str("    in engine.toml, for example:");
    for (_, _, line) in &fixes {
        text.push_str(&format!("\n    {line}"));
    }
    Some(text)
}

/// `range`'s min, opt or max (`w` indexes [`WHICH`]).
fn shape(range: &ShapeRange, w: usize) -> &[i64] {
    match w {
        0 => &range.min,
        1 => &range.opt,
        _ => &range.max,
    }
}

/// The dimensions a stride applies to: dynamic ones (per the model, else those whose min and
/// max differ), leaving out the batch dimension of an image-like input (rank 3 or more).
fn spatial_dims(range: &ShapeRange, dynamic: Option<&Vec<bool>>) -> Vec<usize> {
    let rank = range.min.len();
    (0..rank)
        .filter(|&d| !(rank >= 3 && d == 0))
        .filter(|&d| match dynamic {
            Some(dynamic) => dynamic.get(d).copied().unwrap_or(false),
            None => range.min[d] != range.max[d],
        })
        .collect()
}

/// `inputs.<input> = { min = [...], opt = [...], max = [...] }` with the `spatial` dimensions of
/// each shape rounded up to a multiple of [`STRIDE`] (order kept: rounding up is monotonic).
fn rounded(input: &str, range: &ShapeRange, spatial: &[usize]) -> String {
    let round = |w: usize| {
        let sizes: Vec<String> = shape(range, w)
            .iter()
            .enumerate()
            .map(|(d, &size)| {
                if spatial.contains(&d) {
                    (size.max(1) + STRIDE - 1) / STRIDE * STRIDE
                } else {
                    size
                }
                .to_string()
            })
            .collect();
        format!("[{}]", sizes.join(", "))
    };
    format!(
        "inputs.{} = {{ min = {}, opt = {}, max = {} }}",
        manifest_schema::toml_key(input),
        round(0),
        round(1),
        round(2)
    )
}

/// The hint for a build of the converted model at `converted_model` that failed with
/// `message`, or `None` when the message names nothing in the model.
pub fn autocast_failure_hint(message: &str, converted_model: &Path) -> Option<String> {
    let nodes = onnx_graph::read_node_names(converted_model).ok()?;
    hint_text(&implicated_ops(message, &nodes))
}

/// The operator types `message` implicates, each with the node names it mentions (empty when
/// only Myelin's word for the operation matched).
pub fn implicated_ops(message: &str, nodes: &[NodeName]) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        if INSERTED_OPS.contains(&node.op_type.as_str()) || node.name.len() < 3 {
            continue;
        }
        if mentions(message, &node.name) {
            let names = found.entry(node.op_type.clone()).or_default();
            if !names.contains(&node.name) {
                names.push(node.name.clone());
            }
        }
    }
    if found.is_empty() {
        let lower = message.to_ascii_lowercase();
        for (word, op_type) in MYELIN_WORDS {
            if mentions(&lower, word) && nodes.iter().any(|n| n.op_type == *op_type) {
                found.entry((*op_type).to_owned()).or_default();
            }
        }
    }
    found
}

/// Whether `text` contains `name` as a whole word: not inside a longer name (`Add_1` is not
/// mentioned by `Add_12`).
fn mentions(text: &str, name: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

/// The text added to the failure: the operator types and the manifest line that keeps them in
/// fp32.
fn hint_text(ops: &BTreeMap<String, Vec<String>>) -> Option<String> {
    if ops.is_empty() {
        return None;
    }
    let types: Vec<String> = ops.keys().map(|op| format!("\"{op}\"")).collect();
    let nodes: Vec<String> = ops
        .values()
        .flatten()
        .take(3)
        .map(|n| format!("`{n}`"))
        .collect();
    let which = if nodes.is_empty() {
        String::new()
    } else {
        format!(" (node {})", nodes.join(", "))
    };
    Some(format!(
        "help: TensorRT could not build the converted model around {}{which}; keep that \
         operator in fp32 by adding to this engine in engine.toml:\n    autocast.keep_fp32 = [{}]",
        ops.keys()
            .map(|op| format!("`{op}`"))
            .collect::<Vec<_>>()
            .join(", "),
        types.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op_type: &str) -> NodeName {
        NodeName {
            name: name.into(),
            op_type: op_type.into(),
        }
    }

    fn model() -> Vec<NodeName> {
        vec![
            node("conv2d_1", "Conv"),
            node("p2o.ConvTranspose.0", "ConvTranspose"),
            node("Add_1", "Add"),
            node("cast_in", "Cast"),
        ]
    }

    #[test]
    fn a_node_named_in_the_message_gives_its_operator_type() {
        let message = "Error: Could not infer output types for operation: \
                       p2o.ConvTranspose.0 (bf16 input)";
        let ops = implicated_ops(message, &model());
        assert_eq!(
            ops.into_iter().collect::<Vec<_>>(),
            vec![(
                "ConvTranspose".to_string(),
                vec!["p2o.ConvTranspose.0".to_string()]
            )]
        );
    }

    #[test]
    fn myelin_words_count_only_for_operators_the_model_has() {
        let message = "[myelin] Could not infer output types for operation 17: deconv";
        let ops = implicated_ops(message, &model());
        assert!(ops.contains_key("ConvTranspose"), "{ops:?}");
        let no_deconv = vec![node("conv2d_1", "Conv")];
        assert!(implicated_ops(message, &no_deconv).is_empty());
    }

    #[test]
    fn names_inside_longer_names_and_inserted_casts_do_not_count() {
        assert!(implicated_ops("failed at Add_12", &model()).is_empty());
        assert!(implicated_ops("failed at cast_in", &model()).is_empty());
        assert!(implicated_ops("out of memory", &model()).is_empty());
    }

    /// TensorRT-RTX 1.7's words for a PP-OCRv4 detector's profile 0 with opt height and
    /// width 8, and with min = opt = max = 8 (captured from `trtfarmd build`).
    const OPT_CONSTRAINT: &str = "TensorRT: buildSerializedNetworkToStream failed: IBuilder::buildSerializedNetworkToStream: Error Code 4: Internal Error (kOPT values for profile 0 violate shape constraints: p2o.Add.252: dimensions not compatible for elementwise. Broadcast has incompatible dimensions: 8 != 2 && 8 != 1 && 2 != 1. In operator() at /_src/runtime/core/shapeMachine.cpp:652 In evaluateShapeChecks at /_src/optimizer/common/shapeCompiler.cpp:1375)";
    const CONFORMABLE: &str = "TensorRT: buildSerializedNetworkToStream failed: IBuilder::buildSerializedNetworkToStream: Error Code 4: API Usage Error (IElementWiseLayer p2o.Add.252: broadcast dimensions must be conformable In op at /_src/optimizer/common/shape/shapeContext.cpp:2699 In analyzeShapes at /_src/optimizer/shapeof/graphShapeAnalyzer.cpp:2825)";

    fn profile(name: &str, min: &[i64], opt: &[i64], max: &[i64]) -> Profile {
        Profile {
            name: name.into(),
            inputs: [(
                "x".to_string(),
                ShapeRange {
                    min: min.to_vec(),
                    opt: opt.to_vec(),
                    max: max.to_vec(),
                },
            )]
            .into(),
        }
    }

    #[test]
    fn shape_constraint_errors_are_recognised_with_what_they_name() {
        assert_eq!(
            shape_error(OPT_CONSTRAINT),
            Some(ShapeError {
                which: Some(1),
                profile: Some(0),
                layer: Some("p2o.Add.252".into()),
            })
        );
        assert_eq!(
            shape_error(CONFORMABLE),
            Some(ShapeError {
                which: None,
                profile: None,
                layer: Some("p2o.Add.252".into()),
            })
        );
        let warning = "Profile kMIN values are not self-consistent. p2o.Add.252: dimensions not \
                       compatible for elementwise. Condition '==' violated: 7 != 1.";
        assert_eq!(shape_error(warning).unwrap().which, Some(0));
        assert_eq!(shape_error("out of memory"), None);
        // What the error's own line says, not a later line of TensorRT's log.
        let with_tail = format!(
            "{CONFORMABLE}\nlast TensorRT messages:\n[error] kMAX dimensions for profile 3 \
             violate shape constraints: other.layer: more"
        );
        assert_eq!(
            shape_error(&with_tail),
            Some(ShapeError {
                which: None,
                profile: None,
                layer: Some("p2o.Add.252".into()),
            })
        );
    }

    #[test]
    fn the_shape_hint_names_the_profile_and_input_and_rounds_to_the_stride() {
        let profiles = [
            profile("small", &[1, 3, 8, 8], &[1, 3, 8, 8], &[1, 3, 100, 128]),
            profile(
                "large",
                &[1, 3, 640, 640],
                &[1, 3, 640, 640],
                &[1, 3, 1280, 1280],
            ),
        ];
        let dynamic: BTreeMap<String, Vec<bool>> =
            [("x".to_string(), vec![true, false, true, true])].into();
        let error = shape_error(OPT_CONSTRAINT).unwrap();
        let hint = shape_hint_text(&error, &profiles, Some(&dynamic)).unwrap();
        assert!(
            hint.starts_with("help: TensorRT rejected the opt shapes of profile `small` (layer `p2o.Add.252` cannot combine its inputs at those sizes): raise opt for input `x` to multiples of 32"),
            "{hint}"
        );
        assert!(
            hint.ends_with(
                "inputs.x = { min = [1, 3, 32, 32], opt = [1, 3, 32, 32], max = [1, 3, 128, 128] }"
            ),
            "batch and channels kept, sizes rounded up: {hint}"
        );
        assert!(!hint.contains("`large`"), "{hint}");

        // Without the profile's index, every profile with a size off the stride is named; the
        // model unknown, dimensions whose min and max differ count as dynamic.
        let error = shape_error(CONFORMABLE).unwrap();
        let hint = shape_hint_text(&error, &profiles, None).unwrap();
        assert!(
            hint.contains("profile `small`") && !hint.contains("`large`"),
            "{hint}"
        );
    }

    #[test]
    fn sizes_already_on_the_stride_get_the_general_fix() {
        let profiles = [profile(
            "p",
            &[1, 3, 64, 64],
            &[1, 3, 64, 64],
            &[1, 3, 128, 128],
        )];
        let error = shape_error(OPT_CONSTRAINT).unwrap();
        let hint = shape_hint_text(&error, &profiles, None).unwrap();
        assert!(
            hint.contains("rejected the opt shapes of profile `p`")
                && hint.contains("change that profile's sizes"),
            "{hint}"
        );
    }

    #[test]
    fn a_profile_error_gets_the_profile_fix_not_an_operator_to_keep() {
        use onnx_graph::{DataType, GraphBuilder, ModelBuilder, dims};
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.onnx");
        let mut g = GraphBuilder::new("net", 1);
        let x = g.input("x", DataType::Float, dims![1, 3, "H", "W"]);
        let y = g.relu(&x);
        g.output("y", &y, DataType::Float, dims![1, 3, "H", "W"]);
        onnx_graph::write_model(&ModelBuilder::new(g).build(), &model).unwrap();
        let node = onnx_graph::read_node_names(&model).unwrap().remove(0);
        let manifest = manifest_schema::parse(
            "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
             toolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.9\"]\n\
             precision = \"bf16\"\n[[profile]]\nname = \"small\"\n\
             inputs.x = { min = [1, 3, 8, 8], opt = [1, 3, 8, 8], max = [1, 3, 64, 64] }\n",
            Path::new("engine.toml"),
        )
        .unwrap();
        let variant = &manifest.variants()[0];

        let shape = format!(
            "TensorRT: build failed: kOPT values for profile 0 violate shape constraints: {}: \
             dimensions not compatible for elementwise.",
            node.name
        );
        let text = build_failure_message(&shape, variant, &model, true);
        assert!(text.contains("profile `small`"), "{text}");
        assert!(
            text.ends_with(
                "inputs.x = { min = [1, 3, 32, 32], opt = [1, 3, 32, 32], max = [1, 3, 64, 64] }"
            ),
            "only the H and W the model leaves dynamic are rounded: {text}"
        );
        assert!(!text.contains("keep_fp32"), "{text}");

        let myelin = format!(
            "TensorRT: build failed: Myelin: could not infer types of {}",
            node.name
        );
        let text = build_failure_message(&myelin, variant, &model, true);
        assert!(
            text.contains(&format!("autocast.keep_fp32 = [\"{}\"]", node.op_type)),
            "{text}"
        );
        assert!(!text.contains("profile `small`"), "{text}");
    }

    #[test]
    fn the_hint_names_the_operator_and_the_manifest_line() {
        let ops = implicated_ops("operation deconv failed", &model());
        let hint = hint_text(&ops).unwrap();
        assert!(
            hint.ends_with("autocast.keep_fp32 = [\"ConvTranspose\"]"),
            "{hint}"
        );
        assert!(hint.contains("`ConvTranspose`"), "{hint}");
        assert_eq!(hint_text(&BTreeMap::new()), None);
    }
}
