//! A client on the daemon's own Unix socket: the daemon takes the client's files in by reading
//! them itself, and with a `file://` store the client gets blobs by a copy the kernel makes; no
//! gRPC stream either way, both verified like a stream. A damaged file falls back to the
//! stream, where the daemon refuses it.

use integration::cli::{run, trtfarm};
use integration::daemon::Daemon;

#[test]
fn a_local_fetch_copies_the_file_and_a_damaged_one_is_still_refused() {
    let examples = integration::examples_copy();
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let socket = root.path().join("d.sock");
    let listen = format!("unix:{}", socket.display());
    let daemon = Daemon::start(root.path(), &["--listen", &listen]);
    assert_eq!(daemon.endpoint, listen);
    let manifest = examples.path().join("cnn-dynamic-batch/engine.toml");
    let cli = |args: &[&str]| run(trtfarm(&home).args(args).args(["--daemon", &listen]));

    cli(&["submit", manifest.to_str().unwrap()]).expect_code(0, "submit");
    let lock = trtfarm::lock::read_lock(&manifest)
        .unwrap()
        .expect("a lock");
    let engine = lock.engine("fp32").unwrap().engine;
    let text = engine.to_string();
    let stored =
        trtfarm_store::local_blob_file(&format!("file://{}", daemon.store_dir.display()), &engine)
            .unwrap();

    let out = root.path().join("out/model.engine");
    cli(&["fetch", &text, "-o", out.to_str().unwrap()]).expect_code(0, "fetch");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&stored).unwrap()
    );
    // Neither the model's upload, nor the submit's output, nor the fetch streamed a byte: the
    // daemon read the model from its path and the client copied the engine from the store.
    assert_eq!(daemon.metric("trtfarm_blob_bytes_received_total"), 0.0);
    assert_eq!(daemon.metric("trtfarm_blob_bytes_sent_total"), 0.0);

    // `-o -`: the verified bytes on stdout, and no file called `-`.
    let to_stdout = |args: &[&str]| {
        trtfarm(&home)
            .args(args)
            .args(["--daemon", &listen])
            .current_dir(root.path())
            .output()
            .unwrap()
    };
    let piped = to_stdout(&["fetch", &text, "-o", "-"]);
    assert!(piped.status.success(), "{piped:?}");
    assert_eq!(piped.stdout, std::fs::read(&stored).unwrap());
    assert!(!root.path().join("-").exists(), "no file named -");

    // A byte flipped in the store: the local copy does not verify, the stream path answers
    // corrupt data, nothing is written.
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let refused = root.path().join("refused/model.engine");
    let ran =
        cli(&["fetch", &text, "-o", refused.to_str().unwrap()]).expect_code(2, "a damaged blob");
    assert!(ran.stderr.contains("corrupt data: "), "{ran:#?}");
    assert!(!refused.exists(), "no output file");
    let piped = to_stdout(&["fetch", &text, "-o", "-"]);
    assert_eq!(piped.status.code(), Some(2), "{piped:?}");
    assert!(
        piped.stdout.is_empty(),
        "not a byte of a damaged blob on stdout"
    );
    assert_eq!(
        std::fs::read_dir(refused.parent().unwrap())
            .unwrap()
            .count(),
        0,
        "no partial file"
    );
}
