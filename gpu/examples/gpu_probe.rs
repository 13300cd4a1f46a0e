//! Exercises this crate on a real GPU host (nothing here needs the daemon):
//!
//! - `gpu_probe inventory`: the inventory, as summary lines and JSON.
//! - `gpu_probe context ORDINAL [N [ITERATIONS]]`: a context probe (with an N³ bf16 GEMM unless
//!   N is 0).
//! - `gpu_probe mps CONTROL_BINARY PIPE_DIR LOG_DIR PERCENT [N]`: starts an owned MPS control
//!   daemon, shows a second start is refused, runs the context probe in two client children (no
//!   limit, then PERCENT), stops the daemon and shows it is gone.
//! - `gpu_probe mps-busy CONTROL_BINARY PIPE_DIR LOG_DIR`: stops an owned daemon while a client
//!   still computes, to see what `quit` does then.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use trtfarm_gpu::context::{MatmulSpec, probe_context};
use trtfarm_gpu::mps::MpsControl;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or(format!("missing argument {i}: {args:?}"))
    };
    match args.first().map(String::as_str) {
        Some("inventory") => {
            let inventory = trtfarm_gpu::probe();
            for gpu in &inventory.gpus {
                println!("{}", trtfarm_gpu::summary_line(gpu));
            }
            println!("{}", serde_json::to_string_pretty(&inventory)?);
        }
        Some("context") => {
            let ordinal: usize = arg(1)?.parse()?;
            let n: usize = args.get(2).map(|n| n.parse()).transpose()?.unwrap_or(0);
            let iterations = args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(20);
            let spec = (n > 0).then(|| MatmulSpec {
                n,
                iterations,
                ..MatmulSpec::default()
            });
            match probe_context(ordinal, spec) {
                Ok(report) => println!("{}", serde_json::to_string_pretty(&report)?),
                Err(e) => {
                    eprintln!("context probe failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some("mps") => mps(
            PathBuf::from(arg(1)?),
            PathBuf::from(arg(2)?),
            PathBuf::from(arg(3)?),
            arg(4)?.parse()?,
            args.get(5).cloned().unwrap_or_else(|| "8192".into()),
        )?,
        Some("mps-busy") => mps_busy(
            PathBuf::from(arg(1)?),
            PathBuf::from(arg(2)?),
            PathBuf::from(arg(3)?),
        )?,
        _ => return Err("usage: gpu_probe inventory | context ORDINAL [N] | mps ...".into()),
    }
    Ok(())
}

fn mps(binary: PathBuf, pipe: PathBuf, log: PathBuf, percent: u8, n: String) -> Result<()> {
    let started = Instant::now();
    let daemon = MpsControl::start_own(&binary, &pipe, &log)?;
    println!(
        "started in {:?}: pid {:?}, owned {}",
        started.elapsed(),
        daemon.daemon_pid(),
        daemon.owned()
    );
    for entry in std::fs::read_dir(&pipe)? {
        let entry = entry?;
        println!("  {:?} {:?}", entry.file_name(), entry.file_type()?);
    }
    match MpsControl::start_own(&binary, &pipe, &log) {
        Ok(_) => println!("UNEXPECTED: a second start_own succeeded"),
        Err(e) => println!("second start refused: {e}"),
    }
    let me = std::env::current_exe()?;
    for percentage in [None, Some(percent)] {
        let mut child = Command::new(&me);
        child.args(["context", "0", &n]);
        child.env_remove("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
        child.envs(daemon.client_env(percentage)?);
        let out = child.output()?;
        println!(
            "client {percentage:?} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inventory = trtfarm_gpu::probe();
    for gpu in &inventory.gpus {
        println!(
            "processes on gpu {} while MPS runs: {:?}",
            gpu.index, gpu.processes
        );
    }
    let pid = daemon.daemon_pid();
    let stopping = Instant::now();
    daemon.shutdown()?;
    println!("stopped in {:?} (pid {pid:?})", stopping.elapsed());
    match MpsControl::use_existing(&pipe) {
        Ok(_) => println!("UNEXPECTED: a daemon still answers"),
        Err(e) => println!("after shutdown: {e}"),
    }
    Ok(())
}

fn mps_busy(binary: PathBuf, pipe: PathBuf, log: PathBuf) -> Result<()> {
    let daemon = MpsControl::start_own(&binary, &pipe, &log)?;
    let mut client = Command::new(std::env::current_exe()?)
        .args(["context", "0", "8192", "2000"])
        .envs(daemon.client_env(Some(25))?)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    let stopping = Instant::now();
    let result = daemon.shutdown();
    println!(
        "shutdown with a busy client: {result:?} after {:?}",
        stopping.elapsed()
    );
    let status = client.wait()?;
    println!(
        "client ended {status} {:?} after the shutdown began",
        stopping.elapsed()
    );
    Ok(())
}
