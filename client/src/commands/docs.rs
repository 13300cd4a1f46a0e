//! `trtfarm completions|man`: shell completions and man pages, generated from the clap
//! definitions so they never drift from the real flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "trtfarm", &mut std::io::stdout());
    Ok(())
}

/// Writes `trtfarm.1` and one page per subcommand (`trtfarm-daemon-start.1`, ...) into `dir`,
/// and lists what it wrote.
pub fn man(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut command = Cli::command();
    // Propagates the global flags into every subcommand, so each page lists them.
    command.build();
    for path in write_pages(&command, "trtfarm", dir)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the page of `command` (named `name`) and, recursively, of its visible subcommands.
fn write_pages(command: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    // clap names are `'static`; a handful of short strings, once per run.
    let title: &'static str = Box::leak(name.to_string().into_boxed_str());
    let page = command.clone().name(title).bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut text)
        .with_context(|| format!("cannot render the man page of `{name}`"))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let mut written = vec![path];
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        written.extend(write_pages(sub, &sub_name, dir)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_page_with_its_flags() {
        let dir = tempfile::tempdir().unwrap();
        man(dir.path()).unwrap();
        for page in [
            "trtfarm.1",
            "trtfarm-fetch.1",
            "trtfarm-daemon.1",
            "trtfarm-daemon-status.1",
            "trtfarm-farm.1",
        ] {
            assert!(dir.path().join(page).is_file(), "{page} is missing");
        }
        assert!(!dir.path().join("trtfarm-help.1").exists());
        let status = std::fs::read_to_string(dir.path().join("trtfarm-daemon-status.1")).unwrap();
        assert!(status.contains("json"), "its own flag");
        assert!(status.contains("daemon\\-dir"), "the global flags");
    }
}
