//! Real public networks for the determinism tests and benchmark, in one list: where each ONNX
//! file comes from (a pinned PyPI wheel that `scripts/setup` downloads and checks), what it is,
//! the profiles TensorRT-RTX 1.7 accepts for it, and what its fp32/fp16/bf16 engines need.
//!
//! Found with `trtfarm check` (inputs and ready-to-paste profiles) and `trtfarmd build` (every
//! precision of every network). Networks from the same wheels that TensorRT-RTX 1.7 cannot
//! build are listed in [`UNBUILDABLE`] with TensorRT's message.

use std::path::{Path, PathBuf};

use manifest_schema::Precision;

/// The environment variable `scripts/setup --print-env` sets to the directory of the networks
/// it extracted from PyPI wheels (`$TRTFARM_DEPS_DIR/models`).
pub const REAL_MODELS_ENV: &str = "TRTFARM_REAL_MODELS";

/// The targets every real network's engines are built for.
pub const COMPUTE_CAPABILITIES: [&str; 2] = ["8.6", "8.9"];

/// The precisions every real network is built at; each is one `[[engine]]` named after it.
pub const PRECISIONS: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

/// The pinned PyPI wheel a network's ONNX file comes from (pins and sha256 in `scripts/setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    /// `rapidocr_onnxruntime==1.4.4`: PaddleOCR's PP-OCR models, exported by paddle2onnx.
    RapidOcr,
    /// `silero-vad==6.2.3`: Silero's voice-activity detector, exported from PyTorch.
    SileroVad,
    /// `onnx==1.23.2`: the "light" reference models of ONNX's backend tests (real
    /// architectures, weights made at run time by `ConstantOfShape`).
    OnnxWheel,
}

impl Package {
    /// The package as a pip requirement.
    pub fn requirement(self) -> &'static str {
        match self {
            Package::RapidOcr => "rapidocr_onnxruntime==1.4.4",
            Package::SileroVad => "silero-vad==6.2.3",
            Package::OnnxWheel => "onnx==1.23.2",
        }
    }

    /// Where `scripts/setup` put this package's ONNX files.
    pub fn directory(self) -> PathBuf {
        let real_models = || {
            std::env::var_os(REAL_MODELS_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| Some(onnx_graph::deps::deps_dir()?.join("models")))
                .expect("set up the real networks (scripts/setup)")
        };
        match self {
            Package::RapidOcr => real_models().join("rapidocr-1.4.4"),
            Package::SileroVad => real_models().join("silero-vad-6.2.3"),
            Package::OnnxWheel => {
                onnx_graph::deps::onnx_test_models().expect("set up the onnx wheel (scripts/setup)")
            }
        }
    }
}

/// One real network and everything needed to build it.
#[derive(Debug, Clone, Copy)]
pub struct RealNetwork {
    /// Short name for reports and directories.
    pub name: &'static str,
    /// What the network does and what makes it interesting to build.
    pub kind: &'static str,
    /// The wheel it ships in.
    pub package: Package,
    /// Its file name inside [`Package::directory`].
    pub file: &'static str,
    /// The `[[profile]]` tables for its dynamic inputs (empty for a static network), as
    /// `trtfarm check` suggested them, with sizes the application really uses.
    pub profiles: &'static str,
    /// Operator types to keep in fp32 at a reduced precision, where TensorRT-RTX cannot build
    /// the fully converted model (`[engine.autocast] keep_fp32`), with the reason.
    pub keep_fp32: &'static [(Precision, &'static [&'static str], &'static str)],
}

impl RealNetwork {
    /// The ONNX file `scripts/setup` extracted, asserting it is there.
    pub fn source(&self) -> PathBuf {
        let path = self.package.directory().join(self.file);
        assert!(
            path.is_file(),
            "{} is missing: run scripts/setup (or set {REAL_MODELS_ENV})",
            path.display()
        );
        path
    }

    /// The engine name of `precision` in [`manifest`](Self::manifest) (its spelling).
    pub fn engine(&self, precision: Precision) -> &'static str {
        precision.as_str()
    }

    /// Its `engine.toml`, naming the model `model_file` beside it: one engine per precision in
    /// [`PRECISIONS`], named after it, for [`COMPUTE_CAPABILITIES`].
    pub fn manifest(&self, model_file: &str) -> String {
        let targets = COMPUTE_CAPABILITIES
            .iter()
            .map(|cc| format!("\"{cc}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "schema_version = 1\n\n# {}: {}\n# {} from {}.\n[model]\npath = \"{model_file}\"\n\n\
             [defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n\n\
             [defaults.compatibility]\ncompute_capabilities = [{targets}]\n",
            self.name,
            self.kind,
            self.file,
            self.package.requirement()
        );
        if !self.profiles.is_empty() {
            text.push('\n');
            text.push_str(self.profiles.trim_end());
            text.push('\n');
        }
        for precision in PRECISIONS {
            text.push_str(&format!("\n[[engine]]\nname = \"{precision}\"\n"));
            if precision != Precision::Fp32 {
                text.push_str(&format!("precision = \"{precision}\"\n"));
            }
            for (_, ops, why) in self.keep_fp32.iter().filter(|k| k.0 == precision) {
                let ops = ops
                    .iter()
                    .map(|op| format!("\"{op}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                text.push_str(&format!("# {why}\nautocast.keep_fp32 = [{ops}]\n"));
            }
        }
        text
    }

    /// `dir/engine.toml` and a copy of the model beside it (a project of its own, so the
    /// model lies inside it). Returns the manifest's path.
    pub fn write_project(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create the network's project directory");
        std::fs::copy(self.source(), dir.join(self.file)).expect("copy the network's model");
        let manifest = dir.join("engine.toml");
        std::fs::write(&manifest, self.manifest(self.file)).expect("write the manifest");
        manifest
    }
}

/// Myelin's answer to a bf16 `ConvTranspose` with a dynamic spatial size in TensorRT-RTX 1.7.
const BF16_DECONV: &str = "TensorRT-RTX 1.7 fails a bf16 ConvTranspose: \"Myelin: Could not infer \
output types for operation ... deconv\"";

/// Every real network the tests and benchmark use, each buildable at every precision.
pub const NETWORKS: &[RealNetwork] = &[
    RealNetwork {
        name: "ocr-det",
        kind: "text detector (PP-OCRv4 DBNet, MobileNetV3 backbone, FPN with ConvTranspose), \
               dynamic height and width",
        package: Package::RapidOcr,
        file: "ch_PP-OCRv4_det_infer.onnx",
        profiles: "[[profile]]\n\
                   inputs.x = { min = [1, 3, 64, 64], opt = [1, 3, 640, 640], max = [1, 3, 1280, 1280] }",
        keep_fp32: &[(Precision::Bf16, &["ConvTranspose"], BF16_DECONV)],
    },
    RealNetwork {
        name: "ocr-rec",
        kind: "text recogniser (PP-OCRv4 SVTR-LCNet: convolutions, then attention with MatMul, \
               Softmax and LayerNorm), dynamic batch and width",
        package: Package::RapidOcr,
        file: "ch_PP-OCRv4_rec_infer.onnx",
        profiles: "[[profile]]\n\
                   inputs.x = { min = [1, 3, 48, 32], opt = [8, 3, 48, 320], max = [16, 3, 48, 2048] }",
        keep_fp32: &[],
    },
    RealNetwork {
        name: "ocr-cls",
        kind: "text-direction classifier (PP-OCR mobile v2.0, MobileNetV3), dynamic batch; \
               height and width are both `?` in the model, one dimension to TensorRT's parser, \
               so the profile is square",
        package: Package::RapidOcr,
        file: "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        profiles: "[[profile]]\n\
                   inputs.x = { min = [1, 3, 48, 48], opt = [8, 3, 192, 192], max = [16, 3, 192, 192] }",
        keep_fp32: &[],
    },
    RealNetwork {
        name: "silero-vad",
        kind: "voice-activity detector (Silero VAD, opset 18): the network lives in `If` \
               branches chosen by the sample rate, an int64 scalar input; dynamic batch and \
               sequence. Autocast leaves the branches' nodes in fp32",
        package: Package::SileroVad,
        file: "silero_vad_op18_ifless.onnx",
        profiles: "[[profile]]\n\
                   inputs.input = { min = [1, 512], opt = [1, 512], max = [8, 4096] }\n\
                   inputs.state = { min = [2, 1, 128], opt = [2, 1, 128], max = [2, 8, 128] }",
        keep_fp32: &[],
    },
    RealNetwork {
        name: "silero-vad-lstm",
        kind: "voice-activity detector (Silero VAD, 16 kHz sequence export): STFT convolution, \
               encoder and an LSTM, dynamic sequence length",
        package: Package::SileroVad,
        file: "silero_vad_16k_sequence.onnx",
        profiles: "[[profile]]\n\
                   inputs.input = { min = [1, 576], opt = [8, 576], max = [64, 576] }",
        keep_fp32: &[],
    },
    RealNetwork {
        name: "resnet50",
        kind: "image classifier (ResNet-50), static 1x3x224x224",
        package: Package::OnnxWheel,
        file: "light_resnet50.onnx",
        profiles: "",
        keep_fp32: &[],
    },
    RealNetwork {
        name: "inception-v2",
        kind: "image classifier (Inception v2, BatchNorm), static 1x3x224x224",
        package: Package::OnnxWheel,
        file: "light_inception_v2.onnx",
        profiles: "",
        keep_fp32: &[],
    },
    RealNetwork {
        name: "densenet121",
        kind: "image classifier (DenseNet-121: 120 convolutions, many concatenations), static \
               1x3x224x224; the slowest here (about 6 s a build)",
        package: Package::OnnxWheel,
        file: "light_densenet121.onnx",
        profiles: "",
        keep_fp32: &[],
    },
];

/// The network called `name`.
pub fn network(name: &str) -> &'static RealNetwork {
    NETWORKS
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no real network called {name}"))
}

/// A network from the same wheels that TensorRT-RTX 1.7 cannot build, and why.
#[derive(Debug, Clone, Copy)]
pub struct Unbuildable {
    /// The wheel it ships in.
    pub package: Package,
    /// Its file name inside [`Package::directory`].
    pub file: &'static str,
    /// What fails, in TensorRT's or trtfarm's words.
    pub reason: &'static str,
}

/// Real networks left out, each with what stops it (measured with the profiles of
/// `silero-vad`, which share their inputs).
pub const UNBUILDABLE: &[Unbuildable] = &[Unbuildable {
    package: Package::SileroVad,
    file: "silero_vad_16k_op15.onnx",
    reason: "fp32: TensorRT-RTX 1.7 stops with \"[graphScope.cpp::analyze::471] Error Code 2: \
                 Internal Error (Assertion tScope.getType() != ScopeType::kUNDEFINED failed.)\" \
                 (so do silero_vad.onnx and silero_vad_half.onnx, the other exports whose If \
                 branches hold the network; NVIDIA's Python API fails the same way); fp16/bf16: \
                 the ONNX parser rejects the converted model, \"/Add: ElementWiseOperation SUM \
                 must have same input types. But they are of types Float and Half\": autocast \
                 leaves an If branch's output in fp32 and converts the Add that consumes it",
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_is_valid_with_one_engine_per_precision() {
        for network in NETWORKS {
            let text = network.manifest("model.onnx");
            let manifest = manifest_schema::parse(&text, Path::new("/project/engine.toml"))
                .unwrap_or_else(|e| panic!("{}: {e:?}\n{text}", network.name));
            for precision in PRECISIONS {
                let variant = manifest
                    .variant(network.engine(precision))
                    .unwrap_or_else(|| panic!("{}: no {precision} engine", network.name));
                assert_eq!(variant.settings.precision, precision, "{}", network.name);
            }
        }
    }

    #[test]
    fn a_keep_fp32_fix_reaches_only_its_precision() {
        let det = network("ocr-det");
        let manifest = manifest_schema::parse(
            &det.manifest("model.onnx"),
            Path::new("/project/engine.toml"),
        )
        .expect("the detector's manifest parses");
        let keep = |precision: Precision| {
            manifest
                .variant(precision.as_str())
                .expect("an engine per precision")
                .settings
                .autocast
                .keep_fp32
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(keep(Precision::Bf16), ["ConvTranspose"]);
        assert!(keep(Precision::Fp16).is_empty());
    }
}
