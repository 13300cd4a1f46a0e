//! Writes the models of `examples/manifests/` next to their `engine.toml` files.
//!
//! Usage: `trtfarm-example-models <examples dir>`. The output is deterministic: a second run
//! finds every file unchanged and leaves it alone.

use std::path::PathBuf;
use std::process::ExitCode;

use onnx_graph::example_models::{WriteOutcome, write_examples};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [root] = args.as_slice() else {
        eprintln!("usage: trtfarm-example-models <examples dir>   (e.g. examples/manifests)");
        return ExitCode::from(2);
    };
    if root == "-h" || root == "--help" {
        println!("usage: trtfarm-example-models <examples dir>");
        println!("Writes each example's ONNX model next to its engine.toml, deterministically.");
        return ExitCode::SUCCESS;
    }
    match write_examples(&PathBuf::from(root)) {
        Ok(written) => {
            for (path, outcome) in written {
                let verb = match outcome {
                    WriteOutcome::Written => "wrote",
                    WriteOutcome::Unchanged => "unchanged",
                };
                println!("{verb:>9} {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("trtfarm-example-models: {err}");
            ExitCode::FAILURE
        }
    }
}
