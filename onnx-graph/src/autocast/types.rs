//! The element type of every value in a graph: declared (inputs, outputs, `value_info`,
//! initializers) where the model says, otherwise inferred from the producing operator.
//!
//! Autocast only needs to know which values are float32, so the rules cover what decides that:
//! operators whose output type comes from an attribute (`Cast`, `Constant`, random generators),
//! operators with fixed output types (`Shape`, comparisons, indices) and operators whose output
//! follows a particular input. Everything else follows its first input, which is what the ONNX
//! type constraints say for the vast majority of operators. A value nothing can be said about has
//! no entry and is left alone by autocast.

use std::collections::HashMap;

use crate::proto::tensor_proto::DataType;
use crate::proto::{AttributeProto, GraphProto, NodeProto, ValueInfoProto, type_proto};

/// Element type codes (`TensorProto.DataType`) by value name.
pub(crate) type Types = HashMap<String, i32>;

pub(crate) const FLOAT: i32 = DataType::Float as i32;
const INT64: i32 = DataType::Int64 as i32;
const INT32: i32 = DataType::Int32 as i32;
const UINT8: i32 = DataType::Uint8 as i32;
const BOOL: i32 = DataType::Bool as i32;
const STRING: i32 = DataType::String as i32;

/// The declared tensor element type of a `ValueInfoProto`, if it has one.
pub(crate) fn declared_type(info: &ValueInfoProto) -> Option<i32> {
    match info.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(tensor) => tensor.elem_type.filter(|&t| t != 0),
        _ => None,
    }
}

/// Element types of every value of `graph` (not of its subgraphs).
pub(crate) fn infer_types(graph: &GraphProto) -> Types {
    let mut types = Types::new();
    let declared = graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info);
    for info in declared {
        if let Some(elem) = declared_type(info) {
            types.insert(info.name().to_owned(), elem);
        }
    }
    for tensor in &graph.initializer {
        types.insert(tensor.name().to_owned(), tensor.data_type());
    }
    for sparse in &graph.sparse_initializer {
        if let Some(values) = &sparse.values {
            types.insert(values.name().to_owned(), values.data_type());
        }
    }
    // Nodes come in topological order in a valid model, so one pass usually settles everything;
    // further passes only help models that list nodes out of order.
    for _ in 0..=graph.node.len() {
        let mut changed = false;
        for node in &graph.node {
            for (slot, output) in node.output.iter().enumerate() {
                if output.is_empty() || types.contains_key(output) {
                    continue;
                }
                if let Some(elem) = output_type(node, slot, &types) {
                    types.insert(output.clone(), elem);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    types
}

/// The node's attribute `name`, if present.
pub(crate) fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

fn int_attribute(node: &NodeProto, name: &str) -> Option<i32> {
    attribute(node, name).and_then(|a| a.i).map(|i| i as i32)
}

/// The element type of output `slot` of `node`, from the operator's typing rule.
fn output_type(node: &NodeProto, slot: usize, types: &Types) -> Option<i32> {
    let input = |index: usize| {
        let name = node.input.get(index).filter(|n| !n.is_empty())?;
        types.get(name).copied()
    };
    let first_input = || {
        let index = node.input.iter().position(|n| !n.is_empty())?;
        input(index)
    };
    let op = node.op_type();
    match op {
        "Cast" => int_attribute(node, "to"),
        "CastLike" => input(1),
        "Constant" => constant_type(node),
        "ConstantOfShape" => Some(
            attribute(node, "value")
                .and_then(|a| a.t.as_ref())
                .map_or(FLOAT, |t| t.data_type()),
        ),
        "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" | "NonMaxSuppression" => Some(INT64),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And" | "Or"
        | "Xor" | "IsNaN" | "IsInf" | "RegexFullMatch" => Some(BOOL),
        "TopK" | "MaxPool" if slot == 1 => Some(INT64),
        "Unique" if slot > 0 => Some(INT64),
        "Dropout" if slot == 1 => Some(BOOL),
        "Where" => input(1),
        "OneHot" => input(2),
        "QuantizeLinear" => int_attribute(node, "output_dtype")
            .filter(|&t| t != 0)
            .or_else(|| input(2))
            .or(Some(UINT8)),
        "DequantizeLinear" => int_attribute(node, "output_dtype")
            .filter(|&t| t != 0)
            .or_else(|| input(1)),
        "DynamicQuantizeLinear" => Some(if slot == 1 { FLOAT } else { UINT8 }),
        "LayerNormalization" if slot > 0 => {
            Some(int_attribute(node, "stash_type").unwrap_or(FLOAT))
        }
        "RandomNormal" | "RandomUniform" => Some(int_attribute(node, "dtype").unwrap_or(FLOAT)),
        "EyeLike" | "RandomNormalLike" | "RandomUniformLike" | "Bernoulli" => {
            int_attribute(node, "dtype").or_else(first_input)
        }
        "Multinomial" => Some(int_attribute(node, "dtype").unwrap_or(INT32)),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" | "MelWeightMatrix" => {
            Some(int_attribute(node, "output_datatype").unwrap_or(FLOAT))
        }
        "TfIdfVectorizer" => Some(FLOAT),
        "If" => subgraph_output_type(node, "then_branch", slot),
        // Loop's body outputs the condition first, then the loop-carried and scan outputs.
        "Loop" => subgraph_output_type(node, "body", slot + 1),
        "Scan" => subgraph_output_type(node, "body", slot),
        _ if op.contains("Sequence") || op.starts_with("Optional") => None,
        _ => first_input(),
    }
}

/// The element type a `Constant` node produces.
pub(crate) fn constant_type(node: &NodeProto) -> Option<i32> {
    let attribute = node.attribute.first()?;
    match attribute.name() {
        "value" => attribute.t.as_ref().map(|t| t.data_type()),
        "sparse_value" => attribute
            .sparse_tensor
            .as_ref()?
            .values
            .as_ref()
            .map(|t| t.data_type()),
        "value_float" | "value_floats" => Some(FLOAT),
        "value_int" | "value_ints" => Some(INT64),
        "value_string" | "value_strings" => Some(STRING),
        _ => None,
    }
}

fn subgraph_output_type(node: &NodeProto, name: &str, slot: usize) -> Option<i32> {
    let graph = attribute(node, name)?.g.as_ref()?;
    declared_type(graph.output.get(slot)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GraphBuilder, attr, dims};

    #[test]
    fn follows_declarations_attributes_and_operator_rules() {
        let mut g = GraphBuilder::new("g", 1);
        let x = g.input("x", DataType::Float, dims!["N", 4]);
        let shape = g.node("Shape", &[&x], []);
        let as_float = g.node("Cast", &[&shape], [attr::int("to", FLOAT as i64)]);
        let relu = g.relu(&x);
        let less = g.node("Less", &[&relu, &x], []);
        let picked = g.node("Where", &[&less, &relu, &x], []);
        let top = g.node("TopK", &[&picked, &shape], []);
        let finished = g.finish();
        let types = infer_types(&finished);
        assert_eq!(types[x.name()], FLOAT);
        assert_eq!(types[shape.name()], INT64);
        assert_eq!(types[as_float.name()], FLOAT);
        assert_eq!(types[relu.name()], FLOAT);
        assert_eq!(types[less.name()], BOOL);
        assert_eq!(types[picked.name()], FLOAT);
        assert_eq!(types[top.name()], FLOAT);
    }
}
