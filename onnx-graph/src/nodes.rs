//! The nodes of a model by name and operator type, read without its weights: what a build
//! error that names a node needs to be told in the manifest's terms (operator types).

use std::path::Path;

use crate::OnnxError;
use crate::model_stream::{Payloads, read_model};
use crate::proto::GraphProto;

/// One node: its name (or, when unnamed, its first output) and its operator type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeName {
    /// The node's name, else its first output's name.
    pub name: String,
    /// The operator type, e.g. `ConvTranspose`.
    pub op_type: String,
}

/// Every node of the model at `path`, subgraphs (`If`/`Loop` bodies) included, in graph order.
/// Tensor data is skipped, never loaded.
pub fn read_node_names(path: &Path) -> Result<Vec<NodeName>, OnnxError> {
    let model = read_model(path, Payloads::Skip)?;
    let mut nodes = Vec::new();
    if let Some(graph) = &model.graph {
        collect(graph, &mut nodes);
    }
    Ok(nodes)
}

fn collect(graph: &GraphProto, nodes: &mut Vec<NodeName>) {
    for node in &graph.node {
        let name = match node.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => node.output.first().cloned().unwrap_or_default(),
        };
        nodes.push(NodeName {
            name,
            op_type: node.op_type.clone().unwrap_or_default(),
        });
        for attribute in &node.attribute {
            for subgraph in attribute.g.iter().chain(&attribute.graphs) {
                collect(subgraph, nodes);
            }
        }
    }
}
