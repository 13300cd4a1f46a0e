//! What the determinism test and benchmark share: four real models with their manifests, the
//! client-side variations of a request that must not change the engine, and a description of
//! how two plans differ.

use std::path::{Path, PathBuf};

use trtfarm_proto::v1;

use crate::models;

/// One model to build many times.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name for reports.
    pub name: &'static str,
    /// Its manifest (the model sits beside it).
    pub manifest: PathBuf,
    /// The engine to build.
    pub variant: &'static str,
}

impl Case {
    /// The model file the manifest names.
    pub fn model(&self) -> PathBuf {
        self.parsed().model.resolved_path
    }

    /// Arguments for `trt-ffi/benches/build_with_python.py` building the same network with the
    /// same targets: see [`python_build_args`].
    pub fn python_args(&self) -> Vec<String> {
        python_build_args(&self.manifest, self.variant, &self.model())
    }

    fn parsed(&self) -> manifest_schema::Manifest {
        manifest_schema::load(&self.manifest).expect("the case's manifest is valid")
    }
}

/// Arguments for `trt-ffi/benches/build_with_python.py` building `model` with the targets of
/// `manifest`'s engine `variant` and its *first* profile (the script takes one). `model` is the
/// manifest's own model, or the converted model an fp16/bf16 build really used.
pub fn python_build_args(manifest: &Path, variant: &str, model: &Path) -> Vec<String> {
    let manifest = manifest_schema::load(manifest).expect("the manifest is valid");
    let variant = manifest.variant(variant).expect("the engine exists");
    let mut args = vec!["--onnx".to_owned(), model.display().to_string()];
    for cc in &variant.settings.compatibility.compute_capabilities {
        args.push("--cc".into());
        args.push(format!("{}{}", cc.major, cc.minor));
    }
    if let Some(profile) = variant.profiles.first() {
        let shape = |dims: &[i64]| {
            dims.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        for (input, range) in &profile.inputs {
            args.push("--profile".into());
            args.push(format!(
                "{input}:{}:{}:{}",
                shape(&range.min),
                shape(&range.opt),
                shape(&range.max)
            ));
        }
    }
    args
}

/// The four models, written under `dir`: the examples' classifier (dynamic batch) and
/// segmenter (dynamic height and width, two profiles), the onnx wheel's squeezenet with a
/// dynamic batch, and a generated 11 MiB detector with dynamic height and width.
pub fn cases(dir: &Path) -> Vec<Case> {
    let examples = dir.join("examples");
    copy_examples(&examples);

    let squeezenet_dir = dir.join("squeezenet");
    std::fs::create_dir_all(&squeezenet_dir).expect("create the squeezenet dir");
    let light = onnx_graph::deps::onnx_test_models()
        .or_else(|| onnx_graph::deps::deps_dir().map(|d| d.join("onnx/light")))
        .expect("set up the onnx test models (scripts/setup)")
        .join("light_squeezenet.onnx");
    assert!(
        light.is_file(),
        "{} is missing: run scripts/setup (or set TRTFARM_ONNX_TEST_MODELS)",
        light.display()
    );
    models::with_symbolic_batch(&light, &squeezenet_dir.join("squeezenet.onnx"), "N");
    std::fs::write(
        squeezenet_dir.join("engine.toml"),
        r#"schema_version = 1

[model]
path = "squeezenet.onnx"

[defaults]
toolchain = "tensorrt-rtx 1.7"

[defaults.compatibility]
compute_capabilities = ["8.6", "8.9"]

[[profile]]
inputs.data_0 = { min = [1, 3, 224, 224], opt = [4, 3, 224, 224], max = [8, 3, 224, 224] }

[[engine]]
name = "fp32"
"#,
    )
    .expect("write the squeezenet manifest");

    let detector_dir = dir.join("detector");
    std::fs::create_dir_all(&detector_dir).expect("create the detector dir");
    let detector = models::detector_dynamic_hw(&detector_dir, 4, 192, 11);
    let size = std::fs::metadata(&detector)
        .expect("the detector exists")
        .len();
    assert!(size >= 5 << 20, "the detector is only {size} bytes");
    std::fs::write(
        detector_dir.join("engine.toml"),
        models::detector_dynamic_hw_manifest("detector.onnx"),
    )
    .expect("write the detector manifest");

    vec![
        Case {
            name: "classifier",
            manifest: examples.join("cnn-dynamic-batch/engine.toml"),
            variant: "fp32",
        },
        Case {
            name: "segmenter",
            manifest: examples.join("segmenter-dynamic-hw/engine.toml"),
            variant: "fp32",
        },
        Case {
            name: "squeezenet",
            manifest: squeezenet_dir.join("engine.toml"),
            variant: "fp32",
        },
        Case {
            name: "detector",
            manifest: detector_dir.join("engine.toml"),
            variant: "fp32",
        },
    ]
}

/// `examples/manifests` with freshly generated models, copied to `dest`.
fn copy_examples(dest: &Path) {
    let copy = crate::examples_copy();
    for entry in walkdir::WalkDir::new(copy.path()) {
        let entry = entry.expect("walk the examples copy");
        let relative = entry
            .path()
            .strip_prefix(copy.path())
            .expect("walkdir yields paths under its root");
        let target = dest.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("create an example dir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy an example file");
        }
    }
}

/// Build `index`'s version of a request: the same engine, but the manifest text (a comment of
/// a different length, an unrelated extra engine every other time), the manifest's path and
/// the client's name differ, as they do between users and machines.
pub fn vary_request(mut request: v1::SubmitRequest, index: usize) -> v1::SubmitRequest {
    if let Some(manifest) = request.manifest.as_mut() {
        let comment = format!("# client {index}: {}\n", "~".repeat(13 * index));
        let mut toml = format!("{comment}{}", manifest.toml);
        if index % 2 == 1 {
            toml.push_str(&format!(
                "\n# Not built here.\n[[engine]]\nname = \"unrelated-{index}\"\noptimization_level = 1\n"
            ));
        }
        manifest.toml = toml;
        manifest.path = format!("{}/engine.toml", "team-dir".repeat(index));
    }
    request.client = format!("client-{}", "x".repeat(index * 5));
    request.skip_cache = true;
    request
}

/// How two plans differ, for a person: sizes, differing byte count, and the first few
/// differing offsets with the bytes around them as text.
pub fn describe_difference(a: &[u8], b: &[u8]) -> String {
    let differing: Vec<usize> = a
        .iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect();
    let mut out = format!(
        "sizes {} and {}, {} of the common bytes differ",
        a.len(),
        b.len(),
        differing.len()
    );
    let printable = |bytes: &[u8]| -> String {
        bytes
            .iter()
            .map(|&c| {
                if (32..127).contains(&c) {
                    c as char
                } else {
                    '.'
                }
            })
            .collect()
    };
    let mut last = None;
    for &offset in differing.iter().take(200) {
        // One line per cluster of nearby differences.
        if last.is_some_and(|l: usize| offset < l + 32) {
            continue;
        }
        last = Some(offset);
        let start = offset.saturating_sub(24);
        let end = (offset + 24).min(a.len()).min(b.len());
        let hex = |bytes: &[u8]| -> String {
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (h0, h1) = (
            offset.saturating_sub(4),
            (offset + 8).min(a.len()).min(b.len()),
        );
        out.push_str(&format!(
            "\n  @{offset}: [{}] vs [{}]\n      {:?}\n      {:?}",
            hex(&a[h0..h1]),
            hex(&b[h0..h1]),
            printable(&a[start..end]),
            printable(&b[start..end])
        ));
    }
    out
}
