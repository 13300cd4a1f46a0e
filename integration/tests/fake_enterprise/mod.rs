//! A FAKE TensorRT Enterprise builder behind the real daemon, for what this workplace cannot
//! run: no TensorRT Enterprise can be installed here, and no GPU here could build with it.
//!
//! The daemon runs in this test process with its real queue, store, registry, publish path and
//! gRPC service; only three things are fakes, each named so:
//! - [`FakeEnterpriseLauncher`] stands in for the `trtfarm-builder` process (the daemon's
//!   `BuilderLauncher` seam). It reads the real `task.json` and inputs the daemon prepared and
//!   behaves as an Enterprise build does with a timing cache: every layer it has no entry for is
//!   timed (here: a random choice, as timing on a real GPU varies run to run), unless the task
//!   says error-on-miss, which fails the build naming the layer; an editable cache is written
//!   back with the new entries. The plan and the layer JSON follow the chosen tactics.
//! - a fake Enterprise toolchain row (a small file stands in for the library, so the daemon's
//!   check that the builder loaded the probed library runs for real);
//! - a fake GPU (`NVIDIA H100 80GB HBM3`, 9.0).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use trtfarm_proto::v1;
use trtfarmd::build::builder_process::usage::Usage;
use trtfarmd::build::builder_process::{
    BuilderCommand, BuilderEvent, BuilderLauncher, BuilderOutcome, BuilderReport,
};
use trtfarmd::file_stamp::LoadedLibrary;
use trtfarmd::gpus::{GpuSet, GpuSlot, MpsState};
use trtfarmd::ingest::request::RequestPolicy;
use trtfarmd::inventory::{Inventory, ToolchainRow};
use trtfarmd::metrics::Metrics;
use trtfarmd::schedule::queue::Resource;
use trtfarmd::schedule::{Farm, FarmSettings};
use trtfarmd::serve::service::{FarmService, ServiceLimits};

/// The GPU model the fake GPU reports.
pub const FAKE_GPU: &str = "NVIDIA H100 80GB HBM3";

/// What one fake build was given, for assertions.
#[derive(Debug, Clone)]
pub struct FakeBuildRecord {
    /// blake3 of the timing cache it loaded, if any.
    pub loaded_cache: Option<String>,
    /// Whether it was asked to fail on a miss.
    pub error_on_miss: bool,
    /// Whether it wrote a cache back.
    pub wrote_cache: bool,
}

/// The FAKE Enterprise builder (see the module documentation).
#[derive(Clone, Default)]
pub struct FakeEnterpriseLauncher {
    /// Every build it ran, in order.
    pub builds: Arc<Mutex<Vec<FakeBuildRecord>>>,
    /// The fake library file it reports as loaded.
    library: PathBuf,
}

/// The fake cache's format: one `layer\ttactic` line per entry, sorted.
fn parse_cache(bytes: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(layer, tactic)| (layer.to_owned(), tactic.to_owned()))
        .collect()
}

fn write_cache(entries: &BTreeMap<String, String>) -> Vec<u8> {
    entries
        .iter()
        .map(|(layer, tactic)| format!("{layer}\t{tactic}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The fake's layers of a model: three, named after the model's bytes, so two models share a
/// cache scope but not its entries.
fn layers_of(model: &[u8]) -> Vec<String> {
    let tag = &blake3::hash(model).to_hex()[..8];
    (0..3).map(|i| format!("conv_{tag}_{i}")).collect()
}

impl FakeEnterpriseLauncher {
    fn build(&self, scratch: &Path) -> Result<trtfarm_build_protocol::BuilderDone, String> {
        use trtfarm_build_protocol::*;
        let task: BuilderTask = serde_json::from_slice(
            &std::fs::read(scratch.join(TASK_FILE)).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let cache_config = task.config.timing_cache.clone();
        let loaded = if task.timing_cache_input {
            Some(std::fs::read(scratch.join(TIMING_CACHE_INPUT_FILE)).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let model = std::fs::read(scratch.join(MODEL_FILE)).map_err(|e| e.to_string())?;
        let mut cache = loaded.as_deref().map(parse_cache).unwrap_or_default();
        let error_on_miss = cache_config.as_ref().is_some_and(|c| c.error_on_miss);
        let write_back = cache_config.as_ref().is_some_and(|c| c.write_output);
        self.builds.lock().unwrap().push(FakeBuildRecord {
            loaded_cache: loaded
                .as_deref()
                .map(|b| blake3::hash(b).to_hex().to_string()),
            error_on_miss,
            wrote_cache: write_back,
        });
        let mut tactics = Vec::new();
        for layer in layers_of(&model) {
            let tactic = match cache.get(&layer) {
                Some(tactic) => tactic.clone(),
                None if error_on_miss => {
                    return Err(format!(
                        "FAKE ENTERPRISE BUILDER: timing cache miss for layer `{layer}` with \
                         error-on-miss set"
                    ));
                }
                None => {
                    // Timing on a GPU: the fastest kernel differs from run to run.
                    let choice = format!("sm90_fake_tactic_{:016x}", rand_u64());
                    if cache_config.as_ref().is_some_and(|c| c.editable) {
                        cache.insert(layer.clone(), choice.clone());
                    }
                    choice
                }
            };
            tactics.push((layer, tactic));
        }
        let layers: Vec<serde_json::Value> = tactics
            .iter()
            .map(|(name, tactic)| serde_json::json!({ "Name": name, "TacticName": tactic }))
            .collect();
        let plan = serde_json::to_vec(&serde_json::json!({
            "fake_enterprise_plan": blake3::hash(&model).to_hex().to_string(),
            "Layers": layers,
        }))
        .unwrap();
        std::fs::write(scratch.join(PLAN_FILE), &plan).map_err(|e| e.to_string())?;
        std::fs::write(
            scratch.join(LAYERS_FILE),
            serde_json::to_vec(&serde_json::json!({ "Layers": layers })).unwrap(),
        )
        .map_err(|e| e.to_string())?;
        if write_back {
            std::fs::write(scratch.join(TIMING_CACHE_FILE), write_cache(&cache))
                .map_err(|e| e.to_string())?;
        }
        let library = LoadedLibrary::at(&self.library).map_err(|e| e.to_string())?;
        Ok(BuilderDone {
            plan_size: plan.len() as u64,
            plan_blake3: blake3::hash(&plan).to_hex().to_string(),
            toolchain_version: "10.13.0.35".into(),
            library: library.clone(),
            parser_library: library,
            layer_info: true,
            layer_info_error: None,
            timing_cache: write_back,
            layer_listing: false,
            layers_by_precision: BTreeMap::from([("fp32".to_owned(), 3)]),
            gpu_context: None,
        })
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("read /dev/urandom");
}

impl BuilderLauncher for FakeEnterpriseLauncher {
    fn launch(
        &self,
        command: BuilderCommand,
        events: UnboundedSender<BuilderEvent>,
        _cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'static, io::Result<BuilderReport>> {
        let this = self.clone();
        Box::pin(async move {
            let _ = events.send(BuilderEvent::Spawned {
                pid: std::process::id(),
            });
            // Long enough for two builds on two slots to overlap.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let scratch = command.scratch.clone();
            let outcome = match tokio::task::spawn_blocking(move || this.build(&scratch))
                .await
                .expect("the fake builder panicked")
            {
                Ok(done) => BuilderOutcome::Succeeded(Box::new(done)),
                Err(message) => {
                    let _ = events.send(BuilderEvent::Log {
                        severity: "error".into(),
                        text: message.clone(),
                    });
                    BuilderOutcome::BuildFailed { message }
                }
            };
            Ok(BuilderReport {
                outcome,
                log_tail: Vec::new(),
                pid: std::process::id(),
                usage: Usage::default(),
            })
        })
    }
}

/// A daemon (real farm, store, registry and service) with the fake Enterprise toolchain, GPU and
/// builder, serving on a Unix socket.
pub struct FakeEnterpriseDaemon {
    /// `unix:<path>` for `trtfarm --daemon`.
    pub endpoint: String,
    /// The builds the fake ran.
    pub launcher: FakeEnterpriseLauncher,
    /// The store URL, for `trtfarmd store gc`.
    pub store_url: String,
    /// Keeps the state directory.
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEnterpriseDaemon {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeEnterpriseDaemon {
    /// Starts one with `gpu_slots` concurrent builds on its one fake GPU.
    pub async fn start(gpu_slots: u32) -> FakeEnterpriseDaemon {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("libnvinfer.so.10-FAKE");
        std::fs::write(&library, b"FAKE TensorRT Enterprise library").unwrap();
        let digest = trtfarm_types::Blake3Digest(
            *blake3::hash(&std::fs::read(&library).unwrap()).as_bytes(),
        );
        let mut inventory = Inventory::from_rows(vec![ToolchainRow {
            flavour: "tensorrt".parse().unwrap(),
            version: Some("10.13.0.35".parse().unwrap()),
            library: Some(library.clone()),
            library_digest: Some(digest),
            parser_library: Some(library.clone()),
            parser_library_digest: Some(digest),
            stamps: Default::default(),
            error: None,
        }]);
        for toolchain in &mut inventory.available {
            // The fake builder loads nothing from a library directory.
            toolchain.library_dir = None;
        }
        inventory.gpus = GpuSet {
            gpus: vec![GpuSlot {
                index: 0,
                name: FAKE_GPU.into(),
                uuid: "GPU-00000000-FAKE-0000-0000-000000000000".into(),
                compute_capability: "9.0".parse().unwrap(),
                multiprocessors: 132,
            }],
            unavailable: None,
            mps: MpsState::Off {
                reason: "the fake GPU runs no MPS".into(),
            },
            inventory: None,
            driver_library_path: None,
        };
        let store_dir = dir.path().join("store");
        std::fs::create_dir_all(&store_dir).unwrap();
        let store_url = format!("file://{}", store_dir.display());
        let store = trtfarm_store::open(&store_url, &[]).unwrap();
        let metrics = Arc::new(Metrics::new());
        // The build root installs it and asks it to write its shims; the fake launcher never
        // runs it for a build.
        let program = dir.path().join("trtfarm-builder-FAKE");
        std::fs::write(&program, b"#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let launcher = FakeEnterpriseLauncher {
            builds: Arc::default(),
            library,
        };
        let settings = FarmSettings {
            state_dir: dir.path().join("state"),
            slots: vec![(Resource::Cpu, 2), (Resource::Gpu(0), gpu_slots)],
            max_queued_jobs: 100,
            max_log_size: 1 << 20,
            worker_memory: None,
            job_history: 100,
            policy: RequestPolicy {
                salt: None,
                max_inputs: 100,
                max_blob_size: 1 << 30,
                max_build_timeout: Duration::from_secs(3600),
                builder_digest: String::new(),
            },
            builder_program: program,
            shared: None,
        };
        let farm = Farm::start(
            settings,
            store,
            Arc::new(launcher.clone()),
            inventory,
            Arc::clone(&metrics),
        )
        .await
        .expect("start the farm");
        let service = FarmService::new(
            farm,
            metrics,
            ServiceLimits {
                max_blob_size: 1 << 30,
                max_queued_jobs: 100,
                max_build_timeout_seconds: 3600,
                max_log_size: 1 << 20,
                max_inputs: 100,
            },
            dir.path().join("state/uploads"),
        );
        let socket = dir.path().join("daemon.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(v1::farm_server::FarmServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await;
        });
        FakeEnterpriseDaemon {
            endpoint: format!("unix:{}", socket.display()),
            launcher,
            store_url,
            _dir: dir,
            server,
        }
    }

    /// How many builds the fake has run.
    pub fn builds(&self) -> Vec<FakeBuildRecord> {
        self.launcher.builds.lock().unwrap().clone()
    }
}
