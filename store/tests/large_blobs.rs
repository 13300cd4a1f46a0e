//! Large blobs on the remote backends: a file generated on the fly is uploaded by multipart
//! upload, read back while verifying, and read again from an offset (a resumed download), and
//! the test process's peak memory stays far below the blob's size.
//!
//! The default tests use 256 MiB. The 2 GiB versions are `#[ignore]`d because they take minutes
//! here (see the numbers they print); run them with
//! `cargo test -p trtfarm-store --test large_blobs -- --ignored --nocapture`.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use common::TestStore;
use futures::StreamExt;
use trtfarm_store::{BlobDigest, MAX_READ_CHUNK};

/// The default size.
const MIB_256: u64 = 256 << 20;
/// The size of the `#[ignore]`d runs.
const GIB_2: u64 = 2 << 30;
/// How much the peak RSS may grow during one round trip, whatever the blob's size.
const RSS_GROWTH_LIMIT: u64 = 256 << 20;
/// Bytes generated and written per step.
const GENERATE_CHUNK: usize = 4 << 20;

/// Peak-memory measurements are per process: one large test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What generating the input file learned: the blob's digest and the digest of its suffix from
/// `offset`, to check the resumed read against.
struct Generated {
    digest: BlobDigest,
    offset: u64,
    suffix: BlobDigest,
}

/// Writes `size` pseudo-random bytes (blake3's output stream, fast even in debug builds) to
/// `path` in bounded chunks, hashing as it goes.
fn generate(path: &Path, size: u64, offset: u64) -> Generated {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut source = blake3::Hasher::new()
        .update(&size.to_le_bytes())
        .finalize_xof();
    let (mut whole, mut suffix) = (blake3::Hasher::new(), blake3::Hasher::new());
    let mut buf = vec![0u8; GENERATE_CHUNK];
    let mut written = 0u64;
    while written < size {
        let len = GENERATE_CHUNK.min((size - written) as usize);
        let chunk = &mut buf[..len];
        source.fill(chunk);
        whole.update(chunk);
        let skip = offset.saturating_sub(written).min(len as u64) as usize;
        suffix.update(&chunk[skip..]);
        file.write_all(chunk).unwrap();
        written += len as u64;
    }
    file.flush().unwrap();
    Generated {
        digest: BlobDigest::new(whole.finalize(), size),
        offset,
        suffix: BlobDigest::new(suffix.finalize(), size - offset),
    }
}

/// Reads the blob from `offset`, hashing the chunks as they come; checks the chunk bound.
async fn read_hashed(t: &TestStore, digest: &BlobDigest, offset: u64) -> BlobDigest {
    let mut stream = t.store.read(digest, offset).await.unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{}: {e}", t.kind()));
        assert!(
            chunk.len() <= MAX_READ_CHUNK,
            "{}: {}",
            t.kind(),
            chunk.len()
        );
        hasher.update(&chunk);
        total += chunk.len() as u64;
    }
    BlobDigest::new(hasher.finalize(), total)
}

/// `VmHWM` (peak resident memory) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib << 10
}

/// Resets `VmHWM` to the current RSS (Linux 4.0+), so the next reading covers only what follows.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
}

fn mib_per_s(bytes: u64, since: Instant) -> f64 {
    bytes as f64 / (1 << 20) as f64 / since.elapsed().as_secs_f64()
}

/// Upload, full verified read and resumed read of a `size`-byte blob, with bounded memory.
async fn round_trip(t: TestStore, size: u64) {
    let _one = ONE_AT_A_TIME.lock().await;
    let kind = t.kind();
    let path = t.scratch.path().join("large.bin");
    // An offset that is no multiple of any chunk or part size.
    let offset = size - size / 3 + 12_345;
    let started = Instant::now();
    let generated = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || generate(&path, size, offset))
            .await
            .unwrap()
    };
    let generate_rate = mib_per_s(size, started);

    reset_peak_rss();
    let before = peak_rss();

    let started = Instant::now();
    let put = t
        .store
        .put_file(&path, Some(generated.digest))
        .await
        .unwrap();
    assert!(put.stored && put.digest == generated.digest, "{kind}");
    let upload_rate = mib_per_s(size, started);

    let started = Instant::now();
    assert_eq!(
        read_hashed(&t, &generated.digest, 0).await,
        generated.digest,
        "{kind}"
    );
    let read_rate = mib_per_s(size, started);

    let started = Instant::now();
    let suffix = read_hashed(&t, &generated.digest, generated.offset).await;
    assert_eq!(
        suffix, generated.suffix,
        "{kind}: resumed read from {offset}"
    );
    let resumed_rate = mib_per_s(size, started);

    let growth = peak_rss().saturating_sub(before);
    // Reported, never asserted: timings depend on the machine.
    eprintln!(
        "{kind} {} MiB: generate {generate_rate:.0} MiB/s, upload {upload_rate:.0} MiB/s, \
         verified read {read_rate:.0} MiB/s, resumed read (whole blob hashed) \
         {resumed_rate:.0} MiB/s, peak RSS growth {} MiB",
        size >> 20,
        growth >> 20
    );
    assert!(
        growth < RSS_GROWTH_LIMIT,
        "{kind}: peak RSS grew by {} MiB for a {} MiB blob",
        growth >> 20,
        size >> 20
    );
}

mod mib_256 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3() {
        round_trip(TestStore::s3(), MIB_256).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure() {
        round_trip(TestStore::azure(), MIB_256).await;
    }
}

mod gib_2 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "minutes per backend; run with -- --ignored"]
    async fn s3() {
        round_trip(TestStore::s3(), GIB_2).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "minutes per backend; run with -- --ignored"]
    async fn azure() {
        round_trip(TestStore::azure(), GIB_2).await;
    }
}
