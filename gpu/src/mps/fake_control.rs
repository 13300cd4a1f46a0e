//! A fake standing in for NVIDIA's `nvidia-cuda-mps-control`, which cannot exist on a machine
//! without the driver. Test-only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How a [`fake_mps_control`] behaves.
#[derive(Default)]
pub(super) struct Fake {
    /// `-d` prints to stderr and exits 3.
    pub fail_start: bool,
    /// `quit` is accepted but the daemon keeps running.
    pub ignore_quit: bool,
    /// `quit` takes a second, as with a client still connected.
    pub slow_quit: bool,
}

/// Writes `fake_mps_control`: a fake standing in for NVIDIA's `nvidia-cuda-mps-control`, which
/// cannot exist on a machine without the driver. Like the real one, `-d` returns at once and a
/// moment later the daemon answers on `$CUDA_MPS_PIPE_DIRECTORY/control` (here a FIFO that a
/// background `sleep` holds open for reading) and writes its pid file; client mode reads `quit`
/// on stdin and stops it. The `sleep` ends by itself, so a failed test leaks nothing for long.
pub(super) fn fake_mps_control(dir: &Path, fake: Fake) -> PathBuf {
    let fail = if fake.fail_start {
        "echo 'fake: cannot start' >&2; exit 3"
    } else {
        ":"
    };
    let quit = if fake.ignore_quit {
        ":"
    } else if fake.slow_quit {
        r#"sleep 1; kill "$(cat "$pipe/nvidia-cuda-mps-control.pid")"; rm -f "$pipe/control""#
    } else {
        r#"kill "$(cat "$pipe/nvidia-cuda-mps-control.pid")"; rm -f "$pipe/control" "$pipe/nvidia-cuda-mps-control.pid""#
    };
    let script = format!(
        r#"#!/bin/sh
set -eu
pipe="$CUDA_MPS_PIPE_DIRECTORY"
if [ "${{1:-}}" = "-d" ]; then
  {fail}
  (
    sleep 0.2
    rm -f "$pipe/control"
    mkfifo "$pipe/control"
    sleep 60 3<>"$pipe/control" &
    echo $! > "$pipe/nvidia-cuda-mps-control.pid"
    echo "started $!" >> "$CUDA_MPS_LOG_DIRECTORY/control.log"
  ) &
  exit 0
fi
read -r command
if [ "$command" = quit ]; then
  {quit}
fi
"#
    );
    let path = dir.join("fake_mps_control");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub(super) fn dirs(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("run/mps"), root.join("log/mps"))
}
