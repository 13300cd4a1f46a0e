//! Autocast: turn a float32 model into one that TensorRT's strongly typed network really runs in
//! fp16 or bf16.
//!
//! TensorRT 11 and TensorRT-RTX take the precision of every layer from the model's types, so the
//! farm's `precision = "fp16"` is this model transform, applied before the build:
//!
//! - float32 weights (initializers, `Constant` and `ConstantOfShape` values) are converted to
//!   the target, and so is the computation of every node that does float32 arithmetic, except
//!   the numerically sensitive ones: the operators in [`DEFAULT_KEEP_FP32`] (adjusted by
//!   [`AutocastOptions::keep_fp32_ops`] and [`AutocastOptions::force_convert_ops`]) and the
//!   shape subgraph (values that end up as a `Reshape`/`Expand` shape, `Slice` bounds, `Resize`
//!   scales or sizes, a `ConstantOfShape` or `Range` operand, or that come out of `Shape`).
//!   Nodes with subgraphs (`If`, `Loop`, `Scan`) and custom-domain operators stay float32 too.
//! - Where a float32 value meets a reader that wants the other precision, a `Cast` is inserted
//!   right after the value's producer (one per value and precision, shared by all its readers);
//!   a weight or a `Constant`/`Cast`/`ConstantOfShape` output gets a converted copy instead. The
//!   inserted names are derived from the value's name: `x/autocast_fp32` (the value),
//!   `x/autocast_fp32/Cast` (the node).
//! - `Cast` nodes to float32 whose readers are converted now cast to the target.
//! - Graph inputs and outputs of type float32 become the target, unless
//!   [`AutocastOptions::keep_fp32_io`], in which case they stay float32 and casts sit at the
//!   boundary. Declared types (`value_info`, inputs, outputs) follow.
//! - fp16 has a range of ±65504: larger finite weights are clamped, and the report names the
//!   tensor ([`ClampWarning`]). bf16 has float32's range; only values that rounding would carry
//!   to infinity (above 3.3895e38) are saturated, and reported the same way.
//!
//! The output is a function of the input bytes and the options only (names and positions of
//! what is inserted are derived deterministically), and autocasting an autocast model changes
//! nothing. Bump [`AUTOCAST_VERSION`] whenever the output for some input can change.
//!
//! Not done: subgraphs are not entered (their nodes stay float32, values they read from outside
//! are cast to float32 for them); sparse initializers stay float32. The ONNX schemas list
//! bfloat16 for most operators only from opset 13 (`Conv` from 22, `ConstantOfShape` from 20),
//! so a bf16 model of an older opset does not pass the ONNX checker; nothing here checks that.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::OnnxError;
use crate::model_stream::{self, Payloads};
use crate::proto::ModelProto;
use crate::proto::tensor_proto::DataType;

mod classify;
mod external;
mod numeric;
mod plan;
mod rewrite;
mod scope;
mod tensors;
pub(crate) mod types;

/// Version of the transform; the daemon puts it into the action key. Bump it whenever the
/// output for some input can change.
pub const AUTOCAST_VERSION: u32 = 1;

/// Operators kept in float32 unless [`AutocastOptions::force_convert_ops`] names them:
/// - reductions that accumulate many values (`ReduceSum`, `ReduceMean`, `ReduceSumSquare`,
///   `ReduceL1`, `ReduceL2`, `ReduceLogSum`, `ReduceLogSumExp`, `ReduceProd`): sums overflow
///   65504 and lose the small addends in fp16;
/// - `Softmax`, `LogSoftmax`: exponentials of logits overflow, and probabilities underflow;
/// - normalizations (`LayerNormalization`, `GroupNormalization`, `InstanceNormalization`,
///   `MeanVarianceNormalization`, `RMSNormalization`): the mean of squares over a channel or
///   group is a large reduction, and the variance of near-equal values cancels catastrophically;
/// - `Exp`, `Log`, `Pow`: overflow (`exp(11.1)` is past fp16's range) and lost precision near 1;
/// - `Range`: its operands are indices and counts, exact in fp16 only up to 2048;
/// - `QuantizeLinear`, `DequantizeLinear`, `DynamicQuantizeLinear`: their scales must be
///   float32 before opset 19;
/// - `NonMaxSuppression`: ONNX types its boxes and scores as float32 only.
pub const DEFAULT_KEEP_FP32: &[&str] = &[
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "Exp",
    "GroupNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "Log",
    "LogSoftmax",
    "MeanVarianceNormalization",
    "NonMaxSuppression",
    "Pow",
    "QuantizeLinear",
    "RMSNormalization",
    "Range",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMean",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Softmax",
];

/// The largest output [`autocast_file`] writes as one self-contained `.onnx` file: 2,000,000,000
/// bytes. Protobuf cannot encode a message of 2 GiB (2,147,483,648 bytes) or more; the margin
/// covers the estimate (the graph's encoding plus every weight's converted size). Above it the
/// weights go to `<output file name>.data` beside the output.
pub const DEFAULT_INLINE_LIMIT: u64 = 2_000_000_000;

/// The precision autocast converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AutocastTarget {
    /// IEEE 754 half precision (`FLOAT16`): ±65504, 11 significant bits.
    Half,
    /// bfloat16 (`BFLOAT16`): float32's range, 8 significant bits.
    BFloat16,
}

impl AutocastTarget {
    /// The ONNX element type.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Half => DataType::Float16,
            Self::BFloat16 => DataType::Bfloat16,
        }
    }

    /// The manifest's name for it: `fp16` or `bf16` (also used in inserted names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Half => "fp16",
            Self::BFloat16 => "bf16",
        }
    }

    /// The target for a manifest precision (`fp16`, `bf16`); `None` for any other.
    pub fn from_precision(precision: &str) -> Option<Self> {
        match precision {
            "fp16" => Some(Self::Half),
            "bf16" => Some(Self::BFloat16),
            _ => None,
        }
    }
}

/// What autocast does; the daemon derives it from the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AutocastOptions {
    /// The precision to convert to.
    pub target: AutocastTarget,
    /// Operator types kept in float32 on top of [`DEFAULT_KEEP_FP32`], e.g. `{"Sigmoid"}`.
    /// Wins over `force_convert_ops` when both name an operator. Default: empty.
    pub keep_fp32_ops: BTreeSet<String>,
    /// Operator types taken off [`DEFAULT_KEEP_FP32`] and converted, e.g. `{"Softmax"}`; also
    /// converts custom-domain operators of these types. Default: empty.
    pub force_convert_ops: BTreeSet<String>,
    /// Keep float32 graph inputs and outputs float32 (casts at the boundary) instead of
    /// converting them. Default: false.
    pub keep_fp32_io: bool,
    /// [`autocast_file`] writes outputs estimated at this many bytes or more with external data.
    /// Default: [`DEFAULT_INLINE_LIMIT`].
    pub inline_limit: u64,
}

impl AutocastOptions {
    /// The defaults for `target`: the default keep list, converted I/O, inline up to 2 GB.
    pub fn new(target: AutocastTarget) -> Self {
        Self {
            target,
            keep_fp32_ops: BTreeSet::new(),
            force_convert_ops: BTreeSet::new(),
            keep_fp32_io: false,
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    }

    /// The operator types kept in float32: the defaults minus `force_convert_ops`, plus
    /// `keep_fp32_ops`.
    pub fn effective_keep_fp32_ops(&self) -> BTreeSet<String> {
        let defaults = DEFAULT_KEEP_FP32.iter().map(|op| op.to_string());
        let mut keep: BTreeSet<String> = defaults
            .filter(|op| !self.force_convert_ops.contains(op))
            .collect();
        keep.extend(self.keep_fp32_ops.iter().cloned());
        keep
    }
}

/// A weight with values outside the target's range, clamped to its largest finite value.
#[derive(Debug, Clone, PartialEq)]
pub struct ClampWarning {
    /// The tensor: an initializer's name, or the output of the `Constant` that holds it.
    pub tensor: String,
    /// How many values were clamped.
    pub count: u64,
    /// The largest magnitude among them, before clamping.
    pub max_abs: f32,
}

impl fmt::Display for ClampWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tensor {:?}: {} value(s) outside the target's range were clamped (largest magnitude {:e})",
            self.tensor, self.count, self.max_abs
        )
    }
}

/// What autocast did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutocastReport {
    /// float32 weights now in the target: initializers and `Constant` values (converted copies
    /// included).
    pub converted_initializers: usize,
    /// Nodes that now compute or produce the target (`Cast`s and `ConstantOfShape`s retargeted
    /// included).
    pub converted_nodes: usize,
    /// Nodes that stay float32, as (node name, or its first output when unnamed; operator), in
    /// graph order.
    pub kept_fp32_nodes: Vec<(String, String)>,
    /// `Cast` nodes added at the boundaries of converted and float32 regions and at the graph's
    /// inputs and outputs.
    pub inserted_casts: usize,
    /// Weights that were clamped, in the order they were converted.
    pub clamped: Vec<ClampWarning>,
    /// The external-data file [`autocast_file`] wrote beside the output, when the output is too
    /// large to be self-contained.
    pub external_data: Option<PathBuf>,
}

/// Autocasts a model held in memory. Only weights stored inside the model are converted; an
/// external-data weight stays float32 and its readers get a `Cast` (use [`autocast_file`] to
/// convert those).
pub fn autocast_model(model: &mut ModelProto, options: &AutocastOptions) -> AutocastReport {
    autocast_with(model, options, &mut tensors::InlineStore)
}

/// Autocasts the model at `input` into `output`. Weights are read once, streamed from the model
/// and its external-data files; the output is self-contained when under
/// [`AutocastOptions::inline_limit`], otherwise its weights go to `<output file name>.data`
/// beside it (see [`AutocastReport::external_data`]). Files are written through temporary names
/// and renamed into place.
pub fn autocast_file(
    input: &Path,
    output: &Path,
    options: &AutocastOptions,
) -> Result<AutocastReport, OnnxError> {
    let mut model = model_stream::read_model(input, Payloads::Load)?;
    let mut store = external::DeferredStore::default();
    let mut report = autocast_with(&mut model, options, &mut store);
    let input_dir = input.parent().unwrap_or(Path::new(""));
    report.external_data = external::materialize(
        &mut model,
        input_dir,
        output,
        &store,
        options,
        &mut report.clamped,
    )?;
    model_stream::write_model(&mut model, output)?;
    Ok(report)
}

fn autocast_with(
    model: &mut ModelProto,
    options: &AutocastOptions,
    store: &mut dyn tensors::TensorStore,
) -> AutocastReport {
    let mut report = AutocastReport::default();
    let ir_version = model.ir_version();
    if let Some(graph) = model.graph.as_mut() {
        let mut names = scope::Names::of(graph);
        let plan = plan::plan(graph, options, &*store, &mut names);
        rewrite::rewrite(
            graph,
            &plan,
            ir_version,
            options,
            store,
            &mut names,
            &mut report,
        );
    }
    report
}
