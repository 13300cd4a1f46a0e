//! One engine build: ONNX in, plan file out, with the log and progress streamed to an observer.

use std::ffi::{CStr, CString, c_char, c_void};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::calls::plan_builder_calls;
use crate::config::{BuildConfig, OptimizationProfile};
use crate::error::{BuildError, ParserError};
use crate::observer::{BuildObserver, Control, LogMessage, ProgressEvent, Severity};
use crate::shim::ffi;
use crate::toolchain::{Toolchain, c_message};

/// Where the ONNX model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnnxSource {
    /// A model file; external-data files are looked up beside it.
    File(PathBuf),
    /// A serialised model in memory (no external data).
    Bytes(Vec<u8>),
}

/// Everything one build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The model.
    pub onnx: OnnxSource,
    /// Builder options.
    pub config: BuildConfig,
    /// Where the plan goes; written to a temporary file beside it and renamed on success.
    pub plan_path: PathBuf,
}

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The plan file.
    pub plan_path: PathBuf,
    /// Its size in bytes.
    pub plan_size: u64,
    /// blake3 of the plan, computed while TensorRT streamed it out.
    pub plan_digest: blake3::Hash,
    /// The timing cache after the build, when `TimingCacheConfig::write_output` asked for it.
    pub timing_cache_out: Option<Vec<u8>>,
    /// The engine inspector's JSON (kJSON), when `BuildConfig::layer_info` asked for it and the
    /// plan could be deserialised here.
    pub layer_info_json: Option<String>,
    /// Why `layer_info_json` is missing although it was asked for (TensorRT's message). With
    /// TensorRT-RTX 1.7 on a machine without a CUDA driver, deserialisation fails.
    pub layer_info_error: Option<String>,
    /// Every message TensorRT logged during the build (and the inspection).
    pub log: Vec<LogMessage>,
}

/// How many of the last warnings/errors a `BuildError::Builder` carries.
const LOG_TAIL: usize = 20;

/// State the shim's callbacks reach through `void* user`.
struct Context<'a> {
    observer: &'a mut dyn BuildObserver,
    log: Vec<LogMessage>,
    plan: Option<PlanSink>,
    timing_cache: Vec<u8>,
    inspector_json: Vec<u8>,
    parser_errors: Vec<ParserError>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

/// The plan on its way to disk: a temporary file in the target directory plus a running hash.
struct PlanSink {
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    hasher: blake3::Hasher,
    size: u64,
    error: Option<std::io::Error>,
}

impl PlanSink {
    fn write(&mut self, bytes: &[u8]) -> bool {
        if let Err(e) = self.file.write_all(bytes) {
            self.error = Some(e);
            return false;
        }
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        true
    }
}

fn cstr_or_empty<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        return "";
    }
    // SAFETY: the shim passes NUL-terminated strings valid for the duration of the callback.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .unwrap_or("<non-UTF-8>")
}

/// Runs `f` on the context unless an earlier callback panicked; a panic is kept for later and
/// never unwinds into C++.
///
/// # Safety
/// `user` must be the `Context` passed to the current shim call.
unsafe fn with_context<R>(
    user: *mut c_void,
    on_panic: R,
    f: impl FnOnce(&mut Context<'_>) -> R,
) -> R {
    // SAFETY: guaranteed by the caller; the shim serialises callbacks, so this is exclusive.
    let ctx = unsafe { &mut *user.cast::<Context<'_>>() };
    if ctx.panic.is_some() {
        return on_panic;
    }
    match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
        Ok(r) => r,
        Err(payload) => {
            ctx.panic = Some(payload);
            on_panic
        }
    }
}

unsafe extern "C" fn on_log(user: *mut c_void, severity: i32, message: *const c_char) {
    // SAFETY: `user` is the build's Context (see Toolchain::build).
    unsafe {
        with_context(user, (), |ctx| {
            let message = LogMessage {
                severity: Severity::from_raw(severity),
                text: cstr_or_empty(message).to_owned(),
            };
            ctx.observer.log(&message);
            ctx.log.push(message);
        })
    }
}

unsafe extern "C" fn on_progress(
    user: *mut c_void,
    kind: i32,
    phase: *const c_char,
    parent: *const c_char,
    value: i32,
) -> i32 {
    // SAFETY: `user` is the build's Context.
    unsafe {
        with_context(user, 0, |ctx| {
            let phase = cstr_or_empty(phase);
            let event = match kind as u32 {
                ffi::TRTFARM_PROGRESS_PHASE_START => ProgressEvent::PhaseStart {
                    phase,
                    parent: (!parent.is_null()).then(|| cstr_or_empty(parent)),
                    steps: value,
                },
                ffi::TRTFARM_PROGRESS_STEP => ProgressEvent::Step { phase, step: value },
                _ => ProgressEvent::PhaseFinish { phase },
            };
            match ctx.observer.progress(&event) {
                Control::Continue => 1,
                Control::Cancel => 0,
            }
        })
    }
}

/// Borrows a shim-owned byte chunk.
///
/// # Safety
/// `data` must point to `size` readable bytes (or be null with size 0).
unsafe fn chunk<'a>(data: *const c_void, size: i64) -> Option<&'a [u8]> {
    let len = usize::try_from(size).ok()?;
    if len == 0 {
        return Some(&[]);
    }
    if data.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

unsafe extern "C" fn on_plan(user: *mut c_void, data: *const c_void, size: i64) -> i64 {
    // SAFETY: `user` is the build's Context; TensorRT passes `size` bytes at `data`.
    unsafe {
        with_context(user, -1, |ctx| {
            let written = chunk(data, size)
                .is_some_and(|bytes| ctx.plan.as_mut().is_some_and(|plan| plan.write(bytes)));
            if written { size } else { -1 }
        })
    }
}

unsafe extern "C" fn on_timing_cache(user: *mut c_void, data: *const c_void, size: i64) -> i64 {
    // SAFETY: as for on_plan.
    unsafe {
        with_context(user, -1, |ctx| match chunk(data, size) {
            Some(bytes) => {
                ctx.timing_cache.extend_from_slice(bytes);
                size
            }
            None => -1,
        })
    }
}

unsafe extern "C" fn on_inspector_json(user: *mut c_void, data: *const c_void, size: i64) -> i64 {
    // SAFETY: as for on_plan.
    unsafe {
        with_context(user, -1, |ctx| match chunk(data, size) {
            Some(bytes) => {
                ctx.inspector_json.extend_from_slice(bytes);
                size
            }
            None => -1,
        })
    }
}

unsafe extern "C" fn on_parser_error(user: *mut c_void, error: *const ffi::trtfarm_parser_error) {
    // SAFETY: `user` is the build's Context; `error` is valid during the callback.
    unsafe {
        with_context(user, (), |ctx| {
            let Some(e) = error.as_ref() else { return };
            ctx.parser_errors.push(ParserError {
                node_name: cstr_or_empty(e.node_name).to_owned(),
                node_index: e.node_index,
                op: cstr_or_empty(e.node_operator).to_owned(),
                message: cstr_or_empty(e.description).to_owned(),
                code: e.code,
            });
        })
    }
}

/// C views of the profiles; the owned vectors must outlive the build call.
struct FfiProfiles {
    _names: Vec<CString>,
    _inputs: Vec<Vec<ffi::trtfarm_profile_input>>,
    profiles: Vec<ffi::trtfarm_profile>,
}

fn ffi_profiles(profiles: &[OptimizationProfile]) -> Result<FfiProfiles, BuildError> {
    let mut names = Vec::new();
    let mut all_inputs = Vec::new();
    for (index, profile) in profiles.iter().enumerate() {
        let mut inputs = Vec::new();
        for input in &profile.inputs {
            let rank = input.min.len();
            if input.opt.len() != rank || input.max.len() != rank {
                return Err(BuildError::InvalidConfig(format!(
                    "optimization profile {index}, input '{}': min {:?}, opt {:?} and max {:?} have different ranks",
                    input.name, input.min, input.opt, input.max
                )));
            }
            if rank > 8 {
                return Err(BuildError::InvalidConfig(format!(
                    "optimization profile {index}, input '{}': rank {rank} exceeds TensorRT's 8",
                    input.name
                )));
            }
            let name = CString::new(input.name.as_bytes()).map_err(|_| {
                BuildError::InvalidConfig(format!(
                    "input name {:?} contains a NUL byte",
                    input.name
                ))
            })?;
            inputs.push(ffi::trtfarm_profile_input {
                name: name.as_ptr(),
                nb_dims: rank as i32,
                min: input.min.as_ptr(),
                opt: input.opt.as_ptr(),
                max: input.max.as_ptr(),
            });
            names.push(name);
        }
        all_inputs.push(inputs);
    }
    let profiles = all_inputs
        .iter()
        .map(|inputs| ffi::trtfarm_profile {
            inputs: inputs.as_ptr(),
            nb_inputs: inputs.len(),
        })
        .collect();
    Ok(FfiProfiles {
        _names: names,
        _inputs: all_inputs,
        profiles,
    })
}

fn log_tail(log: &[LogMessage]) -> Vec<LogMessage> {
    let important: Vec<&LogMessage> = log
        .iter()
        .filter(|m| m.severity <= Severity::Warning)
        .collect();
    important[important.len().saturating_sub(LOG_TAIL)..]
        .iter()
        .map(|m| (*m).clone())
        .collect()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Toolchain {
    /// Builds one engine. Options the flavour does not support are refused before anything
    /// runs; the plan appears at `request.plan_path` only if the build succeeds.
    pub fn build(
        &self,
        request: &BuildRequest,
        observer: &mut dyn BuildObserver,
    ) -> Result<BuildOutput, BuildError> {
        let config = &request.config;
        let calls = plan_builder_calls(self.flavour(), config)?;
        let ffi_calls: Vec<ffi::trtfarm_builder_call> = calls.iter().map(|c| c.to_ffi()).collect();
        let profiles = ffi_profiles(&config.profiles)?;

        let plan_path = &request.plan_path;
        let dir = match plan_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let temp = tempfile::Builder::new()
            .prefix(".plan-")
            .tempfile_in(&dir)
            .map_err(io_error(&dir))?;

        let onnx_path = match &request.onnx {
            OnnxSource::File(path) => {
                if !path.is_file() {
                    return Err(BuildError::Io {
                        path: path.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no such ONNX file",
                        ),
                    });
                }
                Some(CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                    BuildError::InvalidConfig(format!("{} contains a NUL byte", path.display()))
                })?)
            }
            OnnxSource::Bytes(_) => None,
        };
        let (onnx_bytes, onnx_size) = match &request.onnx {
            OnnxSource::Bytes(bytes) => (bytes.as_ptr().cast::<c_void>(), bytes.len()),
            OnnxSource::File(_) => (std::ptr::null(), 0),
        };
        let timing_cache = config.timing_cache.as_ref();
        let cache_in = timing_cache.and_then(|c| c.input.as_deref()).unwrap_or(&[]);
        let want_cache_out = timing_cache.is_some_and(|c| c.write_output);

        let mut ctx = Context {
            observer,
            log: Vec::new(),
            plan: Some(PlanSink {
                file: std::io::BufWriter::with_capacity(1 << 20, temp),
                hasher: blake3::Hasher::new(),
                size: 0,
                error: None,
            }),
            timing_cache: Vec::new(),
            inspector_json: Vec::new(),
            parser_errors: Vec::new(),
            panic: None,
        };
        let params = ffi::trtfarm_build_params {
            onnx_path: onnx_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            onnx_bytes,
            onnx_size,
            profiles: profiles.profiles.as_ptr(),
            nb_profiles: profiles.profiles.len(),
            calls: ffi_calls.as_ptr(),
            nb_calls: ffi_calls.len(),
            timing_cache: cache_in.as_ptr().cast(),
            timing_cache_size: cache_in.len(),
            log: Some(on_log),
            progress: Some(on_progress),
            write_plan: Some(on_plan),
            write_timing_cache: if want_cache_out {
                Some(on_timing_cache)
            } else {
                None
            },
            parser_error: Some(on_parser_error),
            user: (&raw mut ctx).cast(),
        };
        let mut message = vec![0u8; 8192];
        let status = {
            let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: every pointer in `params` outlives the call; callbacks get `ctx`.
            unsafe {
                self.shim.api.trtfarm_build_engine(
                    handle.as_ptr(),
                    &params,
                    message.as_mut_ptr().cast(),
                    message.len(),
                )
            }
        };
        if let Some(payload) = ctx.panic.take() {
            std::panic::resume_unwind(payload);
        }
        let message = c_message(&message);
        let plan = ctx.plan.take().expect("plan sink is only taken here");
        match status as u32 {
            ffi::TRTFARM_OK => {}
            ffi::TRTFARM_E_CANCELLED => return Err(BuildError::Cancelled),
            ffi::TRTFARM_E_PARSE => {
                return Err(BuildError::Parse {
                    errors: if ctx.parser_errors.is_empty() {
                        // The parser failed without recording an error: keep TensorRT's word.
                        vec![ParserError {
                            node_name: String::new(),
                            node_index: -1,
                            op: String::new(),
                            message,
                            code: -1,
                        }]
                    } else {
                        ctx.parser_errors
                    },
                });
            }
            ffi::TRTFARM_E_WRITE if plan.error.is_some() => {
                return Err(BuildError::Io {
                    path: plan_path.clone(),
                    source: plan.error.expect("checked"),
                });
            }
            _ => {
                return Err(BuildError::Builder {
                    message,
                    log_tail: log_tail(&ctx.log),
                });
            }
        }

        let PlanSink {
            file, hasher, size, ..
        } = plan;
        let temp = file.into_inner().map_err(|e| BuildError::Io {
            path: plan_path.clone(),
            source: e.into_error(),
        })?;
        // No fsync: the plan is an intermediate; the daemon re-hashes it before publishing it,
        // and an fsync measured as a noticeable share of a small build.
        temp.persist(plan_path).map_err(|e| BuildError::Io {
            path: plan_path.clone(),
            source: e.error,
        })?;

        let (layer_info_json, layer_info_error) = if config.layer_info {
            self.inspect(plan_path, &mut ctx)?
        } else {
            (None, None)
        };
        Ok(BuildOutput {
            plan_path: plan_path.clone(),
            plan_size: size,
            plan_digest: hasher.finalize(),
            timing_cache_out: want_cache_out.then_some(ctx.timing_cache),
            layer_info_json,
            layer_info_error,
            log: ctx.log,
        })
    }

    /// Deserialises the plan and returns the inspector JSON, or TensorRT's reason it could not.
    fn inspect(
        &self,
        plan_path: &Path,
        ctx: &mut Context<'_>,
    ) -> Result<(Option<String>, Option<String>), BuildError> {
        // IRuntime wants the whole plan in memory; it was just written, so read it back.
        let plan = std::fs::read(plan_path).map_err(io_error(plan_path))?;
        let mut message = vec![0u8; 8192];
        let status = {
            let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: `plan` and `ctx` outlive the call.
            unsafe {
                self.shim.api.trtfarm_inspect_plan(
                    handle.as_ptr(),
                    plan.as_ptr().cast(),
                    plan.len(),
                    Some(on_log),
                    Some(on_inspector_json),
                    (ctx as *mut Context<'_>).cast(),
                    message.as_mut_ptr().cast(),
                    message.len(),
                )
            }
        };
        if let Some(payload) = ctx.panic.take() {
            std::panic::resume_unwind(payload);
        }
        if status != ffi::TRTFARM_OK as i32 {
            return Ok((None, Some(c_message(&message))));
        }
        let json = String::from_utf8_lossy(&std::mem::take(&mut ctx.inspector_json)).into_owned();
        Ok((Some(json), None))
    }
}
