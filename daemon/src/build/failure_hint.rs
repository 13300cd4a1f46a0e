//! When TensorRT rejects a converted (fp16/bf16) model, the fix is usually to keep the operator
//! it choked on in fp32. TensorRT says so in its own terms: a node name, or Myelin's name for an
//! operation ("deconv"). This turns that into the operator type and the manifest line to add.
//! A build held to a timing cache that fails gets the other fix it may need: record again.

use std::collections::BTreeMap;
use std::path::Path;

use onnx_graph::NodeName;

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
