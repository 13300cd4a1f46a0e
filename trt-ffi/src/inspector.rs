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
//!
//! The JSON is read by a small reader of our own: this crate has no JSON dependency, and the
//! inspector's output is simple.

use std::collections::BTreeMap;
use std::fmt;

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
    #[error("the engine inspector's output is not JSON: {reason} at byte {offset}")]
    Malformed {
        /// Byte offset of the problem.
        offset: usize,
        /// What was wrong there.
        reason: &'static str,
    },
    /// JSON without a list of layers.
    #[error("the engine inspector's output has no \"Layers\" list")]
    NoLayers,
}

impl LayerPrecisionReport {
    /// Counts the layers of the inspector JSON `json` by precision (see the type's rule).
    pub fn from_inspector_json(json: &str) -> Result<Self, InspectorJsonError> {
        let document = Parser::parse(json)?;
        let layers: Vec<&Json> = match &document {
            Json::Array(layers) => layers.iter().collect(),
            Json::Object(_) => match document.get("Layers") {
                Some(Json::Array(layers)) => layers.iter().collect(),
                // Some tools write layers keyed by name.
                Some(Json::Object(named)) => named.iter().map(|(_, layer)| layer).collect(),
                _ => return Err(InspectorJsonError::NoLayers),
            },
            _ => return Err(InspectorJsonError::NoLayers),
        };
        let mut report = LayerPrecisionReport::default();
        for layer in layers {
            if is_sync_marker(layer) {
                continue;
            }
            report.layers += 1;
            *report
                .by_precision
                .entry(layer_precision(layer).to_string())
                .or_default() += 1;
        }
        Ok(report)
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
        .is_some_and(|t| t.eq_ignore_ascii_case("signal") || t.eq_ignore_ascii_case("wait"))
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

const UNKNOWN: &str = "unknown";

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
fn precision_of_description(description: &str) -> &'static str {
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

/// A parsed JSON value; numbers are recognised but not kept (nothing here needs them).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number,
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The value of `key` in an object (the first, if repeated).
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Nesting deeper than this is refused rather than recursed into (the inspector nests 4 deep).
const MAX_DEPTH: usize = 128;

/// A strict-enough JSON reader: it accepts trailing commas and raw control characters inside
/// strings, which a lenient writer might produce, and refuses everything else that is not JSON.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

type Parsed<T> = Result<T, InspectorJsonError>;

impl<'a> Parser<'a> {
    fn parse(text: &'a str) -> Parsed<Json> {
        let mut parser = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        // A UTF-8 byte order mark is not JSON, but harmless.
        if text.starts_with('\u{feff}') {
            parser.pos = '\u{feff}'.len_utf8();
        }
        let value = parser.value()?;
        parser.whitespace();
        if parser.pos < text.len() {
            return Err(parser.error("unexpected text after the value"));
        }
        Ok(value)
    }

    fn error(&self, reason: &'static str) -> InspectorJsonError {
        InspectorJsonError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    /// The text from the current position (empty if that is not a character boundary, which
    /// the parser never leaves it at).
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Parsed<Json> {
        self.whitespace();
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn nested(&mut self, parse: fn(&mut Self) -> Parsed<Json>) -> Parsed<Json> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn literal(&mut self, word: &'static str, value: Json) -> Parsed<Json> {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("unexpected character"))
        }
    }

    fn number(&mut self) -> Parsed<Json> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        let digits = self.text.get(start..self.pos).unwrap_or_default();
        if digits.parse::<f64>().is_ok() {
            Ok(Json::Number)
        } else {
            self.pos = start;
            Err(self.error("malformed number"))
        }
    }

    /// A sequence `open item, item, ... close`, with an optional trailing comma.
    fn sequence(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Parsed<()>) -> Parsed<()> {
        self.pos += 1; // the opening bracket
        loop {
            self.whitespace();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(());
            }
            item(self)?;
            self.whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                Some(_) => return Err(self.error("expected `,` or a closing bracket")),
                None => return Err(self.error("unexpected end")),
            }
        }
    }

    fn array(&mut self) -> Parsed<Json> {
        let mut items = Vec::new();
        self.sequence(b']', |p| {
            items.push(p.value()?);
            Ok(())
        })?;
        Ok(Json::Array(items))
    }

    fn object(&mut self) -> Parsed<Json> {
        let mut fields = Vec::new();
        self.sequence(b'}', |p| {
            if p.peek() != Some(b'"') {
                return Err(p.error("expected a key"));
            }
            let key = p.string()?;
            p.whitespace();
            if p.peek() != Some(b':') {
                return Err(p.error("expected `:`"));
            }
            p.pos += 1;
            fields.push((key, p.value()?));
            Ok(())
        })?;
        Ok(Json::Object(fields))
    }

    fn string(&mut self) -> Parsed<String> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.pos;
            while !matches!(self.peek(), Some(b'"' | b'\\') | None) {
                self.pos += 1;
            }
            // `"` and `\` are ASCII, so both ends are character boundaries.
            out.push_str(self.text.get(start..self.pos).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.pos += 1; // the backslash
                    out.push(self.escape()?);
                }
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn escape(&mut self) -> Parsed<char> {
        let Some(c) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                if (0xD800..0xDC00).contains(&first) && self.rest().starts_with("\\u") {
                    let resume = self.pos;
                    self.pos += 2;
                    let second = self.hex4()?;
                    if (0xDC00..0xE000).contains(&second) {
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        return Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    // Not a pair: the second escape is read on its own.
                    self.pos = resume;
                }
                char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("unknown escape"));
            }
        })
    }

    fn hex4(&mut self) -> Parsed<u32> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("malformed \\u escape"))?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("malformed \\u escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> LayerPrecisionReport {
        LayerPrecisionReport::from_inspector_json(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    fn counts(report: &LayerPrecisionReport) -> Vec<(&str, u64)> {
        report
            .by_precision
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
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
            counts(&r),
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
        assert_eq!(counts(&r), [("unknown", 3)]);
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
        assert_eq!(counts(&r), [("unknown", 11)]);
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
            counts(&r),
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
        assert_eq!(counts(&list), [("fp16", 1)]);
        let keyed =
            report(r#"{"Layers": {"a": {"Outputs": [{"Format/Datatype": "Half"}]}, "b": "b"}}"#);
        assert_eq!(counts(&keyed), [("fp16", 1), ("unknown", 1)]);
        let empty = report(r#"{"Layers": []}"#);
        assert_eq!((empty.layers, empty.to_string()), (0, "no layers".into()));
    }

    #[test]
    fn unreadable_output_is_an_error_not_a_panic() {
        for (json, expected) in [
            ("", "unexpected end"),
            ("{\"Layers\": [", "unexpected end"),
            ("{\"Layers\": [1 2]}", "expected `,` or a closing bracket"),
            ("{\"Layers\": \"x\\q\"}", "unknown escape"),
            ("{\"Layers\": \"\\u12", "malformed \\u escape"),
            ("{\"Layers\": [-]}", "malformed number"),
            ("{Layers: []}", "expected a key"),
            ("{\"Layers\" []}", "expected `:`"),
            ("{\"Layers\": []} x", "unexpected text after the value"),
            ("{\"Layers\": [tru]}", "unexpected character"),
            ("{\"Layers\": \"é", "unterminated string"),
        ] {
            match LayerPrecisionReport::from_inspector_json(json) {
                Err(InspectorJsonError::Malformed { reason, .. }) => {
                    assert_eq!(reason, expected, "{json}")
                }
                other => panic!("{json}: {other:?}"),
            }
        }
        let deep = "[".repeat(100_000);
        assert!(matches!(
            LayerPrecisionReport::from_inspector_json(&deep),
            Err(InspectorJsonError::Malformed {
                reason: "nested too deeply",
                ..
            })
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

    #[test]
    fn strings_decode_escapes_and_tolerate_what_writers_emit() {
        let parsed = Parser::parse(
            "{\"a\": \"x\\u001ey\\n\\\"\\ud83d\\ude00\\u00e9\\/\", \"b\": \"raw\u{1}tab\there\", \"c\": [1, -2.5e3, true, false, null,],}",
        );
        let Ok(Json::Object(fields)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(fields[0].1, Json::String("x\u{1e}y\n\"😀é/".into()));
        assert_eq!(fields[1].1, Json::String("raw\u{1}tab\there".into()));
        assert_eq!(
            fields[2].1,
            Json::Array(vec![
                Json::Number,
                Json::Number,
                Json::Bool(true),
                Json::Bool(false),
                Json::Null
            ])
        );
        // A lone surrogate becomes U+FFFD; the escape after it is read on its own.
        assert_eq!(
            Parser::parse("\"\\ud800\\u0041\""),
            Ok(Json::String("\u{fffd}A".into()))
        );
        assert_eq!(Parser::parse("\u{feff}\"x\""), Ok(Json::String("x".into())));
    }
}
