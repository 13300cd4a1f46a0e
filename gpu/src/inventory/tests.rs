use super::*;

fn h100(index: u32) -> GpuInfo {
    GpuInfo {
        index,
        name: "NVIDIA H100 80GB HBM3".into(),
        uuid: "GPU-0badc0de-1234-5678-9abc-def012345678".into(),
        compute_capability: ComputeCapability { major: 9, minor: 0 },
        multiprocessors: 132,
        memory_bytes: 85_520_809_984,
        pci_bus_id: Some("00000000:18:00.0".into()),
        nvml_index: Some(3),
        max_sm_clock_mhz: Some(1980),
        max_memory_clock_mhz: Some(2619),
        mig_mode: Some(false),
        processes: vec![GpuProcess {
            pid: 42,
            used_memory_bytes: Some(1 << 30),
        }],
    }
}

fn cuda_device(ordinal: u32, uuid: &str) -> cuda::CudaDevice {
    cuda::CudaDevice {
        ordinal,
        name: "NVIDIA H100 80GB HBM3".into(),
        uuid: uuid.into(),
        compute_capability: ComputeCapability { major: 9, minor: 0 },
        multiprocessors: 132,
        memory_bytes: 85_520_809_984,
        pci_bus_id: Some("00000000:18:00.0".into()),
    }
}

#[test]
fn uuid_is_spelled_like_nvidia_smi() {
    let bytes = [
        0x0b, 0xad, 0xc0, 0xde, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56,
        0x78,
    ];
    assert_eq!(
        format_gpu_uuid(bytes),
        "GPU-0badc0de-1234-5678-9abc-def012345678"
    );
}

#[test]
fn pci_bus_id_is_spelled_like_nvidia_smi() {
    assert_eq!(format_pci_bus_id(0, 0x18, 0), "00000000:18:00.0");
    assert_eq!(format_pci_bus_id(1, 0xab, 0x1f), "00000001:AB:1F.0");
}

#[test]
fn compute_capability_displays_as_major_dot_minor() {
    assert_eq!(ComputeCapability { major: 9, minor: 0 }.to_string(), "9.0");
    assert_eq!(
        ComputeCapability {
            major: 12,
            minor: 0
        }
        .to_string(),
        "12.0"
    );
}

#[test]
fn summary_line_names_what_a_person_needs() {
    assert_eq!(
        summary_line(&h100(0)),
        "gpu 0: NVIDIA H100 80GB HBM3 (sm 9.0, 132 SMs, 79.6 GiB, \
         GPU-0badc0de-1234-5678-9abc-def012345678)"
    );
    let mig = GpuInfo {
        mig_mode: Some(true),
        ..h100(1)
    };
    assert!(
        summary_line(&mig).ends_with(", MIG on)"),
        "{}",
        summary_line(&mig)
    );
}

#[test]
fn nvml_facts_are_joined_by_uuid_not_by_index() {
    // CUDA ordinal 0 is NVML's device 3 (CUDA_VISIBLE_DEVICES=3, say).
    let mut by_uuid = std::collections::HashMap::new();
    let facts = nvml::NvmlDevice {
        index: 3,
        max_sm_clock_mhz: Some(1980),
        max_memory_clock_mhz: Some(2619),
        mig_mode: Some(false),
        processes: vec![GpuProcess {
            pid: 42,
            used_memory_bytes: Some(1 << 30),
        }],
    };
    by_uuid.insert(
        "GPU-0badc0de-1234-5678-9abc-def012345678".to_string(),
        facts,
    );
    let device = cuda_device(0, "GPU-0badc0de-1234-5678-9abc-def012345678");
    let facts = by_uuid.get(&device.uuid);
    assert_eq!(merge(device, facts), h100(0));

    let stranger = cuda_device(1, "GPU-ffffffff-0000-0000-0000-000000000000");
    let merged = merge(stranger, None);
    assert_eq!(merged.nvml_index, None);
    assert_eq!(merged.max_sm_clock_mhz, None);
    assert_eq!(merged.mig_mode, None);
    assert!(merged.processes.is_empty());
    assert_eq!(merged.multiprocessors, 132);
}

#[test]
fn probe_without_a_driver_says_why_and_does_not_panic() {
    let inventory = probe();
    if crate::driver::cuda_unavailable().is_some() {
        assert!(inventory.gpus.is_empty());
        let why = inventory.unavailable.as_deref().unwrap_or_default();
        assert!(why.contains("no NVIDIA driver"), "{why}");
        assert!(why.contains("libcuda.so.1"), "{why}");
        assert_eq!(inventory.driver.cuda_driver_version, None);
    } else {
        // On a GPU host: either GPUs or a reason.
        assert!(!inventory.gpus.is_empty() || inventory.unavailable.is_some());
    }
}

#[test]
fn inventory_round_trips_through_json() {
    let inventory = Inventory {
        driver: DriverInfo {
            driver_version: Some("580.65.06".into()),
            cuda_driver_version: Some("13.0".into()),
        },
        gpus: vec![h100(0), h100(1)],
        unavailable: None,
        warnings: vec!["gpu 2: cuDeviceGetName failed".into()],
        cuda_visible_devices: Some("0,1".into()),
    };
    let json = serde_json::to_string(&inventory).unwrap();
    assert!(
        json.contains(r#""compute_capability":{"major":9,"minor":0}"#),
        "{json}"
    );
    let back: Inventory = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inventory);
}
