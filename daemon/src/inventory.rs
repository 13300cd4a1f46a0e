//! What this daemon can build with: the TensorRT toolchains it found at start-up.
//!
//! The daemon never loads TensorRT into its own process: it asks a child (`trtfarmd
//! toolchains --json`) which libraries load, their versions and digests. A crashing or hanging
//! library then costs a failed probe, not the daemon.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use manifest_schema::Flavour;
use serde::{Deserialize, Serialize};
pub use trtfarm_types::ToolchainIdentity;
use trtfarm_types::{Blake3Digest, Version};

use crate::file_stamp::ProbedStamps;

/// One row of `trtfarmd toolchains --json`: a flavour, loaded or not. The digests are written
/// `blake3:<hex>` there and parsed on reading, so a malformed probe fails the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainRow {
    /// Which flavour was probed.
    pub flavour: Flavour,
    /// Full version when the library loaded.
    pub version: Option<Version>,
    /// The builder library that loaded.
    pub library: Option<PathBuf>,
    /// blake3 of that library.
    pub library_digest: Option<Blake3Digest>,
    /// The ONNX parser library that loaded with it.
    #[serde(default)]
    pub parser_library: Option<PathBuf>,
    /// blake3 of the parser library.
    #[serde(default)]
    pub parser_library_digest: Option<Blake3Digest>,
    /// Stamps of both libraries, so a build can show it loaded them without hashing them.
    #[serde(default)]
    pub stamps: ProbedStamps,
    /// Why it did not load.
    pub error: Option<String>,
}

/// A toolchain the daemon can build with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableToolchain {
    /// Which flavour.
    pub flavour: Flavour,
    /// Identity that goes into action keys.
    pub identity: ToolchainIdentity,
    /// The directory workers load it from (pinned, so a worker loads the same library).
    pub library_dir: Option<PathBuf>,
    /// The libraries' stamps at the probe.
    pub stamps: ProbedStamps,
}

/// All toolchains, as probed.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Every probed flavour, loaded or not (for the capabilities RPC).
    pub rows: Vec<ToolchainRow>,
    /// The loaded ones.
    pub available: Vec<AvailableToolchain>,
    /// The GPUs Enterprise builds may use, and MPS.
    pub gpus: crate::gpus::GpuSet,
}

impl Inventory {
    /// The loaded toolchain of `flavour`, or why there is none.
    pub fn get(&self, flavour: Flavour) -> Result<&AvailableToolchain, String> {
        if let Some(found) = self.available.iter().find(|t| t.flavour == flavour) {
            return Ok(found);
        }
        let reason = self
            .rows
            .iter()
            .find(|row| row.flavour == flavour)
            .and_then(|row| row.error.clone())
            .unwrap_or_else(|| "it was not probed".into());
        Err(format!("this daemon has no {flavour} toolchain: {reason}"))
    }

    /// The loaded toolchain that meets `requirement` (a farm may have several versions of a
    /// flavour), else the first of its flavour (whose version the caller reports), or why there
    /// is none.
    pub fn get_matching(
        &self,
        requirement: &manifest_schema::ToolchainRequirement,
    ) -> Result<&AvailableToolchain, String> {
        self.available
            .iter()
            .find(|t| t.flavour == requirement.flavour && requirement.matches(&t.identity.version))
            .map_or_else(|| self.get(requirement.flavour), Ok)
    }

    /// Builds the inventory from probe rows.
    pub fn from_rows(rows: Vec<ToolchainRow>) -> Inventory {
        let available = rows.iter().filter_map(available_from_row).collect();
        Inventory {
            rows,
            available,
            gpus: crate::gpus::GpuSet::default(),
        }
    }
}

fn available_from_row(row: &ToolchainRow) -> Option<AvailableToolchain> {
    // A toolchain whose parser could not be identified cannot key a build.
    let identity = ToolchainIdentity {
        flavour: row.flavour,
        version: row.version?,
        library: row.library_digest?,
        parser: row.parser_library_digest?,
    };
    Some(AvailableToolchain {
        flavour: row.flavour,
        identity,
        library_dir: row
            .library
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf),
        stamps: row.stamps,
    })
}

/// Probes the toolchains by running `program toolchains --json` with the configured library
/// directories. Hashing a TensorRT library takes a moment; a probe that hangs is stopped.
pub async fn probe(
    program: &Path,
    rtx_lib_dir: Option<&Path>,
    enterprise_lib_dir: Option<&Path>,
) -> anyhow::Result<Inventory> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(["toolchains", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = rtx_lib_dir {
        command.arg("--tensorrt-rtx-lib-dir").arg(dir);
    }
    if let Some(dir) = enterprise_lib_dir {
        command.arg("--tensorrt-lib-dir").arg(dir);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .map_err(|_| anyhow::anyhow!("the toolchain probe did not finish in 120 s"))??;
    anyhow::ensure!(
        output.status.success(),
        "the toolchain probe failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let rows: Vec<ToolchainRow> = serde_json::from_slice(&output.stdout)?;
    Ok(Inventory::from_rows(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(flavour: Flavour, loaded: bool) -> ToolchainRow {
        ToolchainRow {
            flavour,
            version: loaded.then(|| "1.7.1.116".parse().unwrap()),
            library: loaded.then(|| PathBuf::from("/opt/trt/lib/libtensorrt_rtx.so.1")),
            library_digest: loaded.then_some(Blake3Digest([0xab; 32])),
            parser_library: loaded
                .then(|| PathBuf::from("/opt/trt/lib/libtensorrt_onnxparser_rtx.so.1")),
            parser_library_digest: loaded.then_some(Blake3Digest([0xef; 32])),
            stamps: ProbedStamps::default(),
            error: (!loaded).then(|| "libnvinfer.so.11: cannot open shared object file".into()),
        }
    }

    #[test]
    fn loaded_rows_become_available_with_their_directory() {
        let inventory = Inventory::from_rows(vec![row(Flavour::TensorRtRtx, true)]);
        let rtx = inventory
            .get(Flavour::TensorRtRtx)
            .expect("rtx is available");
        assert_eq!(rtx.identity.version.to_string(), "1.7.1.116");
        assert_eq!(rtx.identity.library.hex(), "ab".repeat(32));
        assert_eq!(rtx.identity.parser.hex(), "ef".repeat(32));
        assert_eq!(rtx.library_dir.as_deref(), Some(Path::new("/opt/trt/lib")));
    }

    #[test]
    fn a_missing_flavour_says_why() {
        let inventory = Inventory::from_rows(vec![
            row(Flavour::TensorRtRtx, true),
            row(Flavour::TensorRt, false),
        ]);
        let error = inventory.get(Flavour::TensorRt).unwrap_err();
        assert!(error.contains("no tensorrt toolchain"), "{error}");
        assert!(error.contains("cannot open shared object"), "{error}");
    }

    #[test]
    fn probe_rows_keep_their_json_form_with_blake3_prefixed_digests() {
        let json = serde_json::to_value(row(Flavour::TensorRtRtx, true)).unwrap();
        assert_eq!(json["flavour"], "tensorrt-rtx");
        assert_eq!(json["version"], "1.7.1.116");
        assert_eq!(
            json["library_digest"],
            format!("blake3:{}", "ab".repeat(32))
        );
        let read: ToolchainRow = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read, row(Flavour::TensorRtRtx, true));
        // A probe that reports a malformed digest is refused, not stripped and passed on.
        let mut bad = json;
        bad["library_digest"] = "AB".repeat(32).into();
        let error = serde_json::from_value::<ToolchainRow>(bad).unwrap_err();
        assert!(
            error.to_string().contains("does not start with `blake3:`"),
            "{error}"
        );
    }
}
