//! Every input a manifest names stays inside its project: the nearest directory above the
//! manifest with `.git`, else the manifest's own directory. `..` and symbolic links are
//! followed by `check_inputs` and refused when they lead out; inside, they are fine. (`output`
//! has no `..` at all: see invalid.rs.)

#![cfg(unix)]

use std::os::unix::fs::symlink;
use std::path::Path;

use manifest_schema::{Diagnostic, Manifest, parse};

/// `root/project/engine.toml` naming `model` and `plugin`; `root/outside/` beside the project.
struct Layout {
    _dir: tempfile::TempDir,
    project: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn layout() -> Layout {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let outside = dir.path().join("outside");
    for d in [&project, &outside, &project.join("models")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(outside.join("m.onnx"), b"model").unwrap();
    std::fs::write(outside.join("p.so"), b"plugin").unwrap();
    std::fs::write(project.join("models/real.onnx"), b"model").unwrap();
    std::fs::write(project.join("p.so"), b"plugin").unwrap();
    Layout {
        _dir: dir,
        project,
        outside,
    }
}

fn manifest(layout: &Layout, model: &str, plugin: &str) -> Manifest {
    let text = format!(
        "schema_version = 1\n[model]\npath = \"{model}\"\nplugins = [\"{plugin}\"]\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n"
    );
    parse(&text, &layout.project.join("engine.toml")).unwrap()
}

fn only(found: Vec<Diagnostic>) -> Diagnostic {
    assert_eq!(found.len(), 1, "{found:#?}");
    found.into_iter().next().unwrap()
}

#[test]
fn a_symlink_that_stays_inside_is_fine() {
    let l = layout();
    symlink("models/real.onnx", l.project.join("link.onnx")).unwrap();
    symlink("models", l.project.join("alias")).unwrap();
    assert_eq!(manifest(&l, "link.onnx", "p.so").check_inputs(), vec![]);
    assert_eq!(
        manifest(&l, "alias/real.onnx", "p.so").check_inputs(),
        vec![]
    );
}

#[test]
fn a_model_symlinked_from_outside_is_refused_at_its_path() {
    let l = layout();
    symlink(l.outside.join("m.onnx"), l.project.join("m.onnx")).unwrap();
    let d = only(manifest(&l, "m.onnx", "p.so").check_inputs());
    assert_eq!((d.line, d.column), (3, 8));
    assert!(
        d.message.starts_with("model `")
            && d.message.contains("resolves to")
            && d.message.contains("outside/m.onnx")
            && d.message.contains("outside the project"),
        "{d:#?}"
    );
    let hint = d.hint.unwrap_or_default();
    assert!(hint.contains("holds `.git`"), "{hint}");
}

#[test]
fn a_directory_symlinked_from_outside_is_refused_too() {
    let l = layout();
    symlink(&l.outside, l.project.join("shared")).unwrap();
    let d = only(manifest(&l, "shared/m.onnx", "p.so").check_inputs());
    assert!(d.message.contains("outside the project"), "{d:#?}");
}

#[test]
fn a_plugin_symlinked_from_outside_is_refused_at_its_path() {
    let l = layout();
    symlink("../outside/p.so", l.project.join("evil.so")).unwrap();
    let d = only(manifest(&l, "models/real.onnx", "evil.so").check_inputs());
    assert_eq!((d.line, d.column), (4, 12));
    assert!(
        d.message.starts_with("plugin `") && d.message.contains("outside/p.so"),
        "{d:#?}"
    );
}

#[test]
fn outside_root_resolves_both_sides() {
    let l = layout();
    // The manifest is reached through a symlinked directory: its root is where it really is.
    let alias = l.project.parent().unwrap().join("alias");
    symlink(&l.project, &alias).unwrap();
    let text = "schema_version = 1\n[model]\npath = \"models/real.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n";
    let m = parse(text, &alias.join("engine.toml")).unwrap();
    assert_eq!(m.check_inputs(), vec![]);
    assert_eq!(
        m.outside_root(Path::new(&l.outside.join("m.onnx")))
            .unwrap(),
        Some(std::fs::canonicalize(l.outside.join("m.onnx")).unwrap())
    );
}

#[test]
fn a_shared_model_above_the_manifest_is_fine_inside_a_repository_and_refused_outside_one() {
    let l = layout();
    // No `.git` above: the project is the manifest's directory, and `..` leads out of it.
    let d = only(manifest(&l, "../outside/m.onnx", "p.so").check_inputs());
    assert_eq!((d.line, d.column), (3, 8));
    assert!(d.message.contains("outside the project"), "{d:#?}");
    // A repository around both: models shared by several manifests are inside it.
    std::fs::create_dir(l.project.parent().unwrap().join(".git")).unwrap();
    assert_eq!(
        manifest(&l, "../outside/m.onnx", "../outside/p.so").check_inputs(),
        vec![]
    );
    let m = manifest(&l, "models/real.onnx", "p.so");
    assert_eq!(
        m.root().unwrap(),
        std::fs::canonicalize(l.project.parent().unwrap()).unwrap()
    );
}
