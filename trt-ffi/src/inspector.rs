//! What the engine inspector says about a built engine: how many layers compute in each
//! precision, read from the JSON that `BuildConfig::layer_info` asks for
//! ([`crate::BuildOutput::layer_info_json`]).
//!
//! The inspector's JSON (`IEngineInspector::getEngineInformation(kJSON)`) is an object with a
//! `"Layers"` array. With detailed profiling verbosity every layer is an object with `"Name"`,
//! `"LayerType"`, and `"Inputs"`/`"Outputs"` arrays of tensors, each describing its type in
//! `"Format/Datatype"` (`"Row major linear FP16 format"`, `"Channel major FP32 format where
//! channel % 4 == 0"`, or for generated kernels just `"Half"`, `"Float"`, ...). At lower
//! verbosity a layer is only its name, a string. Nothing else about the shape is relied on:
//! whatever cannot be read counts as `"unknown"`, and no input makes this panic.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

/// How many layers of an engine compute in each precision.
///
/// A layer counts as the data type of its first output tensor whose description names one
/// (outputs are what a layer computes; its inputs may be another type, e.g. a reformat from
/// fp32 to fp16 counts as fp16). Names are `fp32`, `fp16`, `bf16`, `fp8`, `fp4`, `int8`, `int4`,
/// `uint8`, `int32`, `int64`, `bool`; a layer without a recognisable output type (no outputs,
/// a names-only layer, a type not listed) is `unknown`. Synchronisation markers between
/// streams (layer types `signal` and `wait`) compute nothing and are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerPrecisionReport {
    /// Layers counted.
    pub layers: u64,
    /// Layers per precision name; the counts add up to `layers`.
    pub by_precision: BTreeMap<String, u64>,
}

/// Why the inspector's output could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectorJsonError {
    /// Not JSON.
    #[error("the engine inspector's output is not JSON: {reason} (line {line}, column {column})")]
    Malformed {
        /// Line of the problem, from 1.
        line: usize,
        /// Column of the problem, from 1.
        column: usize,
        /// What was wrong there.
        reason: String,
    },
    /// JSON without a list of layers.
    #[error("the engine inspector's output has no \"Layers\" list")]
    NoLayers,
}

impl LayerPrecisionReport {
    /// Counts the layers of the inspector JSON `json` by precision (see the type's rule).
    pub fn from_inspector_json(json: &str) -> Result<Self, InspectorJsonError> {
        let document: Json =
            serde_json::from_str(json).map_err(|e| InspectorJsonError::Malformed {
                line: e.line(),
                column: e.column(),
                reason: e.to_string(),
            })?;
        let layers: Vec<&Json> = match &document {
            Json::Array(layers) => layers.iter().collect(),
            Json::Object(_) => match document.get("Layers") {
                Some(Json::Array(layers)) => layers.iter().collect(),
                // Some tools write layers keyed by name.
                Some(Json::Object(named)) => named.values().collect(),
                _ => return Err(InspectorJsonError::NoLayers),
            },
            _ => return Err(InspectorJsonError::NoLayers),
        };
        let mut report = LayerPrecisionReport::default();
        for layer in layers {
            if is_sync_marker(layer) {
                continue;
            }
            report.count(layer_precision(layer));
        }
        Ok(report)
    }

    /// The counts as `(precision, layers)` pairs in name order, for assertions.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> Vec<(&str, u64)> {
        self.by_precision
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }

    /// Counts one more layer, computing in `precision`.
    pub(crate) fn count(&mut self, precision: &str) {
        self.layers += 1;
        *self.by_precision.entry(precision.to_string()).or_default() += 1;
    }
}

/// `fp16 40, fp32 3`: most frequent first (ties by name); `no layers` when empty.
impl fmt::Display for LayerPrecisionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts: Vec<(&String, &u64)> = self.by_precision.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if counts.is_empty() {
            return f.write_str("no layers");
        }
        for (i, (precision, count)) in counts.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{precision} {count}")?;
        }
        Ok(())
    }
}

fn is_sync_marker(layer: &Json) -> bool {
    layer
        .get("LayerType")
        .and_then(Json::as_str)
        .is_some_and(is_stream_marker)
}

/// Whether a layer of this type only synchronises streams (computes nothing).
pub(crate) fn is_stream_marker(layer_type: &str) -> bool {
    layer_type.eq_ignore_ascii_case("signal") || layer_type.eq_ignore_ascii_case("wait")
}

/// The precision of one layer entry: its first output that names a type.
fn layer_precision(layer: &Json) -> &'static str {
    let Some(Json::Array(outputs)) = layer.get("Outputs") else {
        return UNKNOWN;
    };
    outputs
        .iter()
        .filter_map(tensor_type_description)
        .map(precision_of_description)
        .find(|p| *p != UNKNOWN)
        .unwrap_or(UNKNOWN)
}

pub(crate) const UNKNOWN: &str = "unknown";

/// Keys a tensor's type description has been seen under, in order of preference (compared
/// ignoring ASCII case).
const TYPE_KEYS: [&str; 4] = ["Format/Datatype", "Datatype", "Data type", "Format"];

fn tensor_type_description(tensor: &Json) -> Option<&str> {
    let Json::Object(fields) = tensor else {
        return None;
    };
    TYPE_KEYS.iter().find_map(|wanted| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(wanted))
            .and_then(|(_, value)| value.as_str())
    })
}

/// The precision a tensor description names: its first word that is a known type name.
pub(crate) fn precision_of_description(description: &str) -> &'static str {
    description
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find_map(|word| {
            let word = word.to_ascii_lowercase();
            Some(match word.as_str() {
                "fp32" | "float" | "float32" => "fp32",
                "fp16" | "half" | "float16" => "fp16",
                "bf16" | "bfloat16" => "bf16",
                "int8" => "int8",
                "uint8" => "uint8",
                "int4" => "int4",
                "int32" => "int32",
                "int64" => "int64",
                "bool" => "bool",
                // FP8 and FP4 are sometimes written with their layout, e.g. `FP8E4M3`.
                w if w.starts_with("fp8") || w == "float8" => "fp8",
                w if w.starts_with("fp4") || w == "float4" => "fp4",
                _ => return None,
            })
        })
        .unwrap_or(UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> LayerPrecisionReport {
        LayerPrecisionReport::from_inspector_json(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    /// Shaped like TensorRT's detailed output: a reformat, fused convolutions, generated
    /// kernels, a shape layer, a stream marker.
    const DETAILED: &str = r#"{"Layers": [
      {"Name": "Reformatting CopyNode for Input Tensor 0 to conv1", "LayerType": "Reformat",
       "Inputs": [{"Name": "pixels", "Location": "Device", "Dimensions": [1,3,128,128],
                   "Format/Datatype": "Row major linear FP32"}],
       "Outputs": [{"Name": "pixels/fp16", "Location": "Device", "Dimensions": [1,3,128,128],
                    "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
       "TacticValue": "0x0000000000000000"},
      {"Name": "conv1 + relu1", "LayerType": "CaskConvolution",
       "Inputs": [{"Name": "pixels/fp16", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
       "Outputs": [{"Name": "x", "Dimensions": [1,16,64,64], "Format/Datatype": "Row major linear FP16 format"}],
       "ParameterType": "Convolution", "Kernel": [3,3], "Metadata": "[ONNX Layer: /conv1/Conv]\u001e[ONNX Layer: /relu1/Relu]"},
      {"Name": "__myl_SoftmaxSum", "LayerType": "kgen",
       "Inputs": [{"Name": "x", "Format/Datatype": "Half"}],
       "Outputs": [{"Name": "probs", "Format/Datatype": "Float"}]},
      {"Name": "q", "LayerType": "Scale",
       "Outputs": [{"Name": "q", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}]},
      {"Name": "shape", "LayerType": "Shape", "Outputs": [{"Name": "s", "Format/Datatype": "Row major linear Int32"}]},
      {"Name": "bf", "LayerType": "kgen", "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear BFloat16 format"}]},
      {"Name": "sync", "LayerType": "signal"},
      {"Name": "sync2", "LayerType": "wait", "Outputs": []}
    ], "Bindings": ["pixels", "probs"]}"#;

    #[test]
    fn counts_layers_by_their_output_type() {
        let r = report(DETAILED);
        assert_eq!(r.layers, 6);
        assert_eq!(
            r.counts(),
            [
                ("bf16", 1),
                ("fp16", 2),
                ("fp32", 1),
                ("int32", 1),
                ("int8", 1)
            ]
        );
        assert_eq!(r.to_string(), "fp16 2, bf16 1, fp32 1, int32 1, int8 1");
    }

    #[test]
    fn names_only_output_counts_every_layer_as_unknown() {
        let r = report(r#"{"Layers": ["conv1 + relu1", "fc", "softmax"], "Bindings": ["x", "y"]}"#);
        assert_eq!(r.layers, 3);
        assert_eq!(r.counts(), [("unknown", 3)]);
        assert_eq!(r.to_string(), "unknown 3");
    }

    #[test]
    fn odd_shapes_count_as_unknown_and_never_fail() {
        let r = report(
            r#"{"Layers": [
              {"Name": "no outputs"},
              {"Name": "outputs not a list", "Outputs": "x"},
              {"Name": "output names only", "Outputs": ["x"]},
              {"Name": "no type", "Outputs": [{"Name": "x", "Dimensions": [1]}]},
              {"Name": "type not a string", "Outputs": [{"Format/Datatype": 16}]},
              {"Name": "unreadable type", "Outputs": [{"Format/Datatype": "Unknown format"}]},
              {"Name": "double", "Outputs": [{"Format/Datatype": "Double"}]},
              42, null, [], {}
            ]}"#,
        );
        assert_eq!(r.layers, 11);
        assert_eq!(r.counts(), [("unknown", 11)]);
    }

    #[test]
    fn the_first_output_with_a_known_type_decides() {
        let r = report(
            r#"{"Layers": [
              {"Outputs": [{"Name": "shape only"}, {"Format/Datatype": "Half"}, {"Format/Datatype": "Float"}]},
              {"Outputs": [{"DataType": "FP8"}]},
              {"Outputs": [{"Datatype": "Row major linear FP4 format"}]},
              {"Outputs": [{"Format": "Row major linear BOOL"}]},
              {"Outputs": [{"Format/Datatype": "Row major linear Int64 format"}, {"Format/Datatype": "Float"}]}
            ]}"#,
        );
        assert_eq!(
            r.counts(),
            [
                ("bool", 1),
                ("fp16", 1),
                ("fp4", 1),
                ("fp8", 1),
                ("int64", 1)
            ]
        );
    }

    #[test]
    fn type_descriptions_map_to_precisions() {
        for (description, precision) in [
            ("Row major linear FP16 format", "fp16"),
            ("Row major linear FP32", "fp32"),
            ("Channel major FP32 format where channel % 4 == 0", "fp32"),
            (
                "Two wide channel vectorized row major BFloat16 format",
                "bf16",
            ),
            (
                "Row major INT8 format where column stride % 64 == 0",
                "int8",
            ),
            ("Row major linear UInt8 format", "uint8"),
            ("Row major linear FP8 format", "fp8"),
            ("FP8E4M3", "fp8"),
            ("Int4", "int4"),
            ("Int32", "int32"),
            ("Bool", "bool"),
            ("Unknown format", "unknown"),
            ("FloatComplex", "unknown"),
            ("", "unknown"),
        ] {
            assert_eq!(
                precision_of_description(description),
                precision,
                "{description}"
            );
        }
    }

    #[test]
    fn layers_may_be_a_top_level_list_or_keyed_by_name() {
        let list = report(r#"[{"Outputs": [{"Format/Datatype": "Half"}]}]"#);
        assert_eq!(list.counts(), [("fp16", 1)]);
        let keyed =
            report(r#"{"Layers": {"a": {"Outputs": [{"Format/Datatype": "Half"}]}, "b": "b"}}"#);
        assert_eq!(keyed.counts(), [("fp16", 1), ("unknown", 1)]);
        let empty = report(r#"{"Layers": []}"#);
        assert_eq!((empty.layers, empty.to_string()), (0, "no layers".into()));
    }

    #[test]
    fn unreadable_output_is_an_error_not_a_panic() {
        assert!(matches!(
            LayerPrecisionReport::from_inspector_json("{\"Layers\": [tru]}"),
            Err(InspectorJsonError::Malformed { line: 1, .. })
        ));
        for no_layers in [
            "{}",
            "{\"Bindings\": []}",
            "{\"Layers\": 3}",
            "\"Layers\"",
            "7",
        ] {
            assert_eq!(
                LayerPrecisionReport::from_inspector_json(no_layers),
                Err(InspectorJsonError::NoLayers),
                "{no_layers}"
            );
        }
    }
}
