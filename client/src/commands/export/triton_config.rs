//! A Triton model's `config.pbtxt` for TensorRT plans: the platform, the inputs and outputs
//! (names, Triton data types, dimensions with -1 where the engine takes any size), the
//! optimization profiles an instance may use, and, for one plan per compute capability,
//! `cc_model_filenames`. Pure: the model's I/O and the manifest's settings in, text out.
//!
//! `max_batch_size: 0`: the engines' first dimension is the model's own (a dynamic batch is a
//! profile range), so Triton passes full shapes and does no batching of its own.

use std::collections::BTreeMap;

use manifest_schema::{Precision, Profile, Variant};
use onnx_graph::{DataType, Dim, ElementType, GraphInput};

/// One input or output as Triton declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// The tensor's name in the model (and the engine).
    pub name: String,
    /// `TYPE_FP32`, `TYPE_INT64`, ...
    pub data_type: &'static str,
    /// The shape, -1 where any size within the profiles is accepted.
    pub dims: Vec<i64>,
}

/// What `config.pbtxt` says about one Triton model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonConfig {
    /// The model's name (its directory in the repository).
    pub name: String,
    /// Graph inputs, in model order.
    pub inputs: Vec<Tensor>,
    /// Graph outputs, in model order.
    pub outputs: Vec<Tensor>,
    /// The optimization profiles, in order (their index is what Triton selects).
    pub profiles: Vec<String>,
    /// Compute capability (`8.9`) to plan file, when the model has one plan per capability;
    /// empty for a single `model.plan`.
    pub cc_model_filenames: BTreeMap<String, String>,
    /// Comment lines at the top (where the model came from).
    pub header: Vec<String>,
}

impl TritonConfig {
    /// The inputs and outputs of `variant`'s engine built from a model with these graph inputs
    /// and outputs: types as the engine sees them (an fp16/bf16 build converts float32 I/O
    /// unless `autocast.keep_fp32_io`), input dims fixed where the model or every profile fixes
    /// them.
    pub fn io(
        variant: &Variant,
        inputs: &[GraphInput],
        outputs: &[GraphInput],
    ) -> anyhow::Result<(Vec<Tensor>, Vec<Tensor>)> {
        let converts_io =
            variant.settings.precision.is_autocast() && !variant.settings.autocast.keep_fp32_io;
        let precision = variant.settings.precision;
        let tensor = |io: &GraphInput, dims: Vec<i64>| -> anyhow::Result<Tensor> {
            Ok(Tensor {
                name: io.name.clone(),
                data_type: data_type(io, precision, converts_io)?,
                dims,
            })
        };
        let inputs = inputs
            .iter()
            .map(|input| tensor(input, input_dims(input, &variant.profiles)?))
            .collect::<anyhow::Result<_>>()?;
        let outputs = outputs
            .iter()
            .map(|output| tensor(output, output_dims(output)?))
            .collect::<anyhow::Result<_>>()?;
        Ok((inputs, outputs))
    }

    /// The profile lines of `profiles`: `0 batch-1-to-32: images [1,3,64,64]..[32,3,64,64]`.
    pub fn describe_profiles(profiles: &[Profile]) -> Vec<String> {
        let shape = |dims: &[i64]| {
            let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
            format!("[{}]", dims.join(","))
        };
        profiles
            .iter()
            .enumerate()
            .map(|(index, profile)| {
                let ranges: Vec<String> = profile
                    .inputs
                    .iter()
                    .map(|(name, range)| {
                        format!("{name} {}..{}", shape(&range.min), shape(&range.max))
                    })
                    .collect();
                format!("{index} {}: {}", profile.name, ranges.join(", "))
            })
            .collect()
    }

    /// The `config.pbtxt` text (protobuf text format of Triton's `ModelConfig`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&format!("name: {}\n", quote(&self.name)));
        out.push_str("platform: \"tensorrt_plan\"\n");
        out.push_str("max_batch_size: 0\n");
        render_tensors(&mut out, "input", &self.inputs);
        render_tensors(&mut out, "output", &self.outputs);
        if self.profiles.len() > 1 {
            // Without `profile`, Triton uses only the first profile; every instance may use all.
            for line in &self.profiles {
                out.push_str(&format!("# profile {line}\n"));
            }
            let indices: Vec<String> = (0..self.profiles.len())
                .map(|i| quote(&i.to_string()))
                .collect();
            out.push_str(&format!(
                "instance_group [\n  {{\n    kind: KIND_GPU\n    profile: [ {} ]\n  }}\n]\n",
                indices.join(", ")
            ));
        } else if let Some(line) = self.profiles.first() {
            out.push_str(&format!("# profile {line}\n"));
        }
        for (cc, file) in &self.cc_model_filenames {
            out.push_str(&format!(
                "cc_model_filenames {{ key: {} value: {} }}\n",
                quote(cc),
                quote(file)
            ));
        }
        out
    }
}

fn render_tensors(out: &mut String, field: &str, tensors: &[Tensor]) {
    if tensors.is_empty() {
        return;
    }
    out.push_str(&format!("{field} [\n"));
    for (index, tensor) in tensors.iter().enumerate() {
        let dims: Vec<String> = tensor.dims.iter().map(i64::to_string).collect();
        out.push_str(&format!(
            "  {{\n    name: {}\n    data_type: {}\n    dims: [ {} ]\n  }}{}\n",
            quote(&tensor.name),
            tensor.data_type,
            dims.join(", "),
            if index + 1 < tensors.len() { "," } else { "" }
        ));
    }
    out.push_str("]\n");
}

/// A protobuf text-format string literal.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Triton data type of a graph input or output, as the engine sees it.
fn data_type(
    io: &GraphInput,
    precision: Precision,
    converts_io: bool,
) -> anyhow::Result<&'static str> {
    let ElementType::Known(element) = io.element_type else {
        anyhow::bail!(
            "`{}` has element type {}, which this trtfarm does not know",
            io.name,
            io.element_type
        );
    };
    let element = match (element, precision) {
        (DataType::Float, Precision::Fp16) if converts_io => DataType::Float16,
        (DataType::Float, Precision::Bf16) if converts_io => DataType::Bfloat16,
        (element, _) => element,
    };
    Ok(match element {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Float16 => "TYPE_FP16",
        DataType::Float => "TYPE_FP32",
        DataType::Double => "TYPE_FP64",
        DataType::String => "TYPE_STRING",
        DataType::Bfloat16 => "TYPE_BF16",
        other => anyhow::bail!(
            "`{}` is {}, which Triton's model configuration has no data type for",
            io.name,
            other.as_str_name()
        ),
    })
}

/// An input's dims: the model's fixed sizes, and for the others the size every profile fixes
/// (min = max, the same in each), else -1.
fn input_dims(input: &GraphInput, profiles: &[Profile]) -> anyhow::Result<Vec<i64>> {
    let ranges: Vec<_> = profiles
        .iter()
        .filter_map(|p| p.inputs.get(&input.name))
        .collect();
    let rank = match (&input.dims, ranges.first()) {
        (Some(dims), _) => dims.len(),
        (None, Some(range)) => range.min.len(),
        (None, None) => anyhow::bail!(
            "input `{}` declares no shape and no profile gives one; Triton needs its rank",
            input.name
        ),
    };
    let fixed_by_profiles = |axis: usize| {
        let first = ranges.first()?.min.get(axis).copied()?;
        let fixed = ranges
            .iter()
            .all(|r| r.min.get(axis) == Some(&first) && r.max.get(axis) == Some(&first));
        fixed.then_some(first)
    };
    Ok((0..rank)
        .map(|axis| match input.dims.as_ref().map(|d| &d[axis]) {
            Some(Dim::Fixed(size)) => *size as i64,
            _ => fixed_by_profiles(axis).unwrap_or(-1),
        })
        .collect())
}

/// An output's dims: fixed sizes as the model declares them, -1 for the rest.
fn output_dims(output: &GraphInput) -> anyhow::Result<Vec<i64>> {
    let Some(dims) = &output.dims else {
        anyhow::bail!(
            "output `{}` declares no shape; Triton needs its rank (give the output a shape in \
             the model)",
            output.name
        );
    };
    Ok(dims
        .iter()
        .map(|dim| match dim {
            Dim::Fixed(size) => *size as i64,
            _ => -1,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_graph::InputKind;
    use std::path::Path;

    fn io(name: &str, element: DataType, dims: Option<Vec<Dim>>) -> GraphInput {
        GraphInput {
            name: name.into(),
            kind: InputKind::Tensor,
            element_type: ElementType::Known(element),
            dims,
        }
    }

    fn variant(extra: &str) -> Variant {
        let text = format!(
            "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n\
             compatibility.compute_capabilities = [\"8.9\"]\n{extra}\n[[engine]]\nname = \"e\"\n"
        );
        let manifest = manifest_schema::parse(&text, Path::new("engine.toml")).unwrap();
        manifest.variant("e").unwrap().clone()
    }

    const TWO_PROFILES: &str = "[[profile]]\nname = \"small\"\n\
        inputs.image = { min = [1, 3, 64, 64], opt = [1, 3, 64, 64], max = [1, 3, 512, 512] }\n\
        [[profile]]\nname = \"large\"\n\
        inputs.image = { min = [1, 3, 512, 512], opt = [1, 3, 720, 1280], max = [1, 3, 1088, 1920] }\n";

    #[test]
    fn dims_are_fixed_where_the_model_or_every_profile_fixes_them() {
        let v = variant(TWO_PROFILES);
        let image = io(
            "image",
            DataType::Float,
            Some(vec![
                Dim::symbolic("n"),
                3u64.into(),
                "h".into(),
                "w".into(),
            ]),
        );
        let mask = io(
            "mask",
            DataType::Float,
            Some(vec![1u64.into(), 4u64.into(), "h".into(), Dim::Unknown]),
        );
        let (inputs, outputs) = TritonConfig::io(&v, &[image], &[mask]).unwrap();
        assert_eq!(
            inputs[0].dims,
            vec![1, 3, -1, -1],
            "n is 1 in both profiles"
        );
        assert_eq!(inputs[0].data_type, "TYPE_FP32");
        assert_eq!(outputs[0].dims, vec![1, 4, -1, -1]);
        // A rank the model leaves out comes from the profile.
        let shapeless = io("image", DataType::Int64, None);
        let (inputs, _) = TritonConfig::io(&v, &[shapeless], &[]).unwrap();
        assert_eq!(inputs[0].dims, vec![1, 3, -1, -1]);
        assert_eq!(inputs[0].data_type, "TYPE_INT64");
        let error = TritonConfig::io(&v, &[], &[io("o", DataType::Float, None)]).unwrap_err();
        assert!(
            error.to_string().contains("`o` declares no shape"),
            "{error}"
        );
    }

    #[test]
    fn fp16_and_bf16_engines_take_converted_io_unless_kept_fp32() {
        let x = io("x", DataType::Float, Some(vec![1u64.into()]));
        let ids = io("ids", DataType::Int64, Some(vec![1u64.into()]));
        let types = |extra: &str| {
            let (inputs, _) =
                TritonConfig::io(&variant(extra), &[x.clone(), ids.clone()], &[]).unwrap();
            (inputs[0].data_type, inputs[1].data_type)
        };
        assert_eq!(types("precision = \"fp16\""), ("TYPE_FP16", "TYPE_INT64"));
        assert_eq!(types("precision = \"bf16\""), ("TYPE_BF16", "TYPE_INT64"));
        assert_eq!(
            types("precision = \"fp16\"\nautocast.keep_fp32_io = true"),
            ("TYPE_FP32", "TYPE_INT64")
        );
        let complex = io("c", DataType::Complex64, Some(vec![1u64.into()]));
        let error = TritonConfig::io(&variant(""), &[complex], &[]).unwrap_err();
        assert!(error.to_string().contains("no data type"), "{error}");
    }

    #[test]
    fn renders_every_field_with_profiles_and_per_capability_plans() {
        let v = variant(TWO_PROFILES);
        let config = TritonConfig {
            name: "seg \"x\"".into(),
            inputs: vec![Tensor {
                name: "image".into(),
                data_type: "TYPE_FP32",
                dims: vec![1, 3, -1, -1],
            }],
            outputs: vec![Tensor {
                name: "mask".into(),
                data_type: "TYPE_FP16",
                dims: vec![1, 4, -1, -1],
            }],
            profiles: TritonConfig::describe_profiles(&v.profiles),
            cc_model_filenames: [("8.9".to_string(), "model.sm89.plan".to_string())].into(),
            header: vec!["from engine.toml".into()],
        };
        assert_eq!(
            config.render(),
            "# from engine.toml\n\
             name: \"seg \\\"x\\\"\"\n\
             platform: \"tensorrt_plan\"\n\
             max_batch_size: 0\n\
             input [\n  {\n    name: \"image\"\n    data_type: TYPE_FP32\n    dims: [ 1, 3, -1, -1 ]\n  }\n]\n\
             output [\n  {\n    name: \"mask\"\n    data_type: TYPE_FP16\n    dims: [ 1, 4, -1, -1 ]\n  }\n]\n\
             # profile 0 small: image [1,3,64,64]..[1,3,512,512]\n\
             # profile 1 large: image [1,3,512,512]..[1,3,1088,1920]\n\
             instance_group [\n  {\n    kind: KIND_GPU\n    profile: [ \"0\", \"1\" ]\n  }\n]\n\
             cc_model_filenames { key: \"8.9\" value: \"model.sm89.plan\" }\n"
        );
    }
}
