//! A stochastic capacitated facility location problem, a classic two-stage
//! stochastic MIP: which facilities to open is decided first (binary, fixed
//! cost), then, once each scenario's demands are known, customers are served
//! from open facilities within their capacities (transport cost per unit) or
//! left unserved at a penalty. One LP file per scenario plus a PH spec, from a
//! seed, for any size; small instances' extensive forms solve in seconds.

use std::io::Write;
use std::path::Path;

use super::farmer::Mt19937;

/// Penalty per unit of demand left unserved.
const UNMET: f64 = 200.0;

/// An instance: facilities, customers, scenarios and the seed of its data.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Candidate facilities.
    pub facilities: usize,
    /// Customers.
    pub customers: usize,
    /// Scenarios (equally likely).
    pub scenarios: usize,
    /// Seed of the locations, costs, capacities and demands.
    pub seed: u32,
}

struct Data {
    fixed: Vec<f64>,
    capacity: Vec<f64>,
    /// Transport cost per unit, facility × customer.
    cost: Vec<Vec<f64>>,
    /// Demand, scenario × customer.
    demand: Vec<Vec<f64>>,
}

fn data(size: Size) -> Data {
    let mut rng = Mt19937::new(size.seed);
    let mut u = |lo: f64, hi: f64| lo + (hi - lo) * rng.next_f64();
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let fac: Vec<(f64, f64)> = (0..size.facilities).map(|_| (u(0.0, 100.0), u(0.0, 100.0))).collect();
    let cus: Vec<(f64, f64)> = (0..size.customers).map(|_| (u(0.0, 100.0), u(0.0, 100.0))).collect();
    let fixed = (0..size.facilities).map(|_| round(u(800.0, 1200.0))).collect();
    let capacity = (0..size.facilities).map(|_| round(u(40.0, 80.0))).collect();
    let base: Vec<f64> = (0..size.customers).map(|_| u(5.0, 15.0)).collect();
    let cost = fac
        .iter()
        .map(|f| {
            cus.iter().map(|c| round(((f.0 - c.0).powi(2) + (f.1 - c.1).powi(2)).sqrt() / 5.0)).collect()
        })
        .collect();
    // A scenario scales every demand (a good or a bad year), and each customer varies about it.
    let demand = (0..size.scenarios)
        .map(|_| {
            let year = u(0.5, 1.7);
            base.iter().map(|b| round(b * year * u(0.7, 1.3))).collect()
        })
        .collect();
    Data { fixed, capacity, cost, demand }
}

fn scenario_lp(d: &Data, s: usize) -> String {
    let (nf, nc) = (d.fixed.len(), d.demand[s].len());
    let mut t = format!("\\ stochastic facility location, scenario {s}\nMinimize\n cost:");
    for i in 0..nf {
        t.push_str(&format!(" + {} Open_{i}", d.fixed[i]));
    }
    for i in 0..nf {
        t.push('\n');
        for j in 0..nc {
            t.push_str(&format!(" + {} Ship_{i}_{j}", d.cost[i][j]));
        }
    }
    t.push('\n');
    for j in 0..nc {
        t.push_str(&format!(" + {UNMET} Unmet_{j}"));
    }
    t.push_str("\nSubject To\n");
    for j in 0..nc {
        t.push_str(&format!(" demand_{j}:"));
        for i in 0..nf {
            t.push_str(&format!(" + Ship_{i}_{j}"));
        }
        t.push_str(&format!(" + Unmet_{j} >= {}\n", d.demand[s][j]));
    }
    for i in 0..nf {
        t.push_str(&format!(" capacity_{i}:"));
        for j in 0..nc {
            t.push_str(&format!(" + Ship_{i}_{j}"));
        }
        t.push_str(&format!(" - {} Open_{i} <= 0\n", d.capacity[i]));
    }
    t.push_str("Binary\n");
    for i in 0..nf {
        t.push_str(&format!(" Open_{i}\n"));
    }
    t.push_str("End\n");
    t
}

/// Writes `scen0.lp` … and `facility.toml` (equal probabilities, first stage
/// `Open_*`) into `dir`.
///
/// # Errors
/// When the directory or a file cannot be written.
pub fn write(dir: &Path, size: Size) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let d = data(size);
    let mut spec = std::fs::File::create(dir.join("facility.toml"))?;
    writeln!(
        spec,
        "# Stochastic capacitated facility location: {} facilities, {} customers, {} scenarios, seed {}.",
        size.facilities, size.customers, size.scenarios, size.seed
    )?;
    writeln!(spec, "name = \"facility{}x{}x{}\"", size.facilities, size.customers, size.scenarios)?;
    writeln!(spec, "first_stage = [\"Open_*\"]")?;
    writeln!(spec, "rho = 100.0")?;
    for s in 0..size.scenarios {
        std::fs::write(dir.join(format!("scen{s}.lp")), scenario_lp(&d, s))?;
        writeln!(
            spec,
            "\n[[scenario]]\nfile = \"scen{s}.lp\"\nprobability = {}",
            1.0 / size.scenarios as f64
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_read_back_with_binary_first_stage() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), Size { facilities: 4, customers: 6, scenarios: 3, seed: 7 }).unwrap();
        let m = crate::model::read_file(&dir.path().join("scen2.lp"), None).unwrap();
        assert_eq!(m.cols.len(), 4 + 4 * 6 + 6);
        assert_eq!(m.rows.len(), 6 + 4);
        let open: Vec<_> = m.cols.iter().filter(|c| c.name.starts_with("Open_")).collect();
        assert!(open.iter().all(|c| c.integer && c.upper == 1.0), "{open:?}");
        let spec = crate::ph::PhSpec::load(&dir.path().join("facility.toml"), &[]).unwrap();
        assert_eq!(spec.scenarios.len(), 3);
    }
}
