use super::*;

#[test]
fn probe_without_a_driver_is_an_error_not_a_panic() {
    if cuda_unavailable().is_none() {
        return; // a GPU host: covered by running the probe for real there
    }
    let err = probe_context(0, None).unwrap_err();
    assert!(matches!(err, ProbeError::NoDriver(_)), "{err:?}");
    assert!(err.to_string().contains("libcuda.so.1"), "{err}");
    let err = probe_context(0, Some(MatmulSpec::default())).unwrap_err();
    assert!(matches!(err, ProbeError::NoDriver(_)), "{err:?}");
}

#[test]
fn a_bad_spec_is_refused_before_touching_the_driver() {
    for spec in [
        MatmulSpec {
            n: 0,
            ..MatmulSpec::default()
        },
        MatmulSpec {
            n: 1 << 31,
            ..MatmulSpec::default()
        },
        MatmulSpec {
            iterations: 0,
            ..MatmulSpec::default()
        },
    ] {
        let err = probe_context(0, Some(spec)).unwrap_err();
        assert!(
            matches!(err, ProbeError::InvalidSpec(_)),
            "{spec:?}: {err:?}"
        );
    }
}

#[test]
fn default_spec_is_8192_cubed_20_times_after_3() {
    let spec = MatmulSpec::default();
    assert_eq!((spec.n, spec.iterations, spec.warmup), (8192, 20, 3));
    assert!(spec.validate().is_ok());
}

#[test]
fn tflops_are_two_n_cubed_over_time() {
    // 2 * 8192^3 = 1.0995e12 flops; 20 iterations in 40 ms = 2 ms each = 549.8 TFLOP/s.
    let report = MatmulReport::from_timing(MatmulSpec::default(), 0.040);
    assert!((report.seconds_per_iteration - 0.002).abs() < 1e-12);
    assert!(
        (report.tflops - 549.755_813_888).abs() < 1e-6,
        "{}",
        report.tflops
    );
}

#[test]
fn no_cublas_names_the_libraries_tried() {
    let err = ProbeError::NoCublas {
        tried: vec!["libcublas.so".into(), "libcublas.so.13".into()],
    };
    let text = err.to_string();
    assert!(text.contains("libcublas.so, libcublas.so.13"), "{text}");
    assert!(text.contains("LD_LIBRARY_PATH"), "{text}");
}

#[test]
fn report_round_trips_through_json() {
    let report = ContextReport {
        ordinal: 0,
        device_name: "NVIDIA H100 80GB HBM3".into(),
        compute_capability: ComputeCapability { major: 9, minor: 0 },
        device_multiprocessors: 132,
        multiprocessors_in_context: 132,
        context_sm_count: Some(32),
        context_sm_count_error: None,
        memory_free_bytes: Some(80 << 30),
        memory_total_bytes: Some(85_520_809_984),
        mps_active_thread_percentage: Some("25".into()),
        mps_pipe_directory_set: true,
        cuda_visible_devices: None,
        matmul: Some(MatmulReport::from_timing(MatmulSpec::default(), 0.16)),
    };
    let json = serde_json::to_string(&report).unwrap();
    // The inventory's form, which scripts/gpu-verify reads, not the shared type's "9.0".
    assert!(
        json.contains(r#""compute_capability":{"major":9,"minor":0}"#),
        "{json}"
    );
    let back: ContextReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn gemm_inputs_are_random_nonzero_and_bounded() {
    let values: Vec<f32> = matmul::pattern().iter().map(|v| v.to_f32()).collect();
    assert!(
        values
            .iter()
            .all(|v| (1.0 / 256.0..=1.0).contains(&v.abs()))
    );
    let negative = values.iter().filter(|v| **v < 0.0).count() as f64 / values.len() as f64;
    assert!((0.45..0.55).contains(&negative), "{negative}");
    let distinct: std::collections::HashSet<u16> =
        matmul::pattern().iter().map(|v| v.to_bits()).collect();
    // bf16 has 2 × 9 × 128 = 2304 values in ±[2⁻⁸, 1]: nearly all of them appear.
    assert!(
        distinct.len() > 2000,
        "{} distinct bf16 values",
        distinct.len()
    );
}
