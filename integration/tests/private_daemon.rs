//! The local daemon is private to the user who started it: it listens on a Unix socket in a
//! 0700 directory (no TCP port at all), and another local user can neither find it, read its
//! info file, nor list, fetch, cancel or submit through it, by directory or by socket, even
//! with the permissions loosened (the daemon checks each caller's uid). A daemon started by
//! hand on TCP says that anyone on the machine can reach it, and is used only when named.
//! Directories and info files that are not private are refused with the fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use integration::cli::{LocalDaemons, Ran, alive, run, serve_processes, trtfarm};
use integration::daemon::Daemon;
use integration::other_user::OtherUser;
use trtfarm_proto::local::{DaemonInfo, INFO_FILE, SOCKET_FILE, socket_path, unix_endpoint};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Inodes of the TCP sockets in LISTEN state on this machine (IPv4 and IPv6).
fn listening_tcp_inodes() -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `st` 0A is LISTEN; the inode is the tenth field.
            if fields.get(3) == Some(&"0A")
                && let Some(inode) = fields.get(9).and_then(|i| i.parse().ok())
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// Inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the daemon's fds");
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Asserts the other user's command failed as a connection error (exit 2) saying `why`.
fn refused(ran: Ran, what: &str, why: &str) {
    let ran = ran.expect_code(2, what);
    assert!(ran.stderr.contains(why), "{what}: {ran:#?}");
    assert!(ran.stdout.is_empty(), "{what} printed nothing: {ran:#?}");
}

#[test]
fn another_local_user_can_neither_reach_nor_use_the_auto_started_daemon() {
    let other = match OtherUser::prepare() {
        Ok(other) => other,
        Err(why) => {
            eprintln!("SKIPPED another_local_user_can_neither_reach_nor_use_...: {why}");
            return;
        }
    };
    // Everything above the daemon directory is open to all, so what keeps the other user out
    // is the daemon's own doing, not this test's temporary directory.
    let root = tempfile::tempdir().unwrap();
    chmod(root.path(), 0o755);
    let home = root.path().join("owner");
    std::fs::create_dir(&home).unwrap();
    chmod(&home, 0o755);
    let dir = home.join("daemon");
    let _cleanup = LocalDaemons::new(&dir);
    let examples = integration::examples_copy();
    chmod(examples.path(), 0o755);
    let manifest = examples.path().join("cnn-dynamic-batch/engine.toml");
    let manifest = path_str(&manifest);
    let theirs = other.home(root.path());

    // The owner builds an engine through the daemon its first command starts.
    let args = ["submit", manifest, "--json", "--daemon-dir", path_str(&dir)];
    let ran = run(trtfarm(&home).args(args)).expect_code(0, "the owner's submit");
    let document: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let variant = &document["variants"][0];
    assert_eq!(variant["status"], "built", "{document:#}");
    let engine = variant["engine"]
        .as_str()
        .expect("an engine digest")
        .to_string();
    let job = variant["job_id"].as_u64().expect("a job").to_string();

    // Private by construction: a Unix socket in a 0700 directory, a 0600 info file, no TCP.
    let info = DaemonInfo::read(&dir).unwrap().expect("an info file");
    let socket = socket_path(&dir);
    assert_eq!(info.endpoint, unix_endpoint(&socket));
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(mode_of(&dir.join(INFO_FILE)), 0o600);
    assert_eq!(mode_of(&dir.join(SOCKET_FILE)) & 0o777, 0o600);
    let listening = listening_tcp_inodes();
    let open_tcp: Vec<u64> = socket_inodes(info.pid)
        .into_iter()
        .filter(|inode| listening.contains(inode))
        .collect();
    assert!(
        open_tcp.is_empty(),
        "the daemon listens on TCP: {open_tcp:?}"
    );

    // The other user cannot read the info file, nor list the directory.
    let cat = run(&mut other.command(
        &theirs,
        Path::new("/bin/cat"),
        &[path_str(&dir.join(INFO_FILE))],
    ));
    assert_ne!(cat.code, 0, "{cat:#?}");
    assert!(cat.stderr.contains("Permission denied"), "{cat:#?}");

    let fetched = theirs.join("stolen.engine");
    let commands: [(&str, Vec<&str>); 4] = [
        ("ls", vec!["ls"]),
        ("fetch", vec!["fetch", &engine, "-o", path_str(&fetched)]),
        ("cancel", vec!["cancel", &job]),
        ("submit", vec!["submit", manifest, "--no-wait"]),
    ];
    let socket_url = unix_endpoint(&socket);
    for (what, args) in &commands {
        // Through the owner's daemon directory: not theirs, so not used.
        let via_dir = [&args[..], &["--daemon-dir", path_str(&dir)]].concat();
        refused(
            run(&mut other.trtfarm(&theirs, &via_dir)),
            &format!("{what} --daemon-dir"),
            &format!(
                "{} belongs to uid 0, not to you (uid {})",
                dir.display(),
                other.uid
            ),
        );
        // Straight at the socket: the kernel refuses the connection.
        let via_socket = [&args[..], &["--daemon", &socket_url]].concat();
        let ran = run(&mut other.trtfarm(&theirs, &via_socket));
        assert!(
            ran.stderr.contains(
                "Permission denied (os error 13)\nhint: a daemon on a Unix \
                 socket serves only the user who started it"
            ),
            "{what} --daemon unix: {ran:#?}"
        );
        refused(
            ran,
            &format!("{what} --daemon unix:"),
            "cannot reach the daemon",
        );
        // Ours alone: a daemon the other user cannot stop either.
    }
    refused(
        run(&mut other.trtfarm(&theirs, &["daemon", "stop", "--daemon-dir", path_str(&dir)])),
        "daemon stop",
        "not to you",
    );
    assert!(alive(info.pid), "the other user stopped the owner's daemon");

    // With the directory and socket opened up by mistake, the daemon itself still refuses
    // every call from another uid, saying why.
    chmod(&dir, 0o711);
    chmod(&socket, 0o666);
    for (what, args) in &commands {
        let via_socket = [&args[..], &["--daemon", &socket_url]].concat();
        refused(
            run(&mut other.trtfarm(&theirs, &via_socket)),
            &format!("{what} through an opened socket"),
            &format!(
                "permission denied: this daemon is private to the user who started it (uid \
                 0); you are uid {}",
                other.uid
            ),
        );
    }
    chmod(&socket, 0o600);
    chmod(&dir, 0o700);
    assert!(!fetched.exists(), "nothing was fetched");
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(log.contains("refused a call from another user"), "{log}");

    // The owner's commands work as before, on the same daemon.
    let local = |args: &[&str]| {
        let mut command = trtfarm(&home);
        command.args(args).args(["--daemon-dir", path_str(&dir)]);
        run(&mut command)
    };
    let ran = local(&["ls"]).expect_code(0, "the owner's ls");
    assert!(ran.stdout.contains(&engine), "{ran:#?}");
    let out = home.join("mine.engine");
    local(&["fetch", &engine, "-o", path_str(&out)]).expect_code(0, "the owner's fetch");
    assert!(out.is_file());
    let ran = local(&["cancel", &job]).expect_code(1, "the owner's cancel of a finished job");
    assert!(ran.stdout.contains("already succeeded"), "{ran:#?}");
    let ran = local(&["submit", manifest, "--json"]).expect_code(0, "the owner's resubmit");
    assert!(ran.stdout.contains("\"cached\""), "{ran:#?}");
    assert_eq!(DaemonInfo::read(&dir).unwrap().unwrap().pid, info.pid);
}

#[test]
fn a_daemon_on_tcp_says_anyone_can_reach_it_and_is_used_only_when_named() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    // Started by hand with `--listen 127.0.0.1:0` and no token.
    let daemon = Daemon::start(root.path(), &[]);
    assert!(
        daemon.startup_line.starts_with(&format!(
            "trtfarmd listening on {} (no token: any user of this machine can reach it",
            daemon.endpoint
        )),
        "{}",
        daemon.startup_line
    );
    // Its state directory holds an info file like the local daemon's, but trtfarm does not
    // take a daemon others can reach as the local one...
    let dir = path_str(&daemon.state_dir);
    let ran = run(trtfarm(&home).args(["ls", "--daemon-dir", dir])).expect_code(2, "implicit");
    assert!(
        ran.stderr.contains("any user of this machine can reach it")
            && ran
                .stderr
                .contains(&format!("`--daemon {}`", daemon.endpoint)),
        "{ran:#?}"
    );
    assert_eq!(
        serve_processes(&daemon.state_dir),
        vec![daemon.pid()],
        "nor starts another"
    );
    // ...and `daemon status` shows it with the same warning.
    let ran = run(trtfarm(&home).args(["daemon", "status", "--daemon-dir", dir]))
        .expect_code(0, "status");
    assert!(ran.stderr.starts_with("warning: the daemon in"), "{ran:#?}");
    // Named, it serves as it always did.
    let ran =
        run(trtfarm(&home).args(["ls", "--daemon", &daemon.endpoint])).expect_code(0, "named");
    assert!(ran.stdout.starts_with("ID"), "{ran:#?}");
}

#[test]
fn daemon_directories_and_info_files_that_are_not_private_are_refused_with_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&dir);
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let local = |dir: &Path, args: &[&str]| {
        let mut command = trtfarm(home.path());
        command.args(args).args(["--daemon-dir", path_str(dir)]);
        run(&mut command)
    };

    let ran = local(&dir, &["ls"]).expect_code(2, "a 0755 directory");
    assert!(
        ran.stderr.contains(&format!(
            "{} has mode 0755: users other than you can list, enter or change it; run `chmod \
             700 {}`",
            dir.display(),
            dir.display()
        )),
        "{ran:#?}"
    );
    assert!(serve_processes(&dir).is_empty(), "no daemon started");

    // The daemon refuses it too, before it writes anything there.
    let serve = run(std::process::Command::new(integration::binary("trtfarmd"))
        .args([
            "serve",
            "--state-dir",
            path_str(&dir),
            "--store",
            "memory://",
        ])
        .env_remove("TRTFARMD_CONFIG")
        .env_remove("TRTFARMD_LISTEN")
        .env("XDG_CONFIG_HOME", home.path().join("config")));
    assert_eq!(serve.code, 2, "{serve:#?}");
    assert!(
        serve.stderr.contains("the state directory cannot be used")
            && serve.stderr.contains("chmod 700"),
        "{serve:#?}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );

    // Fixed as told, it works; an info file others can read is refused the same way.
    chmod(&dir, 0o700);
    local(&dir, &["ls"]).expect_code(0, "after chmod 700");
    let info = dir.join(INFO_FILE);
    chmod(&info, 0o644);
    let ran = local(&dir, &["ls"]).expect_code(2, "a 0644 info file");
    assert!(
        ran.stderr.contains("has mode 0644") && ran.stderr.contains("run `chmod 600"),
        "{ran:#?}"
    );
    chmod(&info, 0o600);
    local(&dir, &["ls"]).expect_code(0, "after chmod 600");

    // A symbolic link, even to this very directory, is refused.
    let link = home.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let ran = local(&link, &["ls"]).expect_code(2, "a symbolic link");
    assert!(
        ran.stderr.contains("is a symbolic link") && ran.stderr.contains("readlink -f"),
        "{ran:#?}"
    );
    local(&dir, &["daemon", "stop"]).expect_code(0, "stop");
}
