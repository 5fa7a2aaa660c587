//! Scenario bundles (`meshsolve ph --bundle K`): every K consecutive scenarios
//! become one subproblem, their extensive form with the first-stage variables
//! shared (not tied by equality rows), the objective being their expected cost
//! given the bundle. PH then runs on the bundles as on scenarios: fewer, larger
//! solves, and agreement inside a bundle is exact, so fewer iterations; the
//! answer (x̄, the expected cost of x̄, the bounds) is that of the same problem.

use std::collections::HashMap;
use std::path::PathBuf;

use super::spec::PhSpec;
use crate::model::{self, Column, Model, ModelError, Row};

/// A bundled spec and the directory holding its bundle files (removed on drop).
pub struct Bundled {
    /// The spec over the bundles (exact first-stage names, the original ρ settings).
    pub spec: PhSpec,
    /// How many scenarios each bundle holds, in order.
    pub sizes: Vec<usize>,
    _dir: tempfile::TempDir,
}

/// Why the bundles could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A scenario file could not be read.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A bundle file could not be written.
    #[error("cannot write a scenario bundle: {0}")]
    Io(#[from] std::io::Error),
    /// The scenarios do not fit together.
    #[error("{0}")]
    Invalid(String),
}

/// Groups the scenarios of `spec` into bundles of `k` (the last may be smaller)
/// and writes each bundle as an MPS file in a private temporary directory.
///
/// # Errors
/// [`BundleError`] when a scenario cannot be read, scenarios disagree on their
/// first stage or sense, or a file cannot be written.
pub fn bundle(spec: &PhSpec, k: usize) -> Result<Bundled, BundleError> {
    let k = k.max(1);
    let dir = tempfile::Builder::new().prefix("meshsolve-bundles-").tempdir()?;
    let mut scenarios = Vec::new();
    let mut sizes = Vec::new();
    let mut first_stage: Option<Vec<String>> = None;
    for (b, group) in spec.scenarios.chunks(k).enumerate() {
        let models = group
            .iter()
            .map(|(p, prob)| model::read_file(p, None).map(|m| (m, *prob)))
            .collect::<Result<Vec<_>, _>>()?;
        let names = spec.first_stage_of(models[0].0.cols.iter().map(|c| c.name.as_str()));
        if names.is_empty() {
            return Err(BundleError::Invalid(format!(
                "no variable of {} matches the first-stage patterns {:?}",
                group[0].0.display(),
                spec.first_stage
            )));
        }
        match &first_stage {
            Some(f) if *f != names => {
                return Err(BundleError::Invalid(format!(
                    "scenario {} has first-stage variables {names:?}, scenario 0 has {f:?}; every scenario needs the same ones",
                    group[0].0.display()
                )))
            }
            Some(_) => {}
            None => first_stage = Some(names.clone()),
        }
        let offset = b * k;
        let m = bundle_model(spec, &models, offset, &format!("{}-bundle{b}", spec.name))?;
        let path: PathBuf = dir.path().join(format!("bundle{b}.mps"));
        let f = std::fs::File::create(&path)?;
        m.write_mps(&mut std::io::BufWriter::new(f))?;
        scenarios.push((path, group.iter().map(|(_, p)| p).sum::<f64>()));
        sizes.push(group.len());
    }
    let spec = PhSpec {
        name: spec.name.clone(),
        scenarios,
        first_stage: first_stage.unwrap_or_default(),
        rho: spec.rho,
        rho_overrides: spec.rho_overrides.clone(),
    };
    Ok(Bundled { spec, sizes, _dir: dir })
}

/// One bundle: the first-stage columns once (under their own names, bounds
/// intersected), every scenario's other columns and rows renamed `s<index>.`,
/// costs weighted by each scenario's probability given the bundle.
fn bundle_model(
    spec: &PhSpec,
    models: &[(Model, f64)],
    first_index: usize,
    name: &str,
) -> Result<Model, BundleError> {
    let total: f64 = models.iter().map(|(_, p)| p).sum();
    let sense = models[0].0.sense;
    let mut out = Model::new(name);
    out.sense = sense;
    let mut shared: HashMap<String, u32> = HashMap::new();
    for (t, (m, p)) in models.iter().enumerate() {
        if m.sense != sense {
            return Err(BundleError::Invalid(format!(
                "scenario {} optimises in the other direction than scenario {first_index}",
                first_index + t
            )));
        }
        let w = p / total;
        let s = first_index + t;
        let first: std::collections::HashSet<String> =
            spec.first_stage_of(m.cols.iter().map(|c| c.name.as_str())).into_iter().collect();
        let mut map = Vec::with_capacity(m.cols.len());
        for c in &m.cols {
            if first.contains(&c.name) {
                if let Some(&j) = shared.get(&c.name) {
                    let col = &mut out.cols[j as usize];
                    col.cost += w * c.cost;
                    col.lower = col.lower.max(c.lower);
                    col.upper = col.upper.min(c.upper);
                    col.integer |= c.integer;
                    map.push(j);
                    continue;
                }
                let j = out.cols.len() as u32;
                shared.insert(c.name.clone(), j);
                out.cols.push(Column { cost: w * c.cost, ..c.clone() });
                map.push(j);
            } else {
                map.push(out.cols.len() as u32);
                out.cols.push(Column { name: format!("s{s}.{}", c.name), cost: w * c.cost, ..c.clone() });
            }
        }
        out.offset += w * m.offset;
        for r in &m.rows {
            out.rows.push(Row {
                name: format!("s{s}.{}", r.name),
                lower: r.lower,
                upper: r.upper,
                coefs: r.coefs.iter().map(|&(j, v)| (map[j as usize], v)).collect(),
            });
        }
        out.quad.extend(m.quad.iter().map(|&(i, j, q)| {
            let (a, b) = (map[i as usize], map[j as usize]);
            (a.min(b), a.max(b), w * q)
        }));
    }
    if let Some(c) = out.cols.iter().find(|c| c.lower > c.upper) {
        return Err(BundleError::Invalid(format!(
            "first-stage variable `{}` has bounds that no scenario of the bundle from {first_index} shares",
            c.name
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_shares_the_first_stage_and_weights_the_costs() {
        let dir = tempfile::tempdir().unwrap();
        let mut scenarios = Vec::new();
        for (k, (cost, p)) in [(1.0, 0.2), (3.0, 0.6), (5.0, 0.2)].into_iter().enumerate() {
            let path = dir.path().join(format!("s{k}.lp"));
            std::fs::write(&path, format!("min\n obj: x + {cost} y\nst\n c: x + y >= 1\nend\n")).unwrap();
            scenarios.push((path, p));
        }
        let spec = PhSpec {
            name: "t".into(),
            scenarios,
            first_stage: vec!["x".into()],
            rho: None,
            rho_overrides: Vec::new(),
        };
        let b = bundle(&spec, 2).unwrap();
        assert_eq!(b.sizes, [2, 1]);
        assert_eq!(b.spec.first_stage, ["x"]);
        let probs: Vec<f64> = b.spec.scenarios.iter().map(|s| s.1).collect();
        assert!((probs[0] - 0.8).abs() < 1e-12 && (probs[1] - 0.2).abs() < 1e-12);
        let m = model::read_file(&b.spec.scenarios[0].0, None).unwrap();
        let names: Vec<&str> = m.cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["x", "s0.y", "s1.y"]);
        // x costs 1 in both; y's costs weighted by 0.2/0.8 and 0.6/0.8.
        let costs: Vec<f64> = m.cols.iter().map(|c| c.cost).collect();
        for (got, want) in costs.iter().zip([1.0, 0.25, 2.25]) {
            assert!((got - want).abs() < 1e-12, "{costs:?}");
        }
        assert_eq!(m.rows.len(), 2);
    }
}
