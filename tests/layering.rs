//! The module graph of every crate reads one way: no module reaches (through `crate::`
//! or `super::` paths in its code) a module that reaches back to it, and neither does a
//! top-level folder of modules (`checkpoint/` may use `sys/`, then `sys/` uses nothing
//! of `checkpoint/`). `lib.rs` is left out: it only declares modules and re-exports them;
//! a path through a folder's re-export (`crate::image::publish`, re-exported by
//! `image/mod.rs` from `image::publish`) counts as a use of the module it comes from.
//!
//! A textual scan, not a compiler pass: it reads the code outside comments and outside
//! a file's trailing `#[cfg(test)] mod tests`, which may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const CRATES: [&str; 6] = [
    "src",
    "crac-shared/src",
    "crac-core/src",
    "crac-derive/src",
    "crac-criu/src",
    "crac-cli/src",
];

#[test]
fn no_crate_has_an_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cycles = Vec::new();
    for krate in CRATES {
        let modules = modules(&root.join(krate));
        let reexports = reexports(&modules);
        let graph: BTreeMap<String, BTreeSet<String>> = modules
            .iter()
            .map(|(name, code)| (name.clone(), references(name, code, &modules, &reexports)))
            .collect();
        let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, tos) in &graph {
            let top = |m: &str| m.split("::").next().unwrap_or(m).to_string();
            let entry = folders.entry(top(from)).or_default();
            entry.extend(tos.iter().map(|to| top(to)).filter(|to| *to != top(from)));
        }
        for (level, graph) in [("modules", &graph), ("folders", &folders)] {
            cycles.extend(
                find_cycle(graph).map(|cycle| format!("{krate} ({level}): {}", cycle.join(" -> "))),
            );
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Two types of one crate never share a name (issue: two `Ranked`s, two `Kind`s): the
/// name alone tells which is meant. Module-level types of every module but the crate
/// root (which only declares and re-exports), outside unit tests; associated types are
/// not items of their own.
#[test]
fn no_two_types_of_a_crate_share_a_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut shared = Vec::new();
    for krate in CRATES {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (module, code) in modules(&root.join(krate)) {
            for line in code.lines() {
                let Some(name) = type_declared(line) else {
                    continue;
                };
                if let Some(first) = seen.insert(name.clone(), module.clone()) {
                    shared.push(format!("{krate}: `{name}` in {first} and {module}"));
                }
            }
        }
    }
    assert!(
        shared.is_empty(),
        "types sharing a name:\n{}",
        shared.join("\n")
    );
}

/// The type a line declares at module level (`struct`, `enum`, `union`, `trait` or
/// `type`, with any visibility, `unsafe` or not), if it does.
fn type_declared(line: &str) -> Option<String> {
    if line.starts_with(' ') {
        return None; // inside an impl, trait or function
    }
    let mut words = line
        .split_whitespace()
        .skip_while(|w| w.starts_with("pub") || *w == "unsafe");
    let keyword = words.next()?;
    if !["struct", "enum", "union", "trait", "type"].contains(&keyword) {
        return None;
    }
    let name: String = words
        .next()?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Module path (`a::b`) → its code, for every file under `dir` but the crate root.
fn modules(dir: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(dir).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|last| last == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            found.insert(
                parts.join("::"),
                code_of(&std::fs::read_to_string(&path).unwrap()),
            );
        }
    }
    found
}

/// The code of a file: comments and its trailing unit-test module removed.
fn code_of(text: &str) -> String {
    let body = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    body.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(module, item)` → the child module a folder's `mod.rs` re-exports `item` from.
type Reexports = BTreeMap<(String, String), String>;

fn reexports(modules: &BTreeMap<String, String>) -> Reexports {
    let mut found = Reexports::new();
    for (name, code) in modules {
        for prefix in ["pub(crate) use ", "pub use "] {
            let mut rest = code.as_str();
            while let Some(at) = rest.find(prefix) {
                rest = &rest[at + prefix.len()..];
                let mut paths = Vec::new();
                expand(name, rest, &mut paths);
                for path in paths {
                    let item = path.rsplit("::").next().unwrap_or(&path).to_string();
                    if let Some(child) = owning_module(&path, modules).filter(|c| c != name) {
                        found.insert((name.clone(), item), child);
                    }
                }
            }
        }
    }
    found
}

/// The other modules `code` (of module `name`) refers to.
fn references(
    name: &str,
    code: &str,
    modules: &BTreeMap<String, String>,
    reexports: &Reexports,
) -> BTreeSet<String> {
    let parent: Vec<&str> = name.split("::").collect();
    let parent = parent[..parent.len() - 1].join("::");
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let preceded = rest[..at].chars().next_back();
            rest = &rest[at + prefix.len()..];
            if preceded.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `self::super::`, `foo_crate::`: not ours
            }
            expand(&base, rest, &mut paths);
        }
    }
    paths
        .iter()
        .filter_map(|path| {
            let module = owning_module(path, modules)?;
            let item = path[module.len()..]
                .trim_start_matches(':')
                .split("::")
                .next();
            Some(
                match item.and_then(|i| reexports.get(&(module.clone(), i.to_string()))) {
                    Some(origin) => origin.clone(),
                    None => module,
                },
            )
        })
        .filter(|module| module != name)
        .collect()
}

/// Appends the paths starting at `rest` (a path, or a `{...}` group of them) under `base`.
fn expand(base: &str, rest: &str, out: &mut Vec<String>) {
    let join = |segment: &str| {
        if base.is_empty() {
            segment.to_string()
        } else {
            format!("{base}::{segment}")
        }
    };
    let head: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let after = &rest[head.len()..];
    let head = head.trim_end_matches(':');
    if after.starts_with('{') || head.is_empty() && rest.starts_with('{') {
        let group = &after[1..];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&join(head), group[start..i].trim(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&join(head), group[start..i].trim(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
    } else if !head.is_empty() {
        out.push(join(head));
    }
}

/// The longest module path that `path` starts with.
fn owning_module(path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
}

/// One cycle of the graph, if it has any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_scan_sees_grouped_nested_and_parent_paths() {
    let modules: BTreeMap<String, String> = ["a", "b", "c", "d::e", "d::f"]
        .map(|m| (m.to_string(), String::new()))
        .into();
    let code = "use crate::{a::X, b, d::{e::Y}};\nlet x = super::f::g();\nlet y = crate::c::Z;";
    assert_eq!(
        references("d::e", code, &modules, &Reexports::new()),
        ["a", "b", "c", "d::f"].map(String::from).into()
    );
    let folder: BTreeMap<String, String> =
        [("d", "pub(crate) use e::{Y, Z};"), ("d::e", ""), ("a", "")]
            .map(|(m, code)| (m.to_string(), code.to_string()))
            .into();
    let reexported = reexports(&folder);
    assert_eq!(
        references("a", "use crate::d::Z;", &folder, &reexported),
        ["d::e".to_string()].into()
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "a"]);
}
