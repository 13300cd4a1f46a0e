//! The farm's daemons: each one's record of what it can build, kept alive by its heartbeat,
//! and the farm-wide view a submission is checked against.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use trtfarm_proto::v1;

use crate::gpus::{GpuSet, GpuSlot, MpsState};
use crate::ingest::action_key::Target;
use crate::ingest::request::PreparedBuild;
use crate::inventory::{AvailableToolchain, Inventory, ToolchainIdentity};

/// What one daemon can build with, as registered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Its loaded toolchains.
    pub toolchains: Vec<ToolchainIdentity>,
    /// Its GPUs for Enterprise builds.
    pub gpus: Vec<RegisteredGpu>,
    /// Whether builds there can be limited to a share of a GPU.
    pub mps: bool,
}

/// One GPU of a daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredGpu {
    /// CUDA ordinal on its host.
    pub index: u32,
    /// Model name.
    pub name: String,
    /// `GPU-…`.
    pub uuid: String,
    /// e.g. `8.9`.
    pub compute_capability: String,
    /// SM count.
    pub multiprocessors: u32,
}

impl Capabilities {
    /// This daemon's capabilities.
    pub fn of(inventory: &Inventory) -> Capabilities {
        Capabilities {
            toolchains: inventory.available.iter().map(|t| t.identity).collect(),
            gpus: inventory
                .gpus
                .gpus
                .iter()
                .map(|gpu| RegisteredGpu {
                    index: gpu.index,
                    name: gpu.name.clone(),
                    uuid: gpu.uuid.clone(),
                    compute_capability: gpu.compute_capability.to_string(),
                    multiprocessors: gpu.multiprocessors,
                })
                .collect(),
            mps: matches!(inventory.gpus.mps, MpsState::Running { .. }),
        }
    }

    /// The targets (`<model>/<compute capability>`) of its GPUs.
    pub fn gpu_targets(&self) -> Vec<String> {
        self.gpus
            .iter()
            .map(|gpu| format!("{}/{}", gpu.name, gpu.compute_capability))
            .collect()
    }
}

/// What a build needs of the daemon that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The toolchain, as [`toolchain_text`] writes it.
    pub toolchain: String,
    /// The builder program's digest (it is in the action key).
    pub builder_digest: String,
    /// `<model>/<compute capability>` for an Enterprise build.
    pub gpu_target: Option<String>,
    /// Whether it asks for a share of a GPU (MPS).
    pub needs_mps: bool,
}

impl Requirement {
    /// What `prepared` needs, its key computed with `builder_digest`.
    pub fn of(prepared: &PreparedBuild, builder_digest: &str) -> Requirement {
        Requirement {
            toolchain: toolchain_text(&prepared.toolchain),
            builder_digest: builder_digest.to_owned(),
            gpu_target: match &prepared.target {
                Target::AheadOfTime => None,
                Target::Gpu { .. } => Some(prepared.target_text()),
            },
            needs_mps: prepared.variant.settings.mps_percentage.is_some(),
        }
    }

    /// Whether a daemon with `capabilities` and `builder_digest` can build it.
    pub fn met_by(&self, capabilities: &Capabilities, builder_digest: &str) -> bool {
        builder_digest == self.builder_digest
            && capabilities
                .toolchains
                .iter()
                .any(|t| toolchain_text(t) == self.toolchain)
            && match &self.gpu_target {
                None => true,
                Some(target) => {
                    capabilities.gpu_targets().contains(target)
                        && (!self.needs_mps || capabilities.mps)
                }
            }
    }
}

/// One text per toolchain identity, compared for equality when claiming.
pub fn toolchain_text(identity: &ToolchainIdentity) -> String {
    format!(
        "{} {} {} {}",
        identity.flavour,
        identity.version,
        identity.library.hex(),
        identity.parser.hex()
    )
}

/// This state directory's daemon id in a farm: made once, kept in `daemon-id`, so a restarted
/// daemon recognises the builds it held before it died.
pub fn daemon_id(state_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = state_dir.join("daemon-id");
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_owned());
    }
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let seed = format!(
        "{host} {} {} {:?}",
        std::process::id(),
        crate::schedule::now_ms(),
        state_dir
    );
    let id = format!("{host}-{}", &blake3::hash(seed.as_bytes()).to_hex()[..12]);
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, &id)?;
    std::fs::rename(&temporary, &path)?;
    Ok(id)
}

/// One daemon's row.
#[derive(Debug, Clone)]
pub struct DaemonRecord {
    /// Stable per state directory.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Where clients reach it.
    pub endpoint: String,
    /// trtfarmd version.
    pub version: String,
    /// Its builder program's digest.
    pub builder_digest: String,
    /// What it can build with.
    pub capabilities: Capabilities,
    /// Its slots now.
    pub slots: Vec<v1::ResourceSlots>,
    /// Unix milliseconds of its start and its last heartbeat.
    pub started_at_ms: i64,
    /// Unix milliseconds of its last heartbeat.
    pub heartbeat_at_ms: i64,
    /// Whether its heartbeat is recent (within a lease).
    pub live: bool,
}

/// Slots as JSON rows.
#[derive(Serialize, Deserialize)]
struct SlotRow {
    resource: String,
    slots: u32,
    in_use: u32,
}

/// Inserts or refreshes `record` (the heartbeat).
pub(super) async fn upsert(
    client: &impl GenericClient,
    record: &DaemonRecord,
) -> Result<(), tokio_postgres::Error> {
    let capabilities = serde_json::to_value(&record.capabilities).expect("plain data");
    let slots = serde_json::to_value(
        record
            .slots
            .iter()
            .map(|s| SlotRow {
                resource: s.resource.clone(),
                slots: s.slots,
                in_use: s.in_use,
            })
            .collect::<Vec<_>>(),
    )
    .expect("plain data");
    client
        .execute(
            "INSERT INTO trtfarm_daemons
                 (id, host, endpoint, version, builder_digest, capabilities, slots)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET
                 host = EXCLUDED.host, endpoint = EXCLUDED.endpoint,
                 version = EXCLUDED.version, builder_digest = EXCLUDED.builder_digest,
                 capabilities = EXCLUDED.capabilities, slots = EXCLUDED.slots,
                 heartbeat_at = now()",
            &[
                &record.id,
                &record.host,
                &record.endpoint,
                &record.version,
                &record.builder_digest,
                &capabilities,
                &slots,
            ],
        )
        .await?;
    Ok(())
}

/// Every registered daemon, live ones first; `live_within` decides which are live.
pub(super) async fn list(
    client: &impl GenericClient,
    live_within: std::time::Duration,
) -> Result<Vec<DaemonRecord>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, host, endpoint, version, builder_digest, capabilities, slots,
                    (extract(epoch FROM started_at) * 1000)::bigint,
                    (extract(epoch FROM heartbeat_at) * 1000)::bigint,
                    heartbeat_at > now() - make_interval(secs => $1)
             FROM trtfarm_daemons
             ORDER BY 10 DESC, host, id",
            &[&live_within.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let capabilities: serde_json::Value = row.get(5);
            let slots: serde_json::Value = row.get(6);
            let slots: Vec<SlotRow> = serde_json::from_value(slots).unwrap_or_default();
            DaemonRecord {
                id: row.get(0),
                host: row.get(1),
                endpoint: row.get(2),
                version: row.get(3),
                builder_digest: row.get(4),
                capabilities: serde_json::from_value(capabilities).unwrap_or_default(),
                slots: slots
                    .into_iter()
                    .map(|s| v1::ResourceSlots {
                        resource: s.resource,
                        slots: s.slots,
                        in_use: s.in_use,
                    })
                    .collect(),
                started_at_ms: row.get(7),
                heartbeat_at_ms: row.get(8),
                live: row.get(9),
            }
        })
        .collect())
}

/// Removes a daemon's record (it is shutting down).
pub(super) async fn remove(
    client: &impl GenericClient,
    id: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("DELETE FROM trtfarm_daemons WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// The farm as one inventory, for checking a submission the daemon that receives it may not be
/// able to build itself: every live daemon's toolchains and GPUs.
pub fn farm_inventory(daemons: &[DaemonRecord]) -> Inventory {
    let mut inventory = Inventory::default();
    let mut gpus = Vec::new();
    let mut mps = false;
    for daemon in daemons.iter().filter(|d| d.live) {
        for identity in &daemon.capabilities.toolchains {
            if !inventory.available.iter().any(|t| t.identity == *identity) {
                inventory.available.push(AvailableToolchain {
                    flavour: identity.flavour,
                    identity: *identity,
                    library_dir: None,
                    stamps: Default::default(),
                });
            }
        }
        for gpu in &daemon.capabilities.gpus {
            let Ok(compute_capability) = gpu.compute_capability.parse() else {
                continue;
            };
            gpus.push(GpuSlot {
                index: gpus.len() as u32,
                name: gpu.name.clone(),
                uuid: gpu.uuid.clone(),
                compute_capability,
                multiprocessors: gpu.multiprocessors,
            });
        }
        mps |= daemon.capabilities.mps;
    }
    inventory.gpus = GpuSet {
        unavailable: gpus
            .is_empty()
            .then(|| "no live daemon of the farm has a GPU".into()),
        gpus,
        mps: if mps {
            MpsState::Running {
                pipe_dir: Default::default(),
                owned: false,
            }
        } else {
            MpsState::Off {
                reason: "no live daemon of the farm runs MPS".into(),
            }
        },
        inventory: None,
        driver_library_path: None,
    };
    inventory
}

/// A daemon's record as the `GetFarm` RPC answers it.
pub fn wire(record: DaemonRecord) -> v1::FarmDaemon {
    v1::FarmDaemon {
        id: record.id,
        host: record.host,
        endpoint: record.endpoint,
        version: record.version,
        toolchains: record
            .capabilities
            .toolchains
            .iter()
            .map(|t| v1::ToolchainIdentity {
                flavour: t.flavour.to_string(),
                version: t.version.to_string(),
                library_digest: t.library.hex(),
            })
            .collect(),
        gpus: record
            .capabilities
            .gpus
            .iter()
            .map(|gpu| v1::Gpu {
                index: gpu.index,
                name: gpu.name.clone(),
                uuid: gpu.uuid.clone(),
                compute_capability: gpu.compute_capability.clone(),
                multiprocessors: gpu.multiprocessors,
                ..v1::Gpu::default()
            })
            .collect(),
        mps: record.capabilities.mps,
        slots: record.slots,
        started_at_ms: record.started_at_ms,
        heartbeat_at_ms: record.heartbeat_at_ms,
        live: record.live,
        builder_digest: record.builder_digest,
    }
}

/// What the farm has, for a refusal: one line per live daemon.
pub fn describe_farm(daemons: &[DaemonRecord]) -> String {
    let live: Vec<String> = daemons
        .iter()
        .filter(|d| d.live)
        .map(|d| {
            let toolchains: Vec<String> = d
                .capabilities
                .toolchains
                .iter()
                .map(|t| format!("{} {}", t.flavour, t.version))
                .collect();
            let gpus = d.capabilities.gpu_targets();
            format!(
                "{} ({}): {}; GPUs: {}",
                d.host,
                d.endpoint,
                if toolchains.is_empty() {
                    "no toolchain".into()
                } else {
                    toolchains.join(", ")
                },
                if gpus.is_empty() {
                    "none".into()
                } else {
                    gpus.join(", ")
                }
            )
        })
        .collect();
    if live.is_empty() {
        "no daemon of the farm is live".into()
    } else {
        live.join("; ")
    }
}
