//! Autocast on hand-made graphs, in memory: types of every weight and value, kept operators and
//! their boundary casts, shape subgraphs, I/O casts, clamping, idempotence and determinism.

mod common;
mod support;

use std::collections::BTreeSet;

use onnx_graph::autocast::{
    AutocastOptions, AutocastReport, AutocastTarget, ClampWarning, autocast_model,
};
use onnx_graph::proto::attribute_proto::AttributeType;
use onnx_graph::proto::{AttributeProto, GraphProto, ModelProto, NodeProto};
use onnx_graph::{DataType, GraphBuilder, ModelBuilder, attr, dims};
use prost::Message;
use support::*;

fn fp16() -> AutocastOptions {
    AutocastOptions::new(AutocastTarget::Half)
}

fn autocast(model: &ModelProto, options: &AutocastOptions) -> (ModelProto, AutocastReport) {
    let mut model = model.clone();
    let report = autocast_model(&mut model, options);
    (model, report)
}

#[test]
fn every_weight_and_value_of_a_cnn_becomes_fp16_without_a_single_cast() {
    let original = cnn(1);
    let (model, report) = autocast(&original, &fp16());
    let g = graph(&model);
    for tensor in &g.initializer {
        assert_eq!(tensor.data_type(), FLOAT16, "{}", tensor.name());
        let before = f32_values(initializer(graph(&original), tensor.name()));
        let after = f16_values(tensor);
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert!(
                (a - b).abs() <= b.abs() / 1024.0 + 1e-7,
                "{}: {b} -> {a}",
                tensor.name()
            );
        }
    }
    assert_eq!(g.initializer.len(), graph(&original).initializer.len());
    for info in g.input.iter().chain(&g.output).chain(&g.value_info) {
        assert_eq!(elem_type(info), FLOAT16, "{}", info.name());
    }
    assert!(nodes_of(g, "Cast").is_empty(), "{:?}", g.node);
    assert_eq!(report.converted_nodes, g.node.len());
    assert_eq!(report.converted_initializers, g.initializer.len());
    assert_eq!(
        (report.inserted_casts, report.kept_fp32_nodes.len()),
        (0, 0)
    );
    assert!(report.clamped.is_empty());
}

#[test]
fn kept_operators_stay_float32_between_boundary_casts() {
    let (model, report) = autocast(&attention_block(2), &fp16());
    let g = graph(&model);
    let kept: Vec<&str> = report
        .kept_fp32_nodes
        .iter()
        .map(|(_, op)| op.as_str())
        .collect();
    assert_eq!(
        kept,
        [
            "LayerNormalization",
            "Softmax",
            "ReduceMean",
            "Exp",
            "Softmax"
        ]
    );

    // Every kept node reads float32: through a cast to float32, or straight from a kept node.
    for node in g.node.iter().filter(|n| kept.contains(&n.op_type())) {
        let data = producer(g, &node.input[0]);
        if data.op_type() == "Cast" {
            assert_eq!(cast_to(data), i64::from(FLOAT));
            assert!(
                node.input[0].ends_with("/autocast_fp32"),
                "{}",
                node.input[0]
            );
        } else {
            assert!(
                kept.contains(&data.op_type()),
                "{} reads {}",
                node.op_type(),
                data.op_type()
            );
        }
    }
    // The LayerNormalization weights have float32 readers only: left float32, no cast needed.
    assert_eq!(initializer(g, "ln.scale").data_type(), FLOAT);
    assert_eq!(initializer(g, "ln.bias").data_type(), FLOAT);
    assert_eq!(initializer(g, "w1").data_type(), FLOAT16);
    // Kept outputs reach converted readers through a cast to fp16.
    let matmul = nodes_of(g, "MatMul")[1];
    let cast = producer(g, &matmul.input[0]);
    assert_eq!(cast_to(cast), i64::from(FLOAT16));
    assert_eq!(producer(g, &cast.input[0]).op_type(), "Softmax");
    // The final Softmax is kept, the output converted: one cast to fp16 under the output name.
    let last = producer(g, "probs");
    assert_eq!(cast_to(last), i64::from(FLOAT16));
    assert_eq!(last.input[0], "probs/autocast_fp32");
    assert_eq!(elem_type(&g.output[0]), FLOAT16);
    // Casts: 3 into kept regions (LayerNormalization, ReduceMean, the last Softmax), 3 out of
    // them (Softmax into MatMul, Exp into Add, the last Softmax into the output).
    assert_eq!(report.inserted_casts, 6, "{:#?}", g.node);
    assert_eq!(nodes_of(g, "Cast").len(), 6);
}

#[test]
fn the_keep_and_force_lists_adjust_the_defaults() {
    let mut options = fp16();
    options.force_convert_ops = BTreeSet::from(["Softmax".to_owned()]);
    options.keep_fp32_ops = BTreeSet::from(["MatMul".to_owned()]);
    let (model, report) = autocast(&attention_block(2), &options);
    let kept: BTreeSet<&str> = report
        .kept_fp32_nodes
        .iter()
        .map(|(_, op)| op.as_str())
        .collect();
    assert_eq!(
        kept,
        BTreeSet::from(["LayerNormalization", "MatMul", "ReduceMean", "Exp"])
    );
    let g = graph(&model);
    // MatMul is float32 now, so its weights stay float32.
    assert_eq!(initializer(g, "w1").data_type(), FLOAT);
    assert_eq!(producer(g, "probs").op_type(), "Softmax");
    assert!(options.effective_keep_fp32_ops().contains("MatMul"));
    assert!(!options.effective_keep_fp32_ops().contains("Softmax"));
}

#[test]
fn the_shape_subgraph_keeps_float32_and_data_around_it_converts() {
    let original = shape_arithmetic(3);
    let (model, report) = autocast(&original, &fp16());
    let g = graph(&model);
    // Shape → Cast(float) → Mul(one) → Cast(int64): untouched, not even a cast in between.
    let mul = &nodes_of(g, "Mul")[0];
    assert_eq!(mul, &nodes_of(graph(&original), "Mul")[0]);
    assert_eq!(cast_to(producer(g, &mul.input[0])), i64::from(FLOAT));
    assert_eq!(
        producer(g, &mul.input[0]).input[0],
        nodes_of(g, "Shape")[0].output[0]
    );
    assert_eq!(initializer(g, "one").data_type(), FLOAT);
    assert!(report.kept_fp32_nodes.iter().any(|(_, op)| op == "Mul"));
    // Resize computes in fp16 but its roi and scales are float32 by definition.
    let resize = &nodes_of(g, "Resize")[0];
    assert_eq!(resize.input[1..], ["roi", "scales"]);
    assert_eq!(initializer(g, "scales").data_type(), FLOAT);
    assert_eq!(producer(g, &resize.input[0]).op_type(), "Reshape");
    // ConstantOfShape makes data: it now fills fp16 zeros, and Add reads it directly.
    let filler = &nodes_of(g, "ConstantOfShape")[0];
    let value = filler
        .attribute
        .iter()
        .find(|a| a.name() == "value")
        .unwrap();
    assert_eq!(value.t.as_ref().unwrap().data_type(), FLOAT16);
    assert_eq!(report.inserted_casts, 0, "{:#?}", g.node);
    assert_eq!(elem_type(&g.output[0]), FLOAT16);
}

#[test]
fn keep_fp32_io_puts_casts_at_the_graph_boundary_only() {
    let mut options = fp16();
    options.keep_fp32_io = true;
    let (model, report) = autocast(&cnn(4), &options);
    let g = graph(&model);
    assert_eq!(
        (elem_type(&g.input[0]), elem_type(&g.output[0])),
        (FLOAT, FLOAT)
    );
    let first = &g.node[0];
    assert_eq!(
        (first.input[0].as_str(), cast_to(first)),
        ("images", i64::from(FLOAT16))
    );
    assert_eq!(first.output[0], "images/autocast_fp16");
    assert_eq!(g.node[1].input[0], "images/autocast_fp16");
    let last = g.node.last().unwrap();
    assert_eq!(
        (last.output[0].as_str(), cast_to(last)),
        ("logits", i64::from(FLOAT))
    );
    assert_eq!(last.input[0], "logits/autocast_fp16");
    assert_eq!(producer(g, "logits/autocast_fp16").op_type(), "Gemm");
    assert_eq!(report.inserted_casts, 2);
    assert!(g.initializer.iter().all(|t| t.data_type() == FLOAT16));
    // The intermediate value_info follows the computation, not the I/O.
    assert_eq!(elem_type(&g.value_info[0]), FLOAT16);
}

#[test]
fn casts_to_float32_that_feed_converted_nodes_cast_to_the_target() {
    let mut g = GraphBuilder::new("mask", 12);
    let x = g.input("x", DataType::Float, dims!["N", 4]);
    let mask = g.input("mask", DataType::Int64, dims!["N", 4]);
    let mask_f = g.node("Cast", &[&mask], [attr::int("to", i64::from(FLOAT))]);
    let y = g.mul(&x, &mask_f);
    g.output("y", &y, DataType::Float, dims!["N", 4]);
    let (model, report) = autocast(&ModelBuilder::new(g).build(), &fp16());
    let g = graph(&model);
    assert_eq!(cast_to(producer(g, mask_f.name())), i64::from(FLOAT16));
    assert_eq!(nodes_of(g, "Mul")[0].input[1], mask_f.name());
    assert_eq!(elem_type(&g.input[1]), DataType::Int64 as i32);
    assert_eq!((report.converted_nodes, report.inserted_casts), (2, 0));
}

#[test]
fn out_of_range_weights_are_clamped_and_named() {
    let mut g = GraphBuilder::new("clamp", 5);
    let x = g.input("x", DataType::Float, dims![4]);
    let big = g.initializer_f32("big", &[4], &[1e5, -7e4, 1.0, f32::NEG_INFINITY]);
    let c = g.node(
        "Constant",
        &[],
        [attr::floats("value_floats", [1e6, 2.0, -3.0, 4.0])],
    );
    let y = g.add(&x, &big);
    let y = g.mul(&y, &c);
    g.output("y", &y, DataType::Float, dims![4]);
    let original = ModelBuilder::new(g).build();

    let (model, report) = autocast(&original, &fp16());
    let values = f16_values(initializer(graph(&model), "big"));
    assert_eq!(values, [65504.0, -65504.0, 1.0, f32::NEG_INFINITY]);
    let constant = &nodes_of(graph(&model), "Constant")[0].attribute[0];
    assert_eq!(constant.name(), "value");
    assert_eq!(
        f16_values(constant.t.as_ref().unwrap()),
        [65504.0, 2.0, -3.0, 4.0]
    );
    let expected = [
        ClampWarning {
            tensor: "big".into(),
            count: 2,
            max_abs: 1e5,
        },
        ClampWarning {
            tensor: c.name().into(),
            count: 1,
            max_abs: 1e6,
        },
    ];
    assert_eq!(report.clamped, expected);
    assert!(
        report.clamped[0]
            .to_string()
            .contains("\"big\": 2 value(s)")
    );

    // bf16 keeps the range; only float32's very largest values would round to infinity.
    let mut g = GraphBuilder::new("clamp", 5);
    let x = g.input("x", DataType::Float, dims![2]);
    let huge = g.initializer_f32("mask", &[2], &[f32::MIN, 1e38]);
    let y = g.add(&x, &huge);
    g.output("y", &y, DataType::Float, dims![2]);
    let (model, report) = autocast(
        &ModelBuilder::new(g).build(),
        &AutocastOptions::new(AutocastTarget::BFloat16),
    );
    let mask = initializer(graph(&model), "mask");
    assert_eq!(mask.data_type(), BFLOAT16);
    assert_eq!(mask.raw_data(), [0x7f, 0xff, 0x96, 0x7e]); // -3.3895e38, 1e38 rounded
    assert_eq!(
        report.clamped,
        [ClampWarning {
            tensor: "mask".into(),
            count: 1,
            max_abs: f32::MAX
        }]
    );
}

#[test]
fn a_weight_read_in_both_precisions_gets_a_converted_copy() {
    let mut g = GraphBuilder::new("shared", 6);
    let x = g.input("x", DataType::Float, dims!["N", 4]);
    let gamma = g.initializer_f32("gamma", &[4], &[1.0, 2.0, 3.0, 4.0]);
    let scaled = g.mul(&x, &gamma);
    let normed = g.node("LayerNormalization", &[&scaled, &gamma], []);
    g.output("y", &normed, DataType::Float, dims!["N", 4]);
    let (model, report) = autocast(&ModelBuilder::new(g).build(), &fp16());
    let g = graph(&model);
    assert_eq!(f16_values(initializer(g, "gamma")), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(
        f32_values(initializer(g, "gamma/autocast_fp32")),
        [1.0, 2.0, 3.0, 4.0]
    );
    let layer_norm = &nodes_of(g, "LayerNormalization")[0];
    assert_eq!(layer_norm.input[1], "gamma/autocast_fp32");
    assert_eq!(report.converted_initializers, 1);
    assert_eq!(report.inserted_casts, 2); // into LayerNormalization, out to the fp16 output
}

#[test]
fn captured_values_reach_subgraphs_in_float32() {
    let mut g = GraphBuilder::new("branchy", 7);
    let x = g.input("x", DataType::Float, dims![2]);
    let flag = g.input("flag", DataType::Bool, dims![]);
    let h = g.relu(&x);
    // Both branches negate `h`, which they read from the enclosing graph by name.
    let branch = GraphProto {
        name: Some("branch".into()),
        node: vec![NodeProto {
            input: vec![h.name().to_owned()],
            output: vec!["branch_out".into()],
            op_type: Some("Neg".into()),
            ..NodeProto::default()
        }],
        output: vec![tensor_info("branch_out", DataType::Float, &[2])],
        ..GraphProto::default()
    };
    let if_attrs = [
        AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(branch.clone()),
            ..AttributeProto::default()
        },
        AttributeProto {
            name: Some("else_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(branch),
            ..AttributeProto::default()
        },
    ];
    let y = g.node("If", &[&flag], if_attrs);
    g.output("y", &y, DataType::Float, dims![2]);
    let (model, report) = autocast(&ModelBuilder::new(g).build(), &fp16());
    let g = graph(&model);
    let if_node = &nodes_of(g, "If")[0];
    for branch in &if_node.attribute {
        let neg = &branch.g.as_ref().unwrap().node[0];
        assert_eq!(neg.input[0], format!("{}/autocast_fp32", h.name()));
    }
    assert_eq!(
        cast_to(producer(g, &format!("{}/autocast_fp32", h.name()))),
        i64::from(FLOAT)
    );
    assert_eq!(
        report.kept_fp32_nodes,
        [(y.name().to_owned(), "If".to_owned())]
    );
    assert_eq!(cast_to(producer(g, "y")), i64::from(FLOAT16));
}

#[test]
fn autocasting_twice_changes_nothing() {
    let models = [cnn(8), attention_block(8), shape_arithmetic(8)];
    for keep_fp32_io in [false, true] {
        for target in [AutocastTarget::Half, AutocastTarget::BFloat16] {
            let mut options = AutocastOptions::new(target);
            options.keep_fp32_io = keep_fp32_io;
            for original in &models {
                let (once, first) = autocast(original, &options);
                let (twice, second) = autocast(&once, &options);
                assert_ne!(once.encode_to_vec(), original.encode_to_vec());
                assert_eq!(twice.encode_to_vec(), once.encode_to_vec(), "{options:?}");
                assert!(first.converted_nodes > 0);
                assert_eq!(
                    (
                        second.converted_initializers,
                        second.inserted_casts,
                        second.clamped.len()
                    ),
                    (0, 0, 0)
                );
                // Kept nodes are still reported: they are still float32.
                assert_eq!(second.kept_fp32_nodes, first.kept_fp32_nodes);
            }
        }
    }
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    for build in [cnn, attention_block, shape_arithmetic] {
        let (a, report_a) = autocast(&build(9), &fp16());
        let (b, report_b) = autocast(&build(9), &fp16());
        assert!(
            a.encode_to_vec() == b.encode_to_vec(),
            "{:?}",
            graph(&a).name
        );
        assert_eq!(report_a, report_b);
    }
    // ... and a different input different bytes (the seed changes the weights).
    let (a, _) = autocast(&cnn(9), &fp16());
    let (other, _) = autocast(&cnn(10), &fp16());
    assert!(a.encode_to_vec() != other.encode_to_vec());
}
