//! `trtfarmd serve`: wire the store, the farm, the gRPC service, health, reflection and metrics
//! together, behind the token check and TLS when configured, on a private Unix socket or a TCP
//! port (see [`crate::listener`]), and shut down by draining.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use tonic::service::InterceptorLayer;
use tonic::service::interceptor::InterceptedService;
use trtfarm_proto::local::{DaemonInfo, INFO_FILE, current_uid, ensure_private_dir};
use trtfarm_proto::v1;

use crate::build::builder_process::ProcessLauncher;
use crate::config::DaemonConfig;
use crate::gpus::{self, GpuSet, MpsConfig, MpsService};
use crate::ingest::request::RequestPolicy;
use crate::inventory;
use crate::metrics::Metrics;
use crate::schedule::queue::Resource;
use crate::schedule::{Farm, FarmSettings};
use crate::serve::auth::{self, RequireOwner, RequireToken, TokenSet};
use crate::serve::listener::{self, Listener, Reach};
use crate::serve::service::{FarmService, ServiceLimits};

/// Initial HTTP/2 flow-control window, per stream and per connection (adaptive from there).
const WINDOW: u32 = 8 << 20;

/// Connects to the farm's database (`[queue] url`) as this state directory's daemon.
async fn connect_farm(
    config: &DaemonConfig,
    url: &str,
) -> anyhow::Result<Arc<crate::schedule::postgres::SharedQueue>> {
    use crate::schedule::postgres::{PgEnvironment, QueueDatabase, SharedQueue};
    let database = QueueDatabase::resolve(
        url,
        config.queue.password_file.as_deref(),
        config.queue.ca_file.as_deref(),
        &PgEnvironment::from_process(),
    )?;
    let id = crate::schedule::postgres::registry::daemon_id(&config.state_dir)?;
    tracing::info!(%database, daemon = %id, "joining the farm's queue");
    SharedQueue::connect(database, id, config.queue.lease).await
}

/// Runs the daemon until SIGINT or SIGTERM, then drains.
pub async fn serve(config: DaemonConfig) -> anyhow::Result<()> {
    // Tokens and certificate first: a daemon that cannot use them must not start at all.
    let tokens = match &config.auth.token_file {
        Some(path) => {
            let tokens = TokenSet::load(path)?;
            tracing::info!(path = %path.display(), tokens = tokens.len(), "bearer tokens required");
            Some(Arc::new(RwLock::new(tokens)))
        }
        None => None,
    };
    let (server, scheme) = match config.tls.files() {
        Some((cert, key)) => (auth::server_with_tls(cert, key)?, "https"),
        None => (tonic::transport::Server::builder(), "http"),
    };
    let listen = config.listen_addr();
    if !config.is_loopback() && scheme == "http" {
        tracing::warn!(
            %listen,
            "listening beyond loopback without TLS: tokens, models and engines cross the \
             network in clear text; set [tls] cert_file and key_file"
        );
    }
    // Private before anything is written there: it holds the socket, the info file, the jobs
    // database and uploaded models.
    ensure_private_dir(&config.state_dir).context("the state directory cannot be used")?;
    let program = std::env::current_exe().context("cannot find the trtfarmd executable")?;
    let mut inventory = inventory::probe(
        &program,
        config.toolchains.tensorrt_rtx_lib_dir.as_deref(),
        config.toolchains.tensorrt_lib_dir.as_deref(),
    )
    .await?;
    let (gpus, mps) = probe_gpus(&config, &program).await?;
    inventory.gpus = gpus;
    for row in &inventory.rows {
        match (&row.version, &row.error) {
            (Some(version), _) => tracing::info!(flavour = %row.flavour, %version, "toolchain"),
            (None, error) => {
                tracing::info!(flavour = %row.flavour, error = error.as_deref().unwrap_or(""), "toolchain unavailable")
            }
        }
    }
    let store_options: Vec<(String, String)> = config.store.options.clone().into_iter().collect();
    let store = trtfarm_store::open(&config.store.url, &store_options)
        .with_context(|| format!("cannot open the store {}", config.store.url))?;
    let metrics = Arc::new(Metrics::new());
    let shared = match &config.queue.url {
        Some(url) => Some(connect_farm(&config, url).await?),
        None => None,
    };
    let settings = FarmSettings {
        state_dir: config.state_dir.clone(),
        slots: std::iter::once((Resource::Cpu, config.slots.cpu as u32))
            .chain(inventory.gpus.gpus.iter().map(|gpu| {
                (
                    Resource::Gpu(gpu.index),
                    config.slots.gpu_builds_per_gpu as u32,
                )
            }))
            .collect(),
        max_queued_jobs: config.limits.max_queued_jobs,
        max_log_size: config.limits.max_log_size,
        worker_memory: config.limits.worker_memory,
        job_history: config.limits.job_history as usize,
        policy: RequestPolicy {
            salt: config.action_key_salt.clone(),
            max_inputs: config.limits.max_inputs,
            max_blob_size: config.limits.max_blob_size,
            max_build_timeout: config.limits.max_build_timeout,
            // Filled in by Farm::start from the builder as installed.
            builder_digest: String::new(),
        },
        builder_program: crate::build::builder_program(config.toolchains.builder.as_deref())?,
        shared,
    };
    let farm = Farm::start(
        settings,
        Arc::clone(&store),
        Arc::new(ProcessLauncher),
        inventory,
        Arc::clone(&metrics),
    )
    .await?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = config.metrics_listen {
        let mut stop = shutdown_rx.clone();
        let (bound, _task) = crate::metrics::serve(Arc::clone(&metrics), addr, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        println!("trtfarmd metrics on http://{bound}/metrics");
    }

    let listener = Listener::bind(&listen).await?;
    let endpoint = listener.endpoint(scheme)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<v1::farm_server::FarmServer<FarmService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let service = FarmService::new(
        Arc::clone(&farm),
        Arc::clone(&metrics),
        ServiceLimits {
            max_blob_size: config.limits.max_blob_size,
            max_queued_jobs: config.limits.max_queued_jobs as u32,
            max_build_timeout_seconds: config.limits.max_build_timeout.as_secs(),
            max_log_size: config.limits.max_log_size,
            max_inputs: config.limits.max_inputs as u32,
        },
        config.state_dir.join("uploads"),
    );
    let require_token = RequireToken::new(tokens.clone());
    let reach = listener::reach(&listen, tokens.is_some());
    if let (Some(path), Some(tokens)) = (&config.auth.token_file, tokens) {
        // Installed before the daemon listens: from then on SIGHUP reloads, never kills.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP (token file reloads)")?;
        tokio::spawn(auth::reload_on_hangup(hangup, path.clone(), tokens));
    }
    DaemonInfo {
        pid: std::process::id(),
        endpoint: endpoint.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
    .write(&config.state_dir)
    .context("cannot write the daemon's info file")?;
    if reach == Reach::AnyLocalUser {
        tracing::warn!(%listen, "no bearer token on a TCP port: any local user can use this daemon");
    }
    farm.join_farm(endpoint.clone())
        .await
        .context("cannot join the farm")?;
    // The one line scripts and tests wait for.
    println!("{}", listener::startup_line(&endpoint, reach));

    let drain_timeout = config.drain_timeout;
    let shutdown = {
        let farm = Arc::clone(&farm);
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down: draining running builds");
            health
                .set_not_serving::<v1::farm_server::FarmServer<FarmService>>()
                .await;
            farm.drain(drain_timeout).await;
            let _ = shutdown_tx.send(true);
        }
    };
    let router = server
        // Blob streams need more than HTTP/2's 64 KiB default window to run at disk speed.
        .http2_adaptive_window(Some(true))
        .initial_connection_window_size(Some(WINDOW))
        .initial_stream_window_size(Some(WINDOW))
        // On a Unix socket, every service (health too) answers only the daemon's own user.
        .layer(InterceptorLayer::new(RequireOwner {
            owner: current_uid(),
        }))
        // Health stays open: load balancers probe it without a token.
        .add_service(health_service)
        .add_service(InterceptedService::new(reflection, require_token.clone()))
        .add_service(InterceptedService::new(
            v1::farm_server::FarmServer::new(service)
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
            require_token,
        ));
    match listener {
        Listener::Tcp(listener) => {
            // Our own listener (bound first, so port 0 works) bypasses the builder's
            // TCP_NODELAY: set it here, or every small response waits out the peer's delayed
            // ACK (~40 ms).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        Listener::Unix {
            listener,
            path,
            inode,
        } => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
            listener::remove_socket(&path, inode);
        }
    }
    let _ = std::fs::remove_file(config.state_dir.join(INFO_FILE));
    // After the drain: no build uses MPS any more.
    mps.shutdown();
    // Drained: no worker runs in the build root any more.
    if let Err(e) = crate::build::builder_process::BuildRoot::remove(&config.state_dir) {
        tracing::warn!("cannot remove the build root: {e}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Finds the GPUs (in a child process) and sets MPS up as configured.
async fn probe_gpus(
    config: &DaemonConfig,
    program: &std::path::Path,
) -> anyhow::Result<(GpuSet, MpsService)> {
    let inventory = gpus::probe(program).await;
    for gpu in &inventory.gpus {
        tracing::info!("{}", trtfarm_gpu::inventory::summary_line(gpu));
    }
    if let Some(reason) = &inventory.unavailable {
        tracing::info!("no GPU: {reason}");
    }
    let mps_config = MpsConfig::resolve(
        &config.gpu,
        &config.state_dir,
        std::env::var_os("CUDA_MPS_PIPE_DIRECTORY").map(Into::into),
    );
    let mps = MpsService::start(&mps_config, !inventory.gpus.is_empty())?;
    let set = GpuSet::from_inventory(inventory, config.gpu.devices.as_deref(), mps.state());
    Ok((set, mps))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
