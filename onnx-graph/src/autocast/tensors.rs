//! Converting a float32 `TensorProto`'s data, behind a small trait so the same rewrite serves
//! models in memory (inline data only) and files (external data converted while streamed).

use super::numeric::{ClampStats, convert_le_bytes};
use super::{AutocastTarget, ClampWarning};
use crate::proto::tensor_proto::DataLocation;
use crate::proto::{AttributeProto, GraphProto, ModelProto, TensorProto};

/// Where converted tensor data comes from.
pub(crate) trait TensorStore {
    /// Whether this float32 tensor's data can be converted.
    fn can_convert(&self, tensor: &TensorProto) -> bool;
    /// Converts the float32 `tensor` to `target`; a clamp is reported under `label`.
    fn convert(
        &mut self,
        tensor: &mut TensorProto,
        target: AutocastTarget,
        label: &str,
    ) -> Option<ClampWarning>;
}

/// Converts tensors whose data is inside the model; external ones cannot be converted here.
pub(crate) struct InlineStore;

impl TensorStore for InlineStore {
    fn can_convert(&self, tensor: &TensorProto) -> bool {
        inline_convertible(tensor)
    }

    fn convert(
        &mut self,
        tensor: &mut TensorProto,
        target: AutocastTarget,
        label: &str,
    ) -> Option<ClampWarning> {
        let stats = convert_inline(tensor, target);
        clamp_warning(label, stats)
    }
}

/// Whether the tensor's data lives in an external file.
pub(crate) fn is_external(tensor: &TensorProto) -> bool {
    tensor.data_location == Some(DataLocation::External as i32)
}

/// Whether an inline float32 tensor holds exactly the elements its dims imply, in `raw_data`
/// or `float_data` (a tensor that does not is left alone rather than guessed at).
pub(crate) fn inline_convertible(tensor: &TensorProto) -> bool {
    if is_external(tensor) {
        return false;
    }
    let Some(elements) = element_count(tensor) else {
        return false;
    };
    match &tensor.raw_data {
        Some(raw) => tensor.float_data.is_empty() && raw.len() as u64 == elements * 4,
        None => tensor.float_data.len() as u64 == elements,
    }
}

/// The number of elements the tensor's dims imply (`None` for negative or overflowing dims).
pub(crate) fn element_count(tensor: &TensorProto) -> Option<u64> {
    tensor.dims.iter().try_fold(1u64, |count, &dim| {
        u64::try_from(dim)
            .ok()
            .and_then(|dim| count.checked_mul(dim))
    })
}

/// Converts an inline float32 tensor in place: the data becomes little-endian 16-bit
/// `raw_data`, the canonical form, whichever field held it before.
pub(crate) fn convert_inline(tensor: &mut TensorProto, target: AutocastTarget) -> ClampStats {
    let mut stats = ClampStats::default();
    let mut converted = Vec::new();
    match tensor.raw_data.take() {
        Some(raw) => convert_le_bytes(&raw, target, &mut stats, &mut converted),
        None => {
            let floats = std::mem::take(&mut tensor.float_data);
            let bytes: Vec<u8> = floats.iter().flat_map(|v| v.to_le_bytes()).collect();
            convert_le_bytes(&bytes, target, &mut stats, &mut converted);
        }
    }
    tensor.raw_data = Some(converted);
    tensor.data_type = Some(target.data_type() as i32);
    stats
}

/// The warning for `stats`, if anything was clamped.
pub(crate) fn clamp_warning(label: &str, stats: ClampStats) -> Option<ClampWarning> {
    (stats.count > 0).then(|| ClampWarning {
        tensor: label.to_owned(),
        count: stats.count,
        max_abs: stats.max_abs,
    })
}

/// Every external tensor of the model, in a fixed order: graphs (initializers, sparse
/// initializers, node attributes, subgraphs), then functions, then training graphs.
pub(crate) fn external_tensors(model: &mut ModelProto) -> Vec<&mut TensorProto> {
    let mut out = Vec::new();
    if let Some(graph) = model.graph.as_mut() {
        collect_graph(graph, &mut out);
    }
    for function in &mut model.functions {
        for node in &mut function.node {
            collect_attributes(&mut node.attribute, &mut out);
        }
    }
    for training in &mut model.training_info {
        let graphs = training
            .initialization
            .iter_mut()
            .chain(training.algorithm.iter_mut());
        graphs.for_each(|g| collect_graph(g, &mut out));
    }
    out
}

fn collect_graph<'a>(graph: &'a mut GraphProto, out: &mut Vec<&'a mut TensorProto>) {
    push_external(graph.initializer.iter_mut(), out);
    for sparse in &mut graph.sparse_initializer {
        push_external(
            sparse.values.iter_mut().chain(sparse.indices.iter_mut()),
            out,
        );
    }
    for node in &mut graph.node {
        collect_attributes(&mut node.attribute, out);
    }
}

fn collect_attributes<'a>(
    attributes: &'a mut [AttributeProto],
    out: &mut Vec<&'a mut TensorProto>,
) {
    for attribute in attributes {
        push_external(
            attribute.t.iter_mut().chain(attribute.tensors.iter_mut()),
            out,
        );
        let sparse = attribute
            .sparse_tensor
            .iter_mut()
            .chain(attribute.sparse_tensors.iter_mut());
        for sparse in sparse {
            push_external(
                sparse.values.iter_mut().chain(sparse.indices.iter_mut()),
                out,
            );
        }
        for graph in attribute.g.iter_mut().chain(attribute.graphs.iter_mut()) {
            collect_graph(graph, out);
        }
    }
}

fn push_external<'a>(
    tensors: impl Iterator<Item = &'a mut TensorProto>,
    out: &mut Vec<&'a mut TensorProto>,
) {
    out.extend(tensors.filter(|t| is_external(t)));
}
