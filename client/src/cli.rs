//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// trtfarm: declarative, cached, reproducible TensorRT engine builds.
#[derive(Debug, Parser)]
#[command(name = "trtfarm", version, propagate_version = true)]
pub struct Cli {
    /// How much to print, and in colour or not.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Where the daemon is.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How much the commands print, for every subcommand.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print results and errors only: no progress display and no notes.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: TensorRT's warnings and errors as builds log them, and whole build-log tails
    /// of failures.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// Colour: `auto` (on a terminal, unless NO_COLOR is set), `always` or `never`.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = ColorChoice::Auto,
        value_name = "WHEN"
    )]
    pub color: ColorChoice,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless the NO_COLOR environment variable is set (and not empty).
    Auto,
    /// Always, even into a pipe or file.
    Always,
    /// Never.
    Never,
}

/// How to reach a daemon. With no `--daemon`, a local daemon is found or started.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Daemon connection")]
pub struct DaemonArgs {
    /// URL of a daemon: `http://farm.example:50051`, `https://...` for one serving TLS, or
    /// `unix:/path/daemon.sock` for one on a Unix socket (default: your private local daemon,
    /// started on demand).
    #[arg(long, global = true, env = "TRTFARM_DAEMON", value_name = "URL")]
    pub daemon: Option<String>,
    /// Bearer token for a remote daemon (prefer --token-file: a flag shows in `ps`).
    #[arg(
        long,
        global = true,
        env = "TRTFARM_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the bearer token for a remote daemon (its first token line); must not be
    /// readable by group or others (chmod 600).
    #[arg(long, global = true, env = "TRTFARM_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https:// daemon, instead of the platform's roots
    /// (for a private CA or a self-signed certificate).
    #[arg(long, global = true, env = "TRTFARM_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// State directory of the local daemon (default: the same one `trtfarmd serve` uses).
    #[arg(long, global = true, env = "TRTFARM_DAEMON_DIR", value_name = "DIR")]
    pub daemon_dir: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write an `engine.toml` for an ONNX model that `trtfarm check` accepts: the model's
    /// inputs, a profile for its dynamic ones (placeholder sizes to set), fp32 and fp16 engines.
    Init(InitArgs),
    /// Validate engine.toml manifests without building anything.
    ///
    /// Each PATH is a manifest file or a directory searched recursively for `engine.toml`
    /// (hidden directories and `target/` are skipped). Exits non-zero if any manifest has an
    /// error.
    Check {
        /// Manifests or directories to check (default: the current directory).
        paths: Vec<PathBuf>,
        /// Print one JSON document on stdout instead of human-readable reports.
        #[arg(long)]
        json: bool,
    },
    /// Build every engine variant of the manifests (cached), write `engine.lock`, and write
    /// each engine to its file (its `output`, else `build/<engine>.engine` beside the manifest).
    Submit(SubmitArgs),
    /// Stream a blob (an engine, a log, ...) by digest, verify it, write it atomically.
    Fetch(FetchArgs),
    /// Rebuild whenever a manifest, its model, external data or plugins change.
    Watch(WatchArgs),
    /// Show what an engine is: its lock entry, how the daemon built it (toolchain, host, layer
    /// precisions, by-products), its provenance and its profiles.
    Inspect(InspectArgs),
    /// Rebuild each locked variant bypassing the cache and report whether it matches the lock.
    Verify {
        /// Manifests or directories (default: the current directory).
        paths: Vec<PathBuf>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a serving layout from the engines each manifest's `engine.lock` pins: a Triton
    /// model repository (`--triton DIR`), fetched by digest and verified.
    Export(ExportArgs),
    /// List the files each manifest's builds read (manifest, model, external data, plugins),
    /// its `engine.lock` and its engines, for build systems deciding when to run trtfarm again.
    Inputs {
        /// Manifests or directories (default: the current directory).
        paths: Vec<PathBuf>,
        /// Print one JSON document instead of one path per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one job.
    Status {
        /// The job id.
        job: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a job's build log (follows a running job).
    Logs {
        /// The job id.
        job: u64,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        job: u64,
    },
    /// List recent jobs.
    Ls {
        /// How many (default 20).
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start, stop or inspect the local daemon.
    Daemon {
        /// What to do with it.
        #[command(subcommand)]
        action: DaemonAction,
    },
    /// Show every daemon sharing the reached daemon's queue: host, endpoint, toolchains, GPUs,
    /// slots, heartbeat, and whether it is live.
    ///
    /// A daemon with its own embedded queue is a farm of one; daemons joined through a
    /// PostgreSQL queue are all listed, silent ones included.
    Farm {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// TensorRT Enterprise timing caches in the farm's registry: what each engine records or is
    /// locked to.
    TimingCache {
        /// What to show.
        #[command(subcommand)]
        action: TimingCacheAction,
    },
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (trtfarm.1 and one per subcommand) into DIR.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

/// `trtfarm timing-cache ...`.
#[derive(Debug, Subcommand)]
pub enum TimingCacheAction {
    /// For each engine: its timing-cache scope (toolchain, GPU, MPS share, timing settings),
    /// the versions recorded for it, and which engine.lock files pin each.
    Ls {
        /// Manifests or directories (default: the current directory).
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One recorded timing cache: its scope, when and by which build it was recorded, and the
    /// version it started from.
    Show {
        /// `blake3:<hex>/<size>`, as `ls` and engine.lock print it.
        digest: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `trtfarm daemon ...`.
#[derive(Debug, Subcommand)]
pub enum DaemonAction {
    /// Start the local daemon if it is not running.
    Start,
    /// Stop the local daemon (it drains running builds first).
    Stop,
    /// Show the daemon: endpoint, version, toolchains, store, slots, queue.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `trtfarm init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The ONNX model (default: the only `*.onnx` file in the current directory).
    pub model: Option<PathBuf>,
    /// Where to write the manifest, a file or a directory (default: `engine.toml` beside the
    /// model). The model must lie inside the manifest's directory.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace a manifest that already exists there.
    #[arg(long)]
    pub force: bool,
}

/// `trtfarm inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An engine file, a digest `blake3:<hex>/<size>`, or `MANIFEST#ENGINE`. A file or digest
    /// is looked up in the `engine.lock` files under the current directory.
    pub what: String,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `trtfarm submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Manifests or directories searched for `engine.toml` (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Fail (exit 1, with a diff) if any variant would resolve differently from `engine.lock`.
    #[arg(long)]
    pub locked: bool,
    /// Write engines into DIR/<manifest dir>/<engine>.engine instead of each engine's file (its
    /// `output`, else `build/<engine>.engine` beside the manifest).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print one JSON document on stdout and nothing else.
    #[arg(long)]
    pub json: bool,
    /// Submit and print job ids; do not wait, fetch or write the lock.
    #[arg(long)]
    pub no_wait: bool,
    /// Only these engine variants (repeatable).
    #[arg(long = "engine", short = 'e')]
    pub engines: Vec<String>,
    /// Queue priority (higher first).
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Also write FILE: each engine file's dependencies (the manifest, model, external data,
    /// plugins) in Makefile syntax, for Ninja, Make and CMake's `DEPFILE`.
    #[arg(long, value_name = "FILE", conflicts_with = "no_wait")]
    pub depfile: Option<PathBuf>,
}

/// `trtfarm fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// `blake3:<hex>/<size>` (as `submit` prints it), or `MANIFEST#ENGINE` resolved through
    /// that manifest's `engine.lock`.
    pub what: String,
    /// Where to write it; `-` writes to stdout (default: the blake3 hex in the current
    /// directory, or for `MANIFEST#ENGINE` the engine's file: its `output`, else
    /// `build/<engine>.engine` beside the manifest, where `submit` writes it too).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `trtfarm export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write a Triton model repository into DIR: per engine `<model>/<version>/model.plan` and
    /// `<model>/config.pbtxt` (platform `tensorrt_plan`, inputs, outputs, profiles).
    #[arg(long, value_name = "DIR")]
    pub triton: PathBuf,
    /// Manifests or directories searched for `engine.toml` (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Only these engine variants (repeatable).
    #[arg(long = "engine", short = 'e')]
    pub engines: Vec<String>,
    /// The model's version directory.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub model_version: u64,
    /// The Triton model's name (default: `<manifest directory>-<engine>`). The chosen engines
    /// of one manifest then become this one model, with one plan per compute capability.
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
}

/// `trtfarm watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Manifests or directories (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Quiet period after a change before rebuilding, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub debounce_ms: u64,
    /// Keep earlier output on screen. By default, when stderr is a terminal, the screen is
    /// cleared before each rebuild (as `tsc --watch` and Jest do; `cargo watch -c` opts in), so
    /// old errors are never mistaken for the latest run's; piped output is never cleared.
    #[arg(long)]
    pub no_clear: bool,
}
