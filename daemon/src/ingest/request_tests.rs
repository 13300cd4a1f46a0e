//! Request preparation: what the daemon refuses, and what does not change the key.

use std::path::PathBuf;

use trtfarm_proto::refusal::refused_setting;

use super::*;
use crate::inventory::{Inventory, ToolchainRow};

const MANIFEST: &str = r#"
schema_version = 1

[model]
path = "models/net.onnx"

[defaults]
toolchain = "tensorrt-rtx 1.7"

[defaults.compatibility]
compute_capabilities = ["8.6"]

[[profile]]
inputs.images = { min = [1, 3, 8, 8], opt = [2, 3, 8, 8], max = [4, 3, 8, 8] }

[[engine]]
name = "fp32"
"#;

fn inventory() -> Inventory {
    Inventory::from_rows(vec![ToolchainRow {
        flavour: "tensorrt-rtx".parse().unwrap(),
        version: Some("1.7.1.116".parse().unwrap()),
        library: Some(PathBuf::from("/opt/rtx/libtensorrt_rtx.so.1")),
        library_digest: Some(trtfarm_types::Blake3Digest([0xcd; 32])),
        parser_library: Some(PathBuf::from("/opt/rtx/libtensorrt_onnxparser_rtx.so.1")),
        parser_library_digest: Some(trtfarm_types::Blake3Digest([0xef; 32])),
        stamps: Default::default(),
        error: None,
    }])
}

fn policy() -> RequestPolicy {
    RequestPolicy {
        salt: None,
        max_inputs: 8,
        max_blob_size: 1 << 30,
        max_build_timeout: Duration::from_secs(6 * 3600),
        builder_digest: "77".repeat(32),
    }
}

fn digest(byte: u8) -> v1::Digest {
    v1::Digest {
        blake3: format!("{byte:02x}").repeat(32),
        size_bytes: 1000,
    }
}

fn input(path: &str, byte: u8, role: v1::InputRole) -> v1::InputFile {
    v1::InputFile {
        path: path.into(),
        digest: Some(digest(byte)),
        role: role as i32,
    }
}

fn request(toml: &str, inputs: Vec<v1::InputFile>) -> v1::SubmitRequest {
    v1::SubmitRequest {
        manifest: Some(v1::Manifest {
            path: "team/engine.toml".into(),
            toml: toml.into(),
        }),
        variant: "fp32".into(),
        inputs,
        ..v1::SubmitRequest::default()
    }
}

fn model() -> v1::InputFile {
    input("models/net.onnx", 1, v1::InputRole::Model)
}

fn refused(request: v1::SubmitRequest) -> Status {
    prepare(request, &inventory(), &policy()).expect_err("the request is refused")
}

#[test]
fn a_good_request_places_the_model_under_its_fixed_name() {
    let prepared = prepare(request(MANIFEST, vec![model()]), &inventory(), &policy()).unwrap();
    assert_eq!(prepared.materialize.len(), 1);
    assert_eq!(prepared.materialize[0].1, PathBuf::from(MODEL_NAME));
    assert_eq!(prepared.toolchain.version.to_string(), "1.7.1.116");
    assert_eq!(prepared.library_dir, Some(PathBuf::from("/opt/rtx")));
    assert_eq!(prepared.target_text(), "sm86");
}

#[test]
fn external_data_goes_beside_the_model_and_into_the_key() {
    let with = prepare(
        request(
            MANIFEST,
            vec![
                model(),
                input("weights/w.bin", 2, v1::InputRole::ExternalData),
            ],
        ),
        &inventory(),
        &policy(),
    )
    .unwrap();
    assert_eq!(with.materialize[1].1, PathBuf::from("weights/w.bin"));
    let without = prepare(request(MANIFEST, vec![model()]), &inventory(), &policy()).unwrap();
    assert_ne!(with.key, without.key);
}

#[test]
fn paths_that_climb_out_or_are_absolute_are_refused() {
    for path in [
        "../secret",
        "/etc/passwd",
        "a/../../b",
        "a/../b",
        "",
        "a\\b",
    ] {
        let status = refused(request(
            MANIFEST,
            vec![model(), input(path, 2, v1::InputRole::ExternalData)],
        ));
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{path}");
    }
}

#[test]
fn external_data_may_not_overwrite_the_model() {
    let status = refused(request(
        MANIFEST,
        vec![model(), input("model.onnx", 2, v1::InputRole::ExternalData)],
    ));
    assert!(
        status.message().contains("overwrite"),
        "{}",
        status.message()
    );
}

#[test]
fn the_model_input_must_be_the_manifests_model() {
    let status = refused(request(
        MANIFEST,
        vec![input("other.onnx", 1, v1::InputRole::Model)],
    ));
    assert!(
        status.message().contains("models/net.onnx"),
        "{}",
        status.message()
    );
    let status = refused(request(MANIFEST, vec![]));
    assert!(
        status.message().contains("no model"),
        "{}",
        status.message()
    );
    // Another spelling of the same path is fine; the model always lands at model.onnx.
    let prepared = prepare(
        request(
            MANIFEST,
            vec![input("./models//net.onnx", 1, v1::InputRole::Model)],
        ),
        &inventory(),
        &policy(),
    )
    .unwrap();
    assert_eq!(prepared.materialize[0].1, PathBuf::from(MODEL_NAME));
}

#[test]
fn no_input_placed_at_its_own_path_may_leave_the_scratch_directory() {
    let roles = [
        v1::InputRole::ExternalData,
        v1::InputRole::Plugin,
        v1::InputRole::Unspecified,
    ];
    for role in roles {
        for path in [
            "../net.onnx",
            "/models/net.onnx",
            "models/../net.onnx",
            "a\\b",
            "",
        ] {
            let status = refused(request(MANIFEST, vec![model(), input(path, 2, role)]));
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{role:?} {path}"
            );
            assert!(
                status
                    .message()
                    .contains("input paths are relative to the model"),
                "{role:?} {path}: {}",
                status.message()
            );
        }
    }
}

#[test]
fn a_model_shared_from_above_the_manifest_is_placed_like_any_model() {
    // The client checked that `../models/net.onnx` is inside its project; the daemon only
    // places the model at model.onnx, so the spelling cannot reach outside the scratch.
    let shared = MANIFEST.replace("models/net.onnx", "../models/net.onnx");
    let prepared = prepare(
        request(
            &shared,
            vec![input("../models/net.onnx", 1, v1::InputRole::Model)],
        ),
        &inventory(),
        &policy(),
    )
    .unwrap();
    assert_eq!(prepared.materialize[0].1, PathBuf::from(MODEL_NAME));
    let status = refused(request(
        &shared,
        vec![input("models/net.onnx", 1, v1::InputRole::Model)],
    ));
    assert!(
        status.message().contains("names `../models/net.onnx`"),
        "{}",
        status.message()
    );
}

#[test]
fn a_manifest_over_the_size_limit_is_resource_exhausted() {
    let mut big = MANIFEST.to_string();
    big.push_str(&"#".repeat(manifest_schema::limits::MAX_MANIFEST_BYTES));
    let status = refused(request(&big, vec![model()]));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().starts_with("team/engine.toml is ")
            && status.message().contains("at most 1048576 (1 MiB)"),
        "{}",
        status.message()
    );
    // Just under the limit the manifest is parsed (and builds).
    let mut fits = MANIFEST.to_string();
    fits.push_str(&"#".repeat(manifest_schema::limits::MAX_MANIFEST_BYTES - MANIFEST.len()));
    prepare(request(&fits, vec![model()]), &inventory(), &policy()).unwrap();
}

#[test]
fn a_manifest_over_the_engine_limit_is_refused_with_its_location() {
    let mut many = MANIFEST.to_string();
    for i in 0..manifest_schema::limits::MAX_ENGINES {
        many.push_str(&format!("[[engine]]\nname = \"e{i}\"\n"));
    }
    let status = refused(request(&many, vec![model()]));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("team/engine.toml:")
            && status.message().contains("over the limit of 256"),
        "{}",
        status.message()
    );
}

#[test]
fn a_pinned_model_digest_must_match_the_upload() {
    let pinned = MANIFEST.replace(
        "path = \"models/net.onnx\"",
        &format!(
            "path = \"models/net.onnx\"\ndigest = \"blake3:{}\"",
            "99".repeat(32)
        ),
    );
    let status = refused(request(&pinned, vec![model()]));
    assert!(
        status.message().contains("pins the model"),
        "{}",
        status.message()
    );
}

#[test]
fn manifest_errors_come_back_rendered_with_their_location() {
    let status = refused(request(
        "schema_version = 1\n[model]\npaht = 1\n",
        vec![model()],
    ));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("team/engine.toml:3"),
        "{}",
        status.message()
    );
}

#[test]
fn a_toolchain_this_daemon_lacks_is_a_failed_precondition() {
    let status = refused(request(
        &MANIFEST.replace("tensorrt-rtx 1.7", "tensorrt-rtx 1.8"),
        vec![model()],
    ));
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("1.7.1.116"),
        "{}",
        status.message()
    );
    // Named, so a client can point at the manifest's `toolchain` line.
    assert_eq!(refused_setting(&status), Some("toolchain"));
    // No toolchain of the flavour at all.
    let mut enterprise = request(enterprise::ENTERPRISE, vec![model()]);
    enterprise.variant = "h100".into();
    let enterprise = refused(enterprise);
    assert_eq!(enterprise.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused_setting(&enterprise),
        Some("toolchain"),
        "{}",
        enterprise.message()
    );
}

#[test]
fn too_many_inputs_is_resource_exhausted() {
    let inputs = (0..9)
        .map(|i| input(&format!("w{i}.bin"), i as u8, v1::InputRole::ExternalData))
        .collect();
    assert_eq!(
        refused(request(MANIFEST, inputs)).code(),
        tonic::Code::ResourceExhausted
    );
}

#[test]
fn the_manifests_own_path_and_the_models_name_do_not_change_the_key() {
    let a = prepare(request(MANIFEST, vec![model()]), &inventory(), &policy()).unwrap();
    let mut moved = request(
        &MANIFEST.replace("models/net.onnx", "renamed.onnx"),
        vec![input("renamed.onnx", 1, v1::InputRole::Model)],
    );
    moved.manifest.as_mut().unwrap().path = "elsewhere/engine.toml".into();
    let b = prepare(moved, &inventory(), &policy()).unwrap();
    assert_eq!(a.key, b.key);
}

#[test]
fn a_build_timeout_past_the_daemons_limit_is_resource_exhausted() {
    let slow = MANIFEST.replace(
        "toolchain = \"tensorrt-rtx 1.7\"",
        "toolchain = \"tensorrt-rtx 1.7\"\nbuild_timeout = \"7h\"",
    );
    let status = refused(request(&slow, vec![model()]));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("6h"), "{}", status.message());
    assert_eq!(refused_setting(&status), Some("build_timeout"));
}

#[test]
fn a_request_can_shorten_the_deadline_but_not_lengthen_it() {
    let mut short = request(MANIFEST, vec![model()]);
    short.timeout_ms = 30_000;
    let prepared = prepare(short, &inventory(), &policy()).unwrap();
    assert_eq!(prepared.timeout, Duration::from_secs(30));
    let mut long = request(MANIFEST, vec![model()]);
    long.timeout_ms = 100_000_000;
    let prepared = prepare(long, &inventory(), &policy()).unwrap();
    assert_eq!(
        prepared.timeout,
        Duration::from_secs(3600),
        "the manifest's 1h stays"
    );
}

#[path = "request_enterprise_tests.rs"]
mod enterprise;
