//! Uploading a 1 GiB file to a daemon, and `trtfarm fetch` of it, against `cp` of the same
//! file, in one run. Upload: to a daemon on its Unix socket (it reads the file itself) and to
//! a TCP daemon on an S3 store (streamed). Fetch: from a daemon on
//! its Unix socket with a `file://` store (the client copies the file itself and verifies the
//! copy) and from the same store through a daemon on a TCP port (the verified gRPC stream),
//! and from an S3 store (s3s-fs on loopback) through a TCP daemon; medians of 3
//! (`TRTFARM_BENCH_ROUNDS`).
//!
//! Run: `cargo build --release --bins && cargo bench -p integration --bench fetch` (after
//! `scripts/setup`; about 4 GiB of free disk in the temporary directory).

use std::process::Command;
use std::time::{Duration, Instant};

use integration::bench::median;
use integration::cli::{run, trtfarm};
use integration::daemon::Daemon;
use integration::servers::{ServerKind, TestServer, daemon_on};

const SIZE: u64 = 1 << 30;

fn main() {
    let rounds: usize = std::env::var("TRTFARM_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let socket = work.path().join("d.sock");
    let listen = format!("unix:{}", socket.display());
    let local = Daemon::start(&work.path().join("local"), &["--listen", &listen]);
    let store = format!("file://{}", local.store_dir.display());
    let tcp = Daemon::start_on_store(&work.path().join("tcp"), &store, &[], &[], &[]);

    // Uploads, once each (then the stores hold the blob): to the local daemon over its socket
    // (it reads the file itself) and to a TCP daemon on S3 (streamed).
    let source = work.path().join("blob.bin");
    integration::write_pseudo_random(&source, SIZE);
    let started = Instant::now();
    assert!(
        Command::new("cp")
            .arg(&source)
            .arg(work.path().join("copy"))
            .status()
            .unwrap()
            .success()
    );
    let cp_upload = started.elapsed();
    std::fs::remove_file(work.path().join("copy")).unwrap();
    let s3 = TestServer::start(ServerKind::S3sFs);
    let remote = daemon_on(&work.path().join("s3"), &s3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let wire = trtfarm::transfer::digest_file(&source).unwrap();
    let (local_upload, s3_upload) = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(listen.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = trtfarm_proto::v1::farm_client::FarmClient::new(channel);
        let started = Instant::now();
        assert!(
            trtfarm::transfer::upload_file(&mut client, &source, &wire)
                .await
                .unwrap()
        );
        let local = started.elapsed();
        let mut client = remote.client().await;
        let started = Instant::now();
        assert!(
            trtfarm::transfer::upload_file(&mut client, &source, &wire)
                .await
                .unwrap()
        );
        (local, started.elapsed())
    });
    println!(
        "1 GiB upload: cp {:.2} s; to the local daemon (Unix socket: it reads the file itself, \
         {} bytes streamed) {:.2} s = {:.2}x cp's speed; to S3 (s3s-fs) through a TCP daemon \
         (streamed) {:.2} s = {:.2}x",
        cp_upload.as_secs_f64(),
        local.metric("trtfarm_blob_bytes_received_total"),
        local_upload.as_secs_f64(),
        cp_upload.as_secs_f64() / local_upload.as_secs_f64(),
        s3_upload.as_secs_f64(),
        cp_upload.as_secs_f64() / s3_upload.as_secs_f64(),
    );
    let digest: trtfarm_store::BlobDigest = wire.to_blob_digest().unwrap();
    let stored = trtfarm_store::local_blob_file(&store, &digest).unwrap();
    let text = digest.to_string();

    let (mut cp, mut fast, mut stream, mut from_s3) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let out = work.path().join(format!("cp-{round}"));
        let started = Instant::now();
        assert!(
            Command::new("cp")
                .arg(&stored)
                .arg(&out)
                .status()
                .unwrap()
                .success()
        );
        cp.push(started.elapsed());
        std::fs::remove_file(&out).unwrap();

        for (daemon, samples) in [
            (&listen, &mut fast),
            (&tcp.endpoint, &mut stream),
            (&remote.endpoint, &mut from_s3),
        ] {
            let out = work.path().join(format!("fetched-{round}"));
            let started = Instant::now();
            run(trtfarm(&home)
                .args(["fetch", &text, "-o"])
                .arg(&out)
                .args(["--daemon", daemon]))
            .expect_code(0, "fetch");
            samples.push(started.elapsed());
            std::fs::remove_file(&out).unwrap();
        }
    }
    let sent = local.metric("trtfarm_blob_bytes_sent_total");
    let (cp, fast, stream, from_s3) = (median(cp), median(fast), median(stream), median(from_s3));
    let speed = |d: Duration| cp.as_secs_f64() / d.as_secs_f64();
    println!(
        "1 GiB fetch, median of {rounds}: cp {:.2} s; trtfarm fetch from the local daemon \
         (Unix socket, file:// store: a verified local copy, {sent} bytes streamed) {:.2} s = \
         {:.2}x cp's speed; through a TCP daemon (verified gRPC stream) {:.2} s = {:.2}x; \
         from S3 (s3s-fs) through a TCP daemon {:.2} s = {:.2}x",
        cp.as_secs_f64(),
        fast.as_secs_f64(),
        speed(fast),
        stream.as_secs_f64(),
        speed(stream),
        from_s3.as_secs_f64(),
        speed(from_s3),
    );
}
