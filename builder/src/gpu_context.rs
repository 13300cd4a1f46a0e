//! The builder's check of its GPU before an Enterprise build: the CUDA context it gets, and that
//! an MPS limit the manifest asks for really applies to it. TensorRT times tactics in this
//! process, so what this context gets is what the engine was tuned for.

use trtfarm_gpu::context::{ContextReport, probe_context};

/// Probes the builder's GPU (CUDA ordinal 0: the daemon makes the build GPU the only visible
/// one) and checks the MPS share. `log` receives one line for the build log.
pub(crate) fn check_build_gpu(
    mps_percentage: Option<u8>,
    log: &mut dyn FnMut(String),
) -> Result<ContextReport, String> {
    let report = probe_context(0, None)
        .map_err(|e| format!("cannot create a CUDA context on the build GPU: {e}"))?;
    check_share(&report, mps_percentage)?;
    log(describe(&report));
    Ok(report)
}

/// Refuses to build when the manifest's MPS limit did not reach this process: an engine timed
/// on the whole GPU must never pass for one timed on a share.
fn check_share(report: &ContextReport, mps_percentage: Option<u8>) -> Result<(), String> {
    let Some(asked) = mps_percentage else {
        return Ok(());
    };
    let seen = report.mps_active_thread_percentage.as_deref();
    if !report.mps_pipe_directory_set || seen != Some(asked.to_string().as_str()) {
        return Err(format!(
            "the engine asks for mps_percentage = {asked}, but this build process is not an MPS client \
             with that share (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = {}); refusing to build on the \
             whole GPU",
            seen.unwrap_or("unset")
        ));
    }
    // The SM count is reported, not checked here: under MPS even the device attribute gives
    // the client's share (measured on an H100: 32 at 25 %), so the builder cannot see the whole.
    // The daemon, which knows the GPU's full count, records both in the provenance.
    Ok(())
}

/// One line for the build log: which GPU, and how many SMs the context got.
fn describe(report: &ContextReport) -> String {
    let sms = format!(
        "{} SMs",
        report
            .context_sm_count
            .unwrap_or(report.multiprocessors_in_context)
    );
    let mps = match &report.mps_active_thread_percentage {
        Some(p) => format!(", MPS {p} %"),
        None if report.mps_pipe_directory_set => ", MPS client, no limit".into(),
        None => String::new(),
    };
    format!(
        "build GPU: {} (compute capability {}), this context gets {sms}{mps}",
        report.device_name, report.compute_capability
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as the builder would see it; no GPU exists on the test machines.
    fn fake_report(percentage: Option<&str>, pipe: bool, sms: Option<u32>) -> ContextReport {
        ContextReport {
            ordinal: 0,
            device_name: "NVIDIA H100 80GB HBM3".into(),
            compute_capability: trtfarm_gpu::inventory::ComputeCapability { major: 9, minor: 0 },
            device_multiprocessors: 132,
            multiprocessors_in_context: 132,
            context_sm_count: sms,
            context_sm_count_error: None,
            memory_free_bytes: None,
            memory_total_bytes: None,
            mps_active_thread_percentage: percentage.map(Into::into),
            mps_pipe_directory_set: pipe,
            cuda_visible_devices: Some("GPU-0".into()),
            matmul: None,
        }
    }

    #[test]
    fn a_limited_build_needs_the_limit_in_its_own_context() {
        assert!(check_share(&fake_report(Some("25"), true, Some(32)), Some(25)).is_ok());
        let not_client = check_share(&fake_report(None, false, Some(132)), Some(25)).unwrap_err();
        assert!(not_client.contains("not an MPS client"), "{not_client}");
        let other_share = check_share(&fake_report(Some("50"), true, Some(66)), Some(25));
        assert!(other_share.is_err());
        assert!(check_share(&fake_report(None, false, None), None).is_ok());
    }

    #[test]
    fn the_log_line_names_the_gpu_and_its_share() {
        assert_eq!(
            describe(&fake_report(Some("25"), true, Some(32))),
            "build GPU: NVIDIA H100 80GB HBM3 (compute capability 9.0), this context gets 32 SMs, \
             MPS 25 %"
        );
    }
}
