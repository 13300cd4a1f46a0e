use std::path::PathBuf;

use manifest_schema::GpuSelector;

use super::*;
use crate::gpus::MpsState;
use crate::gpus::testing::fake_gpu_set;

const H100: &str = "NVIDIA H100 80GB HBM3";
const H200: &str = "NVIDIA H200";
const A100: &str = "NVIDIA A100-SXM4-80GB";

fn no_mps() -> MpsState {
    MpsState::Off {
        reason: "gpu.mps is \"off\"".into(),
    }
}

fn name(fragment: &str) -> GpuSelector {
    GpuSelector::Name(fragment.into())
}

fn cc(text: &str) -> GpuSelector {
    GpuSelector::ComputeCapability(text.parse().unwrap())
}

fn gpu_target(model: &str, cc: &str) -> Target {
    Target::Gpu {
        model: model.into(),
        compute_capability: cc.parse().unwrap(),
    }
}

#[test]
fn one_model_needs_no_selector_and_any_of_its_gpus_will_do() {
    let set = fake_gpu_set(&[(H100, "9.0"), (H100, "9.0")], no_mps());
    let choice = set.choose(None).unwrap();
    assert_eq!(choice.target, gpu_target(H100, "9.0"));
    assert_eq!(choice.candidates, vec![0, 1]);
}

#[test]
fn a_selector_picks_the_gpus_of_its_model_only() {
    let set = fake_gpu_set(&[(A100, "8.0"), (H100, "9.0"), (A100, "8.0")], no_mps());
    let by_name = set.choose(Some(&name("a100"))).unwrap();
    assert_eq!(by_name.target, gpu_target(A100, "8.0"));
    assert_eq!(by_name.candidates, vec![0, 2]);
    let by_cc = set.choose(Some(&cc("9.0"))).unwrap();
    assert_eq!(by_cc.target, gpu_target(H100, "9.0"));
    assert_eq!(by_cc.candidates, vec![1]);
}

#[test]
fn several_models_without_a_selector_are_refused_with_a_ready_answer() {
    let set = fake_gpu_set(&[(H100, "9.0"), (A100, "8.0")], no_mps());
    let error = set.choose(None).unwrap_err();
    assert!(error.contains("several GPU models"), "{error}");
    assert!(
        error.contains("1 × NVIDIA H100 80GB HBM3 (compute capability 9.0)"),
        "{error}"
    );
    assert!(
        error.contains("compatibility.gpu = \"NVIDIA H100 80GB HBM3\""),
        "{error}"
    );
}

#[test]
fn a_selector_matching_two_models_is_ambiguous() {
    // H100 and H200 share compute capability 9.0 but are different targets.
    let set = fake_gpu_set(&[(H100, "9.0"), (H200, "9.0")], no_mps());
    let error = set.choose(Some(&cc("9.0"))).unwrap_err();
    assert!(
        error.contains("compatibility.gpu = \"9.0\" matches several GPU models"),
        "{error}"
    );
}

#[test]
fn no_matching_gpu_fails_at_once_naming_what_the_daemon_has() {
    let set = fake_gpu_set(&[(H100, "9.0")], no_mps());
    let error = set.choose(Some(&name("A100"))).unwrap_err();
    assert!(error.contains("no GPU of this daemon matches"), "{error}");
    assert!(error.contains(H100), "{error}");
}

#[test]
fn a_host_without_gpus_says_why() {
    let set = fake_gpu_set(&[], no_mps());
    let error = set.choose(None).unwrap_err();
    assert!(
        error.contains("this daemon has no GPU (no NVIDIA driver)"),
        "{error}"
    );
}

#[test]
fn an_mps_limit_without_mps_is_refused_never_built_unlimited() {
    let set = fake_gpu_set(&[(H100, "9.0")], no_mps());
    assert!(set.check_mps(None).is_ok());
    let error = set.check_mps(Some(50)).unwrap_err();
    assert!(error.contains("mps_percentage = 50"), "{error}");
    assert!(error.contains("gpu.mps = \"own\""), "{error}");
    let with_mps = fake_gpu_set(
        &[(H100, "9.0")],
        MpsState::Running {
            pipe_dir: PathBuf::from("/state/mps/pipe"),
            owned: true,
        },
    );
    assert!(with_mps.check_mps(Some(50)).is_ok());
}

#[test]
fn workers_are_pinned_by_uuid_and_limited_through_mps() {
    let set = fake_gpu_set(
        &[(H100, "9.0"), (H100, "9.0")],
        MpsState::Running {
            pipe_dir: PathBuf::from("/state/mps/pipe"),
            owned: true,
        },
    );
    let gpu = set.get(1).unwrap();
    let env = set.builder_env(gpu, Some(25));
    assert!(env.contains(&(
        "CUDA_VISIBLE_DEVICES".into(),
        "GPU-00000001-0000-0000-0000-000000000000".into()
    )));
    assert!(env.contains(&("CUDA_MPS_PIPE_DIRECTORY".into(), "/state/mps/pipe".into())));
    assert!(env.contains(&("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".into(), "25".into())));
    let unlimited = set.builder_env(gpu, None);
    assert!(
        !unlimited
            .iter()
            .any(|(k, _)| k == "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
    );
    let without_mps = fake_gpu_set(&[(H100, "9.0")], no_mps());
    assert_eq!(
        without_mps.builder_env(without_mps.get(0).unwrap(), None),
        vec![(
            "CUDA_VISIBLE_DEVICES".into(),
            "GPU-00000000-0000-0000-0000-000000000000".into()
        )]
    );
}
