//! Hostile input through the real daemon. Malformed ONNX files (`integration::hostile_models`)
//! fail in the build worker, as BUILD failures whose message says what is wrong (TensorRT's
//! parser's words, or trtfarm's pre-check's where the parser would misread the file), and the
//! daemon answers and builds afterwards. Hostile requests are refused at submit with the code
//! that says whose limit it is.

use std::path::{Path, PathBuf};

use integration::daemon::Daemon;
use integration::farm::{follow, job_of, outcome, request_for, succeeded};
use integration::hostile_models::{self as hostile, DATA_FILE};
use integration::models::images_manifest;
use tonic::transport::Channel;
use trtfarm::transfer::{digest_file, download_to_file, upload_file};
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

/// What trtfarm's own check says before TensorRT sees a model (see `onnx_graph::sanity`).
const PRE_CHECK: &str = "the model failed trtfarm's check before parsing: ";

/// One malformed model: how to write it, the data files the request carries beside it, and
/// what the failure message must say.
struct Case {
    name: &'static str,
    write: fn(&Path) -> PathBuf,
    ship: &'static [&'static str],
    expect: &'static [&'static str],
}

const CORPUS: &[Case] = &[
    Case {
        name: "truncated",
        write: hostile::truncated,
        ship: &[],
        expect: &[PRE_CHECK, "is truncated: ModelProto.graph at byte 23 needs"],
    },
    Case {
        name: "random bytes",
        write: hostile::random_bytes,
        ship: &[],
        expect: &[PRE_CHECK, "not an ONNX model"],
    },
    Case {
        name: "wrong magic (a PNG)",
        write: hostile::wrong_magic,
        ship: &[],
        expect: &[PRE_CHECK, "not an ONNX model"],
    },
    Case {
        // TensorRT's parser takes this as an empty model ("Network must have at least one
        // output"); the pre-check says what it is.
        name: "a text file",
        write: hostile::text_file,
        ship: &[],
        expect: &[PRE_CHECK, "not an ONNX model"],
    },
    Case {
        name: "a graph without outputs",
        write: hostile::no_outputs,
        ship: &[],
        expect: &[
            PRE_CHECK,
            "not an ONNX model: its graph declares no outputs",
        ],
    },
    Case {
        // TensorRT's parser reads 2^40 as 0 and fails on a profile mismatch it made up.
        name: "a dimension of 2^40",
        write: hostile::huge_dims,
        ship: &[],
        expect: &[
            PRE_CHECK,
            "graph input `images` declares dimension 3 as 1099511627776, over TensorRT's limit of 2147483647",
        ],
    },
    Case {
        name: "a cycle",
        write: hostile::cyclic,
        ship: &[],
        expect: &[
            "the ONNX parser rejected the model",
            "Failed to sort the model topologically",
        ],
    },
    Case {
        name: "an unknown operator",
        write: hostile::unknown_op,
        ship: &[],
        expect: &["the ONNX parser rejected the model", "(FrobnicateTensor)"],
    },
    Case {
        name: "external data above the model's directory",
        write: |dir| hostile::external_data(dir, "../weights.bin", 0, 4),
        ship: &[],
        expect: &[
            PRE_CHECK,
            "tensor `w` keeps its data in `../weights.bin`, which is not a relative path inside the model's directory",
        ],
    },
    Case {
        name: "external data at an absolute path",
        write: |dir| hostile::external_data(dir, "/etc/hostname", 0, 4),
        ship: &[],
        expect: &[
            PRE_CHECK,
            "keeps its data in `/etc/hostname`, which is not a relative path",
        ],
    },
    Case {
        name: "external data the request does not carry",
        write: |dir| hostile::external_data(dir, DATA_FILE, 0, 4),
        ship: &[],
        expect: &[
            PRE_CHECK,
            "keeps its data in `weights.bin`, which is not beside the model",
        ],
    },
    Case {
        name: "external data past the end of its file",
        write: |dir| hostile::external_data(dir, DATA_FILE, 1_000_000, 4),
        ship: &[DATA_FILE],
        expect: &[
            PRE_CHECK,
            "tensor `w` reads bytes 1000000..1000004 of `weights.bin`, which has 16 bytes",
        ],
    },
    Case {
        name: "subgraphs nested 100 deep",
        write: |dir| hostile::nested_subgraphs(dir, 100),
        ship: &[],
        expect: &[PRE_CHECK, "subgraphs nest deeper than 64 levels"],
    },
    Case {
        // Within the pre-check's bound, past TensorRT's.
        name: "subgraphs nested 30 deep",
        write: |dir| hostile::nested_subgraphs(dir, 30),
        ship: &[],
        expect: &[
            "the ONNX parser rejected the model",
            "nested structures that exceed the maximum allowed by TensorRT",
        ],
    },
];

/// Writes `case` with its manifest under `dir` and returns the request for it, its data files
/// uploaded and listed as external data.
async fn request_for_case(
    client: &mut FarmClient<Channel>,
    dir: &Path,
    write: fn(&Path) -> PathBuf,
    ship: &[&str],
) -> v1::SubmitRequest {
    std::fs::create_dir_all(dir).unwrap();
    write(dir);
    let manifest = dir.join("engine.toml");
    std::fs::write(
        &manifest,
        images_manifest(hostile::MODEL_FILE, 8, &[("fp32", 0)]),
    )
    .unwrap();
    let mut request = request_for(client, &manifest, "fp32").await;
    for name in ship {
        let path = dir.join(name);
        let digest = digest_file(&path).unwrap();
        upload_file(client, &path, &digest).await.unwrap();
        request.inputs.push(v1::InputFile {
            path: (*name).into(),
            digest: Some(digest),
            role: v1::InputRole::ExternalData as i32,
        });
    }
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_model_fails_in_the_worker_and_the_daemon_carries_on() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&root.path().join("daemon"), &[]);
    let mut client = daemon.client().await;
    let mut wrong = Vec::new();
    for (index, case) in CORPUS.iter().enumerate() {
        let dir = root.path().join(format!("case{index}"));
        let request = request_for_case(&mut client, &dir, case.write, case.ship).await;
        let job = job_of(&client.submit(request).await.unwrap().into_inner());
        let events = follow(&mut client, job.id).await;
        let failure = match outcome(&events) {
            v1::job_event::Event::Failed(failure) => failure.clone(),
            other => {
                wrong.push(format!("{}: expected a failure, got {other:?}", case.name));
                continue;
            }
        };
        eprintln!("{}: {}", case.name, failure.message);
        if failure.kind != v1::FailureKind::Build as i32 {
            wrong.push(format!("{}: not a BUILD failure: {failure:?}", case.name));
        }
        for needle in case.expect {
            if !failure.message.contains(needle) {
                wrong.push(format!(
                    "{}: the message lacks {needle:?}: {}",
                    case.name, failure.message
                ));
            }
        }
        // The reason is in the kept build log too.
        let log = failure
            .build_log
            .clone()
            .expect("the failed build's log is kept");
        let log_path = dir.join("build.log");
        download_to_file(&mut client, &log, &log_path)
            .await
            .unwrap();
        let log_text = std::fs::read_to_string(&log_path).unwrap();
        if !log_text.contains("[error]") {
            wrong.push(format!(
                "{}: no [error] line in the log: {log_text}",
                case.name
            ));
        }
        // The daemon answers after each one.
        client
            .get_capabilities(v1::GetCapabilitiesRequest {})
            .await
            .unwrap_or_else(|e| panic!("the daemon stopped answering after {}: {e}", case.name));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        daemon.metric("trtfarm_builds_started_total"),
        CORPUS.len() as f64
    );

    // A good model still builds.
    let request =
        request_for_case(&mut client, &root.path().join("good"), hostile::good, &[]).await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());
    let result = succeeded(&follow(&mut client, job.id).await);
    assert!(result.engine.unwrap().size_bytes > 0);
    assert!(daemon.builders().is_empty(), "no worker is left behind");
}

/// A request for the good model, and the daemon it goes to.
async fn good_request(root: &Path) -> (Daemon, FarmClient<Channel>, v1::SubmitRequest) {
    let daemon = Daemon::start(&root.join("daemon"), &[]);
    let mut client = daemon.client().await;
    let request = request_for_case(&mut client, &root.join("good"), hostile::good, &[]).await;
    (daemon, client, request)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_are_refused_at_submit_with_whose_limit_it_is() {
    let root = tempfile::tempdir().unwrap();
    let (_daemon, mut client, request) = good_request(root.path()).await;
    let refused = |request: v1::SubmitRequest| {
        let mut client = client.clone();
        async move { client.submit(request).await.unwrap_err() }
    };

    // The daemon's own limit: RESOURCE_EXHAUSTED.
    let mut huge = request.clone();
    let manifest = huge.manifest.as_mut().unwrap();
    manifest
        .toml
        .push_str(&"#".repeat(manifest_schema::limits::MAX_MANIFEST_BYTES));
    let status = refused(huge).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("at most 1048576 (1 MiB)"),
        "{status}"
    );

    // The manifest format's rules: INVALID_ARGUMENT, located.
    let mut climbing = request.clone();
    let manifest = climbing.manifest.as_mut().unwrap();
    // An output that would make `trtfarm submit` write outside the manifest's directory.
    manifest
        .toml
        .push_str("\n[[engine]]\nname = \"escape\"\noutput = \"../../.bashrc\"\n");
    let status = refused(climbing).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("engine.toml:")
            && status
                .message()
                .contains("`output` `../../.bashrc` leaves the manifest's directory with `..`"),
        "{status}"
    );
    let mut many = request.clone();
    let manifest = many.manifest.as_mut().unwrap();
    for i in 0..manifest_schema::limits::MAX_ENGINES {
        manifest
            .toml
            .push_str(&format!("\n[[engine]]\nname = \"e{i}\"\n"));
    }
    let status = refused(many).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("over the limit of 256"),
        "{status}"
    );

    // Input paths: INVALID_ARGUMENT. Files placed at their own path may not climb out; the
    // model always lands at inputs/model.onnx, and its path must be the manifest's.
    for (path, role) in [
        ("../../etc/passwd", v1::InputRole::ExternalData),
        ("/etc/passwd", v1::InputRole::Model),
        ("../model.onnx", v1::InputRole::Model),
        ("../libevil.so", v1::InputRole::Plugin),
    ] {
        let mut escaping = request.clone();
        let digest = escaping.inputs[0].digest.clone();
        if role == v1::InputRole::Model {
            escaping.inputs.clear();
        }
        escaping.inputs.push(v1::InputFile {
            path: path.into(),
            digest,
            role: role as i32,
        });
        let status = refused(escaping).await;
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{path}: {status}"
        );
        let expected = match role {
            v1::InputRole::Model => format!("the model input is `{path}`"),
            _ => format!("input path `{path}`"),
        };
        assert!(status.message().contains(&expected), "{path}: {status}");
    }

    // None of it reached a worker, and the daemon builds the good request.
    let job = job_of(&client.submit(request).await.unwrap().into_inner());
    succeeded(&follow(&mut client, job.id).await);
}
