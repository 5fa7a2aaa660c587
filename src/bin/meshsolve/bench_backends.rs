//! `meshsolve bench --backends [DIR]`: what each solver back-end costs above the
//! solver itself. Per back-end this box has and per model, the time a worker's
//! solver child spends (read the model, hand it to the solver, read the answer
//! back) against running the same solver by hand on the same model (its own
//! command line, or five lines of its Python API), in the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use meshsolve::model;
use meshsolve::solver::{self, Available, Backend, Kind, SolveOptions};

use crate::bench::{figure, ratio, Figure};

/// The solver run by hand on `mps`, as its users would.
fn by_hand(a: &Available, mps: &Path) -> Option<Command> {
    match (&a.backend, a.kind) {
        (Backend::Command(exe), Kind::Cbc) => {
            let mut c = Command::new(exe);
            c.arg(mps).arg("-solve");
            Some(c)
        }
        (Backend::Command(exe), Kind::Glpk) => {
            let mut c = Command::new(exe);
            c.arg("--freemps").arg(mps);
            Some(c)
        }
        (Backend::Command(exe), Kind::Highs) => {
            let mut c = Command::new(exe);
            c.arg("--model_file").arg(mps);
            Some(c)
        }
        (Backend::Python(py), kind) => {
            let script = match kind {
                Kind::Gurobi => "import gurobipy as gp, sys; m = gp.read(sys.argv[1]); m.Params.Threads = 1; m.optimize()",
                Kind::Cplex => "import cplex, sys; c = cplex.Cplex(sys.argv[1]); c.parameters.threads.set(1); c.solve()",
                Kind::Xpress => "import warnings; warnings.filterwarnings('ignore'); import xpress as xp, sys; p = xp.problem(); p.readProb(sys.argv[1]); p.controls.threads = 1; p.optimize()",
                Kind::Highs => "import highspy, sys; h = highspy.Highs(); h.readModel(sys.argv[1]); h.setOptionValue('threads', 1); h.run()",
                Kind::Scip => "import pyscipopt, sys; m = pyscipopt.Model(); m.readProblem(sys.argv[1]); m.optimize()",
                _ => return None,
            };
            let mut c = Command::new(py);
            c.args(["-I", "-c", script]).arg(mps);
            Some(c)
        }
        _ => None,
    }
}

/// Runs the back-end figures over the models in `dir` (default: the shipped farmer and a tiny knapsack).
pub(crate) fn run(
    dir: Option<&Path>,
    repeats: usize,
    mut log: impl FnMut(&str),
) -> anyhow::Result<Vec<Figure>> {
    let found = solver::detect(&solver::DetectConfig::default());
    log(&format!("looked for solvers in {:.0} ms", found.elapsed.as_secs_f64() * 1000.0));
    let mut figs = vec![figure(
        "backends",
        "meshworker: finding this box's solvers at start",
        "ms",
        vec![found.elapsed.as_secs_f64() * 1000.0],
    )];
    let tmp = tempfile::tempdir()?;
    let root = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            // The shipped farmer and a tiny knapsack, written out.
            let d = tmp.path().join("models");
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join("farmer.lp"), crate::examples::FARMER_LP)?;
            std::fs::write(d.join("tiny.lp"), crate::bench::tiny_model(1, 0))?;
            d
        }
    };
    let models: Vec<PathBuf> = meshsolve::inputs::expand_inputs(std::slice::from_ref(&root))
        .with_context(|| format!("no models in {}", root.display()))?;
    for path in &models {
        let m = model::read_file(path, None)?;
        let name = model::model_stem(path);
        // Every back-end and the by-hand run read the same file: the model as the back-ends write it.
        let (renamed, _) = m.for_external();
        let mps = tmp.path().join(format!("{name}.mps"));
        renamed.write_mps(&mut std::io::BufWriter::new(std::fs::File::create(&mps)?))?;
        for a in found.found.iter().filter(|a| a.backend != Backend::Builtin) {
            if a.size_limited && !a.kind.fits_community_edition(m.cols.len(), m.rows.len()) {
                continue;
            }
            let Some(mut hand) = by_hand(a, &mps) else { continue };
            let opts = SolveOptions { time_limit: Some(60.0), ..Default::default() };
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..repeats {
                let t = Instant::now();
                let m = model::read_file(path, None)?;
                a.solver().solve(&m, &opts).map_err(|e| anyhow::anyhow!("{}: {e}", a.label()))?;
                ours.push(t.elapsed().as_secs_f64() * 1000.0);
                let t = Instant::now();
                let st = hand.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
                theirs.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(st.success(), "{} by hand failed on {}", a.label(), path.display());
            }
            let base = figure("backends", format!("{} by hand on {name}", a.label()), "ms", theirs);
            let mut f = figure(
                "backends",
                format!("{} back-end ({}) on {name}", a.kind, backend_word(&a.backend)),
                "ms",
                ours,
            );
            ratio(&mut f, &base, "by hand");
            log(&format!("{name}: {} {:.1} ms, by hand {:.1} ms", a.kind, f.median, base.median));
            figs.push(base);
            figs.push(f);
        }
    }
    Ok(figs)
}

fn backend_word(b: &Backend) -> &'static str {
    match b {
        Backend::Builtin => "built in",
        Backend::Command(_) => "command",
        Backend::Python(_) => "python",
    }
}
