use super::*;
use crate::attr;

fn graph_with_conv() -> GraphBuilder {
    let mut g = GraphBuilder::new("g", 9);
    let x = g.input("x", DataType::Float, dims!["N", 3, 8, 8]);
    let y = g.conv2d(&x, Conv2d::new(3, 4, 3).stride(2));
    let y = g.relu(&y);
    g.output("y", &y, DataType::Float, dims!["N", 4, 4, 4]);
    g
}

#[test]
fn names_nodes_after_operators_and_weights_after_nodes() {
    let graph = graph_with_conv().finish();
    let nodes: Vec<_> = graph
        .node
        .iter()
        .map(|n| (n.name(), n.op_type(), n.input.clone(), n.output.clone()))
        .collect();
    assert_eq!(
        nodes,
        [
            (
                "conv_0",
                "Conv",
                vec!["x".into(), "conv_0.weight".into(), "conv_0.bias".into()],
                vec!["conv_0".into()]
            ),
            ("relu_0", "Relu", vec!["conv_0".into()], vec!["y".into()]),
        ]
    );
    let weight = &graph.initializer[0];
    assert_eq!(
        (weight.name(), weight.dims.as_slice()),
        ("conv_0.weight", &[4, 3, 3, 3][..])
    );
    assert_eq!(weight.raw_data().len(), 4 * 3 * 3 * 3 * 4);
    assert_eq!(snake_case("GlobalAveragePool"), "global_average_pool");
}

#[test]
fn conv_attributes_give_same_padding() {
    let graph = graph_with_conv().finish();
    let attributes = &graph.node[0].attribute;
    let find = |name: &str| {
        attributes
            .iter()
            .find(|a| a.name() == name)
            .unwrap()
            .clone()
    };
    assert_eq!(find("pads").ints, [1, 1, 1, 1]);
    assert_eq!(find("strides").ints, [2, 2]);
    assert_eq!(Conv2d::new(8, 8, 3).dilation(4).padding(), 4);
    assert_eq!(Conv2d::new(8, 8, 1).padding(), 0);
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let weights = |seed| {
        let mut g = GraphBuilder::new("g", seed);
        g.random_f32("w", &[16], 1.0);
        g.finish().initializer[0].raw_data().to_vec()
    };
    assert_eq!(weights(1), weights(1));
    assert_ne!(weights(1), weights(2));
}

#[test]
fn initializers_store_little_endian_raw_data() {
    let mut g = GraphBuilder::new("g", 0);
    g.initializer_f32("f", &[2], &[1.0, -2.5]);
    g.initializer_i64("i", &[2], &[-1, 7]);
    let graph = g.finish();
    assert_eq!(
        graph.initializer[0].raw_data(),
        [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
    );
    assert_eq!(graph.initializer[1].data_type, Some(DataType::Int64 as i32));
    assert_eq!(
        graph.initializer[1].raw_data(),
        [(-1i64).to_le_bytes(), 7i64.to_le_bytes()].concat()
    );
}

#[test]
#[should_panic(expected = "needs 6 values, got 5")]
fn initializer_data_must_fit_dims() {
    GraphBuilder::new("g", 0).initializer_f32("w", &[2, 3], &[0.0; 5]);
}

#[test]
#[should_panic(expected = "used twice")]
fn names_must_be_unique() {
    let mut g = GraphBuilder::new("g", 0);
    g.input("x", DataType::Float, dims![1]);
    g.input("x", DataType::Float, dims![1]);
}

#[test]
#[should_panic(expected = "is not a value of graph")]
fn a_renamed_value_cannot_be_used_under_its_old_name() {
    let mut g = GraphBuilder::new("g", 0);
    let x = g.input("x", DataType::Float, dims![1]);
    let y = g.relu(&x);
    g.output("out", &y, DataType::Float, dims![1]);
    g.sigmoid(&y);
}

#[test]
fn an_input_exposed_as_output_goes_through_identity() {
    let mut g = GraphBuilder::new("g", 0);
    let x = g.input("x", DataType::Float, dims![1]);
    let out = g.output("out", &x, DataType::Float, dims![1]);
    let graph = g.finish();
    assert_eq!(out.name(), "out");
    assert_eq!(graph.node[0].op_type(), "Identity");
    assert_eq!(graph.node[0].input, ["x"]);
}

#[test]
fn generic_nodes_take_attributes() {
    let mut g = GraphBuilder::new("g", 0);
    let x = g.input("x", DataType::Float, dims![1, 4]);
    let y = g.node("LeakyRelu", &[&x], [attr::float("alpha", 0.2)]);
    let graph = g.finish();
    assert_eq!(y.name(), "leaky_relu_0");
    assert_eq!(graph.node[0].attribute[0].f, Some(0.2));
}

#[test]
fn model_builder_sets_opset_ir_version_and_writes_files() {
    let model = ModelBuilder::new(graph_with_conv()).doc_string("d").build();
    assert_eq!(model.ir_version, Some(DEFAULT_IR_VERSION));
    assert_eq!(model.opset_import[0].version, Some(DEFAULT_OPSET));
    assert_eq!(model.opset_import[0].domain(), "");
    let model = ModelBuilder::new(graph_with_conv())
        .opset(13)
        .ir_version(7)
        .build();
    assert_eq!(
        (model.opset_import[0].version, model.ir_version),
        (Some(13), Some(7))
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    ModelBuilder::new(graph_with_conv()).write(&path).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(
        ModelProto::decode(bytes.as_slice()).unwrap(),
        ModelBuilder::new(graph_with_conv()).build()
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["m.onnx"], "the temporary file must be gone");

    let err = ModelBuilder::new(graph_with_conv())
        .write(&dir.path().join("no/such/dir/m.onnx"))
        .unwrap_err();
    assert!(matches!(err, OnnxError::Write { .. }), "{err}");
}

#[test]
fn outputs_may_leave_the_rank_out() {
    let mut g = GraphBuilder::new("g", 0);
    let x = g.input("x", DataType::Float, dims!["N"]);
    let y = g.relu(&x);
    g.output_rank_unknown("y", &y, DataType::Float);
    let graph = g.finish();
    let Some(type_proto::Value::TensorType(tensor)) =
        &graph.output[0].r#type.as_ref().unwrap().value
    else {
        panic!("not a tensor output: {:?}", graph.output[0]);
    };
    assert_eq!(
        (tensor.elem_type, tensor.shape.as_ref()),
        (Some(DataType::Float as i32), None)
    );
}
