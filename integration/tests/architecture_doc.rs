//! `docs/architecture.md` matches the tree: every path it names exists, and it names every
//! workspace crate and every stage directory of the daemon.

use std::path::Path;

use integration::repo_root;

fn page() -> String {
    std::fs::read_to_string(repo_root().join("docs/architecture.md")).expect("read the page")
}

/// The `backticked` words of `text` that look like paths in the repository.
fn named_paths(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.contains('/') && !word.contains(' ') && !word.contains("://"))
        .collect()
}

#[test]
fn every_path_the_page_names_exists() {
    let page = page();
    let paths = named_paths(&page);
    assert!(paths.len() > 40, "only {} paths found", paths.len());
    let missing: Vec<&str> = paths
        .into_iter()
        .filter(|path| !repo_root().join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md names {missing:?}, which do not exist"
    );
}

#[test]
fn the_page_names_every_crate_and_every_daemon_stage() {
    let page = page();
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("the workspace lists its members");
    for member in members.split(',').map(|m| m.trim().trim_matches('"')) {
        if member.is_empty() {
            continue;
        }
        assert!(
            page.contains(&format!("`{member}/`")),
            "docs/architecture.md does not describe the crate `{member}/`"
        );
    }
    let daemon = repo_root().join("daemon/src");
    for entry in std::fs::read_dir(&daemon).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            let dir = Path::new("daemon/src").join(entry.file_name());
            assert!(
                page.contains(&format!("`{}/`", dir.display())),
                "docs/architecture.md does not describe `{}/`",
                dir.display()
            );
        }
    }
}

#[test]
fn paths_are_found_between_backticks_only() {
    let text = "see `daemon/src/serve/` and `a b/c` or `https://x/y`, not daemon/src/x.rs";
    assert_eq!(named_paths(text), vec!["daemon/src/serve/"]);
}
