//! The crate's layering, read from its sources: the stack engine (graph, executor, plan, the
//! typed run) imports nothing of the Kubernetes engine, and no file of the crate takes part in
//! an import cycle (`use crate::..`/`super::..` edges between files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The files of the stack engine, which must not import `k8s`.
const STACK_ENGINE: &[&str] = &[
    "context", "events", "executor", "graph", "handle", "layout", "module", "output", "plan",
    "report", "run", "stack", "step",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `k8s/run.rs` → `k8s::run`, `k8s/mod.rs` → `k8s`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    parts.join("::")
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths after `prefix` (`crate::`, `super::`) in `code`, as `a::b::c`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            // `super::` inside a longer identifier is not a path
            *i == 0 || !code.as_bytes()[i - 1].is_ascii_alphanumeric()
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| {
                    !(c.is_ascii_lowercase() || c == '_' || c == ':' || c.is_ascii_digit())
                })
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches(':')
        })
        .collect()
}

/// File → the files it imports.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&root, f)).collect();
    // the longest prefix of `path` that is a file's module
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|m| modules.contains(m))
    };
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&root, file);
        let code = code(&std::fs::read_to_string(file).unwrap());
        let parent = module.rsplit_once("::").map(|(p, _)| p.to_owned());
        let mut deps = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            deps.extend(resolve(path));
        }
        for path in paths_after(&code, "super::") {
            let full = match &parent {
                Some(p) => format!("{p}::{path}"),
                None => path.to_owned(),
            };
            deps.extend(resolve(&full).or_else(|| parent.clone()));
        }
        deps.remove(&module);
        deps.remove("");
        graph.insert(module, deps);
    }
    graph
}

#[test]
fn the_stack_engine_imports_nothing_of_the_kubernetes_engine() {
    let graph = imports();
    for file in STACK_ENGINE {
        let deps = graph
            .get(*file)
            .unwrap_or_else(|| panic!("no file {file}.rs"));
        let k8s: Vec<&String> = deps
            .iter()
            .filter(|d| *d == "k8s" || d.starts_with("k8s::"))
            .collect();
        assert!(k8s.is_empty(), "{file}.rs imports {k8s:?}");
    }
}

#[test]
fn no_file_of_the_crate_is_in_an_import_cycle() {
    let graph = imports();
    // every file reachable from each file; a file that reaches itself is in a cycle
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        let mut path_back = None;
        while let Some(m) = todo.pop() {
            if m == start {
                path_back = Some(m);
                break;
            }
            if seen.insert(m) {
                todo.extend(graph.get(m).into_iter().flatten());
            }
        }
        if path_back.is_some() {
            cycles.push(start.clone());
        }
    }
    assert!(
        cycles.is_empty(),
        "files in an import cycle: {cycles:?}\n{:#?}",
        cycles.iter().map(|c| (c, &graph[c])).collect::<Vec<_>>()
    );
}
