//! `trtfarm farm [--json]`: the daemons that share the reached daemon's queue, as that daemon
//! sees them in the farm's registry (or itself alone, for a daemon with an embedded queue).

use std::time::SystemTime;

use tonic::Code;
use trtfarm_proto::v1;

use super::daemon::{gpu_json, slots_json};
use super::jobs::{age, align, time_of};
use crate::cli::DaemonArgs;
use crate::connect::{connect, describe_status};

/// Runs `trtfarm farm`: asks the daemon the global options name (local or `--daemon URL`, like
/// every job command) for its farm and prints it. Silent daemons are shown, not an error: the
/// command describes the farm, it does not judge it.
pub async fn run(daemon: &DaemonArgs, json: bool) -> anyhow::Result<bool> {
    let mut client = connect(daemon).await?;
    let farm = client
        .get_farm(v1::GetFarmRequest {})
        .await
        .map_err(|status| {
            // Only a remote daemon can be older than this client: a local one of another
            // version is restarted by `connect`.
            if status.code() == Code::Unimplemented {
                anyhow::anyhow!(
                    "cannot list the farm: {}\nhint: the daemon predates `trtfarm farm`; \
                     upgrade it (`trtfarm daemon status` shows its version)",
                    describe_status(&status)
                )
            } else {
                anyhow::anyhow!("cannot list the farm: {}", describe_status(&status))
            }
        })?
        .into_inner();
    if json {
        println!("{:#}", farm_json(&farm));
    } else {
        print!("{}", describe(&farm, SystemTime::now()));
    }
    Ok(true)
}

/// What `trtfarm farm` prints: the queue, one aligned row per daemon, and a footnote naming the
/// daemon that answered (when it is one of a shared farm's).
fn describe(farm: &v1::FarmStatus, now: SystemTime) -> String {
    let mut out = if farm.queue == v1::EMBEDDED_QUEUE {
        format!("queue: {} (this daemon only)\n", v1::EMBEDDED_QUEUE)
    } else {
        format!("queue: {}\n", farm.queue)
    };
    let header = [
        "HOST",
        "ENDPOINT",
        "TOOLCHAINS",
        "GPUS",
        "SLOTS",
        "HEARTBEAT",
        "STATE",
    ]
    .map(String::from);
    let mut rows = vec![header];
    let mut marked = false;
    for daemon in &farm.daemons {
        let mut host = or_dash(daemon.host.clone());
        // An embedded daemon reports no id (and answers for itself): nothing to tell apart.
        if !farm.answered_by.is_empty() && daemon.id == farm.answered_by {
            host.push('*');
            marked = true;
        }
        let toolchains: Vec<String> = daemon
            .toolchains
            .iter()
            .map(|t| format!("{} {}", t.flavour, t.version).trim().to_string())
            .collect();
        let slots: Vec<String> = daemon
            .slots
            .iter()
            .map(|s| format!("{} {}/{}", s.resource, s.in_use, s.slots))
            .collect();
        let heartbeat = time_of(daemon.heartbeat_at_ms)
            .map(|at| format!("{} ago", age(at, now)))
            .unwrap_or_default();
        rows.push([
            host,
            or_dash(daemon.endpoint.clone()),
            or_dash(toolchains.join(", ")),
            or_dash(gpu_groups(&daemon.gpus)),
            or_dash(slots.join(", ")),
            or_dash(heartbeat),
            if daemon.live { "live" } else { "silent" }.to_string(),
        ]);
    }
    out.push_str(&align(&rows));
    if marked {
        out.push_str("* answered this request\n");
    }
    out
}

/// `NVIDIA L4/8.9 x2, NVIDIA A10/8.6`: GPUs of one model and compute capability counted
/// together (in the order first seen), since a farm's hosts usually hold several of a kind.
fn gpu_groups(gpus: &[v1::Gpu]) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for gpu in gpus {
        let kind = if gpu.compute_capability.is_empty() {
            gpu.name.clone()
        } else {
            format!("{}/{}", gpu.name, gpu.compute_capability)
        };
        match groups.iter_mut().find(|(seen, _)| *seen == kind) {
            Some((_, count)) => *count += 1,
            None => groups.push((kind, 1)),
        }
    }
    groups
        .into_iter()
        .map(|(kind, count)| match count {
            1 => kind,
            _ => format!("{kind} x{count}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `-` for an empty cell, so that every column of a row has something to line up on.
fn or_dash(text: String) -> String {
    if text.is_empty() { "-".into() } else { text }
}

/// The whole `FarmStatus` as JSON, every field kept. Values an embedded daemon leaves unset (its
/// id, endpoint, `answered_by`, zero timestamps) are `null`, as `daemon status --json` does for
/// what is unknown.
fn farm_json(farm: &v1::FarmStatus) -> serde_json::Value {
    let text = |s: &String| (!s.is_empty()).then(|| s.clone());
    let ms = |ms: i64| (ms > 0).then_some(ms);
    let daemons: Vec<_> = farm
        .daemons
        .iter()
        .map(|d| {
            let toolchains: Vec<_> = d
                .toolchains
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "flavour": t.flavour,
                        "version": t.version,
                        "library_digest": t.library_digest,
                    })
                })
                .collect();
            serde_json::json!({
                "id": text(&d.id),
                "host": d.host,
                "endpoint": text(&d.endpoint),
                "version": d.version,
                "toolchains": toolchains,
                "gpus": d.gpus.iter().map(gpu_json).collect::<Vec<_>>(),
                "mps": d.mps,
                "slots": d.slots.iter().map(slots_json).collect::<Vec<_>>(),
                "started_at_ms": ms(d.started_at_ms),
                "heartbeat_at_ms": ms(d.heartbeat_at_ms),
                "live": d.live,
                "builder_digest": d.builder_digest,
            })
        })
        .collect();
    serde_json::json!({
        "queue": farm.queue,
        "daemons": daemons,
        "answered_by": text(&farm.answered_by),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn gpu(index: u32, name: &str, compute_capability: &str) -> v1::Gpu {
        v1::Gpu {
            index,
            name: name.into(),
            uuid: format!("GPU-{index}"),
            compute_capability: compute_capability.into(),
            ..v1::Gpu::default()
        }
    }

    fn slots(resource: &str, slots: u32, in_use: u32) -> v1::ResourceSlots {
        v1::ResourceSlots {
            resource: resource.into(),
            slots,
            in_use,
        }
    }

    /// Two daemons on one PostgreSQL queue: `a` (live, two L4s and an A10, answering) and `b`
    /// (CPU-only, silent for ten minutes).
    fn farm() -> v1::FarmStatus {
        let a = v1::FarmDaemon {
            id: "daemon-a".into(),
            host: "gpu-a".into(),
            endpoint: "http://gpu-a:50051".into(),
            version: "0.1.0".into(),
            toolchains: vec![v1::ToolchainIdentity {
                flavour: "tensorrt-rtx".into(),
                version: "1.7.1.116".into(),
                library_digest: "ab".repeat(32),
            }],
            gpus: vec![
                gpu(0, "NVIDIA L4", "8.9"),
                gpu(1, "NVIDIA A10", "8.6"),
                gpu(2, "NVIDIA L4", "8.9"),
            ],
            mps: true,
            slots: vec![slots("cpu", 2, 1), slots("gpu:0", 1, 0)],
            started_at_ms: 900_000,
            heartbeat_at_ms: 998_000,
            live: true,
            builder_digest: "cd".repeat(32),
        };
        let b = v1::FarmDaemon {
            id: "daemon-b".into(),
            host: "cpu-b".into(),
            endpoint: "https://cpu-b.example:50051".into(),
            version: "0.1.0".into(),
            slots: vec![slots("cpu", 4, 0)],
            started_at_ms: 100_000,
            heartbeat_at_ms: 400_000,
            live: false,
            ..v1::FarmDaemon::default()
        };
        v1::FarmStatus {
            queue: "postgres://trtfarm@db:5432/trtfarm".into(),
            daemons: vec![a, b],
            answered_by: "daemon-a".into(),
        }
    }

    #[test]
    fn every_daemon_gets_an_aligned_row_and_the_answering_one_a_mark() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let text = describe(&farm(), now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "queue: postgres://trtfarm@db:5432/trtfarm");
        let header = lines[1];
        for column in [
            "HOST",
            "ENDPOINT",
            "TOOLCHAINS",
            "GPUS",
            "SLOTS",
            "HEARTBEAT",
            "STATE",
        ] {
            assert!(header.contains(column), "{text}");
        }
        // Aligned: each column starts at the same place on every line.
        let at = |line: &str, cell: &str| line.find(cell).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            at(lines[2], "http://gpu-a"),
            at(header, "ENDPOINT"),
            "{text}"
        );
        assert_eq!(
            at(lines[3], "https://cpu-b"),
            at(header, "ENDPOINT"),
            "{text}"
        );
        assert_eq!(at(lines[2], "2s ago"), at(header, "HEARTBEAT"), "{text}");
        assert_eq!(at(lines[3], "10m ago"), at(header, "HEARTBEAT"), "{text}");

        assert!(lines[2].starts_with("gpu-a* "), "{text}");
        assert!(lines[2].contains(" tensorrt-rtx 1.7.1.116 "), "{text}");
        assert!(
            lines[2].contains(" NVIDIA L4/8.9 x2, NVIDIA A10/8.6 "),
            "GPUs grouped by model and compute capability: {text}"
        );
        assert!(lines[2].contains(" cpu 1/2, gpu:0 0/1 "), "{text}");
        assert!(lines[2].ends_with(" live"), "{text}");

        assert!(lines[3].starts_with("cpu-b "), "not marked: {text}");
        let cells: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "cpu-b",
                "https://cpu-b.example:50051",
                "-",
                "-",
                "cpu",
                "0/4",
                "10m",
                "ago",
                "silent"
            ],
            "no toolchains, no GPUs: {text}"
        );
        assert_eq!(lines[4], "* answered this request");
    }

    #[test]
    fn an_embedded_queue_is_a_farm_of_one_without_a_mark() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let mut only = farm().daemons.remove(0);
        only.id.clear();
        only.endpoint.clear();
        only.heartbeat_at_ms = 0;
        let farm = v1::FarmStatus {
            queue: v1::EMBEDDED_QUEUE.into(),
            daemons: vec![only],
            answered_by: String::new(),
        };
        let text = describe(&farm, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "no footnote: {text}");
        assert_eq!(lines[0], "queue: embedded (this daemon only)");
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells[..2], ["gpu-a", "-"], "{text}");
        assert_eq!(cells[cells.len() - 2..], ["-", "live"], "{text}");
    }

    #[test]
    fn the_json_keeps_every_field() {
        let value = farm_json(&farm());
        assert_eq!(value["queue"], "postgres://trtfarm@db:5432/trtfarm");
        assert_eq!(value["answered_by"], "daemon-a");
        let a = &value["daemons"][0];
        for field in [
            "id",
            "host",
            "endpoint",
            "version",
            "toolchains",
            "gpus",
            "mps",
            "slots",
            "started_at_ms",
            "heartbeat_at_ms",
            "live",
            "builder_digest",
        ] {
            assert!(!a[field].is_null(), "{field}: {value:#}");
        }
        assert_eq!(a["toolchains"][0]["library_digest"], "ab".repeat(32));
        assert_eq!(a["gpus"][2]["compute_capability"], "8.9");
        assert_eq!(a["slots"][0]["in_use"], 1);
        assert_eq!(a["mps"], true);
        assert_eq!(value["daemons"][1]["live"], false);

        let embedded = farm_json(&v1::FarmStatus {
            queue: v1::EMBEDDED_QUEUE.into(),
            ..v1::FarmStatus::default()
        });
        assert!(embedded["answered_by"].is_null(), "{embedded:#}");
    }
}
