//! The daemon's side of CUDA MPS: start and own a control daemon, or use an existing one, and
//! stop an owned one on shutdown. `trtfarm_gpu::mps` does the process handling.

use std::path::{Path, PathBuf};

use anyhow::Context;
use trtfarm_gpu::mps::MpsControl;

use super::MpsState;
use crate::config::{GpuConfig, MpsMode};

/// NVIDIA's default pipe directory, where an MPS control daemon started without
/// `CUDA_MPS_PIPE_DIRECTORY` listens.
const NVIDIA_DEFAULT_PIPE_DIR: &str = "/tmp/nvidia-mps";

/// What the MPS set-up needs from the daemon config.
#[derive(Debug, Clone)]
pub struct MpsConfig {
    /// off / own / existing.
    pub mode: MpsMode,
    /// The pipe directory to use.
    pub pipe_dir: PathBuf,
    /// Log directory of an owned control daemon.
    pub log_dir: PathBuf,
    /// `nvidia-cuda-mps-control`, if configured (else searched).
    pub control: Option<PathBuf>,
}

impl MpsConfig {
    /// Resolves the defaults of `[gpu]` for a daemon on `state_dir`, with `env_pipe_dir` the
    /// daemon's own `CUDA_MPS_PIPE_DIRECTORY`.
    pub fn resolve(gpu: &GpuConfig, state_dir: &Path, env_pipe_dir: Option<PathBuf>) -> MpsConfig {
        let pipe_dir = match (&gpu.mps_pipe_dir, gpu.mps) {
            (Some(dir), _) => dir.clone(),
            (None, MpsMode::Existing) => {
                env_pipe_dir.unwrap_or_else(|| PathBuf::from(NVIDIA_DEFAULT_PIPE_DIR))
            }
            // Short and per state dir: MPS keeps Unix sockets here (108-byte path limit), and
            // two daemons on one host must not share a control daemon they each think they own.
            (None, _) => {
                let hash = blake3::hash(state_dir.as_os_str().as_encoded_bytes());
                PathBuf::from(format!("/tmp/trtfarm-mps-{}", &hash.to_hex()[..16]))
            }
        };
        MpsConfig {
            mode: gpu.mps,
            pipe_dir,
            log_dir: gpu
                .mps_log_dir
                .clone()
                .unwrap_or_else(|| state_dir.join("mps-log")),
            control: gpu.mps_control.clone(),
        }
    }
}

/// MPS as the daemon runs it.
#[derive(Debug)]
pub struct MpsService {
    control: Option<MpsControl>,
    state: MpsState,
}

impl MpsService {
    /// Sets MPS up as configured. A daemon asked for MPS that cannot have it does not start:
    /// running on would refuse every limited build with a less useful message.
    pub fn start(config: &MpsConfig, host_has_gpus: bool) -> anyhow::Result<MpsService> {
        let off = |reason: &str| MpsService {
            control: None,
            state: MpsState::Off {
                reason: reason.to_owned(),
            },
        };
        match config.mode {
            MpsMode::Off => return Ok(off("this daemon runs with gpu.mps = \"off\"")),
            _ if !host_has_gpus => {
                tracing::warn!("gpu.mps is set, but this host has no GPU; MPS stays off");
                return Ok(off("this host has no GPU"));
            }
            _ => {}
        }
        let control = match config.mode {
            MpsMode::Own => {
                let binary = config
                    .control
                    .clone()
                    .or_else(|| {
                        trtfarm_gpu::mps::find_control_binary(std::env::var_os("PATH").as_deref())
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            trtfarm_gpu::mps::MpsError::ControlBinaryNotFound.to_string()
                        )
                    })?;
                MpsControl::start_own(&binary, &config.pipe_dir, &config.log_dir)
                    .with_context(|| format!("cannot start MPS ({})", binary.display()))?
            }
            MpsMode::Existing => MpsControl::use_existing(&config.pipe_dir)
                .context("gpu.mps = \"existing\", but no MPS control daemon answers")?,
            MpsMode::Off => unreachable!("handled above"),
        };
        tracing::info!(
            pipe_dir = %config.pipe_dir.display(),
            owned = control.owned(),
            "MPS control daemon"
        );
        let state = MpsState::Running {
            pipe_dir: control.pipe_dir().to_path_buf(),
            owned: control.owned(),
        };
        Ok(MpsService {
            control: Some(control),
            state,
        })
    }

    /// MPS as builds see it.
    pub fn state(&self) -> MpsState {
        self.state.clone()
    }

    /// Stops an owned control daemon (after the builds that used it have ended).
    pub fn shutdown(mut self) {
        if let Some(control) = self.control.take()
            && control.owned()
        {
            match control.shutdown() {
                Ok(()) => tracing::info!("MPS control daemon stopped"),
                Err(e) => tracing::error!("cannot stop the MPS control daemon: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_pipe_dir_is_short_and_differs_per_state_dir() {
        let gpu = GpuConfig {
            mps: MpsMode::Own,
            ..GpuConfig::default()
        };
        let long_state = PathBuf::from(format!("/srv/{}/daemon", "x".repeat(200)));
        let a = MpsConfig::resolve(&gpu, &long_state, None);
        let b = MpsConfig::resolve(&gpu, Path::new("/var/lib/trtfarm"), None);
        assert_ne!(a.pipe_dir, b.pipe_dir);
        assert_eq!(a.pipe_dir.as_os_str().len(), "/tmp/trtfarm-mps-".len() + 16);
        assert_eq!(a.log_dir, long_state.join("mps-log"));
    }

    #[test]
    fn an_existing_daemon_is_found_where_cuda_would_look() {
        let gpu = GpuConfig {
            mps: MpsMode::Existing,
            ..GpuConfig::default()
        };
        let state = Path::new("/var/lib/trtfarm");
        assert_eq!(
            MpsConfig::resolve(&gpu, state, None).pipe_dir,
            Path::new("/tmp/nvidia-mps")
        );
        assert_eq!(
            MpsConfig::resolve(&gpu, state, Some("/run/mps".into())).pipe_dir,
            Path::new("/run/mps")
        );
        let configured = GpuConfig {
            mps_pipe_dir: Some("/opt/mps".into()),
            ..gpu
        };
        assert_eq!(
            MpsConfig::resolve(&configured, state, Some("/run/mps".into())).pipe_dir,
            Path::new("/opt/mps")
        );
    }

    #[test]
    fn mps_off_or_without_a_gpu_refuses_limits_with_the_reason() {
        let mut config = MpsConfig::resolve(&GpuConfig::default(), Path::new("/s"), None);
        let service = MpsService::start(&config, true).unwrap();
        assert!(matches!(service.state(), MpsState::Off { reason } if reason.contains("\"off\"")));
        config.mode = MpsMode::Own;
        let service = MpsService::start(&config, false).unwrap();
        assert!(matches!(service.state(), MpsState::Off { reason } if reason.contains("no GPU")));
    }

    #[test]
    fn mps_asked_for_without_its_program_stops_the_daemon_with_a_clear_error() {
        let mut config = MpsConfig::resolve(&GpuConfig::default(), Path::new("/s"), None);
        config.mode = MpsMode::Own;
        config.control = Some("/nonexistent/nvidia-cuda-mps-control".into());
        let error = MpsService::start(&config, true).unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot start MPS"),
            "{error:#}"
        );
        config.mode = MpsMode::Existing;
        config.pipe_dir = "/nonexistent/mps-pipe".into();
        let error = MpsService::start(&config, true).unwrap_err();
        assert!(
            format!("{error:#}").contains("no MPS control daemon answers"),
            "{error:#}"
        );
    }
}
