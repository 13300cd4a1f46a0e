//! Live progress: what each engine variant's line says (`queued (position 3)`, `building:
//! <phase> <step>/<steps>`, `cached`, `built 1.2 s`), TensorRT's nested phases, and following
//! a job's event stream to its end. [`display`] draws the lines.

mod display;

pub use display::{Display, Line};

use std::time::Duration;

use trtfarm_proto::v1;
use trtfarm_proto::v1::job_event::Event;

use tonic::Status;

use crate::connect::{FarmConnection, Losses, Reconnect, describe_status, is_connection_loss};

/// Where a variant is.
#[derive(Debug, Clone, PartialEq)]
pub enum LineState {
    /// Not submitted yet (inputs being hashed or uploaded, or waiting for a submit slot).
    Waiting,
    /// In the daemon's queue, at this 1-based position.
    Queued(u32),
    /// A worker started; no progress reported yet.
    Started,
    /// TensorRT reports progress in `phase`.
    Building {
        /// The phase TensorRT is in: the innermost, after its parent when it has one
        /// (`Building engine › Determining refit engines`).
        phase: String,
        /// Steps done in it.
        step: i32,
        /// Steps it has (0 when unknown).
        steps: i32,
    },
    /// The result came from the cache.
    Cached,
    /// Built in this much build time.
    Built(Duration),
    /// Submitted without waiting, as this job.
    Submitted(u64),
    /// Did not build; the message says why.
    Failed(String),
}

/// What a line says for `state`.
pub fn describe(state: &LineState) -> String {
    match state {
        LineState::Waiting => "waiting".into(),
        LineState::Queued(position) => format!("queued (position {position})"),
        LineState::Started => "building".into(),
        // A phase of one step says nothing with `0/1`.
        LineState::Building { phase, step, steps } if *steps > 1 => {
            format!("building: {phase} {step}/{steps}")
        }
        LineState::Building { phase, .. } => format!("building: {phase}"),
        LineState::Cached => "cached".into(),
        LineState::Built(time) => format!("built {:.1} s", time.as_secs_f64()),
        LineState::Submitted(job) => format!("submitted as job {job}"),
        LineState::Failed(message) => {
            format!("FAILED: {}", message.lines().next().unwrap_or_default())
        }
    }
}

/// Plain (non-terminal) output prints a line only when this changes: once when queued, once
/// when building starts (TensorRT's phases come and go many times a second), and the end.
pub(crate) fn plain_stage(state: &LineState) -> &'static str {
    match state {
        LineState::Waiting => "waiting",
        LineState::Queued(_) => "queued",
        LineState::Started | LineState::Building { .. } => "building",
        LineState::Cached
        | LineState::Built(_)
        | LineState::Submitted(_)
        | LineState::Failed(_) => "done",
    }
}

/// Follows TensorRT's nested progress phases; the innermost open one is what a line shows.
#[derive(Debug, Default)]
pub struct PhaseTracker {
    /// Open phases, outermost first: (name, step, steps).
    open: Vec<(String, i32, i32)>,
}

impl PhaseTracker {
    /// Applies one progress event.
    pub fn apply(&mut self, progress: &v1::Progress) {
        let position = |open: &[(String, i32, i32)], name: &str| {
            open.iter().rposition(|(phase, _, _)| phase == name)
        };
        match v1::ProgressKind::try_from(progress.kind) {
            Ok(v1::ProgressKind::PhaseStart) => {
                let keep = match position(&self.open, &progress.parent_phase) {
                    Some(parent) if !progress.parent_phase.is_empty() => parent + 1,
                    _ => 0,
                };
                self.open.truncate(keep);
                self.open.push((progress.phase.clone(), 0, progress.steps));
            }
            Ok(v1::ProgressKind::Step) => {
                if let Some(index) = position(&self.open, &progress.phase) {
                    self.open[index].1 = progress.step;
                    if progress.steps > 0 {
                        self.open[index].2 = progress.steps;
                    }
                }
            }
            Ok(v1::ProgressKind::PhaseFinish) => {
                if let Some(index) = position(&self.open, &progress.phase) {
                    self.open.truncate(index);
                }
            }
            _ => {}
        }
    }

    /// The innermost open phase, after its parent (TensorRT spends long stretches in a phase
    /// of a single step, which alone reads as stuck), as a line state.
    pub fn current(&self) -> Option<LineState> {
        let (phase, step, steps) = self.open.last()?;
        let phase = match self.open.len() {
            0 | 1 => phase.clone(),
            n => format!("{} › {phase}", self.open[n - 2].0),
        };
        Some(LineState::Building {
            phase,
            step: *step,
            steps: *steps,
        })
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum JobEnd {
    /// It produced this result.
    Finished(Box<v1::ActionResult>),
    /// It failed or was cancelled.
    Failed(v1::Failure),
}

/// Follows job `job_id`'s events, showing them on `line`, until it ends. When the connection
/// breaks (the daemon was killed, restarted or is briefly away), reaches the daemon again
/// through `reconnect` and follows the job on from its current state.
pub async fn follow_job(
    client: &mut FarmConnection,
    job_id: u64,
    line: &Line,
    reconnect: &Reconnect,
    display: &Display,
) -> anyhow::Result<JobEnd> {
    let mut losses = Losses::default();
    loop {
        let lost = match watch_to_end(client, job_id, line).await {
            Ok(end) => return Ok(end),
            Err(WatchError::Final(status)) => return Err(status.into()),
            Err(WatchError::Lost(why)) => why,
        };
        let say = |what: &str| display.note(&format!("trtfarm: job {job_id}: {lost}: {what}"));
        *client = reconnect.again(&mut losses, say).await?;
    }
}

/// Why following a job stopped before its end.
enum WatchError {
    /// The daemon's answer about the job itself.
    Final(Status),
    /// The connection or the stream went away; the job may well go on.
    Lost(String),
}

async fn watch_to_end(
    client: &mut FarmConnection,
    job_id: u64,
    line: &Line,
) -> Result<JobEnd, WatchError> {
    let classify = |status: Status| {
        if is_connection_loss(&status) {
            WatchError::Lost(describe_status(&status))
        } else {
            WatchError::Final(status)
        }
    };
    let mut stream = client
        .watch_job(v1::WatchJobRequest { job_id })
        .await
        .map_err(classify)?
        .into_inner();
    let mut phases = PhaseTracker::default();
    while let Some(event) = stream.message().await.map_err(classify)? {
        match event.event {
            Some(Event::Queued(queued)) => line.show(&LineState::Queued(queued.position)),
            Some(Event::Started(_)) => line.show(&LineState::Started),
            Some(Event::Progress(progress)) => {
                phases.apply(&progress);
                line.show(&phases.current().unwrap_or(LineState::Started));
            }
            Some(Event::Finished(result)) => return Ok(JobEnd::Finished(Box::new(result))),
            Some(Event::Failed(failure)) => return Ok(JobEnd::Failed(failure)),
            Some(Event::Log(log)) => line.log(&log.severity, &log.text),
            None => {}
        }
    }
    Err(WatchError::Lost(
        "the daemon closed the job's event stream before the job ended".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        kind: v1::ProgressKind,
        phase: &str,
        parent: &str,
        step: i32,
        steps: i32,
    ) -> v1::Progress {
        v1::Progress {
            phase: phase.into(),
            parent_phase: parent.into(),
            step,
            steps,
            kind: kind as i32,
        }
    }

    #[test]
    fn describes_every_state_as_the_issue_shows_them() {
        let building = LineState::Building {
            phase: "Building engine".into(),
            step: 3,
            steps: 10,
        };
        assert_eq!(describe(&LineState::Queued(3)), "queued (position 3)");
        assert_eq!(describe(&building), "building: Building engine 3/10");
        assert_eq!(plain_stage(&building), plain_stage(&LineState::Started));
        assert_ne!(
            plain_stage(&LineState::Queued(2)),
            plain_stage(&LineState::Started)
        );
        assert_eq!(describe(&LineState::Cached), "cached");
        assert_eq!(
            describe(&LineState::Built(Duration::from_millis(1234))),
            "built 1.2 s"
        );
        assert_eq!(
            describe(&LineState::Failed("precision fp16 is refused\nmore".into())),
            "FAILED: precision fp16 is refused"
        );
    }

    #[test]
    fn tracks_the_innermost_open_phase() {
        use v1::ProgressKind::{PhaseFinish, PhaseStart, Step};
        let mut phases = PhaseTracker::default();
        assert_eq!(phases.current(), None);
        phases.apply(&event(PhaseStart, "Build", "", 0, 4));
        phases.apply(&event(PhaseStart, "Tactics", "Build", 0, 20));
        phases.apply(&event(Step, "Tactics", "", 7, 0));
        assert_eq!(
            describe(&phases.current().unwrap()),
            "building: Build › Tactics 7/20"
        );
        phases.apply(&event(PhaseFinish, "Tactics", "", 0, 0));
        phases.apply(&event(Step, "Build", "", 2, 0));
        assert_eq!(describe(&phases.current().unwrap()), "building: Build 2/4");
        // A sibling started under the same parent replaces any deeper phase left open; a
        // single-step phase shows no `0/1`.
        phases.apply(&event(PhaseStart, "Inner", "Build", 0, 1));
        assert_eq!(
            describe(&phases.current().unwrap()),
            "building: Build › Inner"
        );
        phases.apply(&event(PhaseStart, "Serialize", "Build", 0, 0));
        assert_eq!(
            describe(&phases.current().unwrap()),
            "building: Build › Serialize"
        );
        phases.apply(&event(PhaseFinish, "Build", "", 0, 0));
        assert_eq!(phases.current(), None);
    }
}
