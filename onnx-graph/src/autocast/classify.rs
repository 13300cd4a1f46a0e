//! Which nodes compute in the target precision, which stay float32, and why.
//!
//! A node that touches no float32 value is none of autocast's business. Among the rest:
//! - *consumer-driven* nodes produce a float32 value out of something else (`Cast` to float,
//!   `Constant`, `ConstantOfShape`): they can produce either precision at no cost, so they
//!   produce what their consumers want;
//! - *agnostic* nodes read a float32 value only for its shape or to cast it to a non-float
//!   (`Shape`, `Size`, `Cast` to int64): they accept either precision and need no cast;
//! - *kept* nodes stay float32: their operator is in the keep list, they belong to a shape
//!   subgraph, they have subgraphs of their own (`If`/`Loop`/`Scan`: autocast does not enter
//!   them), they come from a custom domain (a plugin declares its own types), or their float32
//!   output type is fixed by the operator (`TfIdfVectorizer`);
//! - everything else is *converted*.
//!
//! A shape subgraph is what computes shapes and indices rather than data: the producers of
//! every input that an operator reads as a shape (`Reshape`'s shape, `Slice`'s starts and
//! ends, `Resize`'s scales and sizes, `ConstantOfShape`'s input, `Range`'s operands ...),
//! followed backwards up to the `Shape`/`Size` nodes they start from; and forwards, every node
//! whose data inputs all come from `Shape`/`Size` (or are constants). Shape arithmetic in fp16
//! is wrong past 2048 (integers stop being exact) and overflows past 65504.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::types::{FLOAT, Types, attribute};
use crate::proto::GraphProto;
use crate::proto::NodeProto;

/// What autocast does with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeClass {
    /// No float32 input or output.
    Untouched,
    /// Accepts float32 inputs in either precision and produces no float32.
    Agnostic,
    /// Produces a float32 value out of a type attribute: made to produce what consumers want.
    ConsumerDriven,
    /// Stays float32.
    Kept,
    /// Computes in the target precision.
    Converted,
}

/// Operators whose float output type is chosen by an attribute, so converting them means
/// changing that attribute rather than their inputs.
pub(crate) const TYPE_ATTRIBUTE_OPS: [&str; 10] = [
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "EyeLike",
    "Bernoulli",
    "HannWindow",
    "HammingWindow",
    "BlackmanWindow",
    "MelWeightMatrix",
];

/// Whether input `slot` of `op` accepts any element type (so never needs a cast).
pub(crate) fn accepts_any(op: &str, slot: usize) -> bool {
    matches!((op, slot), ("Shape" | "Size" | "Cast" | "CastLike", 0))
}

/// Whether input `slot` of a converted `op` must stay float32 because ONNX types it so:
/// `Resize`'s `roi` and `scales` (and `Upsample`'s `scales`) are float32 whatever the data is.
pub(crate) fn requires_float32(op: &str, slot: usize) -> bool {
    matches!((op, slot), ("Resize", 1 | 2) | ("Upsample", 1))
}

/// Whether input `slot` of `op` is read as a shape, axes, sizes, scales or a count.
fn is_shape_input(op: &str, slot: usize) -> bool {
    match op {
        "ConstantOfShape" => slot == 0,
        "Range" => true,
        "Slice" => (1..=4).contains(&slot),
        "Resize" => (1..=3).contains(&slot),
        "Pad" => slot == 1 || slot == 3,
        "NonMaxSuppression" => (2..=4).contains(&slot),
        "Col2Im" => slot == 1 || slot == 2,
        "MaxUnpool" => slot == 2,
        "DFT" => slot == 1 || slot == 2,
        "STFT" => slot == 1 || slot == 3,
        "Reshape" | "Expand" | "Tile" | "Unsqueeze" | "Squeeze" | "TopK" | "OneHot" | "Split"
        | "CenterCropPad" | "Trilu" | "CumSum" | "Upsample" => slot == 1,
        _ if op.starts_with("Reduce") => slot == 1,
        _ => false,
    }
}

fn is_shape_source(op: &str) -> bool {
    op == "Shape" || op == "Size"
}

fn is_default_domain(node: &NodeProto) -> bool {
    matches!(node.domain(), "" | "ai.onnx")
}

fn has_subgraph(node: &NodeProto) -> bool {
    node.attribute
        .iter()
        .any(|a| a.g.is_some() || !a.graphs.is_empty())
}

/// Whether `node` produces a float32 value from a type attribute (see [`NodeClass`]).
fn is_consumer_driven(node: &NodeProto, types: &Types) -> bool {
    let produces_float = node.output.first().and_then(|o| types.get(o)) == Some(&FLOAT);
    produces_float
        && is_default_domain(node)
        && match node.op_type() {
            "Cast" => attribute(node, "to").and_then(|a| a.i) == Some(i64::from(FLOAT)),
            "Constant" | "ConstantOfShape" => true,
            _ => false,
        }
}

/// Classifies every node of `graph`; `keep` is the effective keep list, `force` the operators
/// the caller asked to convert (which also releases custom-domain operators).
pub(crate) fn classify(
    graph: &GraphProto,
    types: &Types,
    keep: &BTreeSet<String>,
    force: &BTreeSet<String>,
) -> Vec<NodeClass> {
    let shape_nodes = shape_subgraph(graph);
    let is_float = |name: &String| !name.is_empty() && types.get(name) == Some(&FLOAT);
    graph
        .node
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let op = node.op_type();
            let float_inputs: Vec<usize> = (0..node.input.len())
                .filter(|&slot| is_float(&node.input[slot]))
                .collect();
            let float_outputs = node.output.iter().any(is_float);
            if float_inputs.is_empty() && !float_outputs {
                return NodeClass::Untouched;
            }
            if is_consumer_driven(node, types) {
                return NodeClass::ConsumerDriven;
            }
            if !float_outputs && float_inputs.iter().all(|&slot| accepts_any(op, slot)) {
                return NodeClass::Agnostic;
            }
            let fixed_output = float_inputs.is_empty() && !TYPE_ATTRIBUTE_OPS.contains(&op);
            let custom = !is_default_domain(node) && !force.contains(op);
            if keep.contains(op)
                || shape_nodes[index]
                || has_subgraph(node)
                || custom
                || fixed_output
            {
                NodeClass::Kept
            } else {
                NodeClass::Converted
            }
        })
        .collect()
}

/// Marks the nodes of the shape subgraph (see the module documentation).
fn shape_subgraph(graph: &GraphProto) -> Vec<bool> {
    let nodes = &graph.node;
    let mut producer = HashMap::new();
    for (index, node) in nodes.iter().enumerate() {
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(output.as_str(), index);
        }
    }
    let mut marked = vec![false; nodes.len()];

    // Backwards from every shape input, stopping at Shape/Size: what they read is data whose
    // values do not matter.
    let mut pending: Vec<usize> = Vec::new();
    for node in nodes {
        for (slot, input) in node.input.iter().enumerate() {
            if is_shape_input(node.op_type(), slot) {
                pending.extend(producer.get(input.as_str()));
            }
        }
    }
    while let Some(index) = pending.pop() {
        if marked[index] || is_shape_source(nodes[index].op_type()) {
            continue;
        }
        marked[index] = true;
        pending.extend(
            nodes[index]
                .input
                .iter()
                .filter_map(|i| producer.get(i.as_str())),
        );
    }

    // Forwards from Shape/Size through nodes whose data inputs are all shape-derived or
    // constant. Shape-reading slots do not count: `Expand(c, Shape(x))` makes data.
    let mut constants: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let mut derived: HashSet<&str> = HashSet::new();
    for (index, node) in nodes.iter().enumerate() {
        let outputs = node.output.iter().map(String::as_str);
        if is_shape_source(node.op_type()) {
            derived.extend(outputs);
            continue;
        }
        if node.op_type() == "Constant" {
            constants.extend(outputs);
            continue;
        }
        let data_inputs: Vec<&str> = (node.input.iter().enumerate())
            .filter(|(slot, name)| !name.is_empty() && !is_shape_input(node.op_type(), *slot))
            .map(|(_, name)| name.as_str())
            .collect();
        let any_derived = data_inputs.iter().any(|i| derived.contains(i));
        if any_derived
            && data_inputs
                .iter()
                .all(|i| derived.contains(i) || constants.contains(i))
        {
            marked[index] = true;
            derived.extend(outputs);
        }
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autocast::types::infer_types;
    use crate::proto::tensor_proto::DataType;
    use crate::{GraphBuilder, attr, dims};

    #[test]
    fn shape_arithmetic_is_kept_and_data_is_converted() {
        let mut g = GraphBuilder::new("g", 1);
        let x = g.input("x", DataType::Float, dims!["N", 4]);
        let relu = g.relu(&x); // data
        let shape = g.node("Shape", &[&relu], []); // agnostic
        let shape_f = g.node("Cast", &[&shape], [attr::int("to", 1)]); // consumer-driven
        let half = g.initializer_f32("half", &[], &[0.5]);
        let scaled = g.node("Mul", &[&shape_f, &half], []); // forward shape subgraph
        let back = g.node("Cast", &[&scaled], [attr::int("to", 7)]); // agnostic
        let reshaped = g.node("Reshape", &[&relu, &back], []); // data
        let soft = g.softmax(&reshaped); // kept by list
        let graph = g.finish();
        let types = infer_types(&graph);
        let keep = BTreeSet::from(["Softmax".to_owned()]);
        let classes = classify(&graph, &types, &keep, &BTreeSet::new());
        let class_of = |value: &crate::Value| {
            let index = graph
                .node
                .iter()
                .position(|n| n.output[0] == value.name())
                .unwrap();
            classes[index]
        };
        assert_eq!(class_of(&relu), NodeClass::Converted);
        assert_eq!(class_of(&shape), NodeClass::Agnostic);
        assert_eq!(class_of(&shape_f), NodeClass::ConsumerDriven);
        assert_eq!(class_of(&scaled), NodeClass::Kept);
        assert_eq!(class_of(&back), NodeClass::Agnostic);
        assert_eq!(class_of(&reshaped), NodeClass::Converted);
        assert_eq!(class_of(&soft), NodeClass::Kept);
    }
}
