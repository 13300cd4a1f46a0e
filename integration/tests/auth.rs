//! Bearer tokens and TLS with the real binaries: a daemon with a token file refuses calls
//! without the right token before they touch the store, the CLI reads its token from a private
//! file, tokens rotate on SIGHUP, a daemon refuses to start exposed or with a readable token
//! file, and a TLS daemon talks to clients that trust its CA and to no plain-HTTP client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::binary;
use integration::cli::{Ran, run, trtfarm};
use integration::daemon::Daemon;
use tonic::Code;
use tonic::codegen::tokio_stream;
use tonic::transport::Channel;
use trtfarm_proto::local::DaemonInfo;
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

/// Two tokens of the daemon's file, and one it has never seen.
const TOKEN: &str = "3f1c0e7a9b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e";
const SECOND: &str = "second-token-0123456789abcdef0123456789abcdef";
const UNKNOWN: &str = "unknown-token-0123456789abcdef0123456789abcdef";

/// A file holding `text` with permission bits `mode`.
fn write_file(path: &Path, text: &str, mode: u32) -> PathBuf {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// The daemon's token file under `root`, holding `TOKEN` and `SECOND`.
fn token_file(root: &Path) -> PathBuf {
    write_file(
        &root.join("tokens"),
        &format!("# farm tokens\n{TOKEN}\n\n{SECOND}\n"),
        0o600,
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// `request` carrying `authorization: Bearer <token>`.
fn bearer<T>(request: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn capabilities(
    client: &mut FarmClient<Channel>,
    token: Option<&str>,
) -> Result<v1::Capabilities, tonic::Status> {
    let request = v1::GetCapabilitiesRequest {};
    let request = match token {
        Some(token) => bearer(request, token),
        None => tonic::Request::new(request),
    };
    client
        .get_capabilities(request)
        .await
        .map(|r| r.into_inner())
}

/// Every file below `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .collect();
    files.sort();
    files
}

/// `trtfarm ARGS` against `daemon`, with no token or CA from the test's environment.
fn cli(home: &Path, daemon_url: &str, args: &[&str]) -> Command {
    let mut command = trtfarm(home);
    command
        .env_remove("TRTFARM_TOKEN_FILE")
        .env_remove("TRTFARM_TLS_CA")
        .args(args)
        .args(["--daemon", daemon_url]);
    command
}

/// Runs `trtfarmd serve` with `args`, expecting it to refuse to start; returns its stderr.
fn refused_start(root: &Path, args: &[&str]) -> String {
    let mut command = Command::new(binary("trtfarmd"));
    command
        .arg("serve")
        .arg("--state-dir")
        .arg(root.join("state"))
        .arg("--store")
        .arg(format!("file://{}", root.join("store").display()))
        .args(args)
        .env_remove("TRTFARMD_CONFIG")
        .env_remove("TRTFARMD_TOKEN_FILE")
        .env_remove("TRTFARMD_TLS_CERT")
        .env_remove("TRTFARMD_TLS_KEY")
        .env("XDG_CONFIG_HOME", root.join("config"))
        .stdin(Stdio::null());
    let ran: Ran = run(&mut command);
    assert!(
        !ran.stdout.contains("listening"),
        "trtfarmd started with {args:?}: {ran:#?}"
    );
    assert_eq!(ran.code, 2, "{args:?}: {ran:#?}");
    assert!(
        !root.join("state").exists(),
        "a refused daemon creates nothing"
    );
    ran.stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_the_right_token_are_refused_and_leave_no_trace_in_the_store() {
    let root = tempfile::tempdir().unwrap();
    let tokens = token_file(root.path());
    let daemon = Daemon::start(root.path(), &["--token-file", path_str(&tokens)]);
    let mut client = daemon.client().await;

    let status = capabilities(&mut client, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("requires a bearer token"),
        "{status:?}"
    );
    let status = capabilities(&mut client, Some(UNKNOWN)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("not accepted"), "{status:?}");
    assert!(!status.message().contains(UNKNOWN), "echoed: {status:?}");
    let mut malformed = tonic::Request::new(v1::GetCapabilitiesRequest {});
    malformed
        .metadata_mut()
        .insert("authorization", TOKEN.parse().unwrap());
    let status = client.get_capabilities(malformed).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "no `Bearer`: {status:?}"
    );

    // Each token of the file works.
    for token in [TOKEN, SECOND] {
        let answer = capabilities(&mut client, Some(token)).await.unwrap();
        assert_eq!(answer.store_kind, "file");
    }

    // An upload without a token, or with a wrong one, leaves nothing: no blob, no staging file.
    let bytes = b"weights nobody authorized ".repeat(4096);
    let digest = v1::Digest {
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        size_bytes: bytes.len() as u64,
    };
    let upload = || {
        tokio_stream::iter(vec![v1::UploadBlobRequest {
            header: Some(v1::UploadHeader {
                digest: Some(digest.clone()),
                offset: 0,
            }),
            data: bytes.clone().into(),
        }])
    };
    let store_before = files_under(&daemon.store_dir);
    let uploads = daemon.state_dir.join("uploads");
    let staged_before = files_under(&uploads);
    let status = client.upload_blob(upload()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .upload_blob(bearer(upload(), UNKNOWN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .find_missing_blobs(v1::FindMissingBlobsRequest {
            digests: vec![digest.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(files_under(&daemon.store_dir), store_before);
    assert_eq!(files_under(&uploads), staged_before);
    let blob = daemon
        .store_dir
        .join("cas/blake3")
        .join(&digest.blake3[..2])
        .join(&digest.blake3);
    assert!(!blob.exists());

    // With the token the same upload lands: the checks above could have failed.
    let missing = client
        .find_missing_blobs(bearer(
            v1::FindMissingBlobsRequest {
                digests: vec![digest.clone()],
            },
            TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(missing.missing, vec![digest.clone()]);
    let stored = client
        .upload_blob(bearer(upload(), TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.digest, Some(digest.clone()));
    assert!(blob.is_file(), "{blob:?}");
    assert_eq!(std::fs::read(&blob).unwrap(), bytes);

    // Reflection needs the token too: it would tell an intruder what to call.
    let list = |token: Option<&str>| {
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        let request = tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let stream = tokio_stream::iter(vec![request]);
        let request = match token {
            Some(token) => bearer(stream, token),
            None => tonic::Request::new(stream),
        };
        let endpoint = daemon.endpoint.clone();
        async move {
            let channel = tonic::transport::Endpoint::from_shared(endpoint)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client =
                tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
                    channel,
                );
            let mut answers = client.server_reflection_info(request).await?.into_inner();
            Ok::<_, tonic::Status>(format!("{:?}", answers.message().await?))
        }
    };
    let status = list(None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let services = list(Some(TOKEN)).await.unwrap();
    assert!(services.contains("trtfarm.v1.Farm"), "{services}");

    // Health stays open for load balancers.
    assert_eq!(
        daemon.health().await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[test]
fn the_cli_reads_its_token_from_a_private_file_and_says_when_it_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let tokens = token_file(root.path());
    let daemon = Daemon::start(root.path(), &["--token-file", path_str(&tokens)]);
    let url = daemon.endpoint.as_str();
    let mine = write_file(&root.path().join("my-token"), &format!("{SECOND}\n"), 0o600);

    let ran = run(&mut cli(&home, url, &["ls"])).expect_code(2, "no token");
    assert!(
        ran.stderr
            .contains("not authenticated: this daemon requires a bearer token"),
        "{ran:#?}"
    );
    assert!(ran.stderr.contains("--token-file"), "{ran:#?}");

    let ran = run(&mut cli(
        &home,
        url,
        &["ls", "--token-file", path_str(&mine)],
    ))
    .expect_code(0, "--token-file");
    assert!(ran.stdout.starts_with("ID"), "{ran:#?}");
    run(cli(&home, url, &["ls"]).env("TRTFARM_TOKEN_FILE", &mine))
        .expect_code(0, "TRTFARM_TOKEN_FILE");
    run(&mut cli(&home, url, &["ls", "--token", TOKEN])).expect_code(0, "--token");
    let ran = run(&mut cli(
        &home,
        url,
        &["daemon", "status", "--token-file", path_str(&mine)],
    ))
    .expect_code(0, "remote status with a token");
    assert!(ran.stdout.contains("tensorrt-rtx"), "{ran:#?}");
    let ran = run(&mut cli(&home, url, &["daemon", "status"])).expect_code(1, "status, no token");
    assert!(ran.stderr.contains("not authenticated: "), "{ran:#?}");

    let wrong = write_file(&root.path().join("wrong"), UNKNOWN, 0o600);
    let ran = run(&mut cli(
        &home,
        url,
        &["ls", "--token-file", path_str(&wrong)],
    ))
    .expect_code(2, "a wrong token");
    assert!(
        ran.stderr
            .contains("not authenticated: the bearer token is not accepted"),
        "{ran:#?}"
    );
    assert!(!ran.stderr.contains(UNKNOWN), "echoed: {ran:#?}");

    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ran = run(&mut cli(
        &home,
        url,
        &["ls", "--token-file", path_str(&mine)],
    ))
    .expect_code(2, "a readable token file");
    assert!(ran.stderr.contains("has mode 0644"), "{ran:#?}");
    assert!(
        ran.stderr
            .contains(&format!("run `chmod 600 {}`", mine.display())),
        "{ran:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_token_file_so_tokens_rotate_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let tokens = write_file(&root.path().join("tokens"), TOKEN, 0o600);
    let mut daemon = Daemon::start(root.path(), &["--token-file", path_str(&tokens)]);
    let mut client = daemon.client().await;
    capabilities(&mut client, Some(TOKEN)).await.unwrap();
    capabilities(&mut client, Some(SECOND)).await.unwrap_err();

    let hangup_until = |client: &mut FarmClient<Channel>, token: &'static str, accepted: bool| {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
        let mut client = client.clone();
        async move {
            // A hang guard, not a timing assertion: the reload is asynchronous.
            let deadline = Instant::now() + Duration::from_secs(30);
            while capabilities(&mut client, Some(token)).await.is_ok() != accepted {
                assert!(Instant::now() < deadline, "the reload never took effect");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Add the new token, reload: both work.
    write_file(&tokens, &format!("{TOKEN}\n{SECOND}\n"), 0o600);
    hangup_until(&mut client, SECOND, true).await;
    capabilities(&mut client, Some(TOKEN)).await.unwrap();
    // Remove the old one, reload: only the new one works, and the daemon never stopped.
    write_file(&tokens, &format!("{SECOND}\n"), 0o600);
    hangup_until(&mut client, TOKEN, false).await;
    capabilities(&mut client, Some(SECOND)).await.unwrap();
    assert!(daemon.terminate().success(), "a clean exit after reloads");
}

#[test]
fn the_daemon_refuses_to_start_exposed_or_with_an_unusable_token_file() {
    let root = tempfile::tempdir().unwrap();
    let stderr = refused_start(root.path(), &["--listen", "0.0.0.0:0"]);
    assert!(
        stderr.contains(
            "invalid daemon config: `auth.token_file` is not set, but `listen` (0.0.0.0:0) is \
             not a loopback address"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--token-file PATH"), "{stderr}");

    let loopback = ["--listen", "127.0.0.1:0", "--token-file"];
    let readable = write_file(&root.path().join("readable"), TOKEN, 0o644);
    let stderr = refused_start(
        root.path(),
        &[&loopback[..], &[path_str(&readable)]].concat(),
    );
    assert!(
        stderr.contains(&format!(
            "the token file {} has mode 0644: users other than its owner can read or change it; \
             run `chmod 600 {}`",
            readable.display(),
            readable.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "echoed: {stderr}");

    let short = write_file(&root.path().join("short"), "hunter2\n", 0o600);
    let stderr = refused_start(root.path(), &[&loopback[..], &[path_str(&short)]].concat());
    assert!(stderr.contains("can be guessed"), "{stderr}");
    let empty = write_file(&root.path().join("empty"), "# none yet\n", 0o600);
    let stderr = refused_start(root.path(), &[&loopback[..], &[path_str(&empty)]].concat());
    assert!(stderr.contains("holds no token"), "{stderr}");

    let stderr = refused_start(root.path(), &["--tls-cert", "/nonexistent/cert.pem"]);
    assert!(stderr.contains("`tls.key_file` is not set"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_daemon_serves_clients_that_trust_its_ca_and_no_plain_http_client() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let (ca, cert, key) = integration::tls::private_ca(root.path());
    let tokens = token_file(root.path());
    let mine = write_file(&root.path().join("my-token"), TOKEN, 0o600);
    let daemon = Daemon::start(
        root.path(),
        &[
            "--tls-cert",
            path_str(&cert),
            "--tls-key",
            path_str(&key),
            "--token-file",
            path_str(&tokens),
        ],
    );
    let url = daemon.endpoint.as_str();
    let port = url
        .strip_prefix("https://127.0.0.1:")
        .unwrap_or_else(|| panic!("a TLS daemon announces https://: {url}"));
    let info = DaemonInfo::read(&daemon.state_dir).unwrap().unwrap();
    assert_eq!(info.endpoint, url);

    let with_ca = ["--tls-ca", path_str(&ca), "--token-file", path_str(&mine)];
    let ran = run(&mut cli(&home, url, &[&["ls"][..], &with_ca].concat()))
        .expect_code(0, "https with the CA");
    assert!(ran.stdout.starts_with("ID"), "{ran:#?}");
    run(&mut cli(
        &home,
        url,
        &[&["daemon", "status"][..], &with_ca].concat(),
    ))
    .expect_code(0, "remote status over https");
    // TLS does not replace the token.
    let ran = run(&mut cli(&home, url, &["ls", "--tls-ca", path_str(&ca)]))
        .expect_code(2, "https without a token");
    assert!(ran.stderr.contains("not authenticated: "), "{ran:#?}");

    // Without the CA the certificate is not trusted (the platform's roots do not know it).
    let ran = run(&mut cli(
        &home,
        url,
        &["ls", "--token-file", path_str(&mine)],
    ))
    .expect_code(2, "https without the CA");
    assert!(ran.stderr.contains(url), "{ran:#?}");
    assert!(ran.stderr.contains("--tls-ca"), "says what to do: {ran:#?}");
    assert!(!ran.stdout.starts_with("ID"), "{ran:#?}");

    // Plain HTTP/2 to the TLS port gets nowhere, from the CLI or from a bare gRPC client. The
    // daemon drops the connection while the CLI writes to it: an error and exit 2, never death
    // by SIGPIPE (the CLI keeps SIGPIPE's default action on its main thread, for `| head`).
    let plain = format!("http://127.0.0.1:{port}");
    for _ in 0..5 {
        let ran = run(&mut cli(
            &home,
            &plain,
            &["ls", "--token-file", path_str(&mine)],
        ))
        .expect_code(2, "plain http to a TLS daemon");
        assert!(ran.stderr.starts_with("error: "), "{ran:#?}");
        assert!(!ran.stdout.starts_with("ID"), "{ran:#?}");
    }
    let answer = async {
        let channel = tonic::transport::Endpoint::from_shared(plain.clone())?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(10))
            .connect()
            .await?;
        let status = FarmClient::new(channel)
            .get_capabilities(bearer(v1::GetCapabilitiesRequest {}, TOKEN))
            .await;
        Ok::<_, tonic::transport::Error>(status)
    }
    .await;
    assert!(
        !matches!(answer, Ok(Ok(_))),
        "a plain-HTTP client was answered: {answer:?}"
    );
    // And a CA given for an http:// URL is a mistake the CLI names.
    let ran = run(&mut cli(&home, &plain, &["ls", "--tls-ca", path_str(&ca)]))
        .expect_code(2, "--tls-ca with http://");
    assert!(ran.stderr.contains("is not https://"), "{ran:#?}");
}

#[test]
fn the_daemon_refuses_tls_files_it_cannot_use() {
    let root = tempfile::tempdir().unwrap();
    let (_, cert, key) = integration::tls::private_ca(root.path());
    let tls = |cert: &Path, key: &Path| {
        refused_start(
            root.path(),
            &[
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                path_str(cert),
                "--tls-key",
                path_str(key),
            ],
        )
    };
    let missing = root.path().join("absent.pem");
    let stderr = tls(&missing, &key);
    assert!(
        stderr.contains(&format!(
            "cannot read the TLS certificate {}",
            missing.display()
        )),
        "{stderr}"
    );
    let garbage = write_file(&root.path().join("garbage.pem"), "not PEM\n", 0o600);
    let stderr = tls(&cert, &garbage);
    assert!(
        stderr.contains("cannot serve TLS with the certificate"),
        "{stderr}"
    );
    // A key of another certificate.
    let other = root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, _, other_key) = integration::tls::private_ca(&other);
    let stderr = tls(&cert, &other_key);
    assert!(
        stderr.contains("cannot serve TLS with the certificate"),
        "{stderr}"
    );
}
