//! `trtfarm submit` as a person at a terminal sees it: run under a pseudo-terminal (`script`
//! from util-linux), it draws live lines, then one aligned report with short digests and colour
//! (none with `NO_COLOR`); Ctrl-C during a build cancels the job it follows and says which.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use integration::cli::{LocalDaemons, run, trtfarm, user_environment, wait_for_local_build};
use integration::models::{deep_cnn, images_manifest, slow_project};

/// Longest a test waits for a build to start (a hang guard, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(240);

/// What `trtfarm ARGS` printed on a pseudo-terminal (stdout and stderr both are the terminal),
/// and its exit code.
fn on_a_terminal(home: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let program = integration::binary("trtfarm").display().to_string();
    let line = std::iter::once(program.as_str())
        .chain(args.iter().copied())
        .map(|word| format!("'{word}'"))
        .collect::<Vec<_>>()
        .join(" ");
    // Under timeout(1): a display that hangs fails the test instead of the whole run.
    let mut script = Command::new("timeout");
    script
        .args([
            "120",
            "script",
            "--quiet",
            "--return",
            "--command",
            &line,
            "/dev/null",
        ])
        .current_dir(cwd)
        .stdin(Stdio::null());
    user_environment(&mut script, home);
    for (key, value) in env {
        script.env(key, value);
    }
    let output = script.output().expect("run script(1)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The screen's lines as they end up: each line's text after its last carriage return, with
/// the cursor and erase sequences of the live display taken out (colour codes stay).
fn final_lines(screen: &str) -> Vec<String> {
    screen
        .lines()
        .map(|line| {
            let mut text = String::new();
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\r' => text.clear(),
                    '\x1b' if chars.peek() == Some(&'[') => {
                        let mut sequence = String::from("\x1b[");
                        chars.next();
                        for c in chars.by_ref() {
                            sequence.push(c);
                            if c.is_ascii_alphabetic() {
                                break;
                            }
                        }
                        if sequence.ends_with('m') {
                            text.push_str(&sequence);
                        }
                    }
                    c => text.push(c),
                }
            }
            text
        })
        .collect()
}

#[test]
fn submit_on_a_terminal_draws_then_reports_each_engine_once_in_colour() {
    let home = tempfile::tempdir().unwrap();
    let daemon_dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&daemon_dir);
    let project = home.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    deep_cnn(&project, 1, 4, 16, 3);
    std::fs::write(
        project.join("engine.toml"),
        images_manifest("deep.onnx", 16, &[("fp32", 3), ("fp32-o2", 2)]),
    )
    .unwrap();
    let dir = daemon_dir.to_str().unwrap();
    let (code, screen) =
        on_a_terminal(home.path(), &project, &["submit", "--daemon-dir", dir], &[]);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("[0/2]"), "a live summary line: {screen}");
    let lines = final_lines(&screen);
    // The report: each engine once, coloured, with a 12-digit digest and where it went.
    for engine in ["fp32", "fp32-o2"] {
        let lines: Vec<&String> = (lines.iter())
            .filter(|l| l.starts_with(&format!("engine.toml#{engine} ")))
            .collect();
        assert_eq!(lines.len(), 1, "{engine}: {screen}");
        assert!(lines[0].contains("\x1b[32mbuilt\x1b[0m"), "{screen}");
        assert!(
            lines[0].contains(&format!("-> build/{engine}.engine")),
            "{screen}"
        );
        let digest = lines[0].split("blake3:").nth(1).unwrap_or_default();
        let hex: String = digest.chars().take_while(char::is_ascii_hexdigit).collect();
        assert_eq!(hex.len(), 12, "a short digest on a terminal: {screen}");
    }
    assert!(screen.contains("2 engines: "), "{screen}");

    // Cached now; NO_COLOR leaves the colour out.
    let (code, screen) = on_a_terminal(
        home.path(),
        &project,
        &["submit", "--daemon-dir", dir],
        &[("NO_COLOR", "1")],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(
        final_lines(&screen)
            .iter()
            .any(|l| l.starts_with("engine.toml#fp32     cached  blake3:")),
        "{screen}"
    );
    assert!(
        !screen.contains("\x1b[36m"),
        "no colour with NO_COLOR: {screen}"
    );
}

#[test]
fn ctrl_c_during_submit_cancels_its_job_and_says_so() {
    let home = tempfile::tempdir().unwrap();
    let daemon_dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&daemon_dir);
    let project = home.path().join("project");
    slow_project(&project, 9);
    let child = trtfarm(home.path())
        .current_dir(&project)
        .args(["submit", "--daemon-dir"])
        .arg(&daemon_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trtfarm submit");
    wait_for_local_build(&daemon_dir, PATIENCE);
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let job = (stderr.lines())
        .find_map(|l| l.strip_prefix("cancelled job "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cancellation said: {stderr}"))
        .to_string();
    assert!(
        stderr.contains(&format!("cancelled job {job} (engine.toml#slow)")),
        "{stderr}"
    );
    let status = run(trtfarm(home.path())
        .args(["status", &job, "--json", "--daemon-dir"])
        .arg(&daemon_dir))
    .expect_code(0, "status");
    assert!(
        status.stdout.contains("\"state\": \"cancelled\""),
        "{status:#?}"
    );
}
