//! `trtfarm daemon start|stop|status`: the local daemon's lifecycle, and what a daemon (local
//! or `--daemon URL`) says about itself.

use std::path::Path;
use std::time::Duration;

use trtfarm_proto::local::{DaemonInfo, INFO_FILE};
use trtfarm_proto::v1;

use crate::cli::{DaemonAction, DaemonArgs};
use crate::connect::{connect_remote, describe_status, local_dir};
use crate::local_daemon::{self, CLIENT_VERSION, Probe, Stopped};

/// Runs a daemon action. `status` exits 1 (`Ok(false)`) when no daemon answers.
pub async fn run(daemon: &DaemonArgs, action: &DaemonAction) -> anyhow::Result<bool> {
    match (action, &daemon.daemon) {
        (DaemonAction::Status { json }, Some(url)) => remote_status(daemon, url, *json).await,
        (DaemonAction::Status { json }, None) => local_status(&local_dir(daemon), *json).await,
        (_, Some(url)) => anyhow::bail!(
            "`trtfarm daemon start|stop` manage the local daemon; --daemon/TRTFARM_DAEMON names \
             a remote one ({url})"
        ),
        (DaemonAction::Start, None) => start(&local_dir(daemon)).await,
        (DaemonAction::Stop, None) => stop(&local_dir(daemon)).await,
    }
}

async fn start(dir: &Path) -> anyhow::Result<bool> {
    let running = local_daemon::ensure(dir).await?;
    let how = if running.started {
        "started"
    } else {
        "already running"
    };
    println!(
        "local daemon {how}: {} (pid {}, version {})",
        running.info.endpoint, running.info.pid, running.capabilities.server_version
    );
    Ok(true)
}

async fn stop(dir: &Path) -> anyhow::Result<bool> {
    let info = match local_daemon::probe(dir).await? {
        Probe::Absent => {
            println!(
                "no local daemon is running (no {INFO_FILE} in {})",
                dir.display()
            );
            return Ok(true);
        }
        Probe::Stale(info) => {
            local_daemon::remove_info_of(dir, info.pid);
            println!(
                "no local daemon is running (removed a stale {INFO_FILE} naming pid {})",
                info.pid
            );
            return Ok(true);
        }
        Probe::Silent(info, _) => info,
        Probe::Answering(running) => running.info,
    };
    eprintln!(
        "stopping the local daemon (pid {}); running builds drain first",
        info.pid
    );
    match local_daemon::stop(dir, &info).await? {
        Stopped::Exited => println!("stopped the local daemon (pid {})", info.pid),
        Stopped::Killed => println!(
            "the local daemon (pid {}) did not stop in time and was killed",
            info.pid
        ),
    }
    Ok(true)
}

async fn local_status(dir: &Path, json: bool) -> anyhow::Result<bool> {
    let not_running = |why: String| {
        if json {
            let document = serde_json::json!({ "running": false, "dir": dir, "reason": why });
            println!("{document:#}");
        } else {
            eprintln!("{why}");
        }
        Ok(false)
    };
    match local_daemon::probe(dir).await? {
        Probe::Absent => not_running(format!(
            "no local daemon is running (no {INFO_FILE} in {})",
            dir.display()
        )),
        Probe::Stale(info) => not_running(format!(
            "no local daemon is running ({INFO_FILE} names pid {}, which is gone)",
            info.pid
        )),
        Probe::Silent(info, error) => not_running(format!(
            "the local daemon (pid {}, {}) does not answer: {error:#}",
            info.pid, info.endpoint
        )),
        Probe::Answering(running) => {
            if !running.info.is_private() {
                eprintln!(
                    "warning: {}",
                    local_daemon::shared_daemon_message(dir, &running.info)
                );
            }
            print_status(Some(&running.info), &running.capabilities, json);
            Ok(true)
        }
    }
}

async fn remote_status(daemon: &DaemonArgs, url: &str, json: bool) -> anyhow::Result<bool> {
    let answer = async {
        let mut client = connect_remote(url, daemon).await?;
        client
            .get_capabilities(v1::GetCapabilitiesRequest {})
            .await
            .map_err(|status| anyhow::anyhow!("{url}: {}", describe_status(&status)))
    };
    match answer.await {
        Ok(capabilities) => {
            print_status(None, capabilities.get_ref(), json);
            Ok(true)
        }
        Err(error) => {
            if json {
                let document = serde_json::json!({ "running": false, "endpoint": url, "reason": format!("{error:#}") });
                println!("{document:#}");
            } else {
                eprintln!("{error:#}");
            }
            Ok(false)
        }
    }
}

fn print_status(info: Option<&DaemonInfo>, caps: &v1::Capabilities, json: bool) {
    if json {
        println!("{:#}", status_json(info, caps));
        return;
    }
    if let Some(info) = info {
        println!("endpoint    {}", info.endpoint);
        println!("pid         {}", info.pid);
    }
    let note = match info {
        Some(_) if caps.server_version != CLIENT_VERSION => {
            format!(" (this client is {CLIENT_VERSION}: its next command restarts the daemon)")
        }
        _ => String::new(),
    };
    println!("version     {}{note}", caps.server_version);
    println!(
        "api         {} (action key v{})",
        caps.api_versions.join(", "),
        caps.action_key_version
    );
    println!("store       {} {}", caps.store_kind, caps.store_url);
    println!("toolchains");
    for toolchain in &caps.toolchains {
        if toolchain.error.is_empty() {
            println!(
                "  {:<14}{:<14}{}",
                toolchain.flavour, toolchain.version, toolchain.library_digest
            );
        } else {
            // The reason lists the directories searched, one per line: keep them indented.
            let reason = toolchain.error.trim().replace('\n', "\n                ");
            println!("  {:<14}unavailable: {reason}", toolchain.flavour);
        }
    }
    let host = caps.gpu_host.clone().unwrap_or_default();
    if caps.gpus.is_empty() {
        match host.unavailable.as_str() {
            "" => println!("gpus        none"),
            reason => println!("gpus        none: {reason}"),
        }
    } else if !host.driver_version.is_empty() {
        println!(
            "driver      {} (CUDA {})",
            host.driver_version, host.cuda_driver_version
        );
    }
    for gpu in &caps.gpus {
        println!(
            "gpu {:<7} {} (compute {}, {} SMs, {}, {})",
            gpu.index,
            gpu.name,
            gpu.compute_capability,
            gpu.multiprocessors,
            size_text(gpu.memory_bytes),
            gpu.uuid
        );
    }
    if !caps.gpus.is_empty() {
        if host.mps_running {
            let owner = if host.mps_owned {
                "started by the daemon"
            } else {
                "existing"
            };
            println!(
                "mps         running ({owner}), pipe dir {}",
                host.mps_pipe_dir
            );
        } else {
            println!("mps         off: {}", host.mps_unavailable);
        }
    }
    let slots: Vec<String> = caps
        .slots
        .iter()
        .map(|s| format!("{} {}/{} in use", s.resource, s.in_use, s.slots))
        .collect();
    println!("slots       {}", slots.join(", "));
    if let Some(limits) = &caps.limits {
        println!(
            "limits      {} queued jobs, {} per blob, {} per build, {} of log per job, {} inputs per build",
            limits.max_queued_jobs,
            size_text(limits.max_blob_bytes),
            humantime::format_duration(Duration::from_secs(limits.max_build_timeout_seconds)),
            size_text(limits.max_log_bytes),
            limits.max_inputs
        );
    }
}

fn status_json(info: Option<&DaemonInfo>, caps: &v1::Capabilities) -> serde_json::Value {
    let toolchains: Vec<_> = caps
        .toolchains
        .iter()
        .map(|t| {
            serde_json::json!({
                "flavour": t.flavour,
                "version": (!t.version.is_empty()).then_some(&t.version),
                "library_digest": (!t.library_digest.is_empty()).then_some(&t.library_digest),
                "error": (!t.error.is_empty()).then_some(&t.error),
            })
        })
        .collect();
    let gpus: Vec<_> = caps.gpus.iter().map(gpu_json).collect();
    let slots: Vec<_> = caps.slots.iter().map(slots_json).collect();
    let limits = caps.limits.as_ref().map(|l| {
        serde_json::json!({
            "max_queued_jobs": l.max_queued_jobs,
            "max_blob_bytes": l.max_blob_bytes,
            "max_build_timeout_seconds": l.max_build_timeout_seconds,
            "max_log_bytes": l.max_log_bytes,
            "max_inputs": l.max_inputs,
        })
    });
    serde_json::json!({
        "running": true,
        "endpoint": info.map(|i| &i.endpoint),
        "pid": info.map(|i| i.pid),
        "version": caps.server_version,
        "client_version": CLIENT_VERSION,
        "api_versions": caps.api_versions,
        "action_key_version": caps.action_key_version,
        "toolchains": toolchains,
        "gpus": gpus,
        "gpu_host": caps.gpu_host.as_ref().map(|h| serde_json::json!({
            "driver_version": (!h.driver_version.is_empty()).then_some(&h.driver_version),
            "cuda_driver_version":
                (!h.cuda_driver_version.is_empty()).then_some(&h.cuda_driver_version),
            "unavailable": (!h.unavailable.is_empty()).then_some(&h.unavailable),
            "mps": {
                "running": h.mps_running,
                "owned": h.mps_owned,
                "pipe_dir": (!h.mps_pipe_dir.is_empty()).then_some(&h.mps_pipe_dir),
                "unavailable": (!h.mps_unavailable.is_empty()).then_some(&h.mps_unavailable),
            },
        })),
        "store": { "kind": caps.store_kind, "url": caps.store_url },
        "slots": slots,
        "limits": limits,
    })
}

/// One GPU as `status --json` (and `trtfarm farm --json`) print it: unknown clocks and MIG mode
/// are `null`.
pub(super) fn gpu_json(g: &v1::Gpu) -> serde_json::Value {
    serde_json::json!({
        "index": g.index, "name": g.name, "uuid": g.uuid,
        "compute_capability": g.compute_capability,
        "multiprocessors": g.multiprocessors, "memory_bytes": g.memory_bytes,
        "pci_bus_id": g.pci_bus_id,
        "max_sm_clock_mhz": (g.max_sm_clock_mhz > 0).then_some(g.max_sm_clock_mhz),
        "max_memory_clock_mhz": (g.max_memory_clock_mhz > 0).then_some(g.max_memory_clock_mhz),
        "mig_mode": match g.mig_mode() {
            v1::gpu::MigMode::Unknown => None,
            v1::gpu::MigMode::Disabled => Some(false),
            v1::gpu::MigMode::Enabled => Some(true),
        },
        "processes": g.processes,
    })
}

/// One resource class's slots as JSON.
pub(super) fn slots_json(s: &v1::ResourceSlots) -> serde_json::Value {
    serde_json::json!({ "resource": s.resource, "slots": s.slots, "in_use": s.in_use })
}

/// `1.5 GiB`, `16 MiB`, `512 B`.
fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_config() {
        assert_eq!(size_text(512), "512 B");
        assert_eq!(size_text(16 << 20), "16 MiB");
        assert_eq!(size_text(64 << 30), "64 GiB");
        assert_eq!(size_text(1536 << 20), "1.5 GiB");
    }
}
