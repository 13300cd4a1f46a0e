//! The plan for one graph: every float32 value, where it comes from, the precision it is
//! produced in (its *home*), the precision each use wants, and what must be added where the
//! two differ.
//!
//! Homes: a graph input is in the I/O precision; a converted node's output in the target; a kept
//! node's in float32; a weight (initializer, `Constant`) or a consumer-driven node's output in
//! whatever its uses want (the target when they disagree or nobody says). Where a use wants the
//! other precision, the value gets an *alias*: a converted copy for a weight or consumer-driven
//! node (no runtime cost, no double rounding), a `Cast` node otherwise. A graph output whose
//! producer has the wrong precision keeps its name on the `Cast`, and the producer's output is
//! renamed.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::AutocastOptions;
use super::classify::{NodeClass, accepts_any, classify, requires_float32};
use super::scope::{Names, outer_refs};
use super::tensors::TensorStore;
use super::types::{FLOAT, infer_types};
use crate::proto::{GraphProto, NodeProto};

/// The two precisions a float32 value can end up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Precision {
    /// Stays float32.
    Float32,
    /// The autocast target (fp16 or bf16).
    Target,
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    GraphInput,
    Initializer(usize),
    Node(usize),
    /// A sparse initializer: left as it is.
    Fixed,
}

/// One reader of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Input {
        node: usize,
        slot: usize,
    },
    /// Read by name from inside the node's subgraphs.
    Captured {
        node: usize,
    },
    Output,
}

/// A float32 value of the graph.
#[derive(Debug)]
pub(crate) struct PlannedValue {
    pub name: String,
    pub source: Source,
    pub home: Precision,
    /// Each use with the precision it wants (`None`: either).
    pub uses: Vec<(Use, Option<Precision>)>,
    /// The new name of a node output that a graph output now reaches through a `Cast`.
    pub renamed: Option<String>,
    /// Whether the producer can make either precision directly (a convertible weight, a
    /// retargetable consumer-driven node): aliases are then copies, not casts.
    pub flexible: bool,
}

impl PlannedValue {
    /// The name the value is produced under after the rewrite.
    pub fn produced_name(&self) -> &str {
        self.renamed.as_deref().unwrap_or(&self.name)
    }
}

/// How an alias (the value in the other precision) is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasKind {
    Cast,
    InitializerCopy,
    NodeCopy,
}

/// An alias to create.
#[derive(Debug)]
pub(crate) struct Alias {
    pub value: usize,
    pub name: String,
    pub precision: Precision,
    pub kind: AliasKind,
}

/// The plan for one graph.
#[derive(Debug)]
pub(crate) struct Plan {
    pub classes: Vec<NodeClass>,
    pub values: Vec<PlannedValue>,
    /// In creation order, which fixes their names and positions.
    pub aliases: Vec<Alias>,
    pub alias_index: HashMap<(usize, Precision), usize>,
}

impl Plan {
    /// The name a use wanting `want` reads value `index` under.
    pub fn name_for(&self, index: usize, want: Option<Precision>) -> &str {
        let value = &self.values[index];
        match want {
            Some(want) if want != value.home => {
                &self.aliases[self.alias_index[&(index, want)]].name
            }
            _ => value.produced_name(),
        }
    }
}

/// Plans autocast for `graph`.
pub(crate) fn plan(
    graph: &GraphProto,
    options: &AutocastOptions,
    store: &dyn TensorStore,
    names: &mut Names,
) -> Plan {
    let types = infer_types(graph);
    let classes = classify(
        graph,
        &types,
        &options.effective_keep_fp32_ops(),
        &options.force_convert_ops,
    );
    let io = if options.keep_fp32_io {
        Precision::Float32
    } else {
        Precision::Target
    };
    let is_float = |name: &str| !name.is_empty() && types.get(name) == Some(&FLOAT);

    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let mut values = Vec::new();
    let mut add = |name: &str, source| {
        values.push(PlannedValue {
            name: name.to_owned(),
            source,
            home: Precision::Float32,
            uses: Vec::new(),
            renamed: None,
            flexible: false,
        })
    };
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name()))
    {
        if is_float(input.name()) {
            add(input.name(), Source::GraphInput);
        }
    }
    for (index, tensor) in graph.initializer.iter().enumerate() {
        if tensor.data_type == Some(FLOAT) {
            add(tensor.name(), Source::Initializer(index));
        }
    }
    for sparse in &graph.sparse_initializer {
        if let Some(values) = sparse
            .values
            .as_ref()
            .filter(|v| v.data_type == Some(FLOAT))
        {
            add(values.name(), Source::Fixed);
        }
    }
    for (index, node) in graph.node.iter().enumerate() {
        for output in node.output.iter().filter(|o| is_float(o)) {
            add(output, Source::Node(index));
        }
    }
    let index_of: HashMap<String, usize> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.clone(), i))
        .collect();

    for (node_index, node) in graph.node.iter().enumerate() {
        let op = node.op_type();
        for (slot, input) in node.input.iter().enumerate() {
            let Some(&value) = index_of.get(input) else {
                continue;
            };
            let want = match classes[node_index] {
                _ if accepts_any(op, slot) => None,
                NodeClass::Converted if requires_float32(op, slot) => Some(Precision::Float32),
                NodeClass::Converted => Some(Precision::Target),
                NodeClass::Kept => Some(Precision::Float32),
                _ => None,
            };
            values[value].uses.push((
                Use::Input {
                    node: node_index,
                    slot,
                },
                want,
            ));
        }
        let mut captured = BTreeSet::new();
        for attribute in &node.attribute {
            attribute
                .g
                .iter()
                .chain(&attribute.graphs)
                .for_each(|g| outer_refs(g, &mut captured));
        }
        for name in &captured {
            if let Some(&value) = index_of.get(name) {
                let want = Some(Precision::Float32); // nodes with subgraphs are kept
                values[value]
                    .uses
                    .push((Use::Captured { node: node_index }, want));
            }
        }
    }
    for output in &graph.output {
        if let Some(&value) = index_of.get(output.name()) {
            values[value].uses.push((Use::Output, Some(io)));
        }
    }

    for value in &mut values {
        value.flexible = match value.source {
            Source::Initializer(index) => store.can_convert(&graph.initializer[index]),
            Source::Node(index) => {
                classes[index] == NodeClass::ConsumerDriven
                    && retargetable(&graph.node[index], store)
            }
            Source::GraphInput | Source::Fixed => false,
        };
        value.home = match value.source {
            Source::GraphInput => io,
            _ if value.flexible => driven_home(&value.uses),
            Source::Node(index) if classes[index] == NodeClass::Converted => Precision::Target,
            _ => Precision::Float32,
        };
    }

    let mut plan = Plan {
        classes,
        values,
        aliases: Vec::new(),
        alias_index: HashMap::new(),
    };
    for index in 0..plan.values.len() {
        add_aliases(&mut plan, index, options, names);
    }
    plan
}

/// Creates the aliases value `index` needs, renaming it first if a graph output needs a cast.
fn add_aliases(plan: &mut Plan, index: usize, options: &AutocastOptions, names: &mut Names) {
    let value = &mut plan.values[index];
    let output_want = value
        .uses
        .iter()
        .find(|(u, _)| *u == Use::Output)
        .and_then(|(_, w)| *w);
    let is_node = matches!(value.source, Source::Node(_));
    // Only a node output can be renamed; other sources already satisfy their graph outputs.
    value
        .uses
        .retain(|(u, w)| *u != Use::Output || is_node || *w == Some(value.home));
    let output_alias = output_want.filter(|&w| w != value.home && is_node);
    if output_alias.is_some() {
        let base = format!("{}/autocast_{}", value.name, suffix(value.home, options));
        value.renamed = Some(names.fresh(base));
    }
    let wants: Vec<Precision> = value.uses.iter().filter_map(|(_, w)| *w).collect();
    for want in wants {
        if want == plan.values[index].home || plan.alias_index.contains_key(&(index, want)) {
            continue;
        }
        let value = &plan.values[index];
        let name = if output_alias == Some(want) {
            value.name.clone()
        } else {
            names.fresh(format!("{}/autocast_{}", value.name, suffix(want, options)))
        };
        let kind = match value.source {
            Source::Initializer(_) if value.flexible => AliasKind::InitializerCopy,
            Source::Node(_) if value.flexible => AliasKind::NodeCopy,
            _ => AliasKind::Cast,
        };
        plan.alias_index.insert((index, want), plan.aliases.len());
        plan.aliases.push(Alias {
            value: index,
            name,
            precision: want,
            kind,
        });
    }
}

/// The home of a value whose producer can make either precision: what a graph output needs,
/// else the target if anyone wants it, else float32 if anyone wants that, else the target.
fn driven_home(uses: &[(Use, Option<Precision>)]) -> Precision {
    if let Some((_, Some(want))) = uses.iter().find(|(u, _)| *u == Use::Output) {
        return *want;
    }
    let wants = |p| uses.iter().any(|(_, w)| *w == Some(p));
    if !wants(Precision::Target) && wants(Precision::Float32) {
        Precision::Float32
    } else {
        Precision::Target
    }
}

/// Whether a consumer-driven node's float32 output can be produced in the target instead.
fn retargetable(node: &NodeProto, store: &dyn TensorStore) -> bool {
    let value = node.attribute.iter().find(|a| a.name() == "value");
    match node.op_type() {
        "Cast" => true,
        "Constant" => match node.attribute.first() {
            Some(a) if a.name() == "value" => a.t.as_ref().is_some_and(|t| store.can_convert(t)),
            Some(a) => matches!(a.name(), "value_float" | "value_floats"),
            None => false,
        },
        "ConstantOfShape" => {
            value.is_none_or(|a| a.t.as_ref().is_some_and(|t| store.can_convert(t)))
        }
        _ => false,
    }
}

/// `fp32`, `fp16` or `bf16`, for names.
pub(crate) fn suffix(precision: Precision, options: &AutocastOptions) -> &'static str {
    match precision {
        Precision::Float32 => "fp32",
        Precision::Target => options.target.name(),
    }
}
