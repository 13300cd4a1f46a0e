//! Driving a daemon the way the CLI does: upload a manifest's model, submit a variant, follow
//! the job to its end.

use std::path::Path;

use tonic::transport::Channel;
use trtfarm::transfer::{digest_file, upload_file};
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

/// Uploads the model `manifest` names and builds the request for `variant`.
pub async fn request_for(
    client: &mut FarmClient<Channel>,
    manifest: &Path,
    variant: &str,
) -> v1::SubmitRequest {
    try_request_for(client, manifest, variant, "integration-test")
        .await
        .expect("upload the model")
}

/// [`request_for`] as `client_name`, with the upload's error returned instead of a panic (for
/// tests in which the daemon or its store may be down).
pub async fn try_request_for(
    client: &mut FarmClient<Channel>,
    manifest: &Path,
    variant: &str,
    client_name: &str,
) -> anyhow::Result<v1::SubmitRequest> {
    let toml = std::fs::read_to_string(manifest).expect("read the manifest");
    let parsed = manifest_schema::parse(&toml, manifest).expect("the manifest parses");
    let model = &parsed.model.resolved_path;
    let digest = digest_file(model).expect("hash the model");
    upload_file(client, model, &digest).await?;
    Ok(v1::SubmitRequest {
        manifest: Some(v1::Manifest {
            path: "engine.toml".into(),
            toml,
        }),
        variant: variant.into(),
        inputs: vec![v1::InputFile {
            path: parsed.model.path.clone(),
            digest: Some(digest),
            role: v1::InputRole::Model as i32,
        }],
        client: client_name.into(),
        ..v1::SubmitRequest::default()
    })
}

/// Every event of a job until its end; the last one is `Finished` or `Failed`.
pub async fn follow(client: &mut FarmClient<Channel>, job_id: u64) -> Vec<v1::JobEvent> {
    let mut stream = client
        .watch_job(v1::WatchJobRequest { job_id })
        .await
        .expect("watch the job")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("job event stream") {
        events.push(event);
    }
    events
}

/// The final event of a job (`Finished` or `Failed`), watching it again whenever its event
/// stream breaks, at most `max_resumes` times. A watch of a job that has ended answers with
/// that end, so nothing is lost by resuming.
///
/// Needed because a client that falls behind by about a hundred small events (a build streams
/// some 750 progress events, and a client starved of CPU reads them late) gets its connection
/// closed by its own HTTP/2 library: h2 0.4.20 answers a backlog of small DATA frames with
/// GOAWAY `too_many_data_frames` (ENHANCE_YOUR_CALM). Returns the final event and the errors of
/// the broken streams, for the caller to report.
pub async fn follow_to_end(
    client: &mut FarmClient<Channel>,
    job_id: u64,
    max_resumes: usize,
) -> (v1::job_event::Event, Vec<tonic::Status>) {
    let mut broken = Vec::new();
    loop {
        let mut stream = match client.watch_job(v1::WatchJobRequest { job_id }).await {
            Ok(response) => response.into_inner(),
            Err(status) if broken.len() < max_resumes => {
                broken.push(status);
                continue;
            }
            Err(status) => panic!("watch job {job_id}: {status} (after {broken:?})"),
        };
        let mut last = None;
        let error = loop {
            match stream.message().await {
                Ok(Some(event)) => last = event.event,
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        };
        match (error, last) {
            (None, Some(end)) => return (end, broken),
            (None, None) => panic!("job {job_id}'s event stream ended without an event"),
            (Some(status), _) if broken.len() < max_resumes => broken.push(status),
            (Some(status), _) => {
                panic!("job {job_id}'s event stream broke: {status} (after {broken:?})")
            }
        }
    }
}

/// The final event of a job's stream.
pub fn outcome(events: &[v1::JobEvent]) -> &v1::job_event::Event {
    events
        .last()
        .and_then(|e| e.event.as_ref())
        .expect("the job stream ends with an event")
}

/// The result of a job that must have succeeded.
pub fn succeeded(events: &[v1::JobEvent]) -> v1::ActionResult {
    match outcome(events) {
        v1::job_event::Event::Finished(result) => result.clone(),
        other => panic!("the job did not succeed: {other:?}"),
    }
}

/// The job a submit created or joined.
pub fn job_of(response: &v1::SubmitResponse) -> v1::Job {
    match &response.outcome {
        Some(v1::submit_response::Outcome::Job(job)) => job.clone(),
        other => panic!("expected a job, got {other:?}"),
    }
}
