//! Invalid manifests: each case asserts where the error is reported and what it says.

use std::path::Path;

use manifest_schema::{Diagnostic, parse};

/// Three lines every case starts with, so case text begins on line 4.
macro_rules! head {
    () => {
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n"
    };
}

/// `[defaults]` with a TensorRT-RTX toolchain and compute capabilities, lines 4–6.
macro_rules! rtx {
    () => {
        concat!(
            head!(),
            "[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.6\"]\n"
        )
    };
}

/// `[defaults]` with a TensorRT Enterprise toolchain, lines 4–5.
macro_rules! trt {
    () => {
        concat!(head!(), "[defaults]\ntoolchain = \"tensorrt 10.8\"\n")
    };
}

struct Case {
    name: &'static str,
    toml: &'static str,
    line: usize,
    column: usize,
    message: &'static str,
    hint: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key in defaults",
        toml: concat!(trt!(), "precison = \"fp16\"\n"),
        line: 6,
        column: 1,
        message: "unknown key `precison`",
        hint: Some("did you mean `precision`?"),
    },
    Case {
        name: "unknown precision",
        toml: concat!(trt!(), "precision = \"fp61\"\n"),
        line: 6,
        column: 13,
        message: "unknown precision `fp61`",
        hint: Some("did you mean `fp16`? valid values: `fp32`, `tf32`, `fp16`"),
    },
    Case {
        name: "unknown key in engine",
        toml: concat!(trt!(), "[[engine]]\nname = \"a\"\noptimisation_level = 2\n"),
        line: 8,
        column: 1,
        message: "unknown key `optimisation_level`",
        hint: Some("did you mean `optimization_level`?"),
    },
    Case {
        name: "unknown top-level key",
        toml: concat!(trt!(), "[[engines]]\nname = \"a\"\n"),
        line: 6,
        column: 3,
        message: "unknown key `engines`",
        hint: Some("did you mean `engine`?"),
    },
    Case {
        name: "unknown key in model",
        toml: "schema_version = 1\n[model]\npath = \"m.onnx\"\ndigets = \"x\"\n",
        line: 4,
        column: 1,
        message: "unknown key `digets`",
        hint: Some("did you mean `digest`?"),
    },
    Case {
        name: "unknown key in shape range",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.x = { min = [1], otp = [1], max = [1] }\n"
        ),
        line: 7,
        column: 25,
        message: "unknown key `otp`",
        hint: Some("did you mean `opt`?"),
    },
    Case {
        name: "unknown tactic source",
        toml: concat!(trt!(), "tactic_sources = [\"cudnn\", \"cublas_lt\"]\n"),
        line: 6,
        column: 28,
        message: "unknown tactic source `cublas_lt`",
        hint: Some("did you mean `cublas-lt`?"),
    },
    Case {
        name: "missing min",
        toml: concat!(trt!(), "[[profile]]\ninputs.x = { opt = [1], max = [1] }\n"),
        line: 7,
        column: 12,
        message: "missing required key `min`",
        hint: Some("add `min = ...`"),
    },
    Case {
        name: "syntax error",
        toml: concat!(trt!(), "precision = \n"),
        line: 6,
        column: 13,
        message: "",
        hint: None,
    },
    Case {
        name: "duplicate key",
        toml: concat!(trt!(), "toolchain = \"tensorrt 10.9\"\n"),
        line: 6,
        column: 1,
        message: "duplicate key `toolchain`",
        hint: None,
    },
    Case {
        name: "wrong type",
        toml: concat!(trt!(), "optimization_level = \"3\"\n"),
        line: 6,
        column: 22,
        message: "invalid type: string \"3\"",
        hint: None,
    },
    Case {
        name: "missing schema_version",
        toml: "[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 1,
        column: 1,
        message: "missing `schema_version`",
        hint: Some("schema_version = 1"),
    },
    Case {
        name: "unsupported schema_version",
        toml: "schema_version = 2\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 1,
        column: 18,
        message: "unsupported schema_version 2",
        hint: Some("newer trtfarm"),
    },
    Case {
        name: "empty model path",
        toml: "schema_version = 1\n[model]\npath = \"\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 3,
        column: 8,
        message: "`model.path` is empty",
        hint: Some("relative to the manifest"),
    },
    Case {
        name: "absolute model path",
        toml: "schema_version = 1\n[model]\npath = \"/models/m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 3,
        column: 8,
        message: "`model.path` is an absolute path",
        hint: Some("relative to the manifest"),
    },
    Case {
        name: "bad digest",
        toml: "schema_version = 1\n[model]\npath = \"m.onnx\"\ndigest = \"sha256:abc\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 4,
        column: 10,
        message: "`sha256:abc` is not a content digest: it does not start with `blake3:`",
        hint: Some("b3sum"),
    },
    Case {
        name: "upper-case digest",
        toml: "schema_version = 1\n[model]\npath = \"m.onnx\"\ndigest = \"blake3:AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 4,
        column: 10,
        message: "digests are written in lower case",
        hint: Some("lower-case hex digits"),
    },
    Case {
        name: "absolute plugin path",
        toml: "schema_version = 1\n[model]\npath = \"m.onnx\"\nplugins = [\"a.so\", \"C:/x.so\"]\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 4,
        column: 20,
        message: "`plugins` is an absolute path",
        hint: None,
    },
    Case {
        name: "unknown flavour",
        toml: concat!(head!(), "[defaults]\ntoolchain = \"tensorrt_rtx 1.7\"\n"),
        line: 5,
        column: 13,
        message: "unknown toolchain flavour `tensorrt_rtx`",
        hint: Some("did you mean `tensorrt-rtx`?"),
    },
    Case {
        name: "bad version requirement",
        toml: concat!(head!(), "[defaults]\ntoolchain = \"tensorrt >=10..8\"\n"),
        line: 5,
        column: 13,
        message: "bad version requirement `>=10..8`",
        hint: Some(">=10.8, <11"),
    },
    Case {
        name: "toolchain without version",
        toml: concat!(head!(), "[defaults]\ntoolchain = \"tensorrt\"\n"),
        line: 5,
        column: 13,
        message: "has no version requirement",
        hint: Some("tensorrt-rtx 1.7"),
    },
    Case {
        name: "engine without toolchain",
        toml: concat!(head!(), "[[engine]]\nname = \"fp16\"\n"),
        line: 5,
        column: 8,
        message: "engine `fp16` has no toolchain",
        hint: Some("set `toolchain` in [defaults]"),
    },
    Case {
        name: "implicit variant without toolchain",
        toml: concat!(head!(), "[defaults]\nprecision = \"fp16\"\n"),
        line: 4,
        column: 1,
        message: "engine `default` has no toolchain",
        hint: Some("toolchain = "),
    },
    Case {
        name: "optimization level too high",
        toml: concat!(trt!(), "optimization_level = 7\n"),
        line: 6,
        column: 22,
        message: "`optimization_level` is 7, outside 0–5",
        hint: Some("0–5"),
    },
    Case {
        name: "mps percentage zero",
        toml: concat!(trt!(), "mps_percentage = 0\n"),
        line: 6,
        column: 18,
        message: "`mps_percentage` is 0, outside 1–100",
        hint: None,
    },
    Case {
        name: "timing iterations zero",
        toml: concat!(trt!(), "avg_timing_iterations = 0\n"),
        line: 6,
        column: 25,
        message: "`avg_timing_iterations` is 0, outside 1–1000",
        hint: None,
    },
    Case {
        name: "too many aux streams",
        toml: concat!(trt!(), "[[engine]]\nname = \"a\"\nmax_aux_streams = 65\n"),
        line: 8,
        column: 19,
        message: "`max_aux_streams` is 65, outside 0–64",
        hint: None,
    },
    Case {
        name: "unparseable size",
        toml: concat!(trt!(), "memory_pools.workspace = \"2 parsecs\"\n"),
        line: 6,
        column: 26,
        message: "unknown size unit `parsecs`",
        hint: Some("GiB"),
    },
    Case {
        name: "zero size",
        toml: concat!(trt!(), "[defaults.memory_pools]\ntactic_dram = 0\n"),
        line: 7,
        column: 15,
        message: "`memory_pools.tactic_dram` is 0",
        hint: Some("positive"),
    },
    Case {
        name: "unparseable timeout",
        toml: concat!(trt!(), "build_timeout = \"soon\"\n"),
        line: 6,
        column: 17,
        message: "`build_timeout` `soon` is not a duration",
        hint: Some("\"20m\""),
    },
    Case {
        name: "zero timeout",
        toml: concat!(trt!(), "build_timeout = \"0s\"\n"),
        line: 6,
        column: 17,
        message: "`build_timeout` is zero",
        hint: None,
    },
    Case {
        name: "bad compute capability",
        toml: concat!(
            head!(),
            "[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.6\", \"89\"]\n"
        ),
        line: 6,
        column: 46,
        message: "`89` is not a compute capability",
        hint: Some("\"major.minor\""),
    },
    Case {
        name: "rtx without compute capabilities",
        toml: concat!(head!(), "[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n"),
        line: 5,
        column: 13,
        message: "needs `compatibility.compute_capabilities`",
        hint: Some("ahead of time"),
    },
    Case {
        name: "rtx with empty compute capabilities",
        toml: concat!(
            head!(),
            "[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = []\n"
        ),
        line: 6,
        column: 38,
        message: "`compute_capabilities` is empty",
        hint: None,
    },
    Case {
        name: "enterprise with compute capabilities",
        toml: concat!(
            trt!(),
            "[[engine]]\nname = \"a\"\ncompatibility = { compute_capabilities = [\"8.6\"] }\n"
        ),
        line: 8,
        column: 42,
        message: "`compute_capabilities` does not apply to TensorRT Enterprise",
        hint: Some("builds for the GPU it runs on"),
    },
    Case {
        name: "rtx with hardware compatibility",
        toml: concat!(rtx!(), "compatibility.hardware = \"ampere+\"\n"),
        line: 7,
        column: 26,
        message: "hardware compatibility `ampere+` is not supported by TensorRT-RTX",
        hint: Some("hardware = \"none\""),
    },
    Case {
        name: "rtx with version compatibility",
        toml: concat!(rtx!(), "compatibility.version_compatible = true\n"),
        line: 7,
        column: 36,
        message: "`version_compatible` is not supported by TensorRT-RTX",
        hint: None,
    },
    Case {
        name: "lean runtime without version compatibility",
        toml: concat!(trt!(), "compatibility.exclude_lean_runtime = true\n"),
        line: 6,
        column: 38,
        message: "`exclude_lean_runtime` needs `version_compatible = true`",
        hint: None,
    },
    Case {
        name: "rtx with timing cache",
        toml: concat!(rtx!(), "[defaults.timing_cache]\npolicy = \"record\"\n"),
        line: 8,
        column: 10,
        message: "timing cache policy `record` has no effect with TensorRT-RTX",
        hint: Some("policy = \"off\""),
    },
    Case {
        name: "locked cache at level 0",
        toml: concat!(
            trt!(),
            "optimization_level = 0\ntiming_cache.policy = \"locked\"\n"
        ),
        line: 7,
        column: 23,
        message: "`locked` cannot be used with `optimization_level = 0`",
        hint: Some("ignores the timing cache"),
    },
    Case {
        name: "rtx with mps percentage",
        toml: concat!(rtx!(), "[[engine]]\nname = \"a\"\nmps_percentage = 50\n"),
        line: 9,
        column: 18,
        message: "`mps_percentage` does not apply to TensorRT-RTX",
        hint: Some("does not time tactics"),
    },
    Case {
        name: "rtx with timing iterations",
        toml: concat!(rtx!(), "avg_timing_iterations = 4\n"),
        line: 7,
        column: 25,
        message: "`avg_timing_iterations` does not apply to TensorRT-RTX",
        hint: None,
    },
    Case {
        name: "strip without refit",
        toml: concat!(trt!(), "weights = { strip = true }\n"),
        line: 6,
        column: 21,
        message: "`strip = true` needs refittable weights",
        hint: Some("weights.refit"),
    },
    Case {
        name: "defaults autocast used by no engine",
        toml: concat!(rtx!(), "autocast.keep_fp32 = [\"Sigmoid\"]\n"),
        line: 7,
        column: 22,
        message: "`[defaults.autocast]` applies to no engine: none has precision `fp16` or `bf16`",
        hint: Some("only configure the fp16/bf16 model conversion"),
    },
    Case {
        name: "autocast on a quantized engine",
        toml: concat!(
            rtx!(),
            "precision = \"fp16\"\n[[engine]]\nname = \"a\"\nprecision = \"int8\"\nautocast = { keep_fp32_io = true }\n"
        ),
        line: 11,
        column: 29,
        message: "`autocast` does not apply to precision `int8`",
        hint: Some("engine `a` has precision `int8`, which builds from the model's Q/DQ nodes"),
    },
    Case {
        name: "autocast on an fp32 engine",
        toml: concat!(
            rtx!(),
            "[[engine]]\nname = \"a\"\n[engine.autocast]\nconvert = [\"Softmax\"]\n"
        ),
        line: 10,
        column: 11,
        message: "`autocast` does not apply to precision `fp32`",
        hint: Some("which builds the model as it is"),
    },
    Case {
        name: "empty operator type",
        toml: concat!(
            rtx!(),
            "precision = \"fp16\"\nautocast.keep_fp32 = [\"Sigmoid\", \"\"]\n"
        ),
        line: 8,
        column: 34,
        message: "`autocast.keep_fp32` has an empty operator type",
        hint: Some("\"Softmax\""),
    },
    Case {
        name: "operator type with a domain",
        toml: concat!(
            rtx!(),
            "precision = \"bf16\"\n[defaults.autocast]\nconvert = [\"com.microsoft.Gelu\"]\n"
        ),
        line: 9,
        column: 12,
        message: "`com.microsoft.Gelu` is not an ONNX operator type",
        hint: Some("without its domain"),
    },
    Case {
        name: "operator type with a space",
        toml: concat!(
            rtx!(),
            "precision = \"fp16\"\nautocast.keep_fp32 = [\"Layer Normalization\"]\n"
        ),
        line: 8,
        column: 23,
        message: "`Layer Normalization` is not an ONNX operator type",
        hint: Some("identifiers such as \"Softmax\""),
    },
    Case {
        name: "operator both kept and converted",
        toml: concat!(
            rtx!(),
            "precision = \"fp16\"\n[defaults.autocast]\nkeep_fp32 = [\"Softmax\"]\n[[engine]]\nname = \"a\"\nautocast.convert = [\"Exp\", \"Softmax\"]\n"
        ),
        line: 12,
        column: 28,
        message: "operator `Softmax` is in both `autocast.keep_fp32` and `autocast.convert`",
        hint: Some("remove it from one list (`keep_fp32` lists it on line 9)"),
    },
    Case {
        name: "unknown autocast key",
        toml: concat!(
            rtx!(),
            "precision = \"fp16\"\n[defaults.autocast]\nkeep_fp16_io = true\n"
        ),
        line: 9,
        column: 1,
        message: "unknown key `keep_fp16_io`",
        hint: Some("did you mean `keep_fp32_io`?"),
    },
    Case {
        name: "rtx with a build gpu",
        toml: concat!(rtx!(), "compatibility.gpu = \"H100\"\n"),
        line: 7,
        column: 21,
        message: "`gpu` does not apply to TensorRT-RTX",
        hint: Some("list the target's capability there, e.g. compute_capabilities = [\"8.9\"]"),
    },
    Case {
        name: "empty build gpu",
        toml: concat!(trt!(), "compatibility.gpu = \" \"\n"),
        line: 6,
        column: 21,
        message: "`compatibility.gpu` is empty",
        hint: Some("part of the GPU's name such as \"H100\""),
    },
    Case {
        name: "build gpu that is neither a capability nor a name",
        toml: concat!(
            trt!(),
            "[[engine]]\nname = \"a\"\ncompatibility = { gpu = \"90\" }\n"
        ),
        line: 8,
        column: 25,
        message: "`90` is not a compute capability",
        hint: Some("\"major.minor\", e.g. \"9.0\""),
    },
    Case {
        name: "rank mismatch",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.images = { min = [1, 3, 8, 8], opt = [1, 3, 8, 8], max = [1, 3, 8] }\n"
        ),
        line: 7,
        column: 65,
        message: "input `images`: min has rank 4 but max has rank 3",
        hint: None,
    },
    Case {
        name: "min above opt",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.images = { min = [4, 3], opt = [2, 3], max = [8, 3] }\n"
        ),
        line: 7,
        column: 40,
        message: "input `images`: dimension 0 has min 4 > opt 2",
        hint: Some("min <= opt <= max"),
    },
    Case {
        name: "opt above max",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.images = { min = [1, 3], opt = [1, 9], max = [8, 3] }\n"
        ),
        line: 7,
        column: 57,
        message: "input `images`: dimension 1 has opt 9 > max 3",
        hint: None,
    },
    Case {
        name: "dimension below one",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.images = { min = [0, 3], opt = [1, 3], max = [1, 3] }\n"
        ),
        line: 7,
        column: 26,
        message: "input `images`: min[0] is 0; dimensions must be at least 1",
        hint: None,
    },
    Case {
        name: "dimension too large",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.x = { min = [1], opt = [1], max = [2147483648] }\n"
        ),
        line: 7,
        column: 43,
        message: "input `x`: max[0] is 2147483648, larger than 2147483647",
        hint: None,
    },
    Case {
        name: "profile without inputs",
        toml: concat!(trt!(), "[[profile]]\nname = \"p\"\ninputs = {}\n"),
        line: 8,
        column: 10,
        message: "profile `p` has no inputs",
        hint: Some("static-shape model"),
    },
    Case {
        name: "duplicate profile names",
        toml: concat!(
            trt!(),
            "[[profile]]\nname = \"p\"\ninputs.x = { min = [1], opt = [1], max = [1] }\n[[profile]]\nname = \"p\"\ninputs.x = { min = [2], opt = [2], max = [2] }\n"
        ),
        line: 10,
        column: 8,
        message: "duplicate profile name `p`",
        hint: Some("line 7"),
    },
    Case {
        name: "duplicate engine names",
        toml: concat!(
            trt!(),
            "[[engine]]\nname = \"a\"\n[[engine]]\nname = \"b\"\n[[engine]]\nname = \"a\"\n"
        ),
        line: 11,
        column: 8,
        message: "duplicate engine name `a`",
        hint: Some("the first engine named `a` is on line 7"),
    },
    Case {
        name: "invalid engine name",
        toml: concat!(trt!(), "[[engine]]\nname = \"fp16 ada\"\n"),
        line: 7,
        column: 8,
        message: "invalid engine name `fp16 ada`",
        hint: Some("letters, digits"),
    },
    Case {
        name: "absolute output path",
        toml: concat!(
            trt!(),
            "[[engine]]\nname = \"a\"\noutput = \"/tmp/a.engine\"\n"
        ),
        line: 8,
        column: 10,
        message: "`output` is an absolute path",
        hint: None,
    },
    Case {
        name: "engine profile error",
        toml: concat!(
            trt!(),
            "[[engine]]\nname = \"a\"\n[[engine.profile]]\ninputs.x = { min = [1], opt = [3], max = [2] }\n"
        ),
        line: 9,
        column: 43,
        message: "input `x`: dimension 0 has opt 3 > max 2",
        hint: None,
    },
    Case {
        name: "output path climbing out",
        toml: concat!(
            trt!(),
            "[[engine]]\nname = \"a\"\noutput = \"../../.bashrc\"\n"
        ),
        line: 8,
        column: 10,
        message: "`output` `../../.bashrc` leaves the manifest's directory",
        hint: Some("writes engines below the manifest's directory"),
    },
    Case {
        name: "model path with a backslash",
        toml: "schema_version = 1\n[model]\npath = \"models\\\\m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
        line: 3,
        column: 8,
        message: "`model.path` `models\\\\m.onnx` has a backslash or a NUL character",
        hint: Some("write paths with `/`"),
    },
    Case {
        name: "rank over eight",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.x = { min = [1, 1, 1, 1, 1, 1, 1, 1, 1], opt = [1, 1, 1, 1, 1, 1, 1, 1, 1], max = [1, 1, 1, 1, 1, 1, 1, 1, 1] }\n"
        ),
        line: 7,
        column: 20,
        message: "input `x`: min has rank 9, over TensorRT's limit of 8",
        hint: Some("at most 8 dimensions"),
    },
    Case {
        name: "negative dimension",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.x = { min = [-1, 3], opt = [1, 3], max = [1, 3] }\n"
        ),
        line: 7,
        column: 21,
        message: "input `x`: min[0] is -1; dimensions must be at least 1",
        hint: Some("concrete shapes"),
    },
    Case {
        name: "max shape with more elements than 64 bits count",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.x = { min = [1, 1, 1], opt = [1, 1, 1], max = [2147483647, 2147483647, 2147483647] }\n"
        ),
        line: 7,
        column: 54,
        message: "input `x`: max [2147483647, 2147483647, 2147483647] has more elements than a 64-bit count holds",
        hint: Some("at most 9223372036854775807"),
    },
    Case {
        name: "memory pool over a tebibyte",
        toml: concat!(trt!(), "memory_pools.workspace = \"2TiB\"\n"),
        line: 6,
        column: 26,
        message: "`memory_pools.workspace` is 2199023255552 bytes (2.0 TiB), over the limit of 1 TiB",
        hint: Some("check the unit"),
    },
    Case {
        name: "memory pool in bytes over a tebibyte",
        toml: concat!(
            trt!(),
            "[[engine]]\nname = \"a\"\nmemory_pools.tactic_dram = 1099511627777\n"
        ),
        line: 8,
        column: 28,
        message: "`memory_pools.tactic_dram` is 1099511627777 bytes (1.0 TiB), over the limit of 1 TiB",
        hint: None,
    },
    Case {
        name: "column counts characters",
        toml: concat!(
            trt!(),
            "[[profile]]\ninputs.\"bïldér\" = { min = [1], opt = [0], max = [1] }\n"
        ),
        line: 7,
        column: 39,
        message: "input `bïldér`: opt[0] is 0",
        hint: None,
    },
];

fn diagnostics(toml: &str) -> Vec<Diagnostic> {
    match parse(toml, Path::new("engine.toml")) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.diagnostics().to_vec(),
    }
}

#[test]
fn every_invalid_manifest_is_reported_at_the_right_place() {
    let mut failures = Vec::new();
    for case in CASES {
        let found = diagnostics(case.toml);
        let matched = found.iter().any(|d| {
            d.line == case.line
                && d.column == case.column
                && d.message.contains(case.message)
                && case
                    .hint
                    .is_none_or(|h| d.hint.as_deref().is_some_and(|dh| dh.contains(h)))
        });
        if !matched {
            failures.push(format!(
                "{}: expected {}:{} `{}` (hint {:?}), got {:#?}",
                case.name, case.line, case.column, case.message, case.hint, found
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn cases_are_distinct() {
    let mut keys: Vec<(usize, usize, &str)> = CASES
        .iter()
        .map(|c| (c.line, c.column, c.message))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), CASES.len());
    assert!(CASES.len() >= 30);
}

#[test]
fn semantic_errors_are_all_collected() {
    let toml = concat!(
        head!(),
        "[defaults]\ntoolchain = \"tensorrt 10.8\"\noptimization_level = 9\nmps_percentage = 0\n",
        "[[engine]]\nname = \"a b\"\n[[profile]]\ninputs.x = { min = [2], opt = [1], max = [1] }\n"
    );
    let found = diagnostics(toml);
    let lines: Vec<usize> = found.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![6, 7, 9, 11], "{found:#?}");
}

#[test]
fn a_default_broken_for_several_engines_is_reported_once() {
    let toml = concat!(
        head!(),
        "[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.6\"]\nmps_percentage = 10\n",
        "[[engine]]\nname = \"a\"\n[[engine]]\nname = \"b\"\n"
    );
    let found = diagnostics(toml);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), (7, 18));
}

#[test]
fn an_overridden_bad_default_is_still_reported() {
    let toml = concat!(
        trt!(),
        "optimization_level = 11\n[[engine]]\nname = \"a\"\noptimization_level = 2\n"
    );
    let found = diagnostics(toml);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), (6, 22));
}

#[test]
fn unreadable_manifest_is_a_diagnostic() {
    let dir = tempfile::tempdir().map_err(|e| e.to_string());
    let Ok(dir) = dir else {
        panic!("tempdir: {dir:?}")
    };
    let missing = dir.path().join("engine.toml");
    let Err(errors) = manifest_schema::load(&missing) else {
        panic!("loaded a missing file")
    };
    assert!(
        errors.diagnostics()[0]
            .message
            .contains("cannot read manifest")
    );
}
