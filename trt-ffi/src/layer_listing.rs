//! The layer listing TensorRT-RTX's builder prints while it builds: the same facts as the
//! engine inspector (layer names, types, tensors and their data types, tactics), available on
//! a machine without a GPU, where the inspector cannot deserialize the plan.
//!
//! With detailed profiling verbosity the builder logs one verbose message that starts with
//! `Layers:` and holds one line per layer, e.g.
//!
//! ```text
//! Name: node_of_c_myl0_1, LayerType: correlation, Inputs: [ { Name: x, …, Datatype: Half, … }],
//! Constants: [ … ], Outputs: [ { Name: y, Dimensions: [1,16,30,30], …, Datatype: Half, … }],
//! TacticName: __myelin_CASK_STUB, StreamId: 0, Metadata: [ONNX Layer: node_of_c]
//! ```
//!
//! then a blank line and the engine's I/O tensors. Names come from the user's model, so
//! nothing here trusts the text: a line that cannot be read counts as `unknown`, and no input
//! makes this panic.

use crate::inspector::{LayerPrecisionReport, UNKNOWN, is_stream_marker, precision_of_description};
use crate::observer::{LogMessage, Severity};

/// How the builder's layer listing begins.
const HEADER: &str = "Layers:";

/// The builder's layer listing among a build's log messages (the last one, should there be
/// several), or `None` when the builder printed none (verbosity below detailed, or a toolchain
/// that prints another format).
pub fn builder_layer_listing(log: &[LogMessage]) -> Option<&str> {
    log.iter()
        .rev()
        .find(|m| m.severity == Severity::Verbose && m.text.starts_with(HEADER))
        .map(|m| m.text.as_str())
}

impl LayerPrecisionReport {
    /// Counts the layers of a builder layer listing by precision, with the same rule as
    /// [`LayerPrecisionReport::from_inspector_json`]: a layer counts as the type of its first
    /// output that names one. Layers that output no tensor (stream markers, the shape calls of
    /// a dynamic-shape engine) are not counted. `None` when `listing` is no layer listing.
    pub fn from_layer_listing(listing: &str) -> Option<Self> {
        let body = listing.strip_prefix(HEADER)?;
        let mut report = LayerPrecisionReport::default();
        // The layers end at the first blank line; the I/O tensors follow.
        for line in body.lines().skip_while(|l| l.is_empty()) {
            if line.trim().is_empty() {
                break;
            }
            let Some(layer) = line.strip_prefix("Name: ") else {
                continue;
            };
            let layer_type = field(layer, ", LayerType: ").unwrap_or_default();
            if is_stream_marker(layer_type)
                || outputs(layer).is_some_and(|o| o.trim_end() == ", Outputs: [")
            {
                continue;
            }
            report.count(output_precision(layer));
        }
        Some(report)
    }
}

/// The text after `label` up to the next `, `.
fn field<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let rest = &line[line.find(label)? + label.len()..];
    Some(rest.split(", ").next().unwrap_or(rest))
}

/// The layer's `, Outputs: [ … ` text, without the closing bracket.
fn outputs(layer: &str) -> Option<&str> {
    // Outputs come after the layer type (the name, before it, is the user's text).
    let after_type = layer.find(", LayerType: ").map_or(layer, |at| &layer[at..]);
    let outputs = &after_type[after_type.find(", Outputs: [")?..];
    Some(
        outputs
            .find("], TacticName: ")
            .map_or(outputs, |end| &outputs[..end]),
    )
}

/// The precision of the first output tensor whose `Datatype` names one.
fn output_precision(layer: &str) -> &'static str {
    let Some(outputs) = outputs(layer) else {
        return UNKNOWN;
    };
    outputs
        .split("Datatype: ")
        .skip(1)
        .map(|rest| precision_of_description(rest.split([',', ' ', '}']).next().unwrap_or("")))
        .find(|p| *p != UNKNOWN)
        .unwrap_or(UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines shaped like TensorRT-RTX 1.7's listing for a Conv + Relu built from an fp16 model
    /// (tensor descriptions shortened).
    const FP16: &str = "Layers:
Name: __myl_ConcMove_myl0_0, LayerType: kgen, Inputs: [ { Name: x, Dimensions: [1,3,32,32], Datatype: Half, Format: (Linear) Row major linear format }], Constants: [ { Name: __mye65_myl0, Datatype: Half, Format: (Linear) Row major linear format }], Outputs: [ { Name: __mye50_2_myl0, Dimensions: [1,4,32,32], Datatype: Half, Format: (NHWC) Channel major format }], TacticName: __myl_ConcMove_0x15b9, StreamId: 0, Metadata: [ONNX Layer: node_of_c]
Name: node_of_c_myl0_1, LayerType: correlation, Inputs: [ { Name: __mye50_2_myl0, Datatype: Half, Format: (NHWC) Channel major format }], Constants: [ { Name: __mye106_const_myl0, Dimensions: [1], Datatype: Float, Format: (Linear) Row major linear format }], Outputs: [ { Name: c, Datatype: Half, Format: (NHWC) Channel major format }], TacticName: __myelin_CASK_STUB, StreamId: 0, Metadata: [ONNX Layer: node_of_c][ONNX Layer: node_of_y]
Name: __myl_Tran_myl0_2, LayerType: kgen, Inputs: [ { Name: c, Datatype: Half, Format: (NHWC) Channel major format }], Constants: [], Outputs: [ { Name: y, Dimensions: [1,16,30,30], Datatype: Float, Format: (Linear) Row major linear format }], TacticName: __myl_Tran_0xb4e6, StreamId: 0, Metadata: 

I/O Tensors:
 Name: x, IOMode: Input, DataType: Half, Dimensions: [1,3,32,32], Location: Device
 Name: y, IOMode: Output, DataType: Float, Dimensions: [1,16,30,30], Location: Device
";

    #[test]
    fn counts_each_layer_by_its_output_type_and_stops_at_the_io_tensors() {
        let report = LayerPrecisionReport::from_layer_listing(FP16).unwrap();
        assert_eq!(report.layers, 3);
        // The constant of the second layer is Float, its output Half: outputs decide.
        assert_eq!(report.counts(), [("fp16", 2), ("fp32", 1)]);
    }

    #[test]
    fn finds_the_listing_among_verbose_messages_only() {
        let message = |severity, text: &str| LogMessage {
            severity,
            text: text.to_string(),
        };
        let log = [
            message(Severity::Info, "Layers: (not the listing)"),
            message(Severity::Verbose, "Autotuning format combination"),
            message(Severity::Verbose, FP16),
            message(Severity::Warning, "done"),
        ];
        assert_eq!(builder_layer_listing(&log), Some(FP16));
        assert_eq!(builder_layer_listing(&log[..2]), None);
    }

    #[test]
    fn user_names_that_look_like_fields_do_not_decide_and_tensorless_layers_do_not_count() {
        let listing = "Layers:
Name: evil, Outputs: [ { Datatype: Int8 }], LayerType: kgen, Inputs: [], Outputs: [ { Name: o, Datatype: BFloat16, Format: x }], TacticName: t, StreamId: 0, Metadata: [ONNX Layer: Outputs: [ { Datatype: Half }]]
Name: sync, LayerType: signal, Inputs: [], Outputs: [], TacticName: , StreamId: 1, Metadata: 
Name: w, LayerType: wait, Inputs: [], Outputs: [], TacticName: , StreamId: 0, Metadata: 
Name: __mye543_0_myl0_0, LayerType: shape_call, Inputs: [], Constants: [], Outputs: [], TacticName: , StreamId: 0, Metadata: 
";
        let report = LayerPrecisionReport::from_layer_listing(listing).unwrap();
        assert_eq!(report.counts(), [("bf16", 1)]);
    }

    #[test]
    fn odd_text_counts_as_unknown_or_is_no_listing() {
        for odd in [
            "Layers:\nName: a",
            "Layers:\nName: a, LayerType: kgen",
            "Layers:\nName: a, LayerType: kgen, Outputs: [ { Name: y",
            "Layers:\nName: a, LayerType: kgen, Outputs: [ { Datatype: ",
            "Layers:\nName: a, LayerType: kgen, Outputs: [ { Datatype: Complex }]",
            "Layers:\nName: a, LayerType: kgen, Outputs: [ {}], TacticName: Datatype: Half",
        ] {
            let report = LayerPrecisionReport::from_layer_listing(odd).unwrap();
            assert_eq!(report.counts(), [("unknown", 1)], "{odd:?}");
        }
        let empty = LayerPrecisionReport::from_layer_listing("Layers:\n\nI/O Tensors:").unwrap();
        assert_eq!(empty.layers, 0);
        assert_eq!(
            LayerPrecisionReport::from_layer_listing("Engine Layer Information:"),
            None
        );
    }
}
