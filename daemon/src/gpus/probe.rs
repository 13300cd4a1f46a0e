//! Finding the GPUs: `trtfarmd probe-gpu --json` in a child process, read by the daemon.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use trtfarm_gpu::inventory::Inventory;

/// The subcommand that prints the inventory.
pub const PROBE_GPU_ARG: &str = "probe-gpu";

/// How long a probe may take: driver initialisation on a large host takes seconds, a hung
/// driver forever.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The GPUs of this host as `program probe-gpu --json` reports them. A probe that fails or
/// hangs yields an inventory with no GPUs and the reason: the daemon still serves
/// TensorRT-RTX builds, which need no GPU.
pub async fn probe(program: &Path) -> Inventory {
    match run_probe(program).await {
        Ok(inventory) => inventory,
        Err(reason) => Inventory {
            driver: Default::default(),
            gpus: Vec::new(),
            unavailable: Some(reason),
            warnings: Vec::new(),
            cuda_visible_devices: None,
        },
    }
}

async fn run_probe(program: &Path) -> Result<Inventory, String> {
    let output = tokio::process::Command::new(program)
        .args([PROBE_GPU_ARG, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, output)
        .await
        .map_err(|_| format!("the GPU probe did not finish in {PROBE_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run the GPU probe: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the GPU probe failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("the GPU probe printed something unreadable: {e}"))
}

/// The inventory, probed in this process (what `trtfarmd probe-gpu` prints).
pub fn probe_in_process() -> Inventory {
    trtfarm_gpu::inventory::probe()
}
