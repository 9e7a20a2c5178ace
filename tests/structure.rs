//! The shape of src/ that the architecture promises, checked on every run:
//! no import cycle among its files (data flows one way), no file over 900
//! lines, and `unsafe` only in src/kernel/. These are read from the source
//! text, as a newcomer would read it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a file in src/ may grow before it is split by concern.
const MAX_LINES: usize = 900;

/// A module path (`["dump", "files"]`) and the file that holds it.
type Modules = BTreeMap<Vec<String>, PathBuf>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("read src/ entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every file of src/ by its module path (mod.rs and lib.rs name their
/// folder's module).
fn modules() -> Modules {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut segs: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
                segs.pop();
            }
            (segs, path)
        })
        .collect()
}

/// The source without comments and with string and char literals emptied,
/// so that neither a doc line nor a message counts as code.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat(b'#').take(hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                out.push_str("\"\"");
                i = j + close.len();
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                i += 1;
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal ('x' or '\n'); a lifetime has no closing quote.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                out.push_str("' '");
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand_use)
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches(':').to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The byte spans of the inline modules (`mod tests { ... }`) in `code`:
/// inside one, `super` names the file's own module.
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("mod ") {
        let start = from + at;
        from = start + 4;
        if start > 0 && is_ident(b[start - 1] as char) {
            continue;
        }
        let name_end = code[from..]
            .find(|c: char| !is_ident(c))
            .map_or(code.len(), |n| from + n);
        let after = code[name_end..].trim_start();
        if !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        let mut end = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        spans.push((open, end));
    }
    spans
}

/// Every path a file names: its `use` trees and the `crate::`, `super::`,
/// `self::` and child-module paths in its code.
fn named_paths(code: &str, here: &[String], files: &Modules) -> Vec<Vec<String>> {
    let inline = inline_modules(code);
    // The module a position of the file is in, inline modules included.
    let module_at = |pos: usize| {
        let depth = inline
            .iter()
            .filter(|(s, e)| (*s..*e).contains(&pos))
            .count();
        let mut m = here.to_vec();
        m.extend(std::iter::repeat(String::from("{inline}")).take(depth));
        m
    };
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("use ") {
        let start = from + at;
        from = start + 4;
        if code[..start].chars().last().is_some_and(is_ident) {
            continue;
        }
        let end = code[from..].find(';').map_or(code.len(), |n| from + n);
        for path in expand_use(&code[from..end]) {
            paths.push((path, start));
        }
    }
    // Inline paths: runs of `ident::ident::...`.
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        let prev = if i == 0 { ' ' } else { b[i - 1] as char };
        if is_ident(c) && !(is_ident(prev) || prev == ':') {
            let start = i;
            while i < b.len() && (is_ident(b[i] as char) || b[i] == b':') {
                i += 1;
            }
            if code[start..i].contains("::") {
                paths.push((code[start..i].to_string(), start));
            }
        } else {
            i += 1;
        }
    }
    paths
        .iter()
        .filter_map(|(p, pos)| absolute(p, &module_at(*pos), files))
        .collect()
}

/// The module path a path names, seen from module `here`; None for paths
/// outside the crate.
fn absolute(path: &str, here: &[String], files: &Modules) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let first = *segs.first()?;
    match first {
        "crate" => Some(segs[1..].iter().map(|s| s.to_string()).collect()),
        "super" | "self" => {
            let mut cur = here.to_vec();
            let mut k = 0;
            while k < segs.len() && matches!(segs[k], "super" | "self") {
                if segs[k] == "super" {
                    cur.pop();
                }
                k += 1;
            }
            cur.extend(segs[k..].iter().map(|s| s.to_string()));
            Some(cur)
        }
        child => {
            let mut cur = here.to_vec();
            cur.push(child.to_string());
            if files.contains_key(&cur) {
                cur.extend(segs[1..].iter().map(|s| s.to_string()));
                Some(cur)
            } else {
                None
            }
        }
    }
}

/// The file (module) a module path falls in: its longest prefix that is one.
fn resolve(path: &[String], files: &Modules) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        found: Vec<Vec<Vec<String>>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.edges[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    comp.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    self.found.push(comp);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn src_files_import_each_other_one_way() {
    let files = modules();
    let mut edges = BTreeMap::new();
    for (module, path) in &files {
        let code = code_only(&fs::read_to_string(path).unwrap());
        let targets: BTreeSet<Vec<String>> = named_paths(&code, module, &files)
            .iter()
            .filter_map(|p| resolve(p, &files))
            .filter(|t| t != module)
            .collect();
        edges.insert(module.clone(), targets);
    }
    let found = cycles(&edges);
    let text: Vec<String> = found
        .iter()
        .map(|comp| {
            let names: Vec<String> = comp
                .iter()
                .map(|m| {
                    files[m]
                        .strip_prefix(src_dir())
                        .unwrap()
                        .display()
                        .to_string()
                })
                .collect();
            names.join(" <-> ")
        })
        .collect();
    assert!(text.is_empty(), "import cycles in src/: {text:#?}");
}

#[test]
fn no_src_file_is_over_900_lines() {
    let long: Vec<String> = modules()
        .values()
        .filter_map(|path| {
            let lines = fs::read_to_string(path).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

#[test]
fn unsafe_code_lives_only_in_the_kernel_module() {
    let kernel = src_dir().join("kernel");
    let outside: Vec<String> = modules()
        .values()
        .filter(|path| !path.starts_with(&kernel))
        .filter(|path| {
            let code = code_only(&fs::read_to_string(path).unwrap());
            code.split(|c: char| !is_ident(c)).any(|w| w == "unsafe")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "unsafe outside src/kernel/: {outside:?}"
    );
}
