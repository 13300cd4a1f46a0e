//! What Cargo and the person building tell a build script through the environment, and what
//! the build script tells Cargo back (`cargo:` lines on stdout).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Error;

/// Variables whose change must run the build script again (Cargo tracks them only when told).
pub(crate) const TRACKED_VARIABLES: [&str; 6] = [
    "TRTFARM",
    "TRTFARM_LOCKED",
    "TRTFARM_DAEMON",
    "TRTFARM_DAEMON_DIR",
    "CARGO_NET_OFFLINE",
    "DOCS_RS",
];

/// The build script's environment, read once.
#[derive(Debug, Clone, Default)]
pub(crate) struct CargoEnv {
    /// `OUT_DIR`: the only place a build script should write.
    pub out_dir: PathBuf,
    /// `CARGO_MANIFEST_DIR`: the package, which relative manifest paths are relative to.
    pub package_dir: PathBuf,
    /// `DOCS_RS` is set: a docs.rs build, with no trtfarm and no network.
    pub docs_rs: bool,
    /// `CARGO_NET_OFFLINE=true`.
    pub offline: bool,
    /// `TRTFARM_LOCKED`: `Some(true)` for 1/true/yes, `Some(false)` for 0/false/no.
    pub locked: Option<bool>,
    /// `TRTFARM`: the program to run.
    pub program: Option<PathBuf>,
    /// `PATH`, to find `trtfarm` on.
    pub path: Option<OsString>,
}

impl CargoEnv {
    /// Reads the process environment; an error when it is not a build script's.
    pub fn from_process() -> Result<CargoEnv, Error> {
        let var = |name| std::env::var_os(name);
        let required = |name: &'static str| {
            var(name)
                .map(PathBuf::from)
                .ok_or(Error::NotInBuildScript(name))
        };
        let text = |name| var(name).map(|v| v.to_string_lossy().trim().to_ascii_lowercase());
        Ok(CargoEnv {
            out_dir: required("OUT_DIR")?,
            package_dir: required("CARGO_MANIFEST_DIR")?,
            docs_rs: var("DOCS_RS").is_some(),
            offline: text("CARGO_NET_OFFLINE").is_some_and(|v| v == "true" || v == "1"),
            locked: text("TRTFARM_LOCKED").and_then(|v| parse_switch(&v)),
            program: var("TRTFARM").filter(|v| !v.is_empty()).map(PathBuf::from),
            path: var("PATH"),
        })
    }
}

fn parse_switch(value: &str) -> Option<bool> {
    match value {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// How this build gets its engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// docs.rs: empty placeholders, no trtfarm.
    Docs,
    /// Only what engine.lock pins, fetched by digest; the reason says who asked.
    Locked(&'static str),
    /// `trtfarm submit`: build what changed, update engine.lock, fetch.
    Submit,
}

/// Picks the mode: docs.rs always gets placeholders; then `TRTFARM_LOCKED` (the person
/// building) wins over `.locked()` (the crate's author), which wins over `CARGO_NET_OFFLINE`
/// (an offline build uses the lock and what is already here).
pub(crate) fn decide(env: &CargoEnv, locked: Option<bool>) -> Mode {
    if env.docs_rs {
        return Mode::Docs;
    }
    match (env.locked, locked) {
        (Some(true), _) => Mode::Locked("TRTFARM_LOCKED is set"),
        (Some(false), _) => Mode::Submit,
        (None, Some(true)) => Mode::Locked("the build script asks for it"),
        (None, Some(false)) => Mode::Submit,
        (None, None) if env.offline => Mode::Locked("CARGO_NET_OFFLINE is set"),
        (None, None) => Mode::Submit,
    }
}

/// `TRTFARM_ENGINE_<PREFIX_><NAME>`: upper case, every character that is not an ASCII letter or
/// digit becomes `_`.
pub fn env_variable(prefix: Option<&str>, engine: &str) -> String {
    let name = match prefix {
        Some(prefix) => format!("{prefix}_{engine}"),
        None => engine.to_string(),
    };
    let name: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' => c.to_ascii_uppercase(),
            _ => '_',
        })
        .collect();
    format!("TRTFARM_ENGINE_{name}")
}

/// Prints one `cargo:` directive. Paths with a newline cannot be said to Cargo at all.
pub(crate) fn directive(key: &str, value: &str) {
    println!("cargo:{key}={}", value.replace('\n', " "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_are_upper_case_with_underscores() {
        assert_eq!(env_variable(None, "fp32"), "TRTFARM_ENGINE_FP32");
        assert_eq!(
            env_variable(None, "fp16-sm8.9"),
            "TRTFARM_ENGINE_FP16_SM8_9"
        );
        assert_eq!(
            env_variable(Some("detector"), "fp16"),
            "TRTFARM_ENGINE_DETECTOR_FP16"
        );
    }

    #[test]
    fn docs_rs_then_the_person_building_then_the_author_then_offline() {
        let env = |docs_rs, offline, locked| CargoEnv {
            docs_rs,
            offline,
            locked,
            ..CargoEnv::default()
        };
        assert_eq!(decide(&env(true, true, Some(false)), None), Mode::Docs);
        assert_eq!(decide(&env(false, false, None), None), Mode::Submit);
        assert_eq!(
            decide(&env(false, true, None), None),
            Mode::Locked("CARGO_NET_OFFLINE is set")
        );
        assert_eq!(decide(&env(false, true, None), Some(false)), Mode::Submit);
        assert_eq!(
            decide(&env(false, false, None), Some(true)),
            Mode::Locked("the build script asks for it")
        );
        assert_eq!(
            decide(&env(false, true, Some(false)), Some(true)),
            Mode::Submit
        );
        assert_eq!(
            decide(&env(false, false, Some(true)), Some(false)),
            Mode::Locked("TRTFARM_LOCKED is set")
        );
        assert_eq!(parse_switch("yes"), Some(true));
        assert_eq!(parse_switch("0"), Some(false));
        assert_eq!(parse_switch("maybe"), None);
    }
}
