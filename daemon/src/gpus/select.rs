//! Which of this daemon's GPUs may build an Enterprise engine, decided when the request
//! arrives: a request no GPU here can serve fails at once instead of waiting in the queue.

use manifest_schema::GpuSelector;
use trtfarm_types::ComputeCapability;

use super::{GpuSet, GpuSlot};
use crate::ingest::action_key::Target;

/// The GPUs a build may run on, all of one model and compute capability (the target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuChoice {
    /// What goes into the action key: the GPU model and compute capability.
    pub target: Target,
    /// Indices of the GPUs of that model; the scheduler takes whichever is free first.
    pub candidates: Vec<u32>,
}

impl GpuSet {
    /// Picks the GPU model an Enterprise engine builds on.
    ///
    /// With a selector (`compatibility.gpu`), the GPUs it matches; without one, every GPU of
    /// this daemon. Either way they must be a single model: an engine built on one model is
    /// not the engine of another (its tactics were timed there), so the request must say which.
    pub fn choose(&self, selector: Option<&GpuSelector>) -> Result<GpuChoice, String> {
        if self.gpus.is_empty() {
            let why = self
                .unavailable
                .as_deref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default();
            return Err(format!(
                "TensorRT Enterprise builds on the GPU it targets, and this daemon has no GPU{why}; \
                 submit to a daemon on a GPU host"
            ));
        }
        let matching: Vec<&GpuSlot> = self
            .gpus
            .iter()
            .filter(|gpu| selector.is_none_or(|s| s.matches(&gpu.name, gpu.compute_capability)))
            .collect();
        let models = models(&matching);
        match (models.as_slice(), selector) {
            ([], Some(selector)) => Err(format!(
                "the engine asks for compatibility.gpu = \"{selector}\", and no GPU of this daemon \
                 matches; it has {}",
                describe(&models_of(&self.gpus))
            )),
            ([(name, cc, _)], _) => Ok(GpuChoice {
                target: Target::Gpu {
                    model: name.clone(),
                    compute_capability: *cc,
                },
                candidates: matching
                    .iter()
                    .filter(|gpu| gpu.name == *name && gpu.compute_capability == *cc)
                    .map(|gpu| gpu.index)
                    .collect(),
            }),
            (several, selector) => {
                let asked = selector
                    .map(|s| format!("compatibility.gpu = \"{s}\" matches"))
                    .unwrap_or_else(|| "this daemon has".into());
                Err(format!(
                    "{asked} several GPU models ({}); an Enterprise engine is built for one: \
                     name it with compatibility.gpu = \"{}\"",
                    describe(several),
                    several[0].0
                ))
            }
        }
    }

    /// Refuses an MPS limit this daemon cannot apply: a build asked to run on a share of the
    /// GPU must never run on all of it.
    pub fn check_mps(&self, percentage: Option<u8>) -> Result<(), String> {
        match (percentage, &self.mps) {
            (None, _) | (Some(_), super::MpsState::Running { .. }) => Ok(()),
            (Some(p), super::MpsState::Off { reason }) => Err(format!(
                "the engine asks for mps_percentage = {p}, and this daemon cannot limit a build's \
                 share of the GPU: {reason}. Start trtfarmd with gpu.mps = \"own\" (or \
                 \"existing\"), or remove mps_percentage"
            )),
        }
    }
}

/// (name, compute capability, count) per distinct GPU model, in index order of first sight.
type Model = (String, ComputeCapability, usize);

fn models(gpus: &[&GpuSlot]) -> Vec<Model> {
    let mut models: Vec<Model> = Vec::new();
    for gpu in gpus {
        match models
            .iter_mut()
            .find(|(name, cc, _)| *name == gpu.name && *cc == gpu.compute_capability)
        {
            Some(model) => model.2 += 1,
            None => models.push((gpu.name.clone(), gpu.compute_capability, 1)),
        }
    }
    models
}

fn models_of(gpus: &[GpuSlot]) -> Vec<Model> {
    models(&gpus.iter().collect::<Vec<_>>())
}

fn describe(models: &[Model]) -> String {
    models
        .iter()
        .map(|(name, cc, count)| format!("{count} × {name} (compute capability {cc})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
