//! The progressive hedging driver (Rockafellar–Wets): scenarios resident on
//! workers, W and x̄ updated each iteration, bounds, and recovery when a worker
//! dies or joins.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::augment::{Step, StepMode, StepReply};
use super::resident::ResidentScenario;
use super::spec::PhSpec;
use crate::client::{check_model, JobFailure, JobOptions, Mesh};
use crate::model::{self, Sense};
use crate::protocol::SolveRequest;
use crate::protocol::{SolveOptions, Status};

/// How ρ changes between iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RhoStrategy {
    /// ρ stays what the spec and flags set.
    Fixed,
    /// Residual balancing (as in ADMM, Boyd et al. 2011, §3.4.1): every ρ doubles
    /// when the scenarios disagree (primal residual) ten times more than x̄ moves
    /// (dual residual), halves in the opposite case, and stays otherwise.
    Adaptive,
}

/// Residual balancing: change ρ when one residual exceeds the other this many times…
const BALANCE: f64 = 10.0;
/// …by this factor.
const RHO_STEP: f64 = 2.0;

/// PH settings.
#[derive(Debug, Clone)]
pub struct PhOptions {
    /// Default ρ (the spec's `rho`, else this).
    pub rho: Option<f64>,
    /// How ρ changes between iterations.
    pub rho_strategy: RhoStrategy,
    /// Stop when the mean |x_s − x̄| falls below this.
    pub threshold: f64,
    /// Iteration cap.
    pub max_iters: usize,
    /// Compute the Lagrangian bound every this many iterations (0: only at the end).
    pub bound_every: usize,
    /// Solver to ask for.
    pub solver: Option<String>,
    /// Time limit per subproblem solve, seconds.
    pub time_limit: Option<f64>,
    /// Attempts per scenario step before giving up (lost workers, crashes).
    pub max_attempts: u32,
    /// The least time a step gets before its worker counts as stuck (a step also
    /// gets 20 times its scenario's slowest step); the scenario then moves.
    pub step_patience: std::time::Duration,
    /// Scenarios per subproblem ([`super::bundle`]); 1 solves each alone.
    pub bundle: usize,
    /// Also compute the expected cost of x̄ (an upper bound when minimising)
    /// whenever the Lagrangian bound is computed, for the history (a plot).
    pub track_upper: bool,
}

impl Default for PhOptions {
    fn default() -> Self {
        PhOptions {
            rho: None,
            // Measured on the scalable farmer (2 local workers): adaptive took 373
            // iterations to fixed's 486 at 30 scenarios, but 134 to 106 at 3, and at
            // 300 neither converged in 500; fixed stays the default for now.
            rho_strategy: RhoStrategy::Fixed,
            threshold: 1e-4,
            max_iters: 300,
            bound_every: 10,
            solver: None,
            time_limit: None,
            max_attempts: 4,
            step_patience: std::time::Duration::from_secs(60),
            bundle: 1,
            track_upper: false,
        }
    }
}

/// One iteration's report.
#[derive(Debug, Clone, Serialize)]
pub struct PhIteration {
    /// Iteration number (0 = the wait-and-see solves).
    pub iter: usize,
    /// Mean |x_s − x̄| over scenarios (probability-weighted) and first-stage variables.
    pub conv: f64,
    /// Best lower bound so far (trivial or Lagrangian; an upper bound when maximising).
    pub bound: f64,
    /// Best expected cost of an x̄ so far (the other side of the gap), when
    /// tracked ([`PhOptions::track_upper`]).
    pub upper: Option<f64>,
    /// Seconds since the start.
    pub seconds: f64,
    /// Bytes sent to workers during this iteration.
    pub bytes: u64,
    /// Scenarios (re)loaded on a worker during this iteration.
    pub loaded: usize,
}

/// The answer of a PH run.
#[derive(Debug, Clone, Serialize)]
pub struct PhResult {
    /// Spec name.
    pub name: String,
    /// Number of scenarios.
    pub scenarios: usize,
    /// Number of subproblems solved per iteration (scenario bundles; the
    /// number of scenarios without `--bundle`).
    pub bundles: usize,
    /// Consensus first-stage values x̄.
    pub xbar: Vec<(String, f64)>,
    /// Expected cost of x̄ with the first stage fixed in every scenario (an upper
    /// bound for minimisation); `None` if x̄ is infeasible for some scenario.
    pub expected_cost: Option<f64>,
    /// Wait-and-see bound (iteration 0).
    pub trivial_bound: f64,
    /// Best Lagrangian bound from the W's.
    pub lagrangian_bound: f64,
    /// Relative gap between `expected_cost` and the best bound.
    pub gap: Option<f64>,
    /// Iterations after iteration 0.
    pub iterations: usize,
    /// Whether the convergence threshold was reached.
    pub converged: bool,
    /// Whether the proximal term was quadratic (else linearised).
    pub quadratic: bool,
    /// Wall seconds.
    pub seconds: f64,
    /// Every iteration.
    pub history: Vec<PhIteration>,
}

/// Iterations of agreement after which an integer first-stage variable is held.
const FIX_AFTER: usize = 5;

/// How much larger ρ grows on a held integer first-stage variable.
const FIX_WEIGHT: f64 = 100.0;

/// PH errors.
#[derive(Debug, thiserror::Error)]
pub enum PhError {
    /// The spec or a scenario is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// A scenario could not be solved anywhere.
    #[error("scenario {scenario}: {message}")]
    Scenario {
        /// Scenario file.
        scenario: String,
        /// Why.
        message: String,
    },
}

struct Scenario {
    path: PathBuf,
    prob: f64,
    header: SolveRequest,
}

/// Which worker holds how many scenarios, and which workers were lost.
#[derive(Default)]
struct Placement {
    load: HashMap<String, usize>,
    dead: HashSet<String>,
}

fn pick(mesh: &Mesh, place: &Mutex<Placement>, solver: Option<&str>) -> Option<crate::discovery::WorkerAd> {
    let p = place.lock().ok()?;
    mesh.workers().into_iter().filter(|w| w.has_solver(solver) && !p.dead.contains(&w.instance)).min_by(
        |a, b| {
            let la = *p.load.get(&a.instance).unwrap_or(&0) as f64 / a.slots.max(1) as f64;
            let lb = *p.load.get(&b.instance).unwrap_or(&0) as f64 / b.slots.max(1) as f64;
            la.total_cmp(&lb).then(a.instance.cmp(&b.instance))
        },
    )
}

struct StepOutcome {
    reply: Result<StepReply, PhError>,
    resident: Option<ResidentScenario>,
    bytes: u64,
    loaded: bool,
}

/// How a scenario step is placed and retried (from [`PhOptions`]).
struct StepPolicy {
    solver: Option<String>,
    max_attempts: u32,
    patience: std::time::Duration,
}

async fn run_step(
    mesh: Arc<Mesh>,
    place: Arc<Mutex<Placement>>,
    sc: Arc<Scenario>,
    nonants: Arc<Vec<String>>,
    mut resident: Option<ResidentScenario>,
    step: Step,
    policy: StepPolicy,
) -> StepOutcome {
    let StepPolicy { solver, max_attempts, patience } = policy;
    let mut bytes = 0u64;
    let mut loaded = false;
    let mut last = String::new();
    let release = |w: &str| {
        if let Ok(mut p) = place.lock() {
            if let Some(n) = p.load.get_mut(w) {
                *n = n.saturating_sub(1);
            }
        }
    };
    for _ in 0..max_attempts {
        if resident.is_none() {
            let Some(ad) = pick(&mesh, &place, solver.as_deref()) else {
                last = "no live worker left".into();
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            };
            if let Ok(mut p) = place.lock() {
                *p.load.entry(ad.instance.clone()).or_default() += 1;
            }
            match ResidentScenario::open(&mesh, &ad, &sc.path, &sc.header, &nonants).await {
                Ok(r) => {
                    bytes += r.bytes;
                    loaded = true;
                    resident = Some(r);
                }
                Err(JobFailure::Rejected(m)) => {
                    release(&ad.instance);
                    return StepOutcome {
                        reply: Err(PhError::Scenario { scenario: sc.path.display().to_string(), message: m }),
                        resident: None,
                        bytes,
                        loaded,
                    };
                }
                Err(e) => {
                    release(&ad.instance);
                    if let JobFailure::Lost(_) = e {
                        mesh.mark_lost(&ad.instance);
                        if let Ok(mut p) = place.lock() {
                            p.dead.insert(ad.instance.clone());
                        }
                    }
                    last = format!("{e:?}");
                    continue;
                }
            }
        }
        let r = resident.as_mut().expect("resident set above");
        let before = r.bytes;
        let out = r.step(&step, patience).await;
        bytes += r.bytes - before;
        match out {
            Ok(reply) => return StepOutcome { reply: Ok(reply), resident, bytes, loaded },
            Err(JobFailure::Rejected(m)) => {
                return StepOutcome {
                    reply: Err(PhError::Scenario { scenario: sc.path.display().to_string(), message: m }),
                    resident,
                    bytes,
                    loaded,
                }
            }
            Err(e) => {
                let worker = resident.take().map(|r| r.worker.clone()).unwrap_or_default();
                warn!(scenario = %sc.path.display(), %worker, "scenario step failed, moving it: {e:?}");
                release(&worker);
                if let JobFailure::Lost(_) = e {
                    mesh.mark_lost(&worker);
                    if let Ok(mut p) = place.lock() {
                        p.dead.insert(worker);
                    }
                }
                last = format!("{e:?}");
            }
        }
    }
    StepOutcome {
        reply: Err(PhError::Scenario {
            scenario: sc.path.display().to_string(),
            message: format!("gave up after {max_attempts} attempts: {last}"),
        }),
        resident,
        bytes,
        loaded,
    }
}

/// Reads every scenario once: checks them, finds the first-stage variables
/// (the same in every scenario) and the common sense of optimisation.
async fn load_scenarios(
    spec: &PhSpec,
    opts: &PhOptions,
) -> Result<(Vec<Arc<Scenario>>, Vec<String>, Vec<bool>, Sense), PhError> {
    let mut nonants: Option<Vec<String>> = None;
    let mut integer: Vec<bool> = Vec::new();
    let mut sense = Sense::Minimize;
    let mut scenarios = Vec::new();
    for (k, (path, prob)) in spec.scenarios.iter().enumerate() {
        check_model(path, None).await.map_err(|e| PhError::Invalid(e.to_string()))?;
        let p = path.clone();
        let m = tokio::task::spawn_blocking(move || model::read_file(&p, None))
            .await
            .map_err(|e| PhError::Invalid(e.to_string()))?
            .map_err(|e| PhError::Invalid(e.to_string()))?;
        let names = spec.first_stage_of(m.cols.iter().map(|c| c.name.as_str()));
        // A first-stage variable is integer if it is in any scenario.
        let int_of = |n: &String| m.cols.iter().any(|c| &c.name == n && c.integer);
        if integer.is_empty() {
            integer = names.iter().map(int_of).collect();
        } else if integer.len() == names.len() {
            for (flag, n) in integer.iter_mut().zip(&names) {
                *flag |= int_of(n);
            }
        }
        match &nonants {
            None => {
                if names.is_empty() {
                    return Err(PhError::Invalid(format!(
                        "no variable of {} matches the first-stage patterns {:?}",
                        path.display(),
                        spec.first_stage
                    )));
                }
                sense = m.sense;
                nonants = Some(names);
            }
            Some(first) if *first != names => {
                return Err(PhError::Invalid(format!(
                    "scenario {} has first-stage variables {:?}, scenario 0 has {:?}; every scenario needs the same ones",
                    path.display(),
                    names,
                    first
                )))
            }
            Some(_) => {}
        }
        if m.sense != sense {
            return Err(PhError::Invalid(format!(
                "scenario {k} optimises in the other direction than scenario 0"
            )));
        }
        let job = JobOptions {
            solver: opts.solver.clone(),
            solve: SolveOptions { time_limit: opts.time_limit, ..Default::default() },
            ..Default::default()
        };
        let header = Mesh::header(path, &job).map_err(|e| PhError::Invalid(e.to_string()))?;
        scenarios.push(Arc::new(Scenario { path: path.clone(), prob: *prob, header }));
    }
    Ok((scenarios, nonants.unwrap_or_default(), integer, sense))
}

/// The state PH carries between steps: the scenarios, where each is resident,
/// and the penalties.
struct Driver<'a> {
    mesh: Arc<Mesh>,
    opts: &'a PhOptions,
    scenarios: Vec<Arc<Scenario>>,
    nonants: Arc<Vec<String>>,
    rho: Vec<f64>,
    probs: Vec<f64>,
    place: Arc<Mutex<Placement>>,
    residents: Vec<Option<ResidentScenario>>,
    /// Whether every proximal term so far was quadratic.
    quadratic: bool,
    /// Which first-stage variables are integer (a stochastic MIP).
    integer: Vec<bool>,
}

/// Every scenario's answer to one step, with the bytes sent and the scenarios (re)loaded.
struct Sweep {
    replies: Vec<StepReply>,
    bytes: u64,
    loaded: usize,
}

impl Driver<'_> {
    fn n(&self) -> usize {
        self.nonants.len()
    }

    /// Runs one mode on every scenario at once; `w` gives each scenario's weights (zero when `None`).
    async fn sweep(
        &mut self,
        mode: StepMode,
        w: Option<&[Vec<f64>]>,
        xbar: &[f64],
    ) -> Result<Sweep, PhError> {
        let mut set = JoinSet::new();
        for (k, sc) in self.scenarios.iter().enumerate() {
            let wk = w.map(|w| w[k].clone()).unwrap_or_else(|| vec![0.0; self.nonants.len()]);
            let step = Step { mode, w: wk, xbar: xbar.to_vec(), rho: self.rho.clone() };
            let (mesh, place, sc, nonants, res) = (
                self.mesh.clone(),
                self.place.clone(),
                sc.clone(),
                self.nonants.clone(),
                self.residents[k].take(),
            );
            let policy = StepPolicy {
                solver: self.opts.solver.clone(),
                max_attempts: self.opts.max_attempts,
                patience: self.opts.step_patience,
            };
            set.spawn(async move { (k, run_step(mesh, place, sc, nonants, res, step, policy).await) });
        }
        let mut replies: Vec<Option<StepReply>> = self.scenarios.iter().map(|_| None).collect();
        let (mut bytes, mut loaded, mut err) = (0u64, 0usize, None);
        while let Some(j) = set.join_next().await {
            let (k, out) = j.map_err(|e| PhError::Invalid(format!("step task failed: {e}")))?;
            self.residents[k] = out.resident;
            bytes += out.bytes;
            loaded += out.loaded as usize;
            match out.reply {
                Ok(r) => {
                    self.quadratic &= r.quadratic;
                    replies[k] = Some(r);
                }
                Err(e) => err = Some(e),
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        let replies = replies.into_iter().map(|r| r.expect("every scenario answered")).collect();
        Ok(Sweep { replies, bytes, loaded })
    }

    /// A scenario's own objective in a reply, or why there is none.
    fn objective(&self, k: usize, r: &StepReply) -> Result<f64, PhError> {
        match (r.status, r.objective) {
            (Status::Optimal | Status::Feasible, Some(f)) => Ok(f),
            (st, _) => Err(PhError::Scenario {
                scenario: self.scenarios[k].path.display().to_string(),
                message: format!("subproblem is {st}"),
            }),
        }
    }

    /// The probability-weighted mean of the first-stage values.
    fn average(&self, x: &[Vec<f64>]) -> Vec<f64> {
        (0..self.n()).map(|i| x.iter().zip(&self.probs).map(|(xs, p)| p * xs[i]).sum()).collect()
    }

    /// Fixing for stochastic MIPs: an integer first-stage variable on whose value
    /// every scenario has agreed for [`FIX_AFTER`] iterations in a row gets a ρ
    /// [`FIX_WEIGHT`] times larger, which holds it there (a soft fix: a scenario
    /// that needs another value can still move it, at a price).
    fn fix_agreed(&mut self, x: &[Vec<f64>], agreed: &mut [usize]) {
        for i in 0..self.n() {
            if !self.integer[i] {
                continue;
            }
            let first = x.first().map_or(0.0, |xs| xs[i].round());
            if x.iter().all(|xs| (xs[i] - first).abs() < 1e-6) {
                agreed[i] += 1;
                if agreed[i] == FIX_AFTER {
                    self.rho[i] *= FIX_WEIGHT;
                }
            } else {
                if agreed[i] >= FIX_AFTER {
                    self.rho[i] /= FIX_WEIGHT;
                }
                agreed[i] = 0;
            }
        }
    }

    /// Residual balancing: the primal residual (how far the scenarios are from x̄)
    /// against the dual one (how far x̄ moved, times ρ), over every variable.
    fn balance_rho(&mut self, x: &[Vec<f64>], xbar: &[f64], previous: &[f64]) {
        let n = self.n();
        let primal = (0..n)
            .map(|i| x.iter().zip(&self.probs).map(|(xs, p)| p * (xs[i] - xbar[i]).powi(2)).sum::<f64>())
            .sum::<f64>()
            .sqrt();
        let dual = (0..n).map(|i| (self.rho[i] * (xbar[i] - previous[i])).powi(2)).sum::<f64>().sqrt();
        let factor = if primal > BALANCE * dual {
            RHO_STEP
        } else if dual > BALANCE * primal {
            1.0 / RHO_STEP
        } else {
            return;
        };
        for r in &mut self.rho {
            *r = (*r * factor).clamp(1e-8, 1e8);
        }
    }

    /// Mean |x_s − x̄| over scenarios (weighted) and variables.
    fn conv(&self, x: &[Vec<f64>], xbar: &[f64]) -> f64 {
        if self.n() == 0 {
            return 0.0;
        }
        x.iter()
            .zip(&self.probs)
            .map(|(xs, p)| p * xs.iter().zip(xbar).map(|(a, b)| (a - b).abs()).sum::<f64>())
            .sum::<f64>()
            / self.n() as f64
    }

    /// The Lagrangian bound at weights `w`: Σ p_s (f_s + w_s·x_s) over the plain subproblems.
    async fn lagrangian(&mut self, w: &[Vec<f64>], xbar: &[f64]) -> Result<(f64, u64, usize), PhError> {
        let s = self.sweep(StepMode::Plain, Some(w), xbar).await?;
        let mut l = 0.0;
        for (k, r) in s.replies.iter().enumerate() {
            let f = self.objective(k, r)?;
            l += self.probs[k] * (f + r.x.iter().zip(&w[k]).map(|(a, b)| a * b).sum::<f64>());
        }
        Ok((l, s.bytes, s.loaded))
    }

    /// x̄ with its integer first-stage variables rounded: a first stage every
    /// scenario can be solved with.
    fn implementable(&self, xbar: &[f64]) -> Vec<f64> {
        xbar.iter().zip(&self.integer).map(|(v, int)| if *int { v.round() } else { *v }).collect()
    }

    /// The expected cost of x̄ (its integer parts rounded) with the first stage
    /// fixed in every scenario; `None` when some scenario cannot take it.
    async fn expected_cost(&mut self, xbar: &[f64]) -> Result<Option<f64>, PhError> {
        let fixed = self.implementable(xbar);
        let s = self.sweep(StepMode::Fixed, None, &fixed).await?;
        let mut expected = Some(0.0);
        for (k, r) in s.replies.iter().enumerate() {
            match (r.status, r.objective, expected) {
                (Status::Optimal | Status::Feasible, Some(f), Some(e)) => {
                    expected = Some(e + self.probs[k] * f)
                }
                _ => expected = None,
            }
        }
        Ok(expected)
    }
}

/// Runs PH on the mesh. `progress` sees every iteration as it completes.
///
/// # Errors
/// [`PhError::Invalid`] for a spec that does not fit its scenarios; [`PhError::Scenario`] when a
/// scenario cannot be solved on any worker.
pub async fn run(
    mesh: Arc<Mesh>,
    spec: &PhSpec,
    opts: &PhOptions,
    mut progress: impl FnMut(&PhIteration),
) -> Result<PhResult, PhError> {
    let start = Instant::now();
    let all = spec.scenarios.len();
    let bundled = if opts.bundle > 1 {
        let (s, k) = (spec.clone(), opts.bundle);
        let b = tokio::task::spawn_blocking(move || super::bundle::bundle(&s, k))
            .await
            .map_err(|e| PhError::Invalid(format!("bundling failed: {e}")))?
            .map_err(|e| PhError::Invalid(e.to_string()))?;
        Some(b)
    } else {
        None
    };
    let spec = bundled.as_ref().map_or(spec, |b| &b.spec);
    let (scenarios, nonants, integer, sense) = load_scenarios(spec, opts).await?;
    let sign = if sense == Sense::Maximize { -1.0 } else { 1.0 };
    let default_rho = opts.rho.or(spec.rho).unwrap_or(1.0);
    let mut d = Driver {
        mesh,
        opts,
        rho: nonants.iter().map(|v| spec.rho_of(v, default_rho)).collect(),
        probs: scenarios.iter().map(|s| s.prob).collect(),
        residents: scenarios.iter().map(|_| None).collect(),
        scenarios,
        nonants: Arc::new(nonants),
        place: Arc::new(Mutex::new(Placement::default())),
        quadratic: true,
        integer,
    };
    let n = d.n();
    let mut history = Vec::new();
    let mut record = |iter, conv, bound: f64, upper: Option<f64>, bytes, loaded| {
        let it = PhIteration {
            iter,
            conv,
            bound: sign * bound,
            upper: upper.map(|u| sign * u),
            seconds: start.elapsed().as_secs_f64(),
            bytes,
            loaded,
        };
        progress(&it);
        history.push(it);
    };

    // Iteration 0: every scenario alone (the wait-and-see bound).
    let s0 = d.sweep(StepMode::Plain, None, &vec![0.0; n]).await?;
    let mut trivial = 0.0;
    for (k, r) in s0.replies.iter().enumerate() {
        trivial += d.probs[k] * d.objective(k, r)?;
    }
    let mut x: Vec<Vec<f64>> = s0.replies.iter().map(|r| r.x.clone()).collect();
    let mut xbar = d.average(&x);
    let mut w: Vec<Vec<f64>> =
        x.iter().map(|xs| (0..n).map(|i| d.rho[i] * (xs[i] - xbar[i])).collect()).collect();
    let mut conv = d.conv(&x, &xbar);
    let mut best_bound = trivial;
    let mut best_upper: Option<f64> = None;
    let mip = d.integer.iter().any(|i| *i);
    // Iterations every scenario has agreed on each integer first-stage variable.
    let mut agreed = vec![0usize; n];
    let mut incumbent: Vec<f64> = Vec::new();
    record(0, conv, best_bound, None, s0.bytes, s0.loaded);

    let mut iter = 0;
    // Iteration 0 is the Lagrangian bound with W = 0 (the wait-and-see bound).
    let mut lagrangian = trivial;
    let mut converged = conv < opts.threshold;
    while !converged && iter < opts.max_iters {
        iter += 1;
        rebalance(&d.mesh, &d.place, &mut d.residents, opts.solver.as_deref());
        let s = d.sweep(StepMode::Prox, Some(&w), &xbar).await?;
        for (k, r) in s.replies.iter().enumerate() {
            d.objective(k, r)?;
            x[k] = r.x.clone();
        }
        let previous = std::mem::replace(&mut xbar, d.average(&x));
        for (k, xs) in x.iter().enumerate() {
            for i in 0..n {
                w[k][i] += d.rho[i] * (xs[i] - xbar[i]);
            }
        }
        if opts.rho_strategy == RhoStrategy::Adaptive {
            d.balance_rho(&x, &xbar, &previous);
        }
        d.fix_agreed(&x, &mut agreed);
        conv = d.conv(&x, &xbar);
        converged = conv < opts.threshold;
        let (mut bytes, mut loaded) = (s.bytes, s.loaded);
        if converged || iter == opts.max_iters || (opts.bound_every > 0 && iter % opts.bound_every == 0) {
            let (l, b, moved) = d.lagrangian(&w, &xbar).await?;
            bytes += b;
            loaded += moved;
            lagrangian = lagrangian.max(l);
            best_bound = best_bound.max(l);
            // A stochastic MIP keeps its best first stage so far (the incumbent).
            if opts.track_upper || mip {
                if let Some(u) = d.expected_cost(&xbar).await? {
                    if best_upper.is_none_or(|b| u < b) {
                        best_upper = Some(u);
                        incumbent = d.implementable(&xbar);
                    }
                }
            }
        }
        record(iter, conv, best_bound, best_upper, bytes, loaded);
    }
    let mut expected = d.expected_cost(&xbar).await?;
    let mut xbar = d.implementable(&xbar);
    if let (Some(b), true) = (best_upper, mip) {
        if expected.is_none_or(|e| b < e) {
            expected = Some(b);
            xbar = incumbent;
        }
    }
    for r in d.residents.into_iter().flatten() {
        r.close();
    }
    let gap = expected.map(|e| (e - best_bound).abs() / e.abs().max(1e-9));
    info!(iterations = iter, converged, "PH done");
    Ok(PhResult {
        name: spec.name.clone(),
        scenarios: all,
        bundles: d.scenarios.len(),
        xbar: d.nonants.iter().cloned().zip(xbar).collect(),
        expected_cost: expected.map(|e| sign * e),
        trivial_bound: sign * trivial,
        lagrangian_bound: sign * lagrangian,
        gap,
        iterations: iter,
        converged,
        quadratic: d.quadratic,
        seconds: start.elapsed().as_secs_f64(),
        history,
    })
}

/// Gives workers that joined since the last iteration their share: scenarios of
/// the most loaded workers are released, and the next step loads them on the newcomers.
fn rebalance(
    mesh: &Mesh,
    place: &Mutex<Placement>,
    residents: &mut [Option<ResidentScenario>],
    solver: Option<&str>,
) {
    let Ok(p) = place.lock() else { return };
    let live: Vec<_> = mesh
        .workers()
        .into_iter()
        .filter(|w| w.has_solver(solver) && !p.dead.contains(&w.instance))
        .collect();
    let total_slots: u32 = live.iter().map(|w| w.slots.max(1)).sum();
    let newcomers: Vec<_> =
        live.iter().filter(|w| p.load.get(&w.instance).copied().unwrap_or(0) == 0).collect();
    if newcomers.is_empty() || total_slots == 0 {
        return;
    }
    let share: usize =
        newcomers.iter().map(|w| residents.len() * w.slots.max(1) as usize / total_slots as usize).sum();
    drop(p);
    let mut moved = 0;
    while moved < share {
        // Release one scenario from the most loaded worker.
        let busiest = {
            let Ok(p) = place.lock() else { return };
            p.load.iter().max_by_key(|(_, n)| **n).map(|(w, n)| (w.clone(), *n))
        };
        let Some((worker, count)) = busiest else { break };
        if count <= 1 {
            break;
        }
        let Some(slot) = residents.iter_mut().find(|r| r.as_ref().is_some_and(|r| r.worker == worker)) else {
            break;
        };
        if let Some(r) = slot.take() {
            r.close();
        }
        if let Ok(mut p) = place.lock() {
            if let Some(n) = p.load.get_mut(&worker) {
                *n -= 1;
            }
        }
        moved += 1;
    }
    if moved > 0 {
        info!(moved, "gave scenarios to newly joined workers");
    }
}
