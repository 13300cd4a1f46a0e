//! float32 → float16 / bfloat16, rounding to nearest even, with the range clamping autocast
//! promises: a finite weight never becomes infinite.
//!
//! fp16 tops out at 65504, so larger finite values are clamped to ±65504 and counted. bf16 has
//! fp32's exponent range, but rounding can still carry the very largest fp32 values (above
//! 3.3895e38, e.g. `torch.finfo(torch.float32).min` used as an attention mask) to infinity; those
//! saturate to bf16's largest finite value and are counted the same way. Infinities and NaNs are
//! kept as they are (they were not finite to begin with). fp16 underflow to subnormals or zero is
//! ordinary rounding and not reported.

use super::AutocastTarget;

/// The largest finite fp16 value.
pub(crate) const F16_MAX: f32 = 65504.0;
/// Bit pattern of the largest finite bf16 value (3.3895314e38), without sign.
const BF16_MAX_BITS: u16 = 0x7f7f;

/// How many values of one tensor were clamped, and the largest magnitude among them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ClampStats {
    /// Finite values outside the target's range.
    pub count: u64,
    /// The largest absolute value seen among them.
    pub max_abs: f32,
}

impl ClampStats {
    fn record(&mut self, value: f32) {
        self.count += 1;
        self.max_abs = self.max_abs.max(value.abs());
    }
}

/// Converts one float32 to the target's 16-bit pattern, clamping finite values that would not be
/// finite in the target (and recording them in `stats`).
pub(crate) fn convert_value(value: f32, target: AutocastTarget, stats: &mut ClampStats) -> u16 {
    match target {
        AutocastTarget::Half => {
            if value.is_finite() && value.abs() > F16_MAX {
                stats.record(value);
                return f32_to_f16_bits(F16_MAX.copysign(value));
            }
            f32_to_f16_bits(value)
        }
        AutocastTarget::BFloat16 => {
            let bits = f32_to_bf16_bits(value);
            if value.is_finite() && bits & 0x7fff == 0x7f80 {
                stats.record(value);
                return (bits & 0x8000) | BF16_MAX_BITS;
            }
            bits
        }
    }
}

/// Converts little-endian float32 bytes (a multiple of 4) and appends little-endian 16-bit values
/// to `out`.
pub(crate) fn convert_le_bytes(
    bytes: &[u8],
    target: AutocastTarget,
    stats: &mut ClampStats,
    out: &mut Vec<u8>,
) {
    out.reserve(bytes.len() / 2);
    for chunk in bytes.chunks_exact(4) {
        let value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        out.extend_from_slice(&convert_value(value, target, stats).to_le_bytes());
    }
}

/// IEEE 754 binary16 bits of `value`, rounded to nearest even; overflow gives infinity.
pub(crate) fn f32_to_f16_bits(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x007f_ffff;
    if exponent == 0xff {
        // Infinity stays infinity; NaN stays a (quiet) NaN with its top payload bits.
        let nan = if mantissa != 0 { 0x0200 } else { 0 };
        return sign | 0x7c00 | nan | (mantissa >> 13) as u16;
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exponent <= 0 {
        // Subnormal in fp16 (or zero): shift the mantissa, with its implicit bit, into place.
        let shift = (14 - half_exponent) as u32;
        if shift > 24 {
            return sign;
        }
        let full = mantissa | 0x0080_0000;
        return sign | round_shift(full, shift) as u16;
    }
    // Normal: the rounding carry may run into the exponent, which is exactly right (up to inf).
    let combined = ((half_exponent as u32) << 23) | mantissa;
    sign | round_shift(combined, 13) as u16
}

/// bfloat16 bits of `value` (the top half of float32), rounded to nearest even.
pub(crate) fn f32_to_bf16_bits(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// `value >> shift`, rounded to nearest, ties to even.
fn round_shift(value: u32, shift: u32) -> u32 {
    let kept = value >> shift;
    let remainder = value & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if remainder > half || (remainder == half && kept & 1 == 1) {
        kept + 1
    } else {
        kept
    }
}

/// The float value of fp16 bits, for tests and reports.
#[cfg(test)]
pub(crate) fn f16_bits_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f32::from(bits & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        0x1f if mantissa == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(value: f32) -> (u16, ClampStats) {
        let mut stats = ClampStats::default();
        (
            convert_value(value, AutocastTarget::Half, &mut stats),
            stats,
        )
    }

    #[test]
    fn fp16_known_values() {
        for (value, bits) in [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (0.1, 0x2e66),
            (65504.0, 0x7bff),
            (2f32.powi(-14), 0x0400),       // smallest normal
            (2f32.powi(-24), 0x0001),       // smallest subnormal
            (1e-8, 0x0000),                 // underflows to zero
            (1.0 + 2f32.powi(-11), 0x3c00), // exactly half an ulp above 1: ties to even
            (f32::from_bits((1.0 + 2f32.powi(-11)).to_bits() + 1), 0x3c01), // a hair more: up
            (f32::INFINITY, 0x7c00),
            (f32::NEG_INFINITY, 0xfc00),
        ] {
            assert_eq!(f32_to_f16_bits(value), bits, "{value}");
            assert_eq!(half(value).1.count, 0, "{value} is in range");
        }
        assert!(f16_bits_to_f32(f32_to_f16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn fp16_round_trips_every_finite_half() {
        for bits in 0u16..=0xffff {
            let value = f16_bits_to_f32(bits);
            if value.is_finite() {
                assert_eq!(f32_to_f16_bits(value), bits, "{bits:#06x} = {value}");
            }
        }
    }

    #[test]
    fn fp16_clamps_large_finite_values_and_counts_them() {
        let (bits, stats) = half(1e5);
        assert_eq!((bits, stats.count, stats.max_abs), (0x7bff, 1, 1e5));
        let (bits, stats) = half(-3.0e38);
        assert_eq!((bits, stats.count), (0xfbff, 1));
        // Infinity was never finite: kept, not counted.
        assert_eq!(half(f32::NEG_INFINITY), (0xfc00, ClampStats::default()));
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_saturates_only_at_the_top() {
        let bf16 = |v: f32| {
            let mut stats = ClampStats::default();
            (
                convert_value(v, AutocastTarget::BFloat16, &mut stats),
                stats.count,
            )
        };
        assert_eq!(bf16(1.0), (0x3f80, 0));
        assert_eq!(bf16(-2.5), (0xc020, 0));
        assert_eq!(bf16(f32::from_bits(0x3f80_8000)), (0x3f80, 0)); // tie, even stays
        assert_eq!(bf16(f32::from_bits(0x3f81_8000)), (0x3f82, 0)); // tie, odd rounds up
        assert_eq!(bf16(1e30), (f32_to_bf16_bits(1e30), 0));
        assert_eq!(bf16(f32::INFINITY), (0x7f80, 0));
        // The largest float32s would round to infinity: saturated and counted.
        assert_eq!(bf16(f32::MIN), (0xff7f, 1));
        assert_eq!(bf16(f32::MAX), (0x7f7f, 1));
        assert_eq!(bf16(f32::NAN).0 & 0x7fc0, 0x7fc0);
    }

    #[test]
    fn converts_little_endian_buffers() {
        let input: Vec<u8> = [1.0f32, -2.0, 7e4]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut out = Vec::new();
        let mut stats = ClampStats::default();
        convert_le_bytes(&input, AutocastTarget::Half, &mut stats, &mut out);
        assert_eq!(out, [0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b]);
        assert_eq!(stats.count, 1);
    }
}
