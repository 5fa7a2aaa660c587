//! The command line: clap's flags, and the configs they turn into.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use meshsolve::certs;
use meshsolve::client::{ClientConfig, JobOptions};
use meshsolve::inputs::expand_inputs;
use meshsolve::model::Format;
use meshsolve::protocol::SolveOptions;

use crate::cli;
use crate::report::ReportOptions;

pub(crate) const EXIT_HELP: &str = "\
Exit codes:
  0  optimal (or a feasible solution when a time limit stopped the search)
  1  error (bad model, no worker found, worker failure, bad certificate...)
  2  bad command line
  3  infeasible
  4  unbounded
  5  time limit reached without a feasible solution
  130 interrupted (Ctrl-C)
With several models, the highest code among them is returned.

Examples:
  meshsolve farmer.lp                     solve on the best free worker of your namespace
  meshsolve --json model.mps.gz           machine-readable result
  meshsolve --worker 10.0.0.5:4433 a.lp   skip discovery
  meshsolve workers                       list the workers you can use
  meshsolve certs export ns.pem           copy your namespace CA to another box";

/// Solve linear and mixed-integer programs on the meshsolve workers of your LAN.
///
/// Workers (`meshworker`) advertise themselves over mDNS; meshsolve finds those of your
/// namespace, sends each model over QUIC with mutual TLS, and prints the solution.
/// Models are CPLEX LP or MPS (fixed or free), optionally gzip-compressed (.gz); they are
/// checked locally before anything is sent.
#[derive(Parser, Debug)]
#[command(name = "meshsolve", version, max_term_width = 100, after_help = EXIT_HELP)]
pub(crate) struct Opts {
    #[command(subcommand)]
    pub(crate) cmd: Option<Cmd>,
    #[command(flatten)]
    pub(crate) solve: SolveArgs,
    #[command(flatten)]
    pub(crate) mesh: MeshArgs,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct MeshArgs {
    /// Namespace to use [default: your login name].
    #[arg(long, short = 'n', env = "MESHSOLVE_NAMESPACE", global = true)]
    pub(crate) namespace: Option<String>,
    /// Use this worker instead of mDNS discovery (HOST:PORT, repeatable).
    #[arg(long = "worker", short = 'w', global = true)]
    pub(crate) workers: Vec<String>,
    /// How long to wait for workers to answer discovery.
    #[arg(long, default_value = "3s", value_parser = cli::parse_duration, global = true)]
    pub(crate) wait: Duration,
    /// Browse mDNS only on these interfaces (comma-separated) [default: all].
    #[arg(
        long = "interface",
        short = 'i',
        env = "MESHSOLVE_INTERFACE",
        value_delimiter = ',',
        global = true
    )]
    pub(crate) interfaces: Vec<String>,
    /// Directory holding namespace CAs [default: ~/.config/meshsolve].
    #[arg(long, env = "MESHSOLVE_HOME", global = true)]
    pub(crate) home: Option<PathBuf>,
    /// Also ask this static name server (`meshns`), HOST[:PORT], for workers; defaults to
    /// PYRO_NS_HOSTNAME and PYRO_NS_PORT when set. Workers found both ways are merged.
    #[arg(long = "ns", value_name = "HOST[:PORT]", global = true)]
    pub(crate) name_server: Option<String>,
    /// Do not browse mDNS (multicast blocked); rely on --ns or --worker.
    #[arg(long, global = true)]
    pub(crate) no_mdns: bool,
    /// Reach workers only through the name server's relay (firewall debugging).
    #[arg(long, global = true)]
    pub(crate) via_ns: bool,
    /// Log level (error, warn, info, debug); RUST_LOG overrides it.
    #[arg(long, default_value = "warn", global = true)]
    pub(crate) log_level: String,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct SolveArgs {
    /// Model files, directories (searched recursively) or patterns like 'runs/*.lp'
    /// (.lp, .mps, optionally .gz).
    pub(crate) models: Vec<PathBuf>,
    /// Solver to use [default: the best each worker has]. `meshsolve workers` shows them.
    #[arg(long)]
    pub(crate) solver: Option<String>,
    /// Race these solvers on each model (comma-separated, e.g. `--race highs,cbc,gurobi`):
    /// all start at once, on different workers where possible; the first definitive
    /// answer wins and the others are cancelled.
    #[arg(long, value_delimiter = ',', value_name = "SOLVERS", conflicts_with_all = ["solver", "local", "detach"])]
    pub(crate) race: Vec<String>,
    /// Time limit per solve (e.g. 30s, 5m). A solve stopped by it reports its best solution.
    /// MESHSOLVE_TIME_LIMIT sets your default.
    #[arg(long, env = "MESHSOLVE_TIME_LIMIT", value_parser = cli::parse_duration)]
    pub(crate) time_limit: Option<Duration>,
    /// Relative MIP gap at which a solve may stop (default 0: prove optimality).
    #[arg(long)]
    pub(crate) mip_gap: Option<f64>,
    /// Show each solver's own log on stderr as it solves (external solvers: cbc, glpk,
    /// highs, gurobi, cplex, xpress, scip; the built-in ones keep quiet).
    #[arg(long)]
    pub(crate) log: bool,
    /// Solver option passed through, KEY=VALUE (repeatable; names as the chosen solver
    /// documents them, e.g. presolve=off for HiGHS, MIPFocus=1 for Gurobi; threads=N for all).
    #[arg(long = "option", value_parser = parse_kv)]
    pub(crate) options: Vec<(String, String)>,
    /// Force the model format instead of guessing from the file name.
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatArg>,
    /// Print results as JSON (one object per model, in a list when several).
    #[arg(long)]
    pub(crate) json: bool,
    /// Write the solution to FILE (JSON when FILE ends in .json, else `name value` lines).
    #[arg(long, short = 'o')]
    pub(crate) output: Option<PathBuf>,
    /// Also list variables whose value is zero.
    #[arg(long)]
    pub(crate) zeros: bool,
    /// Solve here in this process instead of on the mesh (for comparison or offline use).
    #[arg(long)]
    pub(crate) local: bool,
    /// Write each model's result to DIR/<name>.json as it finishes, plus summary.csv and
    /// summary.json; re-running skips models already solved there (resume).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// With --out: solve again models whose result is already in DIR.
    #[arg(long)]
    pub(crate) force: bool,
    /// Runs per model before it is marked failed (lost workers, solver crashes).
    #[arg(long, default_value_t = 3)]
    pub(crate) attempts: u32,
    /// Stop the whole batch after this long (e.g. 2h); unfinished models are marked failed.
    #[arg(long, value_parser = cli::parse_duration)]
    pub(crate) deadline: Option<Duration>,
    /// No progress output on stderr.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Leave the models in the name server's queue and exit; its workers solve them
    /// while you are away. Prints a batch id for `meshsolve collect`.
    #[arg(long)]
    pub(crate) detach: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub(crate) enum FormatArg {
    Lp,
    Mps,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// List the workers of your namespace: address, solvers, slots, busy slots.
    Workers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask every worker of your namespace to exit, and report which did.
    Shutdown,
    /// Fetch the results of a batch submitted with --detach.
    Collect {
        /// The batch id `--detach` printed.
        batch: String,
        /// Wait until every job of the batch is done or failed.
        #[arg(long)]
        until_done: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Write results to DIR as `--out` does.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// The jobs running and waiting on your namespace's workers: worker, job id, model,
    /// solver, client (host, process id, address), attempt, seconds. --all adds the last
    /// ones each worker finished.
    Ps {
        /// Also the recently finished jobs.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check what the mesh needs on this box, one line each, ✓ or ✗ with the fix: the
    /// namespace's CA and key, the interfaces mDNS uses and whether multicast works, the
    /// name server, the workers (reachable over TLS, clocks) and the solvers here.
    /// Exit 0 when all is well, 1 otherwise.
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A live view of your namespace on the terminal: per worker the slots busy, solvers,
    /// licence pools, jobs done and failed, then the jobs running and waiting. Works over
    /// ssh; q, Esc or Ctrl-C quits.
    Top {
        /// How often to refresh.
        #[arg(long, default_value = "1s", value_parser = cli::parse_duration)]
        interval: Duration,
    },
    /// Cancel a job on a worker, named WORKER:ID as `meshsolve ps` shows it; its solver
    /// process is killed and its client gets "cancelled".
    Kill {
        /// WORKER:ID
        job: String,
    },
    /// List your namespace's detached batches on the name server (jobs queued, running,
    /// solved, failed; bytes still held), or delete one with --delete BATCH.
    Batches {
        /// Forget this batch: its queued jobs do not run, its results go.
        #[arg(long, value_name = "BATCH")]
        delete: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read and check models without solving them: the reader's errors, or a one-line
    /// summary of each (rows, columns, integers, nonzeros). Exit 1 if any is bad.
    Check {
        /// Model files, directories or patterns, as for solving.
        models: Vec<PathBuf>,
    },
    /// Show, export or import your namespace's certificate authority.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Start two local workers, solve the shipped farmer model on them, stop them.
    Demo,
    /// Progressive hedging of a two-stage stochastic program over the mesh.
    ///
    /// SPEC is a TOML file naming the scenario files, their probabilities and the
    /// first-stage variables (see README), or a directory of scenario files with
    /// equal probabilities plus --first-stage. Each scenario stays loaded on the
    /// worker that first solved it; later iterations send only W, x̄ and rho.
    Ph(PhArgs),
    /// Measure the mesh against solving locally: dispatch overhead, throughput,
    /// transfer, discovery. Medians of repeated runs, with min, max and ratios.
    Bench(BenchArgs),
}

/// `--rho-strategy` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum RhoStrategyArg {
    /// Keep rho as given.
    Fixed,
    /// Residual balancing.
    Adaptive,
}

#[derive(Args, Debug)]
pub(crate) struct PhArgs {
    /// The TOML spec, or a directory of scenario files.
    pub(crate) spec: PathBuf,
    /// First-stage variables: names or patterns with * and ? (repeatable).
    #[arg(long = "first-stage")]
    pub(crate) first_stage: Vec<String>,
    /// Default penalty rho (the spec's `rho` otherwise, else 1).
    #[arg(long)]
    pub(crate) rho: Option<f64>,
    /// How rho changes between iterations: `fixed` keeps it; `adaptive` balances how far
    /// the scenarios disagree against how far x̄ moves (every rho doubles or halves),
    /// which helps most with many scenarios.
    #[arg(long, value_enum, default_value = "fixed")]
    pub(crate) rho_strategy: RhoStrategyArg,
    /// Converged when the mean |x_s - xbar| falls below this.
    #[arg(long, default_value_t = 1e-4)]
    pub(crate) threshold: f64,
    /// Iteration cap.
    #[arg(long, default_value_t = 300)]
    pub(crate) max_iters: usize,
    /// Compute the Lagrangian lower bound every N iterations (0: only at the end).
    #[arg(long, default_value_t = 10)]
    pub(crate) bound_every: usize,
    /// Solver for the subproblems [default: each worker's best].
    #[arg(long)]
    pub(crate) solver: Option<String>,
    /// Time limit per subproblem solve.
    #[arg(long, value_parser = cli::parse_duration)]
    pub(crate) time_limit: Option<Duration>,
    /// The least time one scenario step gets before its worker counts as stuck and the
    /// scenario moves to another worker (a step also gets 20 times its slowest so far).
    #[arg(long, default_value = "60s", value_parser = cli::parse_duration)]
    pub(crate) step_patience: Duration,
    /// Solve every K consecutive scenarios together as one subproblem (their extensive
    /// form): fewer, larger solves and fewer iterations, the same answer.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) bundle: u32,
    /// Draw convergence, the bounds and the gap per iteration into FILE (.svg or .png);
    /// the expected cost of x̄ is then also computed at every bound iteration.
    #[arg(long, value_name = "FILE")]
    pub(crate) plot: Option<PathBuf>,
    /// Also solve the extensive form of the same SPEC on the mesh, for comparison.
    #[arg(long)]
    pub(crate) ef: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// No per-iteration lines on stderr.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Start N local workers (mDNS on loopback) instead of using your namespace's workers.
    #[arg(long, value_name = "N")]
    pub(crate) local: Option<u32>,
    /// Slots per local worker.
    #[arg(long, default_value_t = 1)]
    pub(crate) slots: u32,
    /// Repeats per figure.
    #[arg(long, default_value_t = 3)]
    pub(crate) repeats: usize,
    /// Tiny models in the throughput run.
    #[arg(long, default_value_t = 1000)]
    pub(crate) tiny: usize,
    /// Size of the generated transfer model in MB (0 skips it).
    #[arg(long, default_value_t = 100)]
    pub(crate) transfer_mb: u64,
    /// Seed of the generated models.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Scenarios of the farmer progressive-hedging figure (0 skips it).
    #[arg(long, default_value_t = 30)]
    pub(crate) ph_scenarios: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Only the solver back-ends: each one this box has against the same solver run by
    /// hand, on the shipped farmer and a tiny knapsack (or the models of --models). No
    /// mesh needed.
    #[arg(long)]
    pub(crate) backends: bool,
    /// With --backends: the models to measure on (a directory, files or patterns).
    #[arg(long, value_name = "DIR", requires = "backends")]
    pub(crate) models: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CertsCmd {
    /// Show where the namespace CA lives and its fingerprint (created on first use).
    Show,
    /// Write the namespace CA (certificate and private key) to FILE, to copy to another box.
    Export {
        /// Destination file (created with mode 600).
        file: PathBuf,
    },
    /// Install a CA exported from another box, so this box joins that namespace.
    Import {
        /// File made by `meshsolve certs export`.
        file: PathBuf,
        /// Replace a different CA already present for this namespace.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub(crate) use crate::cli::Usage;

/// How to reach the mesh, validated.
#[derive(Debug, Clone)]
pub(crate) struct MeshConfig {
    /// Namespace, discovery and name server.
    pub(crate) client: ClientConfig,
    /// How long to wait for a suitable worker.
    pub(crate) wait: Duration,
}

impl MeshArgs {
    /// The validated mesh settings.
    pub(crate) fn config(&self) -> Result<MeshConfig, Usage> {
        let mut c = ClientConfig::from_env();
        if let Some(ns) = &self.namespace {
            c.namespace = ns.clone();
        }
        certs::validate_namespace(&c.namespace).map_err(|e| Usage(format!("{e} (--namespace NAME)")))?;
        if let Some(h) = &self.home {
            c.home = h.clone();
        }
        c.interfaces = self.interfaces.clone();
        c.static_workers = self.workers.clone();
        if self.name_server.is_some() {
            c.name_server = self.name_server.clone();
        }
        c.mdns = !self.no_mdns;
        c.via_name_server = self.via_ns;
        Ok(MeshConfig { client: c, wait: self.wait })
    }
}

/// What `meshsolve MODEL...` was asked to do, validated.
#[derive(Debug, Clone)]
pub(crate) struct SolveConfig {
    /// The model files, inputs expanded (directories, patterns), in order, each once.
    pub(crate) models: Vec<PathBuf>,
    /// Solver, limits, format.
    pub(crate) job: JobOptions,
    /// Solve in this process.
    pub(crate) local: bool,
    /// Leave the batch with the name server.
    pub(crate) detach: bool,
    /// Result directory (resume).
    pub(crate) out: Option<PathBuf>,
    /// Re-solve models already in `out`.
    pub(crate) force: bool,
    /// Runs per model.
    pub(crate) attempts: u32,
    /// Deadline of the whole batch.
    pub(crate) deadline: Option<Duration>,
    /// No progress output.
    pub(crate) quiet: bool,
    /// How to print results.
    pub(crate) report: ReportOptions,
    /// Solvers to race on each model (empty: no race).
    pub(crate) race: Vec<String>,
}

impl SolveArgs {
    /// The validated solve settings.
    pub(crate) fn config(&self) -> Result<SolveConfig, Usage> {
        if self.models.is_empty() {
            return Err(Usage("no model given.\n  usage: meshsolve MODEL.lp [MORE...]   (see `meshsolve --help`; `meshsolve demo` runs a complete example)".into()));
        }
        let models = expand_inputs(&self.models).map_err(|e| Usage(e.to_string()))?;
        if self.output.is_some() && models.len() > 1 {
            return Err(Usage(
                "--output takes one model; for several, use --out DIR (one result file per model plus a summary)"
                    .into(),
            ));
        }
        if let Some(g) = self.mip_gap.filter(|g| !(g.is_finite() && *g >= 0.0)) {
            return Err(Usage(format!("--mip-gap {g} is not a relative gap; use e.g. --mip-gap 0.01")));
        }
        if self.attempts == 0 {
            return Err(Usage("--attempts must be at least 1".into()));
        }
        let mut race: Vec<String> = Vec::new();
        for r in &self.race {
            let name = r.trim().to_ascii_lowercase();
            if name.is_empty() || race.contains(&name) {
                return Err(Usage(format!(
                    "--race {}: name each solver once, e.g. --race highs,cbc",
                    self.race.join(",")
                )));
            }
            race.push(name);
        }
        if race.len() == 1 {
            return Err(Usage(format!(
                "--race needs two solvers or more; for one, use --solver {}",
                race[0]
            )));
        }
        let job = JobOptions {
            solver: self.solver.clone(),
            solve: SolveOptions {
                time_limit: self.time_limit.map(|d| d.as_secs_f64()),
                mip_gap: self.mip_gap,
                extra: self.options.clone(),
                warm_start: None,
                duals: false,
                log: self.log,
            },
            format: self.format.map(|f| match f {
                FormatArg::Lp => Format::Lp,
                FormatArg::Mps => Format::Mps,
            }),
            prechecked: true,
        };
        Ok(SolveConfig {
            models,
            job,
            local: self.local,
            detach: self.detach,
            out: self.out.clone(),
            force: self.force,
            attempts: self.attempts,
            deadline: self.deadline,
            quiet: self.quiet,
            report: ReportOptions { json: self.json, zeros: self.zeros, output: self.output.clone() },
            race,
        })
    }
}
