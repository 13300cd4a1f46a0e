//! `trtfarmd probe-gpu`: what the daemon finds on this host, and what a build worker's CUDA
//! context gets on a GPU, optionally under an MPS share. The daemon runs the plain form as its
//! inventory probe; people and the GPU verification script (`scripts/gpu-verify`) use the rest.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context;
use trtfarm_gpu::context::{ContextReport, MatmulSpec};

use crate::build::builder_process::builder_env;
use crate::gpus::{GpuSet, MpsState};

/// Options of `trtfarmd probe-gpu`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeGpuOptions {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also create a CUDA context on the GPU with this index and report the SMs it gets.
    #[arg(long, value_name = "GPU")]
    pub context: Option<u32>,
    /// With --context: time an N×N×N bf16 matrix multiply (cuBLAS) in that context.
    #[arg(long, value_name = "N", requires = "context")]
    pub matmul: Option<usize>,
    /// With --context: run the context probe in a child process started the way the daemon
    /// starts a build worker (cleared environment, GPU pinned by UUID, MPS client variables).
    #[arg(long, requires = "context")]
    pub as_worker: bool,
    /// With --as-worker: the MPS pipe directory of a running control daemon.
    #[arg(long, value_name = "DIR", requires = "as_worker")]
    pub mps_pipe_dir: Option<PathBuf>,
    /// With --as-worker: the worker's MPS active-thread percentage (1–100).
    #[arg(long, value_name = "PERCENT", requires = "mps_pipe_dir",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub mps_percentage: Option<u8>,
}

/// Runs `trtfarmd probe-gpu`. Returns whether everything asked for was found.
pub fn run(options: &ProbeGpuOptions) -> anyhow::Result<bool> {
    let Some(index) = options.context else {
        let inventory = crate::gpus::probe_in_process();
        if options.json {
            println!("{}", serde_json::to_string_pretty(&inventory)?);
        } else {
            print_inventory(&inventory);
        }
        return Ok(true);
    };
    let report = if options.as_worker {
        context_as_worker(options, index)?
    } else {
        let matmul = options.matmul.map(|n| MatmulSpec {
            n,
            ..MatmulSpec::default()
        });
        trtfarm_gpu::context::probe_context(index as usize, matmul)?
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_context(&report);
    }
    Ok(true)
}

fn print_context(report: &ContextReport) {
    println!(
        "gpu {}: {} (compute capability {})",
        report.ordinal, report.device_name, report.compute_capability
    );
    let sms = report
        .context_sm_count
        .map(|sms| sms.to_string())
        .unwrap_or_else(|| {
            format!(
                "unknown ({})",
                report.context_sm_count_error.as_deref().unwrap_or("")
            )
        });
    println!(
        "context SMs {sms} of {} on the device",
        report.device_multiprocessors
    );
    match &report.mps_active_thread_percentage {
        Some(p) => println!("mps         client, {p} % of the threads"),
        None if report.mps_pipe_directory_set => println!("mps         client, no limit"),
        None => println!("mps         not a client"),
    }
    if let Some(matmul) = &report.matmul {
        println!(
            "matmul      bf16 {n}x{n}x{n}: {:.1} TFLOP/s ({:.3} ms each)",
            matmul.tflops,
            matmul.seconds_per_iteration * 1e3,
            n = matmul.spec.n
        );
    }
}

fn print_inventory(inventory: &trtfarm_gpu::inventory::Inventory) {
    if let Some(version) = &inventory.driver.driver_version {
        println!("NVIDIA driver {version}");
    }
    for gpu in &inventory.gpus {
        println!("{}", trtfarm_gpu::inventory::summary_line(gpu));
    }
    if let Some(reason) = &inventory.unavailable {
        println!("no GPU: {reason}");
    }
}

/// The context probe in a child set up exactly like a build worker on that GPU.
fn context_as_worker(options: &ProbeGpuOptions, index: u32) -> anyhow::Result<ContextReport> {
    let mps = match &options.mps_pipe_dir {
        Some(pipe_dir) => MpsState::Running {
            pipe_dir: pipe_dir.clone(),
            owned: false,
        },
        None => MpsState::Off {
            reason: "not asked for".into(),
        },
    };
    let set = GpuSet::from_inventory(crate::gpus::probe_in_process(), None, mps);
    let gpu = set.get(index).with_context(|| {
        format!(
            "no GPU {index}: {}",
            set.unavailable.as_deref().unwrap_or("")
        )
    })?;
    let env = builder_env(&set.builder_env(gpu, options.mps_percentage));
    let program = std::env::current_exe().context("cannot find the trtfarmd executable")?;
    let mut command = std::process::Command::new(program);
    // The worker sees only its GPU, as ordinal 0.
    command.args(["probe-gpu", "--json", "--context", "0"]);
    if let Some(n) = options.matmul {
        command.args(["--matmul", &n.to_string()]);
    }
    let output = command
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the probe worker")?;
    anyhow::ensure!(
        output.status.success(),
        "the probe worker failed ({})",
        output.status
    );
    serde_json::from_slice(&output.stdout).context("the probe worker's report")
}
