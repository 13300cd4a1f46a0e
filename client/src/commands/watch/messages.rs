//! What `watch` says between builds: a header before each rebuild (`[14:03:12] changed:
//! models/det/model.onnx`), a summary after it, the moments a manifest or a build recovers, and
//! the screen clearing that keeps one run's output apart from the last.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Names a header lists before it says "and N more".
const NAMES_SHOWN: usize = 3;

/// Clears the screen and its scrollback and puts the cursor home (what `cargo watch -c` and
/// `tsc --watch` do), so the errors of an earlier run cannot be mistaken for this one's.
const CLEAR: &str = "\x1b[H\x1b[2J\x1b[3J";

/// What started a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Files that changed, as the user names them (relative to the current directory).
    Changed(Vec<String>),
    /// The watcher lost events (overflow or error): everything was looked at again.
    Lost,
}

/// The header before a rebuild: `[HH:MM:SS] changed: a, b, c and 2 more`.
pub fn header(clock: &str, trigger: &Trigger) -> String {
    match trigger {
        Trigger::Lost => {
            format!("[{clock}] the file watcher lost events; looked at every manifest again")
        }
        Trigger::Changed(names) if names.is_empty() => format!("[{clock}] changed"),
        Trigger::Changed(names) => {
            let shown = names[..names.len().min(NAMES_SHOWN)].join(", ");
            match names.len().saturating_sub(NAMES_SHOWN) {
                0 => format!("[{clock}] changed: {shown}"),
                more => format!("[{clock}] changed: {shown} and {more} more"),
            }
        }
    }
}

/// `N manifest` or `N manifests`.
pub fn manifests(count: usize) -> String {
    match count {
        1 => "1 manifest".to_string(),
        n => format!("{n} manifests"),
    }
}

/// The line after a rebuild's reports: when it finished, how it went, and that watch goes on.
pub fn summary(clock: &str, failed: usize, watched: usize) -> String {
    let how = match failed {
        0 => "done".to_string(),
        1 => "done, 1 manifest failed".to_string(),
        n => format!("done, {n} manifests failed"),
    };
    format!(
        "[{clock}] {how}; watching {} — Ctrl-C to stop",
        manifests(watched)
    )
}

/// How a manifest stands after its latest scan or build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It does not validate.
    Invalid,
    /// It validates; a build of it failed (or never reached the daemon).
    Failed,
    /// It validates and its builds succeeded (or none ran yet).
    Good,
}

/// What to say when a manifest goes from `before` to `after`: only recoveries are news (a
/// failure prints its own diagnostics).
pub fn recovery(label: &str, before: Option<Health>, after: Health) -> Option<String> {
    match (before?, after) {
        (Health::Invalid, Health::Good | Health::Failed) => {
            Some(format!("{label}: the manifest is valid again"))
        }
        (Health::Failed, Health::Good) => Some(format!("{label}: builds succeed again")),
        _ => None,
    }
}

/// `paths` relative to `cwd` where they lie under it (events name canonical paths), sorted,
/// without repeats.
pub fn relative_names(paths: &[PathBuf], cwd: &Path) -> Vec<String> {
    let mut names: Vec<String> = paths
        .iter()
        .map(|path| {
            path.strip_prefix(cwd)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The local wall-clock time, `HH:MM:SS`.
pub fn clock() -> String {
    // SAFETY: time(2) with a null pointer, and localtime_r(3) into a zeroed struct this
    // function owns; both are thread-safe.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return "--:--:--".to_string();
        }
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// Clears the terminal on stderr, where watch's progress and headers go.
pub fn clear_screen() {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(CLEAR.as_bytes());
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(names: &[&str]) -> Trigger {
        Trigger::Changed(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn headers_name_a_few_files_then_count_the_rest() {
        assert_eq!(
            header("14:03:12", &changed(&["models/det/model.onnx"])),
            "[14:03:12] changed: models/det/model.onnx"
        );
        assert_eq!(
            header("09:00:00", &changed(&["a", "b", "c"])),
            "[09:00:00] changed: a, b, c"
        );
        assert_eq!(
            header("09:00:00", &changed(&["a", "b", "c", "d", "e"])),
            "[09:00:00] changed: a, b, c and 2 more"
        );
        assert!(header("09:00:00", &Trigger::Lost).contains("lost events"));
    }

    #[test]
    fn one_manifest_is_singular() {
        assert_eq!(manifests(1), "1 manifest");
        assert_eq!(manifests(2), "2 manifests");
        assert_eq!(
            summary("10:00:00", 0, 1),
            "[10:00:00] done; watching 1 manifest — Ctrl-C to stop"
        );
        assert_eq!(
            summary("10:00:00", 2, 3),
            "[10:00:00] done, 2 manifests failed; watching 3 manifests — Ctrl-C to stop"
        );
    }

    #[test]
    fn only_recoveries_are_announced() {
        let say = |before, after| recovery("a/engine.toml", before, after);
        assert_eq!(
            say(Some(Health::Invalid), Health::Good).as_deref(),
            Some("a/engine.toml: the manifest is valid again")
        );
        assert_eq!(
            say(Some(Health::Failed), Health::Good).as_deref(),
            Some("a/engine.toml: builds succeed again")
        );
        assert_eq!(
            say(None, Health::Good),
            None,
            "a first build is no recovery"
        );
        assert_eq!(say(Some(Health::Good), Health::Good), None);
        assert_eq!(say(Some(Health::Good), Health::Invalid), None);
        assert_eq!(say(Some(Health::Failed), Health::Failed), None);
    }

    #[test]
    fn names_are_relative_sorted_and_once_each() {
        let cwd = Path::new("/repo");
        let paths = [
            PathBuf::from("/repo/models/det/model.onnx"),
            PathBuf::from("/repo/models/det/engine.toml"),
            PathBuf::from("/repo/models/det/model.onnx"),
            PathBuf::from("/elsewhere/weights.bin"),
        ];
        assert_eq!(
            relative_names(&paths, cwd),
            [
                "/elsewhere/weights.bin",
                "models/det/engine.toml",
                "models/det/model.onnx"
            ]
        );
    }
}
