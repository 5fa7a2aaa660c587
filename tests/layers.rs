//! The crate's layering, as `src/lib.rs` writes it down, checked against the
//! imports in `src/`: a module may import only modules of a lower layer, so
//! no cycle between top-level modules can exist. Fails on any import against
//! the rule, and when the table and the module list disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rows `//! | N | `name` | ... |` of the layout table in `lib.rs`.
fn layers(lib: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else { continue };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.len() < 2 {
            continue;
        }
        if let (Ok(layer), Some(name)) =
            (cells[0].parse::<u32>(), cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')))
        {
            out.insert(name.to_string(), layer);
        }
    }
    out
}

/// Top-level modules declared in `lib.rs`.
fn declared(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            rust_files(&p, out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Crate modules named by `crate::NAME` in code (not comments, not unit tests).
fn imports(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let line = line.split(" //").next().unwrap_or(line);
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                out.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b}` groups.
        if let Some(group) =
            line.strip_prefix("use crate::{").or_else(|| line.strip_prefix("pub use crate::{"))
        {
            for part in group.split([',', '}']) {
                let name: String =
                    part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn imports_follow_the_layout_in_lib_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let layers = layers(&lib);
    let declared = declared(&lib);
    let table: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(table, declared, "the layout table in lib.rs and its `mod` lines must list the same modules");
    let mut wrong = Vec::new();
    for (module, &layer) in &layers {
        let mut files = Vec::new();
        rust_files(&src.join(format!("{module}.rs")), &mut files);
        rust_files(&src.join(module), &mut files);
        assert!(!files.is_empty(), "module `{module}` has no file under src/");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for used in imports(&text) {
                if used == *module {
                    continue;
                }
                match layers.get(&used) {
                    Some(&l) if l < layer => {}
                    Some(&l) => wrong.push(format!(
                        "{}: `{module}` (layer {layer}) imports `{used}` (layer {l}); only lower layers may be imported",
                        f.strip_prefix(&src).unwrap_or(&f).display()
                    )),
                    None => wrong.push(format!(
                        "{}: `{module}` imports `crate::{used}`, which is not in lib.rs's layout table",
                        f.strip_prefix(&src).unwrap_or(&f).display()
                    )),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering rule:\n  {}", wrong.join("\n  "));
}

#[test]
fn the_checker_sees_imports() {
    let text = "use crate::model::Model;\nuse crate::{protocol, solver::Solution};\n// crate::ignored\nlet x = crate::client::Mesh::new();\n#[cfg(test)]\nmod tests {\n use crate::worker;\n}\n";
    let got: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(got, ["client", "model", "protocol", "solver"]);
}
