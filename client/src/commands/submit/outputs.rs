//! After the builds: engines fetched into place (skipped when the file there already has the
//! digest), `engine.lock` written, or with `--locked` compared.

use std::path::{Component, Path, PathBuf};

use trtfarm::lock::{LockedEngine, lock_path, read_lock, write_lock};
use trtfarm::transfer::download_to_file;

use super::{Outcome, Prepared, Session, Status};

/// With `--locked`: an engine whose digest differs from the lock fails its variant.
pub(super) fn check_engine_against_lock(p: &Prepared, outcome: &mut Outcome) -> anyhow::Result<()> {
    let (Some(now), Some(lock)) = (outcome.locked_engine()?, read_lock(&p.path)?) else {
        return Ok(());
    };
    if let Some(locked) = lock.engine(&outcome.variant)
        && locked.engine != now.engine
    {
        outcome.fail(format!(
            "the engine differs from {}:\n  - engine = \"{}\"\n  + engine = \"{}\"",
            lock_path(Path::new(&p.label)).display(),
            locked.engine,
            now.engine
        ));
    }
    Ok(())
}

/// Where a variant's engine goes: `DIR/<manifest dir>/<variant>.engine` with `--out DIR`, else
/// its file (see [`manifest_schema::Manifest::engine_file`]); `None` for a variant the manifest
/// does not have.
pub fn destination(p: &Prepared, variant: &str, out: Option<&Path>) -> Option<PathBuf> {
    match out {
        Some(dir) => {
            let manifest_dir = Path::new(&p.label).parent().unwrap_or(Path::new(""));
            let safe: PathBuf = manifest_dir
                .components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(part),
                    _ => None,
                })
                .collect();
            Some(dir.join(safe).join(format!("{variant}.engine")))
        }
        None => {
            let file = p.manifest.engine_file(p.manifest.variant(variant)?);
            // `build/fp16.engine`, not `./build/fp16.engine`, for a manifest found here.
            Some(match file.strip_prefix(".") {
                Ok(inside) => inside.to_path_buf(),
                Err(_) => file,
            })
        }
    }
}

/// Fetches a variant's engine to its destination, unless the file there already has its digest.
pub(super) async fn fetch_output(
    session: &Session,
    p: &Prepared,
    outcome: &mut Outcome,
    out: Option<&Path>,
) {
    let Some(dest) = destination(p, &outcome.variant, out) else {
        return;
    };
    let Some(engine) = outcome.result.as_ref().and_then(|r| r.engine.clone()) else {
        return;
    };
    let cache = session.cache.clone();
    let probe = dest.clone();
    let present = tokio::task::spawn_blocking(move || cache.digest(&probe).ok())
        .await
        .ok()
        .flatten()
        .is_some_and(|(digest, _)| digest == engine);
    if !present
        && let Err(error) = download_to_file(&mut session.client.clone(), &engine, &dest).await
    {
        outcome.fail(format!(
            "built, but cannot write {}: {error:#}",
            dest.display()
        ));
        return;
    }
    outcome.output = Some(dest);
}

/// Writes each manifest's lock: entries of the variants that produced engines now replace
/// theirs, others stay, entries of variants the manifest no longer has go.
pub(super) fn record_locks(prepared: &[Prepared], outcomes: &[Outcome]) -> anyhow::Result<()> {
    for (index, p) in prepared.iter().enumerate() {
        let mut built: Vec<LockedEngine> = outcomes
            .iter()
            .filter(|o| o.manifest == index && o.status != Status::Failed)
            .map(Outcome::locked_engine)
            .filter_map(Result::transpose)
            .collect::<anyhow::Result<_>>()?;
        for entry in &mut built {
            (entry.inputs, entry.settings) = super::key_inputs(p, &entry.name);
        }
        if built.is_empty() {
            continue;
        }
        let old = read_lock(&p.path)?.unwrap_or_default();
        let names: Vec<&str> = p
            .manifest
            .variants()
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        let new = old.updated(&built, &names);
        if new != old {
            write_lock(&new, &p.path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(label: &str) -> Prepared {
        let text = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.9\"]\n[[engine]]\nname = \"fp32\"\noutput = \"build/m.engine\"\n[[engine]]\nname = \"bare\"\n";
        let manifest = manifest_schema::parse(text, Path::new(label)).unwrap();
        Prepared {
            path: PathBuf::from(label),
            label: label.to_string(),
            manifest,
            local: Vec::new(),
            inputs: Vec::new(),
        }
    }

    #[test]
    fn engines_go_to_their_output_or_under_out_by_manifest_directory() {
        let p = prepared("models/cnn/engine.toml");
        assert_eq!(
            destination(&p, "fp32", None),
            Some(PathBuf::from("models/cnn/build/m.engine"))
        );
        assert_eq!(
            destination(&p, "bare", None),
            Some(PathBuf::from("models/cnn/build/bare.engine"))
        );
        assert_eq!(destination(&p, "gone", None), None);
        assert_eq!(
            destination(&p, "bare", Some(Path::new("out"))),
            Some(PathBuf::from("out/models/cnn/bare.engine"))
        );
        // A manifest outside the current directory cannot write outside --out.
        let outside = prepared("../../elsewhere/engine.toml");
        assert_eq!(
            destination(&outside, "fp32", Some(Path::new("out"))),
            Some(PathBuf::from("out/elsewhere/fp32.engine"))
        );
    }
}
