//! The crate's dependencies point one way: entry -> programs -> wiring ->
//! transport -> render -> config -> domain -> types (see ARCHITECTURE.md).
//! This test reads every source file's `crate::` and `super::` paths and fails
//! on an import cycle between top-level modules, on one between the files of
//! one module (`simulate/fleet.rs` <-> `simulate/model.rs`, say), or on a
//! module using a layer above its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may use its own layer's modules
/// and every layer below it (a smaller number).
const LAYERS: &[(&str, u8)] = &[
    ("level", 0),
    ("clock", 0),
    ("settings", 0),
    ("repeats", 0),
    ("feedback", 1),
    ("control", 1),
    ("rate", 1),
    ("replicas", 1),
    ("autoscale", 1),
    ("telemetry", 1),
    ("engine", 1),
    ("store_queue", 1),
    ("options", 2),
    ("config", 2),
    ("export", 3),
    ("http", 4),
    ("service", 5),
    ("demo", 6),
    ("simulate", 6),
    ("cli", 7),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` without its `//` comments.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The path that starts `text` (`a::b::{c::d, e}`), as its segments, one
/// path per item of a brace group; a nested group or a glob ends a path.
fn segments(text: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut rest = text.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        segments(&group[item_start..i], &path, out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        segments(&group[item_start..i], &path, out);
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let name = identifier(rest);
        if name == "self" {
            break;
        }
        if name.is_empty() {
            break;
        }
        path.push(name.to_owned());
        rest = &rest[name.len()..];
        match rest.strip_prefix("::") {
            Some(after) => rest = after.trim_start(),
            None => break,
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// Every path in `text` that starts at `crate::` or `super::`, as segments
/// (`crate`/`super` kept), with brace groups expanded and comments left out.
fn rooted_paths(text: &str) -> Vec<Vec<String>> {
    let code = code(text);
    let mut found = Vec::new();
    for (i, _) in code.char_indices() {
        let rest = &code[i..];
        if !(rest.starts_with("crate::") || rest.starts_with("super::")) {
            continue;
        }
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        segments(rest, &[], &mut found);
    }
    found
}

/// Every top-level module named after `crate::` in `text`, also inside braces
/// (`use crate::{a, b::c}`), with comments left out.
fn crate_paths(text: &str) -> BTreeSet<String> {
    rooted_paths(text)
        .into_iter()
        .filter(|path| path[0] == "crate")
        .filter_map(|path| path.get(1).cloned())
        .collect()
}

/// The module path of a source file relative to `src` (`simulate/fleet.rs`
/// is `simulate::fleet`, `export/grafana/mod.rs` is `export::grafana`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .map(|c| c.strip_suffix(".rs").unwrap_or(c).to_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    if path.len() == 1 && (path[0] == "lib" || path[0] == "main") {
        path.clear();
    }
    path
}

/// `path` as seen from the module `from`: `super::` climbs, `crate::` starts at the root.
fn resolve(from: &[String], path: &[String]) -> Option<Vec<String>> {
    if path[0] == "crate" {
        return Some(path[1..].to_vec());
    }
    let ups = path.iter().take_while(|s| *s == "super").count();
    let base = from.len().checked_sub(ups)?;
    Some(from[..base].iter().chain(&path[ups..]).cloned().collect())
}

/// The import graph between the files (or folders) directly inside each
/// top-level module, nodes named `module::file`. A module's root (`mod.rs`)
/// declares and re-exports its files, so it is not a node; a name it
/// re-exports (`pub use fleet::Fleet`) counts as the file it comes from.
fn inner_graph(files: &[(PathBuf, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let paths: Vec<Vec<String>> = files.iter().map(|(f, _)| module_path(f)).collect();
    let children: BTreeSet<(String, String)> = paths
        .iter()
        .filter(|p| p.len() >= 2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let mut reexports: BTreeMap<(String, String), String> = BTreeMap::new();
    for ((_, text), from) in files.iter().zip(&paths) {
        if from.len() != 1 {
            continue;
        }
        let code = code(text);
        let mut uses = Vec::new();
        for (i, _) in code.match_indices("pub use ") {
            segments(&code[i + "pub use ".len()..], &[], &mut uses);
        }
        for path in uses {
            let child = (from[0].clone(), path[0].clone());
            if path.len() >= 2 && children.contains(&child) {
                let name = path.last().cloned().unwrap_or_default();
                reexports.insert((from[0].clone(), name), path[0].clone());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((_, text), from) in files.iter().zip(&paths) {
        if from.len() < 2 {
            continue;
        }
        let node = format!("{}::{}", from[0], from[1]);
        let uses = graph.entry(node).or_default();
        for path in rooted_paths(text) {
            let Some(target) = resolve(from, &path) else {
                continue;
            };
            if target.len() < 2 || target[0] != from[0] {
                continue;
            }
            let key = (target[0].clone(), target[1].clone());
            let child = if children.contains(&key) {
                target[1].clone()
            } else if let Some(child) = reexports.get(&key) {
                child.clone()
            } else {
                continue;
            };
            if child != from[1] {
                uses.insert(format!("{}::{child}", from[0]));
            }
        }
    }
    graph
}

/// Every source file under `src` with its text relative to `src`, without unit
/// tests: the layers bind the code they test, not them (a test may drive the
/// program from its entry, parse a command line say).
fn sources() -> Vec<(PathBuf, String)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|file| file.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("readable source");
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            let relative = file.strip_prefix(&src).expect("under src").to_path_buf();
            (relative, text.to_owned())
        })
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in sources() {
        let Some(module) = module_path(&file).first().cloned() else {
            continue;
        };
        let uses = graph.entry(module.clone()).or_default();
        for used in crate_paths(&text) {
            if used != module {
                uses.insert(used);
            }
        }
    }
    graph
}

/// The cycles of `graph`, each as the path that closes it.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            found.push(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn the_reader_finds_every_kind_of_crate_path() {
    let text = "use crate::clock::Clock;\nuse crate::{level::Level, rate};\n// crate::http in a comment\nlet x = crate::telemetry::X;";
    let found: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(found, ["clock", "level", "rate", "telemetry"]);
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "a"]]);
}

#[test]
fn the_reader_follows_super_and_brace_groups() {
    let text = "use super::{fleet::Fleet, model::{self, Run}};\nlet n = super::super::level::Level::Ok;\nuse crate::simulate::plot::*;";
    let found = rooted_paths(text);
    let strings: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        strings,
        [
            "super::fleet::Fleet",
            "super::model",
            "super::model::Run",
            "super::super::level::Level::Ok",
            "crate::simulate::plot",
        ]
    );
    let from = module_path(Path::new("simulate/fleet.rs"));
    assert_eq!(
        resolve(&from, &found[3]),
        Some(vec!["level".into(), "Level".into(), "Ok".into()])
    );
}

/// A small in-memory module whose files import each other, once through
/// `super::` and once through `crate::`: the check reports that cycle and no
/// other, and leaves the module root and a one-way use alone.
#[test]
fn the_file_check_finds_a_cycle_inside_one_module() {
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_owned());
    let files = [
        file("lib.rs", "pub mod sim; pub mod other;"),
        file(
            "sim/mod.rs",
            "mod a; mod b; mod c; mod d;\npub use d::{D, E};\npub struct Error;",
        ),
        file(
            "sim/a.rs",
            "use super::b::B;\nuse super::Error;\npub struct A;",
        ),
        file("sim/b.rs", "use crate::sim::{a::A, c};\npub struct B;"),
        file("sim/c.rs", "use crate::other::a::X; pub fn c() {}"),
        file(
            "sim/d.rs",
            "pub struct D; pub struct E; fn f() { super::c::c() }",
        ),
        file("sim/e.rs", "use super::E;"),
        file("other/mod.rs", "pub mod a; pub mod b;"),
        file("other/a.rs", "pub struct X;"),
        file("other/b.rs", "use super::a::X;"),
    ];
    let graph = inner_graph(&files);
    assert_eq!(
        graph["sim::b"],
        BTreeSet::from(["sim::a".to_owned(), "sim::c".to_owned()])
    );
    assert!(
        graph["sim::c"].is_empty(),
        "another module's file is not a sibling"
    );
    assert_eq!(graph["sim::a"], BTreeSet::from(["sim::b".to_owned()]));
    assert_eq!(
        graph["sim::e"],
        BTreeSet::from(["sim::d".to_owned()]),
        "a name the root re-exports counts as its file"
    );
    assert_eq!(cycles(&graph), vec![vec!["sim::a", "sim::b", "sim::a"]]);
}

#[test]
fn no_import_cycle_between_top_level_modules_or_files_of_one_module() {
    let mut report = Vec::new();
    for (what, graph) in [
        ("top-level modules", graph()),
        ("the files of one module", inner_graph(&sources())),
    ] {
        for cycle in cycles(&graph) {
            report.push(format!("between {what}: {}", cycle.join(" -> ")));
        }
    }
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn every_module_uses_only_its_layer_and_those_below() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        let Some(own) = layer(module) else {
            wrong.push(format!("{module}: no layer (add it to LAYERS)"));
            continue;
        };
        for used in uses {
            match layer(used) {
                Some(theirs) if theirs <= own => {}
                Some(theirs) => wrong.push(format!(
                    "{module} (layer {own}) uses {used} (layer {theirs})"
                )),
                None => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
