//! Common layers on top of [`GraphBuilder::node`], with their weights.
//!
//! Weights use He-uniform initialization (bound `sqrt(6 / fan_in)`), so activations keep a sane
//! range through many layers: that matters when an engine is built in fp16.

use super::{GraphBuilder, Value};
use crate::attr;

/// A 2-D convolution's hyper-parameters, for [`GraphBuilder::conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Channels of the input.
    pub in_channels: u64,
    /// Channels of the output.
    pub out_channels: u64,
    /// Square kernel size.
    pub kernel: u64,
    /// Stride in both directions (default 1).
    pub stride: u64,
    /// Dilation in both directions (default 1).
    pub dilation: u64,
    /// Channel groups (default 1; `in_channels` for a depthwise convolution).
    pub groups: u64,
    /// Whether the convolution adds a bias (default true).
    pub bias: bool,
}

impl Conv2d {
    /// A `kernel`×`kernel` convolution with stride 1 and "same" padding.
    pub fn new(in_channels: u64, out_channels: u64, kernel: u64) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            dilation: 1,
            groups: 1,
            bias: true,
        }
    }

    /// Sets the stride; with the "same" padding, stride 2 halves height and width (rounding up).
    pub fn stride(self, stride: u64) -> Self {
        Self { stride, ..self }
    }

    /// Sets the dilation; the padding grows with it, so spatial size is kept at stride 1.
    pub fn dilation(self, dilation: u64) -> Self {
        Self { dilation, ..self }
    }

    /// Sets the number of channel groups.
    pub fn groups(self, groups: u64) -> Self {
        Self { groups, ..self }
    }

    /// Leaves the bias out (as before a batch normalization).
    pub fn without_bias(self) -> Self {
        Self {
            bias: false,
            ..self
        }
    }

    /// The symmetric padding that keeps the spatial size at stride 1 (odd kernels).
    pub fn padding(&self) -> u64 {
        self.dilation * (self.kernel - 1) / 2
    }
}

impl GraphBuilder {
    /// `Conv` with He-uniform weights `[out, in / groups, k, k]` and a small bias.
    pub fn conv2d(&mut self, x: &Value, conv: Conv2d) -> Value {
        let name = self.fresh_name("Conv");
        let fan_in = conv.in_channels / conv.groups * conv.kernel * conv.kernel;
        let weight_dims = [
            conv.out_channels,
            conv.in_channels / conv.groups,
            conv.kernel,
            conv.kernel,
        ];
        let weight = self.random_f32(&format!("{name}.weight"), &weight_dims, he_bound(fan_in));
        let mut inputs = vec![x, &weight];
        let bias;
        if conv.bias {
            bias = self.random_f32(
                &format!("{name}.bias"),
                &[conv.out_channels],
                bias_bound(fan_in),
            );
            inputs.push(&bias);
        }
        let (k, s, d, p) = (
            conv.kernel as i64,
            conv.stride as i64,
            conv.dilation as i64,
            conv.padding() as i64,
        );
        let attributes = [
            attr::ints("kernel_shape", [k, k]),
            attr::ints("strides", [s, s]),
            attr::ints("dilations", [d, d]),
            attr::ints("pads", [p, p, p, p]),
            attr::int("group", conv.groups as i64),
        ];
        self.named_node(name, "Conv", &inputs, attributes)
    }

    /// `BatchNormalization` (inference form) over `channels`, with plausible trained statistics.
    pub fn batch_norm(&mut self, x: &Value, channels: u64) -> Value {
        let name = self.fresh_name("BatchNormalization");
        let n = channels as usize;
        let rng = self.rng();
        let scale: Vec<f32> = rng.uniform(n, 0.1).into_iter().map(|v| 1.0 + v).collect();
        let shift = rng.uniform(n, 0.1);
        let mean = rng.uniform(n, 0.1);
        let variance: Vec<f32> = rng.uniform(n, 0.1).into_iter().map(|v| 1.0 + v).collect();
        let scale = self.initializer_f32(&format!("{name}.scale"), &[channels], &scale);
        let shift = self.initializer_f32(&format!("{name}.bias"), &[channels], &shift);
        let mean = self.initializer_f32(&format!("{name}.mean"), &[channels], &mean);
        let variance = self.initializer_f32(&format!("{name}.var"), &[channels], &variance);
        let attributes = [attr::float("epsilon", 1e-5)];
        self.named_node(
            name,
            "BatchNormalization",
            &[x, &scale, &shift, &mean, &variance],
            attributes,
        )
    }

    /// `Gemm` computing `x · Wᵀ + b` for `x` of shape `[batch, in_features]`.
    pub fn linear(&mut self, x: &Value, in_features: u64, out_features: u64) -> Value {
        let name = self.fresh_name("Gemm");
        let weight = self.random_f32(
            &format!("{name}.weight"),
            &[out_features, in_features],
            he_bound(in_features),
        );
        let bias = self.random_f32(
            &format!("{name}.bias"),
            &[out_features],
            bias_bound(in_features),
        );
        self.named_node(name, "Gemm", &[x, &weight, &bias], [attr::int("transB", 1)])
    }

    /// `MaxPool` with a square `kernel` and `stride`, no padding.
    pub fn max_pool2d(&mut self, x: &Value, kernel: u64, stride: u64) -> Value {
        let (k, s) = (kernel as i64, stride as i64);
        self.node(
            "MaxPool",
            &[x],
            [
                attr::ints("kernel_shape", [k, k]),
                attr::ints("strides", [s, s]),
            ],
        )
    }

    /// `GlobalAveragePool`: `[N, C, H, W]` → `[N, C, 1, 1]`.
    pub fn global_average_pool(&mut self, x: &Value) -> Value {
        self.node("GlobalAveragePool", &[x], [])
    }

    /// `Flatten` at axis 1: `[N, C, H, W]` → `[N, C·H·W]`.
    pub fn flatten(&mut self, x: &Value) -> Value {
        self.node("Flatten", &[x], [attr::int("axis", 1)])
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, inputs: &[&Value], axis: i64) -> Value {
        self.node("Concat", inputs, [attr::int("axis", axis)])
    }

    /// `Softmax` along the last axis.
    pub fn softmax(&mut self, x: &Value) -> Value {
        self.node("Softmax", &[x], [attr::int("axis", -1)])
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &Value) -> Value {
        self.node("Relu", &[x], [])
    }

    /// `Sigmoid`.
    pub fn sigmoid(&mut self, x: &Value) -> Value {
        self.node("Sigmoid", &[x], [])
    }

    /// SiLU (swish), `x · sigmoid(x)`, spelled with opset-17 operators.
    pub fn silu(&mut self, x: &Value) -> Value {
        let gate = self.sigmoid(x);
        self.mul(x, &gate)
    }

    /// Element-wise `Add` (with broadcasting).
    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Add", &[a, b], [])
    }

    /// Element-wise `Mul` (with broadcasting).
    pub fn mul(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Mul", &[a, b], [])
    }

    /// `MatMul`.
    pub fn matmul(&mut self, a: &Value, b: &Value) -> Value {
        self.node("MatMul", &[a, b], [])
    }
}

/// He-uniform bound for ReLU-like layers.
fn he_bound(fan_in: u64) -> f32 {
    (6.0 / fan_in as f32).sqrt()
}

/// PyTorch's default bias bound, `1 / sqrt(fan_in)`.
fn bias_bound(fan_in: u64) -> f32 {
    1.0 / (fan_in as f32).sqrt()
}
