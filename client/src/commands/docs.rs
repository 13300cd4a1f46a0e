//! `trtfarm completions|man` (being written).
use std::path::Path;
/// Prints completions.
pub fn completions(_shell: clap_complete::Shell) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
/// Writes man pages.
pub fn man(_dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
