//! The prepare step as the farm runs it: the build's inputs directory filled with the model
//! TensorRT will see, converted at most once per prepare key and shared through the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use trtfarm_build_protocol::TIMING_CACHE_INPUT_FILE;
use trtfarm_proto::v1;
use trtfarm_store::{ActionKey, BlobDigest, Published};

use crate::build::builder_process::BuilderEvent;
use crate::build::prepare::{
    Preparation, PrepareError, PrepareLogLine, PreparedModel, PreparedModelRecord, StoredFile,
    prepare_model,
};
use crate::ingest::request::{MODEL_NAME, PreparedBuild};
use crate::schedule::{Farm, failure};

/// Where the original inputs go when a conversion runs: beside the builder's inputs, never in
/// them, so the builder sees only the converted model.
const SOURCE_DIR: &str = "source";

type Failure = v1::Failure;

fn infrastructure(message: impl Into<String>) -> Failure {
    failure(v1::FailureKind::Infrastructure, message, Vec::new())
}

fn build_failure(message: impl Into<String>) -> Failure {
    failure(v1::FailureKind::Build, message, Vec::new())
}

impl Farm {
    /// Fills `inputs` (the builder's inputs directory) with the model to build and its external
    /// data. A conversion comes from the store when another build already made it (joining one
    /// that runs now), else runs here and is published for the next. Returns the converted
    /// model, if any. What it did goes to `events` as log lines.
    pub(crate) async fn prepare_inputs(
        &self,
        prepared: &PreparedBuild,
        scratch: &Path,
        inputs: &Path,
        events: &UnboundedSender<BuilderEvent>,
    ) -> Result<Option<PreparedModel>, Failure> {
        let (Preparation::Autocast(_), Some(key)) = (&prepared.preparation, prepared.prepare_key)
        else {
            self.materialize(prepared, inputs).await?;
            let preparation = prepared.preparation.clone();
            let model = inputs.join(MODEL_NAME);
            run_blocking(events, move |log| {
                prepare_model(&preparation, &model, &model, log)
            })
            .await?;
            return Ok(None);
        };
        // One conversion per key at a time; later builds of the key find its result.
        let gate = self.prepare_gate(key);
        let turn = gate.lock().await;
        let outcome = match self.prepared_model(&key).await {
            Some(model) => {
                self.fetch_prepared(&model, inputs).await?;
                self.metrics.model_reused();
                log(
                    events,
                    "info",
                    format!(
                        "prepare: reusing the {} model converted earlier (prepare key {}, \
                         blake3:{})",
                        model.transform,
                        short(&key),
                        &model.model.blake3[..16]
                    ),
                );
                Ok(Some(model))
            }
            None => self.convert(prepared, key, scratch, inputs, events).await,
        };
        drop(turn);
        self.release_prepare_gate(key, gate);
        outcome
    }

    /// Runs the conversion into `inputs` and publishes it: blobs first, then the record.
    async fn convert(
        &self,
        prepared: &PreparedBuild,
        key: ActionKey,
        scratch: &Path,
        inputs: &Path,
        events: &UnboundedSender<BuilderEvent>,
    ) -> Result<Option<PreparedModel>, Failure> {
        let source = scratch.join(SOURCE_DIR);
        self.materialize(prepared, &source).await?;
        let preparation = prepared.preparation.clone();
        let (original, converted) = (source.join(MODEL_NAME), inputs.join(MODEL_NAME));
        let target = converted.clone();
        let (lines, files) = run_blocking(events, move |log| {
            prepare_model(&preparation, &original, &target, log)
        })
        .await?;
        // The originals are not needed any more; the builder must never see them.
        let _ = tokio::fs::remove_dir_all(&source).await;
        self.metrics.model_converted();
        let (transform, pass_version) = prepared
            .preparation
            .transform()
            .ok_or_else(|| infrastructure("a conversion without a transform"))?;

        let put = |what: &'static str, path: PathBuf| async move {
            self.publishing
                .put_file(&path, None)
                .await
                .map_err(|e| infrastructure(format!("cannot store the {what}: {e}")))
        };
        let model = put("converted model", converted.clone()).await?;
        let external_data = match files.converted_weights {
            Some(weights) => {
                let name = weights
                    .file_name()
                    .ok_or_else(|| infrastructure("autocast wrote weights without a file name"))?
                    .to_string_lossy()
                    .into_owned();
                let put = put("converted model's weights", weights).await?;
                Some(StoredFile::new(&name, &put.digest))
            }
            None => None,
        };
        let record = PreparedModelRecord {
            prepared_model: PreparedModel {
                transform: transform.to_owned(),
                pass_version,
                model: StoredFile::new(MODEL_NAME, &model.digest),
                external_data,
                log: lines,
            },
        };
        let encoded = record.encode();
        match self
            .publishing
            .put_action_result(&key, encoded.into())
            .await
        {
            Ok(Published::Created | Published::AlreadyExisted) => {}
            // The engine can still be built and published; the next build converts again.
            Err(e) => tracing::warn!("cannot record the converted model: {e}"),
        }
        log(
            events,
            "info",
            format!(
                "prepare: converted the model to {transform} (prepare key {}, blake3:{}); \
                 other variants with this conversion reuse it",
                short(&key),
                &model.digest.hex()[..16]
            ),
        );
        Ok(Some(record.prepared_model))
    }

    /// The converted model recorded under `key`, if its record and blobs are all there (a
    /// record whose blobs are gone is a miss, not an error).
    async fn prepared_model(&self, key: &ActionKey) -> Option<PreparedModel> {
        let bytes = self.store.get_action_result(key).await.ok()??;
        let record = match PreparedModelRecord::decode(&bytes) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(key = %key.hex(), "ignoring an unreadable prepare record: {e}");
                return None;
            }
        };
        let blobs = record.blobs().ok()?;
        match self.store.find_missing(&blobs).await {
            Ok(missing) if missing.is_empty() => Some(record.prepared_model),
            _ => None,
        }
    }

    /// Writes a converted model and its weights from the store into `inputs`.
    async fn fetch_prepared(&self, model: &PreparedModel, inputs: &Path) -> Result<(), Failure> {
        for file in std::iter::once(&model.model).chain(model.external_data.as_ref()) {
            let digest = file.digest().map_err(|e| infrastructure(e.to_string()))?;
            let name = file
                .file_name()
                .map_err(|e| infrastructure(e.to_string()))?;
            self.fetch(&digest, &inputs.join(name)).await?;
        }
        Ok(())
    }

    /// Writes the request's input files under `dir`, at their paths relative to the model.
    async fn materialize(&self, prepared: &PreparedBuild, dir: &Path) -> Result<(), Failure> {
        for (digest, relative) in &prepared.materialize {
            self.fetch(digest, &dir.join(relative)).await?;
        }
        Ok(())
    }

    /// Writes the timing cache the build loads, if any, where the builder reads it.
    pub(crate) async fn materialize_timing_cache(
        &self,
        prepared: &PreparedBuild,
        scratch: &Path,
    ) -> Result<(), Failure> {
        match prepared.timing_cache_load() {
            Some(cache) => {
                self.fetch(&cache, &scratch.join(TIMING_CACHE_INPUT_FILE))
                    .await
            }
            None => Ok(()),
        }
    }

    async fn fetch(&self, digest: &BlobDigest, dest: &Path) -> Result<(), Failure> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| infrastructure(format!("cannot create {}: {e}", parent.display())))?;
        }
        self.store
            .read_to_file(digest, dest)
            .await
            .map_err(|e| infrastructure(format!("cannot fetch input {digest} from the store: {e}")))
    }

    /// The lock that serialises conversions of `key`.
    fn prepare_gate(&self, key: ActionKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self
            .prepare_gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(gates.entry(key).or_default())
    }

    /// Forgets `key`'s lock once no build holds or waits for it.
    fn release_prepare_gate(&self, key: ActionKey, gate: Arc<tokio::sync::Mutex<()>>) {
        let mut gates = self
            .prepare_gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two references: the map's and ours.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(&key);
        }
    }
}

/// Runs a blocking preparation off the async threads and forwards what it logged; a failure
/// is a build failure (the model or the manifest is at fault), a panic an infrastructure one.
async fn run_blocking<T: Send + 'static>(
    events: &UnboundedSender<BuilderEvent>,
    work: impl FnOnce(&mut Vec<PrepareLogLine>) -> Result<T, PrepareError> + Send + 'static,
) -> Result<(Vec<PrepareLogLine>, T), Failure> {
    let (lines, result) = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let result = work(&mut lines);
        (lines, result)
    })
    .await
    .map_err(|e| infrastructure(format!("the model preparation stopped: {e}")))?;
    for line in &lines {
        log(events, &line.severity, line.text.clone());
    }
    let value = result.map_err(|e| build_failure(e.to_string()))?;
    Ok((lines, value))
}

fn log(events: &UnboundedSender<BuilderEvent>, severity: &str, text: String) {
    let _ = events.send(BuilderEvent::Log {
        severity: severity.to_owned(),
        text,
    });
}

/// The first 16 hex digits of a key, for log lines.
fn short(key: &ActionKey) -> String {
    key.hex()[..16].to_owned()
}
