//! `status --json` and `ls --json`: a job as one JSON object, full digests, Unix-millisecond
//! times, the state and failure kind as words.

use std::collections::BTreeMap;

use serde::Serialize;
use trtfarm_proto::v1;

use super::{kind_word, state_of, state_word};

/// One job.
#[derive(Debug, Serialize)]
pub struct JobJson<'a> {
    id: u64,
    state: &'static str,
    manifest: &'a str,
    engine: &'a str,
    action_key: &'a str,
    client: &'a str,
    priority: i32,
    attempts: u32,
    /// 1-based place in the queue while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_position: Option<u32>,
    submitted_at_ms: Option<i64>,
    started_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ResultJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureJson<'a>>,
}

/// What a succeeded job produced.
#[derive(Debug, Serialize)]
struct ResultJson<'a> {
    engine: Option<String>,
    engine_sha256: &'a str,
    build_log: Option<String>,
    provenance: Option<String>,
    timing_cache: Option<String>,
    timing_cache_loaded: Option<String>,
    layer_listing: Option<String>,
    layer_info: Option<String>,
    layers_by_precision: &'a BTreeMap<String, u64>,
    toolchain: Option<String>,
    built_by: &'a str,
    duration_ms: u64,
}

/// Why a job failed or was cancelled.
#[derive(Debug, Serialize)]
struct FailureJson<'a> {
    kind: &'static str,
    message: &'a str,
    build_log: Option<String>,
    log_tail: &'a [String],
}

fn digest(d: &Option<v1::Digest>) -> Option<String> {
    d.as_ref().map(v1::Digest::to_string)
}

fn time(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

/// `job` as its JSON object.
pub fn job_json(job: &v1::Job) -> JobJson<'_> {
    let state = state_of(job);
    JobJson {
        id: job.id,
        state: state_word(state),
        manifest: &job.manifest_path,
        engine: &job.variant,
        action_key: &job.action_key,
        client: &job.client,
        priority: job.priority,
        attempts: job.attempts,
        queue_position: (state == v1::JobState::Queued && job.queue_position > 0)
            .then_some(job.queue_position),
        submitted_at_ms: time(job.submitted_at_ms),
        started_at_ms: time(job.started_at_ms),
        finished_at_ms: time(job.finished_at_ms),
        result: job.result.as_ref().map(|r| ResultJson {
            engine: digest(&r.engine),
            engine_sha256: &r.engine_sha256,
            build_log: digest(&r.build_log),
            provenance: digest(&r.provenance),
            timing_cache: digest(&r.timing_cache),
            timing_cache_loaded: digest(&r.timing_cache_loaded),
            layer_listing: digest(&r.layer_listing),
            layer_info: digest(&r.layer_info),
            layers_by_precision: &r.layers_by_precision,
            toolchain: r
                .toolchain
                .as_ref()
                .map(|t| format!("{} {}", t.flavour, t.version)),
            built_by: &r.built_by,
            duration_ms: r.build_duration().as_millis() as u64,
        }),
        failure: job.failure.as_ref().map(|f| FailureJson {
            kind: kind_word(f.kind),
            message: &f.message,
            build_log: digest(&f.build_log),
            log_tail: &f.log_tail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_job_reads_as_words_and_full_digests() {
        let job = v1::Job {
            id: 7,
            state: v1::JobState::Failed as i32,
            manifest_path: "det/engine.toml".into(),
            variant: "fp16".into(),
            failure: Some(v1::Failure {
                kind: v1::FailureKind::Build as i32,
                message: "TensorRT refused it".into(),
                build_log: Some(v1::Digest {
                    blake3: "ab".repeat(32),
                    size_bytes: 9,
                }),
                log_tail: vec!["[error] no".into()],
            }),
            ..v1::Job::default()
        };
        let value = serde_json::to_value(job_json(&job)).unwrap();
        assert_eq!(value["state"], "failed");
        assert_eq!(value["failure"]["kind"], "build");
        assert_eq!(
            value["failure"]["build_log"],
            format!("blake3:{}/9", "ab".repeat(32))
        );
        assert_eq!(value["submitted_at_ms"], serde_json::Value::Null);
        assert!(value.get("result").is_none());
    }
}
