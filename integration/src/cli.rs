//! Running the real `trtfarm` binary as a person does, in an environment of its own, and
//! cleaning up the local daemons it starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary;

/// Longest a single `trtfarm` command may run before the test gives up on it (a hang guard,
/// not a timing assertion).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// `trtfarm` with its per-user directories (cache, config, state) under `home`, so a daemon it
/// starts keeps its default `file://` store there, and with no daemon settings inherited from
/// the caller's environment (`TRTFARM_RTX_LIB_DIR` is kept: started daemons get it).
pub fn trtfarm(home: &Path) -> Command {
    let mut command = Command::new(binary("trtfarm"));
    user_environment(&mut command, home);
    command
}

/// Gives `command` (a `trtfarm`, possibly behind a wrapper) per-user directories under `home`
/// and none of the caller's daemon settings, as [`trtfarm`] describes.
pub fn user_environment(command: &mut Command, home: &Path) {
    command
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("TRTFARMD_")
            || [
                "TRTFARM_DAEMON",
                "TRTFARM_TOKEN",
                "TRTFARM_TOKEN_FILE",
                "TRTFARM_TLS_CA",
                "TRTFARM_DAEMON_DIR",
                "TRTFARM_INPUT_ROOTS",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
}

/// What a finished command left.
#[derive(Debug)]
pub struct Ran {
    /// The exit status (`-1` when killed by a signal).
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Ran {
    /// Panics unless it exited with `code`; returns it for chaining.
    pub fn expect_code(self, code: i32, what: &str) -> Ran {
        assert_eq!(self.code, code, "{what}: {self:#?}");
        self
    }
}

/// Runs `command` to its end, capturing stdout and stderr; kills it and panics after
/// [`COMMAND_TIMEOUT`].
pub fn run(command: &mut Command) -> Ran {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trtfarm");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let Ok(output) = receiver.recv_timeout(COMMAND_TIMEOUT) else {
        // SAFETY: kill(2) on the child this function started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("{command:?} did not finish within {COMMAND_TIMEOUT:?}");
    };
    let output = output.expect("wait for trtfarm");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

/// Processes running `trtfarmd serve ... --state-dir DIR`, for exactly this `dir`.
pub fn serve_processes(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_serve = args.get(1) == Some(&b"serve".as_slice())
            && args
                .first()
                .is_some_and(|argv0| argv0.ends_with(b"trtfarmd"));
        let state_dir = args
            .windows(2)
            .find(|pair| pair[0] == b"--state-dir")
            .map(|pair| PathBuf::from(String::from_utf8_lossy(pair[1]).into_owned()));
        if is_serve && state_dir.as_deref() == Some(dir) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Stops every `trtfarmd serve` for `dir` when dropped (SIGTERM, then SIGKILL), so a failing
/// test leaves no daemon behind.
pub struct LocalDaemons {
    /// The daemon directory (`--daemon-dir`).
    pub dir: PathBuf,
}

impl LocalDaemons {
    /// Looks after the daemons serving `dir`.
    pub fn new(dir: &Path) -> LocalDaemons {
        LocalDaemons {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for LocalDaemons {
    fn drop(&mut self) {
        let pids = serve_processes(&self.dir);
        for &pid in &pids {
            // SAFETY: kill(2) on a trtfarmd this test's commands started for its own dir.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while pids.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for &pid in pids.iter().filter(|&&pid| alive(pid)) {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Waits until the local daemon of `daemon_dir` runs a builder, and returns that daemon's pid;
/// panics after `patience` (a hang guard, not a timing assertion).
pub fn wait_for_local_build(daemon_dir: &Path, patience: Duration) -> u32 {
    let deadline = Instant::now() + patience;
    loop {
        assert!(
            Instant::now() < deadline,
            "no builder started under the daemon of {}",
            daemon_dir.display()
        );
        if let Ok(Some(info)) = trtfarm_proto::local::DaemonInfo::read(daemon_dir)
            && !crate::daemon::builders_of(info.pid).is_empty()
        {
            return info.pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
