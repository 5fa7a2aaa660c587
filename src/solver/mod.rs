//! Solvers behind one small trait, what this box has, and the child-process
//! runner that keeps a solver crash or hang away from the worker.
//!
//! [`Solver`] is synchronous: it turns a [`Model`] into a [`Solution`], in
//! process (microlp, HiGHS linked in) or by running an external solver
//! ([`command`]: CBC, GLPK, the HiGHS executable; [`python`]: Gurobi, CPLEX,
//! Xpress, HiGHS, SCIP through their Python APIs). [`found`] finds which of
//! them this box has. The worker never calls a solver directly; [`process`]
//! runs it in a child process of the worker's own binary so a solve can be
//! cancelled, timed out, or crash without taking the worker down.

mod command;
mod duals;
pub mod found;
#[cfg(feature = "highs")]
mod highs_backend;
mod microlp_backend;
pub mod process;
pub mod proximal;
mod python;

use crate::model::Model;
pub use crate::protocol::{Solution, SolveOptions, Status};
pub use found::{detect, Available, Backend, DetectConfig, Detection, Kind};

/// Why a solve produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The solver gave up on numerical grounds. Another solver may succeed.
    #[error("{solver} failed: {message}")]
    Failed {
        /// Which solver.
        solver: String,
        /// What it said.
        message: String,
    },
    /// The requested solver does not exist in this build.
    #[error("unknown solver `{0}`; this build has: {1}")]
    Unknown(String, String),
    /// An option the solver does not accept, or a model it cannot take.
    #[error("{0}")]
    BadOption(String),
    /// The model is larger than this solver's licence allows (a community or
    /// restricted edition): no worker with the same edition will do better.
    #[error("{message}")]
    SizeLimit {
        /// Which solver.
        solver: String,
        /// The solver's own message.
        message: String,
    },
    /// No licence is free right now (every token in use, licence server down):
    /// the same job may run later, or elsewhere.
    #[error("{message}")]
    NoLicence {
        /// Which solver.
        solver: String,
        /// The solver's own message.
        message: String,
    },
    /// The solver's executable or interpreter is gone.
    #[error("{solver} is no longer installed here: {message}")]
    Missing {
        /// Which solver.
        solver: String,
        /// What happened.
        message: String,
    },
}

/// An LP/MIP solver that runs in the calling thread.
pub trait Solver: Send + Sync {
    /// Short name used on the command line and in mDNS adverts (`microlp`, `highs`).
    fn name(&self) -> &str;
    /// Version string of the solver library.
    fn version(&self) -> String;
    /// Whether it solves convex QPs (a diagonal `quad` objective) of continuous models.
    fn supports_qp(&self) -> bool {
        false
    }
    /// Solves `model`. Blocks until done or the time limit is reached.
    ///
    /// # Errors
    /// [`SolveError`] when the solver gives up or refuses an option; infeasible and unbounded are
    /// answers, not errors.
    fn solve(&self, model: &Model, opts: &SolveOptions) -> Result<Solution, SolveError>;
}

/// The solvers compiled into this build, best first.
pub fn builtin() -> Vec<Box<dyn Solver>> {
    vec![
        #[cfg(feature = "highs")]
        Box::new(highs_backend::Highs),
        Box::new(microlp_backend::MicroLp),
    ]
}

/// Finds a built-in solver by name (case-insensitive).
///
/// # Errors
/// [`SolveError::Unknown`] naming the solvers this build has.
pub fn by_name(name: &str) -> Result<Box<dyn Solver>, SolveError> {
    builtin()
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| SolveError::Unknown(name.to_string(), names().join(", ")))
}

/// Names of the solvers in this build, best first.
pub fn names() -> Vec<String> {
    builtin().iter().map(|s| s.name().to_string()).collect()
}

/// The preferred solver of this build.
pub fn default_solver() -> Box<dyn Solver> {
    builtin().remove(0)
}

/// Stands in for a built-in solver this build lacks: every solve says so.
struct Missing(Kind);

impl Solver for Missing {
    fn name(&self) -> &str {
        self.0.as_str()
    }
    fn version(&self) -> String {
        String::new()
    }
    fn solve(&self, _: &Model, _: &SolveOptions) -> Result<Solution, SolveError> {
        Err(SolveError::Unknown(self.0.to_string(), names().join(", ")))
    }
}

/// Fragments of option names that reach outside the solve: files, directories,
/// logs, network services and licences. A job from the mesh may tune a solver,
/// never make it read or write files on the worker's box or call elsewhere.
const FORBIDDEN_OPTION_PARTS: &[&str] = &[
    "file", "dir", "path", "write", "read", "export", "import", "save", "restore", "print", "solution",
    "log", "display", "visual", "output", "server", "token", "cloud", "wls", "password", "secret", "host",
    "port", "url", "licen", "cpp", "gmpl", "model",
];

/// CBC parameters a job may set on a worker (lower case, no dashes).
const CBC_TUNING: &[&str] = &[
    "allowablegap",
    "ratiogap",
    "cuts",
    "gomorycuts",
    "knapsackcuts",
    "probingcuts",
    "cliquecuts",
    "mixedintegerroundingcuts",
    "flowcovercuts",
    "twomircuts",
    "liftandprojectcuts",
    "residualcapacitycuts",
    "zerohalfcuts",
    "reduceandsplitcuts",
    "heuristicsonoff",
    "feasibilitypump",
    "rins",
    "rens",
    "localtreesearch",
    "combinesolutions",
    "dins",
    "greedyheuristic",
    "roundingheuristic",
    "pivotandfix",
    "randomizedrounding",
    "vnd",
    "naivegreedy",
    "divingsome",
    "divingcoefficient",
    "divingfractional",
    "divingguided",
    "divinglinesearch",
    "divingpseudocost",
    "divingvectorlength",
    "strongbranching",
    "trustpseudocosts",
    "nodestrategy",
    "maxnodes",
    "maxsolutions",
    "presolve",
    "preprocess",
    "passcuts",
    "passfeasibilitypump",
    "primaltolerance",
    "dualtolerance",
    "integertolerance",
    "cutoff",
    "increment",
    "scaling",
    "perturbation",
    "randomseed",
    "randomcbcseed",
    "crossover",
    "idiot",
    "sprintcrash",
    "coststrategy",
    "sos",
    "orbit",
    "sec",
    "seconds",
    "timemode",
];

/// GLPK (`glpsol`) flags a job may set on a worker.
const GLPK_TUNING: &[&str] = &[
    "mipgap", "tmlim", "memlim", "presol", "nopresol", "scale", "noscale", "primal", "dual", "simplex",
    "interior", "nomip", "first", "last", "mostf", "drtom", "pcost", "dfs", "bfs", "bestp", "bestb",
    "intopt", "nointopt", "binarize", "fpump", "proxy", "gomory", "mir", "cover", "clique", "cuts",
    "minisat", "exact", "xcheck", "std", "adv", "bib", "steep", "nosteep", "relax", "norelax", "flip",
    "noflip",
];

/// Checks a job's solver options before a worker runs it: tuning options pass,
/// options that touch files, logs, the network or licences do not, and
/// `threads` may not exceed `max_threads` (the worker's cores per slot).
///
/// # Errors
/// [`SolveError::BadOption`] naming the option and why.
pub fn check_job_options(kind: Kind, opts: &SolveOptions, max_threads: u32) -> Result<(), SolveError> {
    for (k, v) in &opts.extra {
        let norm: String =
            k.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        // CBC and GLPK take abbreviated and file-writing flags on one command line:
        // only the tuning parameters listed here pass.
        let listed = match kind {
            Kind::Cbc => Some(CBC_TUNING),
            Kind::Glpk => Some(GLPK_TUNING),
            _ => None,
        };
        if let Some(list) = listed {
            if norm != "threads" && !list.contains(&norm.as_str()) {
                return Err(SolveError::BadOption(format!(
                    "option `{k}` is not one of the {kind} tuning parameters a worker passes on ({})",
                    list.join(", ")
                )));
            }
        }
        if norm == "threads" {
            match v.trim().parse::<u32>() {
                Ok(n) if (1..=max_threads).contains(&n) => continue,
                _ => {
                    return Err(SolveError::BadOption(format!(
                        "threads={v}: this worker gives each solve at most {max_threads} thread(s) (its cores per slot)"
                    )))
                }
            }
        }
        let gurobi_service = kind == Kind::Gurobi && ["cs", "ts", "job"].iter().any(|p| norm.starts_with(p));
        if let Some(part) = FORBIDDEN_OPTION_PARTS.iter().find(|p| norm.contains(*p)) {
            return Err(SolveError::BadOption(format!(
                "option `{k}` is not allowed on a worker (it names a {part}: files, logs, services and licences \
                 stay the worker owner's); pass tuning options only, and --log for the solver's log"
            )));
        }
        if gurobi_service {
            return Err(SolveError::BadOption(format!(
                "option `{k}` is not allowed on a worker (Gurobi compute and token server settings stay the worker owner's)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod option_tests {
    use super::*;

    fn opts(k: &str, v: &str) -> SolveOptions {
        SolveOptions { extra: vec![(k.into(), v.into())], ..Default::default() }
    }

    #[test]
    fn tuning_passes_files_and_services_do_not() {
        for (kind, k, v) in [
            (Kind::Highs, "presolve", "off"),
            (Kind::Gurobi, "MIPFocus", "1"),
            (Kind::Cbc, "cuts", "off"),
            (Kind::Cbc, "-ratioGap", "0.1"),
            (Kind::Glpk, "cuts", ""),
            (Kind::Cplex, "mip.tolerances.mipgap", "0.1"),
            (Kind::Highs, "threads", "2"),
        ] {
            assert!(check_job_options(kind, &opts(k, v), 2).is_ok(), "{k}");
        }
        for (kind, k) in [
            (Kind::Highs, "solution_file"),
            (Kind::Highs, "write_model_to_file"),
            (Kind::Highs, "log_file"),
            (Kind::Cbc, "-export"),
            (Kind::Cbc, "solution"),
            (Kind::Cbc, "solu"),
            (Kind::Cbc, "mipstart"),
            (Kind::Glpk, "wlp"),
            (Kind::Gurobi, "LogFile"),
            (Kind::Gurobi, "TokenServer"),
            (Kind::Gurobi, "CSManager"),
            (Kind::Gurobi, "NodefileDir"),
            (Kind::Cplex, "workdir"),
            (Kind::Scip, "visual/vbcfilename"),
        ] {
            assert!(check_job_options(kind, &opts(k, "/tmp/x"), 2).is_err(), "{k} must be refused");
        }
        assert!(check_job_options(Kind::Highs, &opts("threads", "3"), 2).is_err());
        assert!(check_job_options(Kind::Highs, &opts("threads", "0"), 2).is_err());
    }
}
