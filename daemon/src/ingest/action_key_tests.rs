//! One test per input of the action key: changing it changes the key; irrelevant changes do
//! not.

use std::path::Path;

use onnx_graph::autocast::{AutocastOptions, AutocastTarget};

use super::*;
use manifest_schema::Flavour;
use trtfarm_types::Blake3Digest;

fn digest(byte: u8, size: u64) -> BlobDigest {
    BlobDigest {
        hash: [byte; 32],
        size,
    }
}

fn toolchain() -> ToolchainIdentity {
    ToolchainIdentity {
        flavour: Flavour::TensorRtRtx,
        version: "1.7.1.116".parse().unwrap(),
        library: Blake3Digest([0xab; 32]),
        parser: Blake3Digest([0xef; 32]),
    }
}

/// A baseline material; each test changes one thing.
struct Base {
    variant: Vec<u8>,
    inputs: Vec<KeyInput>,
    toolchain: ToolchainIdentity,
    target: Target,
    salt: Option<String>,
    timing_cache: Option<BlobDigest>,
    model_transform: Option<(&'static str, u32)>,
    builder: String,
}

impl Base {
    fn new() -> Base {
        Base {
            variant: b"variant-encoding".to_vec(),
            inputs: vec![
                KeyInput::Model(digest(1, 100)),
                KeyInput::ExternalData {
                    path: "weights.bin".into(),
                    digest: digest(2, 200),
                },
            ],
            toolchain: toolchain(),
            target: Target::AheadOfTime,
            salt: None,
            timing_cache: None,
            builder: "77".repeat(32),
            model_transform: None,
        }
    }

    fn key(&self) -> ActionKey {
        action_key(&KeyMaterial {
            salt: self.salt.as_deref(),
            variant_encoding: &self.variant,
            inputs: &self.inputs,
            toolchain: &self.toolchain,
            target: &self.target,
            timing_cache: self.timing_cache.as_ref(),
            builder: &self.builder,
            model_transform: self.model_transform,
        })
    }
}

fn changes_key(change: impl FnOnce(&mut Base)) {
    let base = Base::new();
    let mut changed = Base::new();
    change(&mut changed);
    assert_ne!(base.key(), changed.key());
}

#[test]
fn same_material_same_key() {
    assert_eq!(Base::new().key(), Base::new().key());
}

#[test]
fn salt_changes_key() {
    changes_key(|b| b.salt = Some("poisoned-2026-11".into()));
}

#[test]
fn empty_salt_differs_from_no_salt() {
    changes_key(|b| b.salt = Some(String::new()));
}

#[test]
fn variant_settings_change_key() {
    changes_key(|b| b.variant.push(0));
}

#[test]
fn model_content_changes_key() {
    changes_key(|b| b.inputs[0] = KeyInput::Model(digest(9, 100)));
}

#[test]
fn model_size_changes_key() {
    changes_key(|b| b.inputs[0] = KeyInput::Model(digest(1, 101)));
}

#[test]
fn external_data_content_and_name_change_key() {
    changes_key(|b| {
        b.inputs[1] = KeyInput::ExternalData {
            path: "weights.bin".into(),
            digest: digest(3, 200),
        }
    });
    changes_key(|b| {
        b.inputs[1] = KeyInput::ExternalData {
            path: "other.bin".into(),
            digest: digest(2, 200),
        }
    });
}

#[test]
fn plugin_content_and_order_change_key() {
    changes_key(|b| {
        b.inputs.push(KeyInput::Plugin {
            index: 0,
            digest: digest(4, 10),
        })
    });
    let mut a = Base::new();
    a.inputs.push(KeyInput::Plugin {
        index: 0,
        digest: digest(4, 10),
    });
    a.inputs.push(KeyInput::Plugin {
        index: 1,
        digest: digest(5, 10),
    });
    let mut b = Base::new();
    b.inputs.push(KeyInput::Plugin {
        index: 0,
        digest: digest(5, 10),
    });
    b.inputs.push(KeyInput::Plugin {
        index: 1,
        digest: digest(4, 10),
    });
    assert_ne!(a.key(), b.key(), "plugin load order is part of the key");
}

#[test]
fn toolchain_flavour_version_and_library_change_key() {
    changes_key(|b| b.toolchain.flavour = Flavour::TensorRt);
    changes_key(|b| b.toolchain.version.build = 117);
    changes_key(|b| b.toolchain.library = Blake3Digest([0xcd; 32]));
}

#[test]
fn builder_program_changes_key() {
    changes_key(|b| b.builder = "78".repeat(32));
}

#[test]
fn parser_library_changes_key() {
    // A parser upgrade beside the same builder library is a different toolchain.
    changes_key(|b| b.toolchain.parser = Blake3Digest([0x12; 32]));
}

#[test]
fn target_changes_key() {
    let gpu = |model: &str, cc: &str| Target::Gpu {
        model: model.into(),
        compute_capability: cc.parse().unwrap(),
    };
    changes_key(|b| b.target = gpu("NVIDIA H100 80GB HBM3", "9.0"));
    let mut h100 = Base::new();
    h100.target = gpu("NVIDIA H100 80GB HBM3", "9.0");
    let mut h200 = Base::new();
    h200.target = gpu("NVIDIA H200", "9.0");
    assert_ne!(h100.key(), h200.key());
}

#[test]
fn timing_cache_changes_key() {
    changes_key(|b| b.timing_cache = Some(digest(7, 4096)));
    let mut one = Base::new();
    one.timing_cache = Some(digest(7, 4096));
    let mut other = Base::new();
    other.timing_cache = Some(digest(8, 4096));
    assert_ne!(one.key(), other.key());
}

#[test]
fn input_order_does_not_change_key() {
    let base = Base::new();
    let mut reversed = Base::new();
    reversed.inputs.reverse();
    assert_eq!(base.key(), reversed.key());
}

#[test]
fn framing_keeps_adjacent_strings_apart() {
    // "a1" + "2.0" and "a" + "12.0" must not collide.
    let mut one = Base::new();
    one.target = Target::Gpu {
        model: "a1".into(),
        compute_capability: ComputeCapability::new(2, 0),
    };
    let mut other = Base::new();
    other.target = Target::Gpu {
        model: "a".into(),
        compute_capability: ComputeCapability::new(12, 0),
    };
    assert_ne!(one.key(), other.key());
}

const MANIFEST: &str = r#"
schema_version = 1

[model]
path = "model.onnx"

[defaults]
toolchain = "tensorrt-rtx 1.7"
optimization_level = 3

[defaults.compatibility]
compute_capabilities = ["8.6", "8.9"]

[[profile]]
inputs.images = { min = [1, 3, 64, 64], opt = [4, 3, 64, 64], max = [8, 3, 64, 64] }
"#;

/// The same manifest with keys reordered, comments added, another model file name, and a
/// different location on disk.
const MANIFEST_REWRITTEN: &str = r#"
# Comments never matter.
schema_version = 1

[defaults]
optimization_level = 3
toolchain = "tensorrt-rtx 1.7"

[defaults.compatibility]
compute_capabilities = ["8.9", "8.6"]   # order of a set

[[profile]]
name = "a profile name is not part of the key"
inputs.images = { opt = [4, 3, 64, 64], min = [1, 3, 64, 64], max = [8, 3, 64, 64] }

[model]
path = "../elsewhere/renamed.onnx"
"#;

fn key_of_manifest(text: &str, path: &str) -> ActionKey {
    let manifest = manifest_schema::parse(text, Path::new(path)).expect("manifest parses");
    let variant = &manifest.variants()[0];
    let encoding = variant.canonical_encoding();
    action_key(&KeyMaterial {
        salt: None,
        variant_encoding: &encoding,
        inputs: &[KeyInput::Model(digest(1, 100))],
        toolchain: &toolchain(),
        target: &Target::AheadOfTime,
        timing_cache: None,
        builder: "",
        model_transform: None,
    })
}

#[test]
fn manifest_layout_comments_model_name_and_location_do_not_change_key() {
    assert_eq!(
        key_of_manifest(MANIFEST, "a/engine.toml"),
        key_of_manifest(MANIFEST_REWRITTEN, "/somewhere/else/engine.toml"),
    );
}

#[test]
fn a_manifest_setting_changes_key() {
    let changed = MANIFEST.replace("optimization_level = 3", "optimization_level = 4");
    assert_ne!(
        key_of_manifest(MANIFEST, "engine.toml"),
        key_of_manifest(&changed, "engine.toml"),
    );
}

#[test]
fn the_model_transform_and_its_version_change_key() {
    changes_key(|b| b.model_transform = Some(("autocast-fp16", 1)));
    let mut v1 = Base::new();
    v1.model_transform = Some(("autocast-fp16", 1));
    let mut v2 = Base::new();
    v2.model_transform = Some(("autocast-fp16", 2));
    assert_ne!(v1.key(), v2.key());
}

/// The prepare key of `inputs` converted with `options`.
fn prepare_of(inputs: &[KeyInput], options: &AutocastOptions) -> ActionKey {
    prepare_key(None, inputs, options)
}

fn half() -> AutocastOptions {
    AutocastOptions::new(AutocastTarget::Half)
}

#[test]
fn the_prepare_key_follows_inputs_conversion_and_settings() {
    let base = Base::new();
    let key = prepare_of(&base.inputs, &half());
    assert_eq!(key, prepare_of(&base.inputs, &half()));
    let mut reversed = base.inputs.clone();
    reversed.reverse();
    assert_eq!(key, prepare_of(&reversed, &half()), "input order");

    let mut other_model = base.inputs.clone();
    other_model[0] = KeyInput::Model(digest(9, 100));
    assert_ne!(key, prepare_of(&other_model, &half()), "model content");
    assert_ne!(
        key,
        prepare_key(Some("salt"), &base.inputs, &half()),
        "salt"
    );

    let changed: [fn(&mut AutocastOptions); 5] = [
        |o| o.target = AutocastTarget::BFloat16,
        |o| {
            o.keep_fp32_ops.insert("Sigmoid".into());
        },
        |o| {
            o.force_convert_ops.insert("Softmax".into());
        },
        |o| o.keep_fp32_io = true,
        |o| o.inline_limit = 1 << 20,
    ];
    for change in changed {
        let mut options = half();
        change(&mut options);
        assert_ne!(key, prepare_of(&base.inputs, &options), "{options:?}");
    }
}

#[test]
fn prepare_and_action_keys_never_collide() {
    // Both live in one action cache; different magic strings keep them apart.
    let base = Base::new();
    assert_ne!(base.key(), prepare_of(&base.inputs, &half()));
}

#[test]
fn the_baseline_key_is_stable() {
    // A typed toolchain identity must encode to the same bytes as the strings it replaced:
    // every action key in every store depends on it.
    assert_eq!(
        Base::new().key().hex(),
        "e713c0e6f9acadb4e83f317dd188ad220a1888f6e319fcc082516e6857d0e915"
    );
}

#[test]
fn a_gpu_target_key_is_stable() {
    // The compute capability enters the key as its text, `9.0`, as when it was a string.
    let mut h100 = Base::new();
    h100.target = Target::Gpu {
        model: "NVIDIA H100 80GB HBM3".into(),
        compute_capability: ComputeCapability::new(9, 0),
    };
    assert_eq!(
        h100.key().hex(),
        "917cc25ea769e04bb2470399b3f8fb825580d5efe1df8be8c8adab119dcdd367"
    );
}
