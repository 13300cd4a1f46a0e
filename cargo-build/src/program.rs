//! Running the `trtfarm` program and reading the JSON it prints: `trtfarm inputs --json` (what
//! a manifest's builds read), `trtfarm submit --json` (what was built, and where it was
//! fetched) and `trtfarm fetch` (one engine by digest, verified, written atomically).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::Error;
use crate::cargo_env::CargoEnv;

/// The `trtfarm` program, run in the package's directory.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    path: PathBuf,
    cwd: PathBuf,
}

/// `trtfarm inputs --json`.
#[derive(Debug, Deserialize)]
pub(crate) struct InputsDocument {
    /// One entry per manifest.
    pub manifests: Vec<ManifestInputs>,
}

/// One manifest's inputs.
#[derive(Debug, Deserialize)]
pub(crate) struct ManifestInputs {
    /// Every file its builds read (the manifest included).
    pub inputs: Vec<InputFile>,
}

/// One input file.
#[derive(Debug, Deserialize)]
pub(crate) struct InputFile {
    /// Where it is.
    pub path: PathBuf,
}

/// `trtfarm submit --json`.
#[derive(Debug, Deserialize)]
pub(crate) struct SubmitDocument {
    /// One entry per engine variant.
    pub variants: Vec<SubmittedVariant>,
}

/// One variant of `submit --json`.
#[derive(Debug, Deserialize)]
pub(crate) struct SubmittedVariant {
    /// Its name.
    pub variant: String,
    /// `built`, `cached`, `queued` or `failed`.
    pub status: String,
    /// `blake3:<hex>/<size>`.
    pub engine: Option<String>,
    /// Where the engine was written.
    pub output: Option<PathBuf>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The end of a failed build's log.
    #[serde(default)]
    pub log_tail: Vec<String>,
}

impl Program {
    /// `TRTFARM`, else `trtfarm` on `PATH`.
    pub fn find(env: &CargoEnv) -> Result<Program, Error> {
        let cwd = env.package_dir.clone();
        if let Some(path) = &env.program {
            return match path.is_file() {
                true => Ok(Program {
                    path: path.clone(),
                    cwd,
                }),
                false => Err(Error::NoCli {
                    searched: format!("TRTFARM={} is not a file", path.display()),
                }),
            };
        }
        let found = env
            .path
            .as_deref()
            .into_iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("trtfarm"))
            .find(|candidate| candidate.is_file());
        match found {
            Some(path) => Ok(Program { path, cwd }),
            None => Err(Error::NoCli {
                searched: "not on PATH, and TRTFARM is not set".into(),
            }),
        }
    }

    /// The files `manifest`'s builds read.
    pub fn inputs(&self, manifest: &Path) -> Result<Vec<PathBuf>, Error> {
        let args = [os("inputs"), os("--json"), manifest.as_os_str().to_owned()];
        let (command, stdout) = self.run(&args, false)?;
        let document: InputsDocument = parse(&command, &stdout)?;
        Ok(document
            .manifests
            .into_iter()
            .flat_map(|m| m.inputs)
            .map(|input| input.path)
            .collect())
    }

    /// Submits `manifest`'s engines (those in `engines`, or all), fetching them under `out`.
    pub fn submit(
        &self,
        manifest: &Path,
        out: &Path,
        engines: &[String],
    ) -> Result<Vec<SubmittedVariant>, Error> {
        let mut args = vec![os("submit"), os("--json"), os("--out"), out.into()];
        for engine in engines {
            args.extend([os("--engine"), os(engine)]);
        }
        args.push(manifest.into());
        // Exit 1 with a document: some engine failed, which the document says.
        let (command, stdout) = self.run(&args, true)?;
        let document: SubmitDocument = parse(&command, &stdout)?;
        Ok(document.variants)
    }

    /// Fetches the blob `digest` (`blake3:<hex>/<size>`) to `dest`, verified.
    pub fn fetch(&self, digest: &str, dest: &Path) -> Result<(), Error> {
        let args = [os("fetch"), os(digest), os("-o"), dest.into()];
        self.run(&args, false).map(|_| ())
    }

    /// Runs the program; its stdout, or the error its exit status and stderr describe.
    /// `document_on_failure`: exit 1 with something on stdout is an answer, not an error.
    fn run(&self, args: &[OsString], document_on_failure: bool) -> Result<(String, String), Error> {
        let command = render_command(&self.path, args);
        let output = Command::new(&self.path)
            .args(args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| Error::NoCli {
                searched: format!("{} cannot be run: {error}", self.path.display()),
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string();
        match output.status.code() {
            Some(0) => Ok((command, stdout)),
            Some(1) if document_on_failure && !stdout.trim().is_empty() => Ok((command, stdout)),
            Some(2) if is_daemon_problem(&stderr) => Err(Error::Daemon { command, stderr }),
            _ => Err(Error::Cli {
                command,
                status: output.status.to_string(),
                stderr,
            }),
        }
    }
}

fn os(text: &str) -> OsString {
    OsString::from(text)
}

fn parse<T: serde::de::DeserializeOwned>(command: &str, stdout: &str) -> Result<T, Error> {
    serde_json::from_str(stdout).map_err(|source| Error::Json {
        command: command.to_string(),
        source,
    })
}

fn render_command(program: &Path, args: &[OsString]) -> String {
    let mut line = program.display().to_string();
    for arg in args.iter().map(|a| a.as_os_str()) {
        line.push(' ');
        line.push_str(&OsStr::to_string_lossy(arg));
    }
    line
}

/// Whether trtfarm's message says that no daemon could be reached or started (its connection
/// and start-up errors), rather than that the daemon answered no.
fn is_daemon_problem(stderr: &str) -> bool {
    [
        "cannot reach",
        "UNAVAILABLE",
        "the local daemon",
        "cannot use the local daemon",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_documents_are_read_for_what_the_build_needs() {
        let text = r#"{"ok": false, "lock_diff": [], "variants": [
            {"manifest": "models/engine.toml", "variant": "fp32", "action_key": "ab",
             "toolchain": null, "target": "sm89", "status": "cached",
             "engine": "blake3:00/12", "size": 12, "duration_ms": null, "job_id": null,
             "output": "/out/trtfarm/models/fp32.engine", "failure": null, "log_tail": []},
            {"manifest": "models/engine.toml", "variant": "int8", "action_key": "",
             "toolchain": null, "target": "", "status": "failed", "engine": null,
             "size": null, "duration_ms": null, "job_id": 3, "output": null,
             "failure": "no Q/DQ nodes", "log_tail": ["line"]}]}"#;
        let document: SubmitDocument = parse("trtfarm submit", text).unwrap();
        let [fp32, int8] = &document.variants[..] else {
            panic!("{document:?}");
        };
        assert_eq!(fp32.engine.as_deref(), Some("blake3:00/12"));
        assert_eq!(
            fp32.output.as_deref(),
            Some(Path::new("/out/trtfarm/models/fp32.engine"))
        );
        assert_eq!(int8.status, "failed");
        assert_eq!(int8.failure.as_deref(), Some("no Q/DQ nodes"));
        let error = parse::<SubmitDocument>("trtfarm submit", "error: oops").unwrap_err();
        assert!(error.to_string().contains("same release"), "{error}");
    }

    #[test]
    fn connection_and_start_up_failures_are_daemon_problems() {
        assert!(is_daemon_problem(
            "error: cannot reach the daemon at http://127.0.0.1:1: transport error"
        ));
        assert!(is_daemon_problem(
            "error: the local daemon exited (exit status: 1) before it listened; ..."
        ));
        assert!(!is_daemon_problem(
            "error: cannot fetch blake3:00/1: NOT_FOUND: no such blob"
        ));
    }
}
