//! Model inputs as a user names them: files, directories (searched
//! recursively for model files, symlink loops detected, each file once) and
//! patterns with `*` and `?` in their last component. Also the `*`/`?` matcher
//! used for variable-name patterns. May import: `model`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::model::Format;

/// Errors expanding inputs.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// An input names nothing.
    #[error("{0}: no such file, directory or matching pattern")]
    Missing(PathBuf),
    /// A directory or pattern holds no model file.
    #[error("{0}: no model files (.lp, .mps, optionally .gz) found")]
    Empty(PathBuf),
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn is_model(p: &Path) -> bool {
    p.is_file() && Format::from_path(p).is_some()
}

/// The model files under `dir`, sorted; symlinks are followed, loops skipped.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        match e {
            Ok(e) if e.file_type().is_file() && is_model(e.path()) => out.push(e.into_path()),
            Ok(_) => {}
            // A symlink loop: walkdir found it and stops there; the models are found once anyway.
            Err(e) if e.loop_ancestor().is_some() => {
                tracing::debug!("skipping a symlink loop: {e}");
            }
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed"));
                return Err(InputError::Io { path, source });
            }
        }
    }
    Ok(out)
}

/// Matches `name` against a pattern with `*` and `?`.
pub fn glob_match(pat: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pat.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Expands files, directories (recursively, model files only) and patterns
/// with `*`/`?` in their last component, keeping the order given. A file
/// reached twice (two inputs, or a symlink to a file already found) is kept
/// once, under the first name it was found by.
///
/// # Errors
/// [`InputError::Missing`] for an input that names nothing, [`InputError::Empty`]
/// for a directory or pattern without model files, [`InputError::Io`] when a
/// directory cannot be read.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for input in inputs {
        let text = input.to_string_lossy();
        let found: Vec<PathBuf> = if input.is_file() {
            vec![input.clone()]
        } else if input.is_dir() {
            let f = walk(input)?;
            if f.is_empty() {
                return Err(InputError::Empty(input.clone()));
            }
            f
        } else if text.contains(['*', '?']) {
            let f = pattern(input)?;
            if f.is_empty() {
                return Err(InputError::Missing(input.clone()));
            }
            f
        } else {
            return Err(InputError::Missing(input.clone()));
        };
        for p in found {
            let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if seen.insert(key) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// The files matching a pattern in its last component, sorted.
fn pattern(input: &Path) -> Result<Vec<PathBuf>, InputError> {
    let bare = input.parent().is_some_and(|d| d.as_os_str().is_empty());
    let dir = input.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let pat = input.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut found = Vec::new();
    if dir.is_dir() {
        let entries =
            std::fs::read_dir(dir).map_err(|source| InputError::Io { path: dir.to_path_buf(), source })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() && glob_match(&pat, &e.file_name().to_string_lossy()) {
                found.push(if bare { PathBuf::from(e.file_name()) } else { p });
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.lp", "a.lp"));
        assert!(glob_match("run?-*.mps.gz", "run1-x.mps.gz"));
        assert!(!glob_match("*.lp", "a.mps"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn expands_dirs_patterns_and_dedupes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.lp"), "min: x;\nend\n").unwrap();
        std::fs::write(d.path().join("b.mps.gz"), "").unwrap();
        std::fs::write(d.path().join("notes.txt"), "").unwrap();
        let all = expand_inputs(&[d.path().to_path_buf(), d.path().join("*.lp")]).unwrap();
        assert_eq!(all.len(), 2);
        assert!(matches!(expand_inputs(&[d.path().join("nope.lp")]), Err(InputError::Missing(_))));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(expand_inputs(&[empty.path().to_path_buf()]), Err(InputError::Empty(_))));
    }

    #[test]
    fn symlink_loops_and_aliases_find_each_model_once() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("models");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.lp"), "min: x;\nend\n").unwrap();
        std::os::unix::fs::symlink(d.path(), sub.join("loop")).unwrap();
        std::os::unix::fs::symlink(sub.join("a.lp"), sub.join("alias.lp")).unwrap();
        let all = expand_inputs(&[d.path().to_path_buf(), sub.clone()]).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
    }
}
