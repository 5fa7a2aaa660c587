//! `meshsolve ph`: progressive hedging over the mesh, and its report.

use std::sync::Arc;

use meshsolve::client::Mesh;

use crate::args::{MeshConfig, PhArgs};
use crate::report::fmt_value;

pub(crate) async fn ph(m: &MeshConfig, a: PhArgs) -> anyhow::Result<u8> {
    use meshsolve::ph::{self, PhOptions, PhSpec};
    if let Some(r) = a.rho.filter(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(
            crate::cli::Usage(format!("--rho {r}: a penalty is a positive number, e.g. --rho 1")).into()
        );
    }
    if !(a.threshold.is_finite() && a.threshold > 0.0) {
        return Err(crate::cli::Usage(format!(
            "--threshold {}: a positive number, e.g. --threshold 1e-4",
            a.threshold
        ))
        .into());
    }
    if a.step_patience < std::time::Duration::from_secs(1) {
        return Err(crate::cli::Usage(format!(
            "--step-patience {:?}: at least 1s (a worker is declared stuck after it), e.g. --step-patience 60s",
            a.step_patience
        ))
        .into());
    }
    if a.max_iters == 0 {
        return Err(crate::cli::Usage("--max-iters must be at least 1".into()).into());
    }
    if let Some(path) = &a.plot {
        match meshsolve::ph::plot::check(path) {
            Err(e @ meshsolve::ph::plot::PlotError::Format(_)) => {
                return Err(crate::cli::Usage(e.to_string()).into())
            }
            other => other?,
        }
    }
    let spec = PhSpec::load(&a.spec, &a.first_stage)?;
    let opts = PhOptions {
        rho: a.rho,
        rho_strategy: match a.rho_strategy {
            crate::args::RhoStrategyArg::Fixed => ph::RhoStrategy::Fixed,
            crate::args::RhoStrategyArg::Adaptive => ph::RhoStrategy::Adaptive,
        },
        threshold: a.threshold,
        max_iters: a.max_iters,
        bound_every: a.bound_every,
        solver: a.solver.clone(),
        time_limit: a.time_limit.map(|d| d.as_secs_f64()),
        step_patience: a.step_patience,
        bundle: a.bundle as usize,
        track_upper: a.plot.is_some(),
        ..Default::default()
    };
    let mesh = Arc::new(Mesh::connect(m.client.clone()).await?);
    let found = mesh.wait_for_workers(a.solver.as_deref(), m.wait).await?;
    let slots: u32 = found.iter().map(|w| w.slots).sum();
    if !a.quiet {
        let bundles = if a.bundle > 1 {
            format!(" in {} bundles of up to {}", spec.scenarios.len().div_ceil(a.bundle as usize), a.bundle)
        } else {
            String::new()
        };
        eprintln!(
            "ph: {} scenarios of `{}`{bundles} on {} worker(s), {slots} slot(s)",
            spec.scenarios.len(),
            spec.name,
            found.len()
        );
        eprintln!("{:>5} {:>14} {:>18} {:>9} {:>10}", "iter", "conv", "bound", "seconds", "bytes");
    }
    let quiet = a.quiet;
    let result = ph::run(mesh.clone(), &spec, &opts, |it| {
        if !quiet {
            eprintln!(
                "{:>5} {:>14.6e} {:>18.6} {:>9.2} {:>10}",
                it.iter, it.conv, it.bound, it.seconds, it.bytes
            );
        }
    })
    .await?;
    if let Some(path) = &a.plot {
        meshsolve::ph::plot::plot(&result, a.threshold, path)?;
        if !a.quiet {
            eprintln!("ph: plot written to {}", path.display());
        }
    }
    let ef = if a.ef {
        let r = meshsolve::ph::extensive::solve_extensive(&mesh, &spec, a.solver.clone()).await?;
        Some((r.status, r.objective, r.seconds, r.worker))
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&result)?;
        v["xbar"] = serde_json::Value::Object(
            result.xbar.iter().map(|(n, x)| (n.clone(), serde_json::json!(x))).collect(),
        );
        if let Some((st, obj, secs, worker)) = &ef {
            v["ef"] = serde_json::json!({"status": st.as_str(), "objective": obj, "seconds": secs, "worker": worker});
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if result.bundles < result.scenarios {
            println!(
                "{}: progressive hedging, {} scenarios in {} bundles",
                result.name, result.scenarios, result.bundles
            );
        } else {
            println!("{}: progressive hedging, {} scenarios", result.name, result.scenarios);
        }
        println!(
            "  {} after {} iterations ({:.2} s), proximal term {}",
            if result.converged { "converged" } else { "stopped at the iteration cap" },
            result.iterations,
            result.seconds,
            if result.quadratic { "quadratic" } else { "linearised" }
        );
        match result.expected_cost {
            Some(e) => println!("  expected cost of xbar   {e:.6}   (first stage fixed in every scenario)"),
            None => println!("  expected cost of xbar   infeasible for some scenario"),
        }
        println!("  trivial bound           {:.6}   (wait-and-see)", result.trivial_bound);
        println!("  Lagrangian bound        {:.6}", result.lagrangian_bound);
        if let Some(g) = result.gap {
            println!("  gap                     {:.4} %", 100.0 * g);
        }
        if let Some((st, obj, secs, worker)) = &ef {
            println!(
                "  extensive form          {} {}   ({secs:.2} s on {worker})",
                obj.map(|o| format!("{o:.6}")).unwrap_or_default(),
                st
            );
        }
        let width = result.xbar.iter().map(|(n, _)| n.len()).max().unwrap_or(8).max(8);
        println!("  {:<width$}  xbar", "variable");
        for (n, x) in &result.xbar {
            println!("  {n:<width$}  {}", fmt_value(*x));
        }
    }
    mesh.close().await;
    Ok(if result.converged { 0 } else { 5 })
}
