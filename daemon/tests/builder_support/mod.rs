//! What the builder tests share: scratch directories, the TensorRT-RTX set-up, running a builder
//! while reacting to its events, and looking at process groups through /proc.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use trtfarm_build_protocol::{BuilderTask, INPUTS_DIR, MODEL_FILE, OUT_DIR, TASK_FILE};
use trtfarmd::build::builder_process::{BuilderCommand, BuilderEvent, BuilderReport, run_builder};

/// A scratch directory laid out the way the daemon prepares it; removed on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// An empty scratch dir with `inputs/` and `out/`. tempfile's names have a fixed length,
    /// so two scratch dirs have paths of equal length.
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("create a scratch dir");
        std::fs::create_dir(dir.path().join(INPUTS_DIR)).unwrap();
        std::fs::create_dir(dir.path().join(OUT_DIR)).unwrap();
        Scratch { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `task.json`.
    pub fn write_task(&self, task: &BuilderTask) {
        let json = serde_json::to_vec_pretty(task).unwrap();
        std::fs::write(self.path().join(TASK_FILE), json).unwrap();
    }

    /// Writes `inputs/model.onnx`.
    pub fn write_model(&self, bytes: &[u8]) {
        std::fs::write(self.path().join(MODEL_FILE), bytes).unwrap();
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The TensorRT-RTX library directory `scripts/setup` installed; panics with instructions if
/// it is missing.
pub fn rtx_lib_dir() -> PathBuf {
    onnx_graph::deps::rtx_lib_dir().unwrap_or_else(|e| panic!("{e}"))
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests/cnn-dynamic-batch")
}

/// The example manifest the real builds use.
pub fn example_manifest() -> PathBuf {
    example_dir().join("engine.toml")
}

/// Its model; panics with instructions if it was not generated.
pub fn example_model() -> PathBuf {
    let path = example_dir().join("classifier.onnx");
    assert!(
        path.is_file(),
        "{} is missing. Run scripts/setup, or: cargo run -p onnx-graph --bin \
         trtfarm-example-models -- examples/manifests",
        path.display()
    );
    path
}

/// A task building `variant` of the example manifest with TensorRT-RTX, configured exactly as
/// the daemon configures it.
pub fn rtx_task(variant: &str) -> BuilderTask {
    let manifest = manifest_schema::load(&example_manifest()).expect("the example manifest");
    let variant = manifest.variant(variant).expect("the example's engine");
    let mut config = trtfarmd::ingest::variant_config::build_config_for_prepared_model(variant)
        .expect("the example's settings build");
    config.layer_info = false;
    BuilderTask {
        flavour: trt_ffi::Flavour::TensorRtRtx,
        library_dir: Some(rtx_lib_dir()),
        config,
        timing_cache_input: false,
        mps_percentage: None,
    }
}

/// The builder program, built beside trtfarmd (`cargo build --workspace --bins`); panics with
/// instructions if it is missing.
pub fn builder_program() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_trtfarmd")).with_file_name("trtfarm-builder");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// The real builder on `scratch`, with a generous deadline.
pub fn rtx_command(scratch: &Scratch) -> BuilderCommand {
    // The builder writes TensorRT's shim under the trtfarm cache; keep it where the tests' is.
    let extra_env = env_path("TRTFARM_CACHE_DIR")
        .map(|dir| vec![("TRTFARM_CACHE_DIR".to_owned(), dir.display().to_string())])
        .unwrap_or_default();
    BuilderCommand {
        program: builder_program(),
        scratch: scratch.path().to_path_buf(),
        memory_limit: None,
        deadline: Duration::from_secs(300),
        extra_env,
    }
}

/// Runs a builder to its end, calling `on_event` for every event as it arrives (with the cancel
/// switch), and returns the report and all events.
pub async fn run(
    command: &BuilderCommand,
    mut on_event: impl FnMut(&BuilderEvent, &watch::Sender<bool>),
) -> (BuilderReport, Vec<BuilderEvent>) {
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let builder = run_builder(command, events_tx, cancel_rx);
    let watcher = async {
        let mut events = Vec::new();
        while let Some(event) = events_rx.recv().await {
            on_event(&event, &cancel_tx);
            events.push(event);
        }
        events
    };
    let (report, events) = tokio::join!(builder, watcher);
    (report.expect("the builder starts"), events)
}

/// Sends `signal` to process `pid`.
pub fn send_kill(pid: u32, signal: i32) {
    // SAFETY: kill has no memory effects.
    let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(result, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// (pid, process group, state) of every process, from /proc.
fn processes() -> Vec<(u32, u32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses: fields follow the last ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let state = fields.first()?.chars().next()?;
            let pgrp = fields.get(2)?.parse().ok()?;
            Some((pid, pgrp, state))
        })
        .collect()
}

/// Waits (up to 10 s, for SIGKILL to be delivered) until no live process is left in group
/// `pgid`, and returns those still there. Zombies count as dead: their reaping is up to pid 1.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let live: Vec<u32> = processes()
            .into_iter()
            .filter(|&(_, group, state)| group == pgid && state != 'Z' && state != 'X')
            .map(|(pid, _, _)| pid)
            .collect();
        if live.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return live;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live (non-zombie) process, after waiting up to 10 s for it to die.
pub fn is_alive(pid: u32) -> bool {
    let started = Instant::now();
    loop {
        let alive = processes()
            .iter()
            .any(|&(p, _, state)| p == pid && state != 'Z' && state != 'X');
        if !alive || started.elapsed() > Duration::from_secs(10) {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
