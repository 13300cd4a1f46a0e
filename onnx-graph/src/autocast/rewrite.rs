//! Applying a [`Plan`]: rename uses to aliases, create the aliases (casts right after the value's
//! producer, converted copies right after the original), convert weights and retarget
//! attributes, and update the declared element types.

use std::collections::HashMap;
use std::mem;

use super::classify::{NodeClass, TYPE_ATTRIBUTE_OPS};
use super::plan::{AliasKind, Plan, Precision, Source, Use, suffix};
use super::scope::Names;
use super::tensors::{TensorStore, clamp_warning, convert_inline};
use super::types::{FLOAT, declared_type};
use super::{AutocastOptions, AutocastReport};
use crate::attr;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::{
    AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto, type_proto,
};

/// Rewrites `graph` according to `plan`, adding what it did to `report`.
pub(crate) fn rewrite(
    graph: &mut GraphProto,
    plan: &Plan,
    ir_version: i64,
    options: &AutocastOptions,
    store: &mut dyn TensorStore,
    names: &mut Names,
    report: &mut AutocastReport,
) {
    // Uses first, so that copies of consumer-driven nodes start from the renamed inputs.
    rename_uses(graph, plan);

    // Aliases next, from the float32 originals (converted further down).
    let mut prologue = Vec::new();
    let mut after_node: Vec<Vec<NodeProto>> = vec![Vec::new(); graph.node.len()];
    let mut after_initializer: Vec<Vec<TensorProto>> = vec![Vec::new(); graph.initializer.len()];
    for alias in &plan.aliases {
        let value = &plan.values[alias.value];
        let target = alias.precision == Precision::Target;
        match (alias.kind, value.source) {
            (AliasKind::InitializerCopy, Source::Initializer(index)) => {
                let mut copy = graph.initializer[index].clone();
                copy.name = Some(alias.name.clone());
                if target {
                    report
                        .clamped
                        .extend(store.convert(&mut copy, options.target, &alias.name));
                    report.converted_initializers += 1;
                }
                after_initializer[index].push(copy);
            }
            (AliasKind::NodeCopy, Source::Node(index)) => {
                let mut copy = graph.node[index].clone();
                let base = format!(
                    "{}/autocast_{}",
                    label(&copy),
                    suffix(alias.precision, options)
                );
                copy.name = Some(names.fresh(base));
                copy.output = vec![alias.name.clone()];
                if target {
                    retarget(&mut copy, options, store, report);
                }
                match copy.op_type() {
                    "Cast" => report.inserted_casts += 1,
                    "Constant" if target => report.converted_initializers += 1,
                    _ if target => report.converted_nodes += 1,
                    _ => {}
                }
                after_node[index].push(copy);
            }
            (_, source) => {
                let to = match alias.precision {
                    Precision::Float32 => FLOAT,
                    Precision::Target => options.target.data_type() as i32,
                };
                let base = format!(
                    "{}/autocast_{}/Cast",
                    value.name,
                    suffix(alias.precision, options)
                );
                let cast = NodeProto {
                    input: vec![value.produced_name().to_owned()],
                    output: vec![alias.name.clone()],
                    name: Some(names.fresh(base)),
                    op_type: Some("Cast".to_owned()),
                    attribute: vec![attr::int("to", i64::from(to))],
                    ..NodeProto::default()
                };
                report.inserted_casts += 1;
                match source {
                    Source::Node(index) => after_node[index].push(cast),
                    _ => prologue.push(cast),
                }
            }
        }
    }

    // Then the originals: weights and consumer-driven nodes at home, converted nodes' type
    // attributes.
    for value in plan.values.iter().filter(|v| v.home == Precision::Target) {
        match value.source {
            Source::Initializer(index) => {
                let tensor = &mut graph.initializer[index];
                report
                    .clamped
                    .extend(store.convert(tensor, options.target, &value.name));
                report.converted_initializers += 1;
            }
            Source::Node(index) if plan.classes[index] == NodeClass::ConsumerDriven => {
                let node = &mut graph.node[index];
                retarget(node, options, store, report);
                if node.op_type() == "Constant" {
                    report.converted_initializers += 1;
                } else {
                    report.converted_nodes += 1;
                }
            }
            _ => {}
        }
    }
    for (node, class) in graph.node.iter_mut().zip(&plan.classes) {
        match class {
            NodeClass::Converted => {
                retype_attributes(node, options);
                report.converted_nodes += 1;
            }
            NodeClass::Kept => report
                .kept_fp32_nodes
                .push((label(node).to_owned(), node.op_type().to_owned())),
            _ => {}
        }
    }

    // Splice the aliases in: casts of inputs and weights first, the rest after their producer.
    let nodes = mem::take(&mut graph.node);
    graph.node = prologue;
    for (node, after) in nodes.into_iter().zip(after_node) {
        graph.node.push(node);
        graph.node.extend(after);
    }
    let initializers = mem::take(&mut graph.initializer);
    let mut listed_inputs = Vec::new();
    for (tensor, copies) in initializers.into_iter().zip(after_initializer) {
        // IR < 4 requires every initializer to be a graph input too.
        if ir_version < 4
            && let Some(entry) = graph.input.iter().find(|i| i.name() == tensor.name())
        {
            for copy in &copies {
                listed_inputs.push(ValueInfoProto {
                    name: copy.name.clone(),
                    ..entry.clone()
                });
            }
        }
        graph.initializer.push(tensor);
        graph.initializer.extend(copies);
    }
    graph.input.extend(listed_inputs);
    update_declared_types(graph, plan, options);
}

/// Points every use at the name it reads after the rewrite.
fn rename_uses(graph: &mut GraphProto, plan: &Plan) {
    for (index, value) in plan.values.iter().enumerate() {
        for &(use_, want) in &value.uses {
            let name = plan.name_for(index, want);
            match use_ {
                Use::Input { node, slot } => graph.node[node].input[slot] = name.to_owned(),
                Use::Captured { node } if name != value.name => {
                    for attribute in &mut graph.node[node].attribute {
                        let subgraphs = attribute.g.iter_mut().chain(&mut attribute.graphs);
                        subgraphs.for_each(|g| rename_inside(g, &value.name, name));
                    }
                }
                Use::Captured { .. } | Use::Output => {}
            }
        }
        if let (Some(renamed), Source::Node(node)) = (&value.renamed, value.source) {
            for output in graph.node[node]
                .output
                .iter_mut()
                .filter(|o| **o == value.name)
            {
                output.clone_from(renamed);
            }
        }
    }
}

/// Renames the reads of the outer value `from` inside a subgraph (names are unique across
/// scopes in ONNX, so nothing inside can be shadowing it).
fn rename_inside(graph: &mut GraphProto, from: &str, to: &str) {
    for node in &mut graph.node {
        for input in node.input.iter_mut().filter(|i| *i == from) {
            *input = to.to_owned();
        }
        for attribute in &mut node.attribute {
            let subgraphs = attribute.g.iter_mut().chain(&mut attribute.graphs);
            subgraphs.for_each(|g| rename_inside(g, from, to));
        }
    }
    for output in graph.output.iter_mut().filter(|o| o.name() == from) {
        output.name = Some(to.to_owned());
    }
}

/// Makes a consumer-driven node produce the target instead of float32 (clamps are reported;
/// the caller counts the node).
fn retarget(
    node: &mut NodeProto,
    options: &AutocastOptions,
    store: &mut dyn TensorStore,
    report: &mut AutocastReport,
) {
    let target = options.target;
    let code = i64::from(target.data_type() as i32);
    let label = node.output.first().cloned().unwrap_or_default();
    match node.op_type() {
        "Cast" => {
            node.attribute.retain(|a| a.name() != "to");
            node.attribute.push(attr::int("to", code));
        }
        op @ ("Constant" | "ConstantOfShape") => {
            let is_constant = op == "Constant";
            let value = node
                .attribute
                .iter_mut()
                .find(|a| a.name().starts_with("value"));
            match value {
                Some(attribute) if attribute.name() == "value" => {
                    if let Some(tensor) = attribute.t.as_mut() {
                        report.clamped.extend(store.convert(tensor, target, &label));
                    }
                }
                Some(attribute) => {
                    // value_float / value_floats become an equivalent `value` tensor.
                    let dims = if attribute.f.is_some() {
                        vec![]
                    } else {
                        vec![attribute.floats.len() as i64]
                    };
                    let floats = attribute
                        .f
                        .map_or_else(|| attribute.floats.clone(), |f| vec![f]);
                    let mut tensor = TensorProto {
                        dims,
                        data_type: Some(FLOAT),
                        float_data: floats,
                        ..TensorProto::default()
                    };
                    report
                        .clamped
                        .extend(clamp_warning(&label, convert_inline(&mut tensor, target)));
                    *attribute = tensor_attribute(tensor);
                }
                None if !is_constant => {
                    // ConstantOfShape without a value fills float32 zeros: name a target zero.
                    node.attribute.push(tensor_attribute(TensorProto {
                        dims: vec![1],
                        data_type: Some(target.data_type() as i32),
                        raw_data: Some(vec![0, 0]),
                        ..TensorProto::default()
                    }));
                }
                None => {}
            }
        }
        _ => {}
    }
}

fn tensor_attribute(tensor: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some("value".to_owned()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(tensor),
        ..AttributeProto::default()
    }
}

/// Converted operators whose output type is an attribute get the target there.
fn retype_attributes(node: &mut NodeProto, options: &AutocastOptions) {
    let op = node.op_type();
    if !TYPE_ATTRIBUTE_OPS.contains(&op) {
        return;
    }
    let (name, defaults_to_float) = match op {
        "HannWindow" | "HammingWindow" | "BlackmanWindow" | "MelWeightMatrix" => {
            ("output_datatype", true)
        }
        "RandomNormal" | "RandomUniform" => ("dtype", true),
        _ => ("dtype", false),
    };
    let code = i64::from(options.target.data_type() as i32);
    match node.attribute.iter_mut().find(|a| a.name() == name) {
        Some(attribute) if attribute.i == Some(i64::from(FLOAT)) => attribute.i = Some(code),
        None if defaults_to_float => node.attribute.push(attr::int(name, code)),
        _ => {}
    }
}

/// Sets the declared element type of every float32 value whose precision changed.
fn update_declared_types(graph: &mut GraphProto, plan: &Plan, options: &AutocastOptions) {
    let mut precision: HashMap<&str, Precision> = HashMap::new();
    for (index, value) in plan.values.iter().enumerate() {
        precision.insert(value.produced_name(), value.home);
        if value.renamed.is_some() {
            let other = match value.home {
                Precision::Float32 => Precision::Target,
                Precision::Target => Precision::Float32,
            };
            if plan.alias_index.contains_key(&(index, other)) {
                precision.insert(&value.name, other);
            }
        }
    }
    for alias in &plan.aliases {
        precision.insert(&alias.name, alias.precision);
    }
    let target = options.target.data_type() as i32;
    let infos = graph
        .input
        .iter_mut()
        .chain(&mut graph.output)
        .chain(&mut graph.value_info);
    for info in infos {
        if declared_type(info) != Some(FLOAT) {
            continue;
        }
        if precision.get(info.name()) == Some(&Precision::Target)
            && let Some(type_proto::Value::TensorType(tensor)) =
                info.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            tensor.elem_type = Some(target);
        }
    }
}

/// A node's name for reports and derived names: its own, else its first output's.
pub(crate) fn label(node: &NodeProto) -> &str {
    match node.name() {
        "" => node.output.first().map_or("", String::as_str),
        name => name,
    }
}
