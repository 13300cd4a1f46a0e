//! A square bf16 GEMM through cuBLAS (f32 accumulation), timed with CUDA events: a direct
//! measure of the compute share a context gets.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use half::bf16;
use serde::{Deserialize, Serialize};

use super::{ProbeError, cuda_err};
use crate::driver::cublas_present;

/// Elements of the host pattern the matrices are tiled with: 2 MiB, and prime, so the tiles do
/// not line up with the matrices' rows.
const PATTERN_LEN: usize = 1_048_573;

/// An n×n×n bf16 GEMM, repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatmulSpec {
    /// Matrix side (m = n = k) [default: 8192: large enough to fill an H100].
    pub n: usize,
    /// Timed GEMMs [default: 20].
    pub iterations: u32,
    /// Untimed GEMMs first, to load kernels and pick algorithms [default: 3].
    pub warmup: u32,
}

impl Default for MatmulSpec {
    fn default() -> Self {
        MatmulSpec {
            n: 8192,
            iterations: 20,
            warmup: 3,
        }
    }
}

impl MatmulSpec {
    /// Checks the spec fits cuBLAS's `int` dimensions and does some work.
    pub fn validate(&self) -> Result<(), ProbeError> {
        if self.n == 0 || i32::try_from(self.n).is_err() {
            return Err(ProbeError::InvalidSpec(format!(
                "n must be 1 to {}, got {}",
                i32::MAX,
                self.n
            )));
        }
        if self.iterations == 0 {
            return Err(ProbeError::InvalidSpec(
                "iterations must be at least 1".into(),
            ));
        }
        self.n
            .checked_mul(self.n)
            .and_then(|e| e.checked_mul(std::mem::size_of::<bf16>()))
            .ok_or_else(|| ProbeError::InvalidSpec(format!("n = {} overflows memory", self.n)))?;
        Ok(())
    }

    /// Floating-point operations in one GEMM: 2n³.
    pub fn flops(&self) -> f64 {
        2.0 * (self.n as f64).powi(3)
    }
}

/// How fast the GEMM ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatmulReport {
    /// What was run.
    pub spec: MatmulSpec,
    /// Mean time of one GEMM, from CUDA events around the timed ones.
    pub seconds_per_iteration: f64,
    /// 2n³ / seconds_per_iteration / 10¹².
    pub tflops: f64,
}

impl MatmulReport {
    /// The report for `spec` taking `total_seconds` over all timed iterations.
    pub fn from_timing(spec: MatmulSpec, total_seconds: f64) -> Self {
        let seconds_per_iteration = total_seconds / f64::from(spec.iterations.max(1));
        MatmulReport {
            spec,
            seconds_per_iteration,
            tflops: spec.flops() / seconds_per_iteration / 1e12,
        }
    }
}

/// Runs `spec` on `ctx` (which must be current).
pub(super) fn run(ctx: &Arc<CudaContext>, spec: &MatmulSpec) -> Result<MatmulReport, ProbeError> {
    cublas_present().map_err(|tried| ProbeError::NoCublas { tried })?;
    let stream = ctx.new_stream().map_err(cuda_err("cuStreamCreate"))?;
    let blas = CudaBlas::new(stream.clone()).map_err(cublas_err("cublasCreate"))?;
    let elements = spec.n * spec.n;
    let pattern = pattern();
    let a = filled(&stream, elements, &pattern)?;
    let b = filled(&stream, elements, &pattern)?;
    // SAFETY: C is only written (beta = 0).
    let mut c = unsafe { stream.alloc::<bf16>(elements) }.map_err(cuda_err("cuMemAlloc"))?;
    let n = spec.n as i32; // validated to fit
    let config = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_N,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: n,
        n,
        k: n,
        alpha: bf16::ONE,
        lda: n,
        ldb: n,
        beta: bf16::ZERO,
        ldc: n,
    };
    let mut gemm = || {
        // SAFETY: A, B and C hold n×n elements with leading dimension n.
        unsafe { blas.gemm(config, &a, &b, &mut c) }.map_err(cublas_err("cublasGemmEx"))
    };
    for _ in 0..spec.warmup {
        gemm()?;
    }
    stream
        .synchronize()
        .map_err(cuda_err("cuStreamSynchronize"))?;
    let timed = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let start = stream
        .record_event(timed)
        .map_err(cuda_err("cuEventRecord"))?;
    for _ in 0..spec.iterations {
        gemm()?;
    }
    let end = stream
        .record_event(timed)
        .map_err(cuda_err("cuEventRecord"))?;
    let millis = start
        .elapsed_ms(&end)
        .map_err(cuda_err("cuEventElapsedTime"))?;
    Ok(MatmulReport::from_timing(*spec, f64::from(millis) / 1e3))
}

/// Pseudo-random values in ±[2⁻⁸, 1] with random mantissas. Not zeros or a short periodic
/// pattern: on the H100 a 4096-element pattern ran ~11% faster than random data (fewer bits
/// toggling, less power, higher clocks), and zeros or denormals can take faster paths.
pub(super) fn pattern() -> Vec<bf16> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..PATTERN_LEN)
        .map(|_| {
            // xorshift64*: cheap, and plenty random for this.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let unit = (bits >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            let value = (unit * 2.0 - 1.0).clamp(-1.0, 1.0);
            let value = if value.abs() < 1.0 / 256.0 {
                1.0 / 256.0
            } else {
                value
            };
            bf16::from_f32(value)
        })
        .collect()
}

/// A device buffer of `len` elements tiled with `pattern`: one host copy, then on-device copies
/// that double the filled prefix (6 for n = 8192), instead of a 128 MiB host buffer.
fn filled(
    stream: &Arc<CudaStream>,
    len: usize,
    pattern: &[bf16],
) -> Result<CudaSlice<bf16>, ProbeError> {
    // SAFETY: every element is written below before it is read.
    let mut buffer = unsafe { stream.alloc::<bf16>(len) }.map_err(cuda_err("cuMemAlloc"))?;
    let first = pattern.len().min(len);
    stream
        .memcpy_htod(&pattern[..first], &mut buffer.slice_mut(0..first))
        .map_err(cuda_err("cuMemcpyHtoD"))?;
    let mut done = first;
    while done < len {
        let step = done.min(len - done);
        let (filled, mut rest) = buffer.split_at_mut(done);
        stream
            .memcpy_dtod(&filled.slice(0..step), &mut rest.slice_mut(0..step))
            .map_err(cuda_err("cuMemcpyDtoD"))?;
        done += step;
    }
    Ok(buffer)
}

fn cublas_err(call: &'static str) -> impl Fn(cudarc::cublas::result::CublasError) -> ProbeError {
    move |e| ProbeError::Cublas {
        call,
        message: format!("{:?}", e.0),
    }
}
