//! What `trtfarm check` asks a daemon: the toolchains it has, so a manifest naming one it lacks
//! fails here rather than at submit. Only a daemon that is already reachable is asked (the one
//! `--daemon`/`TRTFARM_DAEMON` names, else the private local daemon if it runs): `check` never
//! starts one. A daemon of a farm answers for the farm: what any of its live daemons has counts.

use std::time::Duration;

use manifest_schema::{AvailableToolchain, Flavour, Version};
use serde::Serialize;
use trtfarm_proto::v1;

use crate::cli::DaemonArgs;
use crate::connect::{connect_remote, describe_status, local_dir};
use crate::local_daemon::find_running;

/// How long asking a daemon may take before `check` goes on without it.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// What `check` learned about the daemon's toolchains.
#[derive(Debug, Clone)]
pub enum DaemonToolchains {
    /// A daemon answered.
    Known {
        /// Where the daemon is.
        daemon: String,
        /// The toolchains it loaded.
        toolchains: Vec<AvailableToolchain>,
    },
    /// No daemon was asked, or it did not answer.
    Unchecked {
        /// The one-line note saying so, and why.
        note: String,
    },
}

/// The `daemon` object of `check --json`.
#[derive(Debug, Serialize)]
pub struct DaemonJson {
    /// Whether toolchains were checked against a daemon.
    checked: bool,
    /// The daemon asked, if one answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    /// Its toolchains, `flavour version`.
    toolchains: Vec<String>,
    /// Why toolchains were not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl DaemonToolchains {
    /// The form `check --json` carries.
    pub fn to_json(&self) -> DaemonJson {
        match self {
            DaemonToolchains::Known { daemon, toolchains } => DaemonJson {
                checked: true,
                endpoint: Some(daemon.clone()),
                toolchains: toolchains
                    .iter()
                    .map(|t| format!("{} {}", t.flavour, t.version))
                    .collect(),
                note: None,
            },
            DaemonToolchains::Unchecked { note } => DaemonJson {
                checked: false,
                endpoint: None,
                toolchains: Vec::new(),
                note: Some(note.clone()),
            },
        }
    }
}

/// Asks the daemon `args` names, else the local daemon if it already runs, for its toolchains.
pub fn ask(args: &DaemonArgs) -> DaemonToolchains {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return unchecked(format!("cannot start the async runtime: {error}")),
    };
    runtime.block_on(async {
        match tokio::time::timeout(ASK_TIMEOUT, ask_async(args)).await {
            Ok(found) => found,
            Err(_) => unchecked(format!("the daemon did not answer within {ASK_TIMEOUT:?}")),
        }
    })
}

async fn ask_async(args: &DaemonArgs) -> DaemonToolchains {
    let (daemon, capabilities, mut client) = match &args.daemon {
        Some(url) => {
            let answer = async {
                let mut client = connect_remote(url, args).await?;
                let capabilities = client
                    .get_capabilities(v1::GetCapabilitiesRequest {})
                    .await
                    .map_err(|status| anyhow::anyhow!(describe_status(&status)))?;
                anyhow::Ok((capabilities.into_inner(), client))
            };
            match answer.await {
                Ok((capabilities, client)) => (url.clone(), capabilities, client),
                Err(error) => return unchecked(format!("cannot reach {url}: {error:#}")),
            }
        }
        None => match find_running(&local_dir(args)).await {
            Some(running) => (running.info.endpoint, running.capabilities, running.client),
            None => {
                return unchecked(
                    "no daemon is running (start one with `trtfarm daemon start`, or name one \
                     with --daemon URL)"
                        .to_string(),
                );
            }
        },
    };
    // A daemon of a farm takes what any live daemon of the farm can build.
    if let Ok(farm) = client.get_farm(v1::GetFarmRequest {}).await
        && let Some(toolchains) = farm_toolchains(&farm.into_inner())
    {
        return DaemonToolchains::Known {
            daemon: format!("{daemon} or any live daemon of its farm"),
            toolchains,
        };
    }
    DaemonToolchains::Known {
        daemon,
        toolchains: loaded(&capabilities.toolchains),
    }
}

/// The toolchains the live daemons of a farm have, as the farm routes builds: only daemons
/// running the same builder program as the one that answered build its submissions. `None`
/// for a daemon on its own (its embedded queue).
fn farm_toolchains(farm: &v1::FarmStatus) -> Option<Vec<AvailableToolchain>> {
    if farm.queue == v1::EMBEDDED_QUEUE {
        return None;
    }
    let answering = farm.daemons.iter().find(|d| d.id == farm.answered_by)?;
    let mut found: Vec<AvailableToolchain> = Vec::new();
    let usable =
        (farm.daemons.iter()).filter(|d| d.live && d.builder_digest == answering.builder_digest);
    for toolchain in usable.flat_map(|d| &d.toolchains) {
        if let Some(available) = available(&toolchain.flavour, &toolchain.version)
            && !found.contains(&available)
        {
            found.push(available);
        }
    }
    Some(found)
}

/// The toolchains a daemon loaded (those it could not load, with an error, do not count).
pub fn loaded(toolchains: &[v1::Toolchain]) -> Vec<AvailableToolchain> {
    toolchains
        .iter()
        .filter(|t| t.error.is_empty())
        .filter_map(|t| available(&t.flavour, &t.version))
        .collect()
}

/// A toolchain as the wire names it (`tensorrt-rtx`, `1.7.1.116`); `None` when either part is
/// not one this client knows.
fn available(flavour: &str, version: &str) -> Option<AvailableToolchain> {
    Some(AvailableToolchain {
        flavour: flavour.parse::<Flavour>().ok()?,
        version: version.parse::<Version>().ok()?,
    })
}

fn unchecked(why: String) -> DaemonToolchains {
    DaemonToolchains::Unchecked {
        note: format!("toolchains were not checked against a daemon: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_toolchains_the_daemon_loaded_count() {
        let toolchain = |flavour: &str, version: &str, error: &str| v1::Toolchain {
            flavour: flavour.into(),
            version: version.into(),
            library_digest: String::new(),
            error: error.into(),
        };
        let found = loaded(&[
            toolchain("tensorrt-rtx", "1.7.1.116", ""),
            toolchain("tensorrt", "", "libnvinfer.so.10 not found"),
            toolchain("tensorrt-nano", "1.0.0.0", ""),
        ]);
        assert_eq!(
            found,
            vec![AvailableToolchain {
                flavour: Flavour::TensorRtRtx,
                version: "1.7.1.116".parse().unwrap(),
            }]
        );
    }

    #[test]
    fn a_farm_counts_the_toolchains_of_its_live_daemons_with_the_same_builder() {
        let daemon = |id: &str, live: bool, builder: &str, versions: &[&str]| v1::FarmDaemon {
            id: id.into(),
            live,
            builder_digest: builder.into(),
            toolchains: (versions.iter())
                .map(|v| v1::ToolchainIdentity {
                    flavour: "tensorrt-rtx".into(),
                    version: (*v).into(),
                    library_digest: String::new(),
                })
                .collect(),
            ..v1::FarmDaemon::default()
        };
        let farm = v1::FarmStatus {
            queue: "postgres://trtfarm@db:5432/farm".into(),
            answered_by: "a".into(),
            daemons: vec![
                daemon("a", true, "b1", &[]),
                daemon("b", true, "b1", &["1.7.1.116"]),
                daemon("c", true, "b1", &["1.7.1.116"]),
                daemon("d", false, "b1", &["1.8.0.1"]),
                daemon("e", true, "b2", &["1.9.0.1"]),
            ],
        };
        let found = farm_toolchains(&farm).unwrap();
        let versions: Vec<String> = found.iter().map(|t| t.version.to_string()).collect();
        assert_eq!(versions, ["1.7.1.116"], "live, same builder, each once");

        let alone = v1::FarmStatus {
            queue: v1::EMBEDDED_QUEUE.into(),
            ..farm
        };
        assert_eq!(farm_toolchains(&alone), None, "a daemon on its own");
    }

    #[test]
    fn the_json_says_whether_a_daemon_was_asked() {
        let known = DaemonToolchains::Known {
            daemon: "unix:/d.sock".into(),
            toolchains: loaded(&[v1::Toolchain {
                flavour: "tensorrt-rtx".into(),
                version: "1.7.1.116".into(),
                library_digest: String::new(),
                error: String::new(),
            }]),
        };
        let json = serde_json::to_value(known.to_json()).unwrap();
        assert_eq!(json["checked"], true);
        assert_eq!(json["endpoint"], "unix:/d.sock");
        assert_eq!(json["toolchains"][0], "tensorrt-rtx 1.7.1.116");
        let json = serde_json::to_value(unchecked("none runs".into()).to_json()).unwrap();
        assert_eq!(json["checked"], false);
        assert_eq!(
            json["note"],
            "toolchains were not checked against a daemon: none runs"
        );
    }
}
