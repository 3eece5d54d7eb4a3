//! The crate's dependencies point one way: entry -> programs -> wiring ->
//! transport -> render -> config -> domain -> types (see ARCHITECTURE.md).
//! This test reads every source file's `crate::` paths and fails on an import
//! cycle between top-level modules, or on a module using a layer above its own.

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

/// The top-level module a source file belongs to (None for lib.rs and main.rs).
fn owner(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// Every top-level module named after `crate::` in `text`, also inside braces
/// (`use crate::{a, b::c}`), with comments left out.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = owner(&src, &file) else {
            continue;
        };
        // Unit tests may drive the program from its entry (parse a command
        // line, say): the layers bind the code they test, not them.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let uses = graph.entry(module.clone()).or_default();
        for used in crate_paths(text) {
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
fn no_import_cycle_between_top_level_modules() {
    let found = cycles(&graph());
    assert!(
        found.is_empty(),
        "import cycles between top-level modules:\n{}",
        found
            .iter()
            .map(|c| c.join(" -> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
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
