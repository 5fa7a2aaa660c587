//! The drop-in solver against the real modelling tools: runs the pytest suite
//! in `tests/python/` (Pyomo through the AMPL protocol, PuLP through the CBC
//! command line) against real `meshworker` processes.
//!
//! The Python comes from `MESHSOLVE_TEST_PYTHON`; `.ci/run` makes a virtual
//! environment from `tests/python/requirements.txt` and sets it. Without it,
//! a `python3` that has pyomo, pulp and pytest is used; otherwise the test says
//! it did not run (and fails under CI).

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MESHSOLVE_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let ok = Command::new("python3")
        .args(["-c", "import pyomo, pulp, pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("python3"))
}

#[test]
fn pyomo_and_pulp_solve_on_the_mesh() {
    let Some(py) = python() else {
        prerequisite_missing(
            "Pyomo and PuLP tests need a Python with pyomo, pulp and pytest: \
             python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt && \
             MESHSOLVE_TEST_PYTHON=.venv/bin/python cargo test --test python",
        );
        return;
    };
    let bin_dir =
        Path::new(env!("CARGO_BIN_EXE_meshsolve")).parent().expect("binary directory").to_path_buf();
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let out = Command::new(&py)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings"])
        .arg(&suite)
        .env("MESHSOLVE_BIN_DIR", &bin_dir)
        .env_remove("PYRO_NS_HOSTNAME")
        .env_remove("meshsolve_options")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the Python suite failed:\n{text}");
    assert!(text.contains(" passed"), "pytest ran no test:\n{text}");
}
