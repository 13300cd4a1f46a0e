//! Enterprise routing in a farm, through the real claim queries on a real PostgreSQL, with
//! made-up daemon registrations (fakes: this machine has no GPU and no TensorRT Enterprise).
//! Two sm_89 boards, an L4 and an RTX 4090, are different targets; an Enterprise build goes
//! only to a daemon with its exact GPU model, and one asking for MPS only to a daemon with MPS.
//! The farm's timing-cache index keeps every recording of two daemons that finish together.

use std::time::Duration;

use integration::postgres::TestPostgres;
use trtfarm_proto::v1;
use trtfarm_types::{Blake3Digest, ToolchainIdentity};
use trtfarmd::ingest::request::{RequestPolicy, prepare};
use trtfarmd::schedule::postgres::registry::{
    Capabilities, DaemonRecord, RegisteredGpu, Requirement, farm_inventory, toolchain_text,
};
use trtfarmd::schedule::postgres::{Offer, PgEnvironment, QueueDatabase, SharedQueue};

const BUILDER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

const MANIFEST: &str = r#"
schema_version = 1

[model]
path = "models/net.onnx"

[defaults]
toolchain = "tensorrt 11.4"

[[profile]]
inputs.images = { min = [1, 3, 8, 8], opt = [2, 3, 8, 8], max = [4, 3, 8, 8] }

[[engine]]
name = "l4"
compatibility.gpu = "L4"

[[engine]]
name = "l4-shared"
compatibility.gpu = "L4"
mps_percentage = 50

[[engine]]
name = "h100"
compatibility.gpu = "H100"

[[engine]]
name = "any"
"#;

fn enterprise() -> ToolchainIdentity {
    ToolchainIdentity {
        flavour: "tensorrt".parse().unwrap(),
        version: "11.4.0.7".parse().unwrap(),
        library: Blake3Digest([0xab; 32]),
        parser: Blake3Digest([0xef; 32]),
    }
}

fn fake_gpu(name: &str, cc: &str) -> RegisteredGpu {
    RegisteredGpu {
        index: 0,
        name: name.into(),
        uuid: format!("GPU-fake-{name}"),
        compute_capability: cc.into(),
        multiprocessors: 58,
    }
}

/// A made-up daemon registration.
fn fake_daemon(id: &str, gpus: Vec<RegisteredGpu>, mps: bool) -> DaemonRecord {
    DaemonRecord {
        id: id.into(),
        host: id.into(),
        endpoint: format!("https://{id}:50051"),
        version: "test".into(),
        builder_digest: BUILDER.into(),
        capabilities: Capabilities {
            toolchains: vec![enterprise()],
            gpus,
            mps,
        },
        slots: Vec::new(),
        started_at_ms: 0,
        heartbeat_at_ms: 0,
        live: true,
    }
}

fn request(variant: &str) -> v1::SubmitRequest {
    v1::SubmitRequest {
        manifest: Some(v1::Manifest {
            path: "engine.toml".into(),
            toml: MANIFEST.into(),
        }),
        variant: variant.into(),
        inputs: vec![v1::InputFile {
            path: "models/net.onnx".into(),
            digest: Some(v1::Digest {
                blake3: "11".repeat(32),
                size_bytes: 1,
            }),
            role: v1::InputRole::Model as i32,
        }],
        ..v1::SubmitRequest::default()
    }
}

fn policy() -> RequestPolicy {
    RequestPolicy {
        salt: None,
        max_inputs: 16,
        max_blob_size: 1 << 30,
        max_build_timeout: Duration::from_secs(3600),
        builder_digest: BUILDER.into(),
    }
}

/// What a daemon with these GPU targets (all free) offers.
fn offer<'a>(toolchains: &'a [String], gpu_targets: &'a [String], mps: bool) -> Offer<'a> {
    Offer {
        builder_digest: BUILDER,
        toolchains,
        cpu_free: true,
        gpu_targets,
        mps,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn enterprise_builds_go_only_to_a_daemon_with_their_exact_gpu_model() {
    let pg = TestPostgres::start();
    let database =
        QueueDatabase::resolve(&pg.url(), None, None, &PgEnvironment::default()).unwrap();
    let queue = SharedQueue::connect(database, "router".into(), Duration::from_secs(30))
        .await
        .unwrap();
    let l4 = fake_daemon("l4-host", vec![fake_gpu("NVIDIA L4", "8.9")], true);
    let rtx4090 = fake_daemon(
        "workstation",
        vec![fake_gpu("NVIDIA GeForce RTX 4090", "8.9")],
        false,
    );
    for daemon in [&l4, &rtx4090] {
        queue.heartbeat(daemon.clone()).await.unwrap();
    }
    let daemons = queue.daemons().await.unwrap();
    assert_eq!(daemons.len(), 2);
    let inventory = farm_inventory(&daemons);

    let toolchains = vec![toolchain_text(&enterprise())];
    let on_l4 = vec!["NVIDIA L4/8.9".to_string()];
    let on_4090 = vec!["NVIDIA GeForce RTX 4090/8.9".to_string()];

    for variant in ["l4", "l4-shared"] {
        let prepared = prepare(request(variant), &inventory, &policy()).unwrap();
        assert_eq!(prepared.target_text(), "NVIDIA L4/8.9");
        let requirement = Requirement::of(&prepared, BUILDER);
        assert!(requirement.met_by(&l4.capabilities, BUILDER));
        assert!(!requirement.met_by(&rtx4090.capabilities, BUILDER));
        let (job, joined) = queue.enqueue(&prepared, &requirement, 100).await.unwrap();
        assert!(!joined);
        assert_eq!(job.state, v1::JobState::Queued as i32);

        // The same compute capability on another board, a CPU-only daemon and a daemon of
        // another builder claim nothing.
        assert!(
            queue
                .claim(&offer(&toolchains, &on_4090, false))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            queue
                .claim(&offer(&toolchains, &[], false))
                .await
                .unwrap()
                .is_none()
        );
        let other_builder = Offer {
            builder_digest: "ff",
            ..offer(&toolchains, &on_l4, true)
        };
        assert!(queue.claim(&other_builder).await.unwrap().is_none());
        if variant == "l4-shared" {
            // An MPS share needs an L4 daemon with MPS.
            assert!(
                queue
                    .claim(&offer(&toolchains, &on_l4, false))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        let claimed = queue
            .claim(&offer(&toolchains, &on_l4, true))
            .await
            .unwrap()
            .expect("the L4 daemon claims it");
        assert_eq!(claimed.action_key, prepared.key.hex());
        assert_eq!(claimed.request.variant, variant);
    }

    // No daemon of the farm has an H100: refused at submit, naming what the farm has.
    let refused = prepare(request("h100"), &inventory, &policy()).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("NVIDIA L4"),
        "{}",
        refused.message()
    );
    // Without a GPU selector, the farm's two models leave the target open: refused too.
    let refused = prepare(request("any"), &inventory, &policy()).unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_is_created_once_and_a_newer_one_is_refused() {
    let pg = TestPostgres::start();
    let connect = || async {
        let database =
            QueueDatabase::resolve(&pg.url(), None, None, &PgEnvironment::default()).unwrap();
        SharedQueue::connect(database, "daemon".into(), Duration::from_secs(30)).await
    };
    // Daemons starting together migrate once.
    let (first, second) = tokio::join!(connect(), connect());
    first.unwrap();
    second.unwrap();
    let version = trtfarmd::schedule::postgres::schema_version();
    assert_eq!(
        pg.psql("SELECT version FROM trtfarm_schema"),
        version.to_string()
    );
    assert_eq!(pg.psql("SELECT count(*) FROM trtfarm_schema"), "1");

    pg.psql(&format!(
        "UPDATE trtfarm_schema SET version = {}",
        version + 1
    ));
    let refused = match connect().await {
        Ok(_) => panic!("a daemon started against a newer schema"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        refused.contains("newer than this trtfarmd knows") && refused.contains("upgrade"),
        "{refused}"
    );
    assert!(!refused.contains("password"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_speaks_tls_to_a_database_that_offers_it_and_verifies_its_certificate() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = integration::tls::private_ca(dir.path());
    pg.enable_tls(&cert, &key);
    let url = format!("{}?sslmode=require", pg.url());
    let connect = |ca_file: Option<&std::path::Path>| {
        let database =
            QueueDatabase::resolve(&url, None, ca_file, &PgEnvironment::default()).unwrap();
        SharedQueue::connect(database, "tls".into(), Duration::from_secs(30))
    };

    // Trusting the database's CA: connected, and PostgreSQL says the session is encrypted.
    let queue = connect(Some(&ca)).await.unwrap();
    queue
        .heartbeat(fake_daemon("tls", Vec::new(), false))
        .await
        .unwrap();
    let encrypted = pg.psql(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'trtfarmd' AND s.ssl",
    );
    assert_ne!(encrypted, "0", "no trtfarmd session uses TLS");
    let plain = pg.psql(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'trtfarmd' AND NOT s.ssl",
    );
    assert_eq!(plain, "0", "a trtfarmd session is not encrypted");

    // Without it, the certificate is refused: no silent fallback to an unverified server.
    let refused = match connect(None).await {
        Ok(_) => panic!("connected to a database whose certificate nobody vouches for"),
        Err(e) => format!("{e:#}"),
    };
    assert!(refused.contains("certificate"), "{refused}");
}

/// A timing-cache scope for the registry tests (its values only need to be fixed).
fn h100_scope() -> trtfarmd::timing_cache::TimingCacheScope {
    serde_json::from_value(serde_json::json!({
        "flavour": "tensorrt",
        "toolchain_version": "11.4.0.7",
        "library_digest": "ab".repeat(32),
        "gpu_model": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "mps_percentage": null,
        "settings": {
            "precision": "fp16", "optimization_level": 3, "avg_timing_iterations": 1,
            "tactic_sources": null, "tiling": "none", "workspace": null, "tactic_dram": null,
            "tactic_shared_memory": null, "hardware": "none", "version_compatible": false,
            "refit": "none"
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_recording_together_keep_every_version_in_the_farm_index() {
    use trtfarmd::schedule::postgres::timing_caches::PostgresIndex;
    use trtfarmd::timing_cache::{PublishPlan, TimingCacheRegistry};
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", dir.path().join("store").display());
    // Two daemons: their own database connections, one shared store.
    let mut registries = Vec::new();
    for id in ["daemon-a", "daemon-b"] {
        let database =
            QueueDatabase::resolve(&pg.url(), None, None, &PgEnvironment::default()).unwrap();
        let shared = SharedQueue::connect(database, id.into(), Duration::from_secs(30))
            .await
            .unwrap();
        registries.push(TimingCacheRegistry::with_index(
            trtfarm_store::open(&store_url, &[]).unwrap(),
            std::sync::Arc::new(PostgresIndex::new(shared)),
        ));
    }
    let scope = h100_scope();
    let recordings = (0..16u8).map(|n| {
        let registry = registries[usize::from(n % 2)].clone();
        let plan = PublishPlan {
            scope: scope.clone(),
            parent: None,
        };
        let file = dir.path().join(format!("cache-{n}"));
        std::fs::write(&file, [n; 64]).unwrap();
        tokio::spawn(async move {
            let by = trtfarm_store::ActionKey([n; 32]);
            registry.publish(&plan, &file, &by, 0).await.unwrap().digest
        })
    });
    let mut published = Vec::new();
    for recording in recordings.collect::<Vec<_>>() {
        published.push(recording.await.unwrap());
    }
    let listed_a = registries[0].versions(&scope).await.unwrap();
    let listed_b = registries[1].versions(&scope).await.unwrap();
    assert_eq!(listed_a, listed_b, "both daemons see one order");
    let mut listed: Vec<_> = listed_a.into_iter().map(|v| v.digest).collect();
    listed.sort_by_key(|d| d.hex());
    published.sort_by_key(|d| d.hex());
    assert_eq!(listed, published);
    // Publishing the same bytes again adds nothing.
    let file = dir.path().join("cache-0");
    let plan = PublishPlan {
        scope: scope.clone(),
        parent: None,
    };
    registries[1]
        .publish(&plan, &file, &trtfarm_store::ActionKey([0; 32]), 0)
        .await
        .unwrap();
    assert_eq!(registries[0].versions(&scope).await.unwrap().len(), 16);
}
