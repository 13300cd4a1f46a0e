//! The GPU side on a host without a GPU (CI): the real binaries report "no GPU" cleanly, the
//! daemon still serves, and MPS asked for on such a host stays off with the reason. The GPU
//! path itself is verified on a lent H100 by `scripts/gpu-verify` (docs/gpu-verification.md).

use std::process::Command;

use integration::binary;
use integration::cli::{run, trtfarm};
use integration::daemon::Daemon;
use trtfarm_proto::v1;

/// Whether this host has an NVIDIA driver; these tests are about hosts without one.
fn has_nvidia_driver() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
}

#[test]
fn probe_gpu_reports_no_gpu_without_a_driver_and_never_panics() {
    if has_nvidia_driver() {
        eprintln!("this host has an NVIDIA driver; scripts/gpu-verify covers it");
        return;
    }
    let ran = run(Command::new(binary("trtfarmd")).args(["probe-gpu", "--json"]))
        .expect_code(0, "probe-gpu --json");
    let inventory: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(inventory["gpus"], serde_json::json!([]));
    let reason = inventory["unavailable"].as_str().unwrap_or_default();
    assert!(reason.contains("no NVIDIA driver"), "{inventory:#}");

    let ran = run(Command::new(binary("trtfarmd")).args(["probe-gpu"])).expect_code(0, "probe-gpu");
    assert!(
        ran.stdout.contains("no GPU: no NVIDIA driver"),
        "{}",
        ran.stdout
    );

    // Asking for a CUDA context is an error with the reason, not a panic.
    let ran = run(Command::new(binary("trtfarmd")).args(["probe-gpu", "--context", "0"]))
        .expect_code(2, "probe-gpu --context 0");
    assert!(ran.stderr.contains("error:"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

#[tokio::test]
async fn a_daemon_without_gpus_serves_and_says_why_it_has_none() {
    if has_nvidia_driver() {
        eprintln!("this host has an NVIDIA driver; scripts/gpu-verify covers it");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // MPS asked for on a host without a GPU: the daemon starts, MPS stays off with the reason.
    let daemon = Daemon::start(root.path(), &["--mps", "own"]);
    let capabilities = daemon
        .client()
        .await
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(capabilities.gpus.is_empty());
    let host = capabilities.gpu_host.unwrap();
    assert!(host.unavailable.contains("no NVIDIA driver"), "{host:?}");
    assert!(!host.mps_running);
    assert_eq!(host.mps_unavailable, "this host has no GPU");
    // Only CPU slots: no GPU slot exists to wait for.
    assert!(capabilities.slots.iter().all(|s| s.resource == "cpu"));

    let home = tempfile::tempdir().unwrap();
    let ran = run(trtfarm(home.path()).args(["--daemon", &daemon.endpoint, "daemon", "status"]))
        .expect_code(0, "daemon status");
    assert!(
        ran.stdout.contains("gpus        none: no NVIDIA driver"),
        "{}",
        ran.stdout
    );
}
