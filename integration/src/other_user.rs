//! Running the real `trtfarm` as a second, unprivileged local user (`nobody`), to show what one
//! user can and cannot do to another's local daemon. Needs root to switch users (CI runs the
//! tests as root); anywhere else [`OtherUser::prepare`] says why it cannot, and the test says
//! it was skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binary;
use crate::cli::user_environment;

/// The unprivileged account the tests switch to, and its group.
pub const USER: &str = "nobody";
/// The group of [`USER`] (Debian's name for it).
pub const GROUP: &str = "nogroup";

/// Another local user, with a copy of `trtfarm` it may run.
pub struct OtherUser {
    /// Holds the copy of `trtfarm` (mode 0755 all the way, unlike the build directory).
    _bin: tempfile::TempDir,
    /// The copy.
    program: PathBuf,
    /// The user's uid.
    pub uid: u32,
}

impl OtherUser {
    /// [`USER`], ready to run `trtfarm`; `Err` with the reason when this process cannot switch
    /// to it (not root, no `setpriv`, no such account).
    pub fn prepare() -> Result<OtherUser, String> {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("switching to another user needs root (CI runs the tests as root)".into());
        }
        let uid = id_of(USER)?;
        let probe = Command::new("setpriv").arg("--version").output();
        if !probe.is_ok_and(|out| out.status.success()) {
            return Err("`setpriv` (util-linux) is not installed".into());
        }
        // target/ may sit where `nobody` cannot enter: copy the binary somewhere it can.
        let bin = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        let program = bin.path().join("trtfarm");
        std::fs::copy(binary("trtfarm"), &program)
            .map_err(|e| format!("cannot copy trtfarm for {USER}: {e}"))?;
        for (path, mode) in [(bin.path(), 0o755), (program.as_path(), 0o755)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
        }
        Ok(OtherUser {
            _bin: bin,
            program,
            uid,
        })
    }

    /// A home directory under `parent` that the user owns.
    pub fn home(&self, parent: &Path) -> PathBuf {
        let home = parent.join(USER);
        std::fs::create_dir_all(&home).expect("create the other user's home");
        std::os::unix::fs::chown(&home, Some(self.uid), None).expect("give it to the user");
        home
    }

    /// `trtfarm ARGS` as the user, with `HOME` and per-user directories under `home`, and no
    /// supplementary groups or capabilities.
    pub fn trtfarm(&self, home: &Path, args: &[&str]) -> Command {
        self.command(home, &self.program, args)
    }

    /// Any `program ARGS` as the user, like [`OtherUser::trtfarm`].
    pub fn command(&self, home: &Path, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args([
                &format!("--reuid={USER}"),
                &format!("--regid={GROUP}"),
                "--clear-groups",
                "--",
            ])
            .arg(program)
            .args(args)
            .env("HOME", home)
            .current_dir(home);
        user_environment(&mut command, home);
        command
    }
}

/// The uid of the account `name`, from `id -u`.
fn id_of(name: &str) -> Result<u32, String> {
    account_id("-u", name)
}

/// One number `id FLAG NAME` prints (`-u`: the uid, `-g`: the primary gid).
pub(crate) fn account_id(flag: &str, name: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, name])
        .output()
        .map_err(|e| format!("cannot run `id`: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("there is no `{name}` account"))
}
