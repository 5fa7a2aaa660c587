//! A picture of a PH run (`meshsolve ph --plot FILE.svg|FILE.png`): three
//! panels over the iterations — convergence (mean |x_s − x̄|, log scale, with the
//! threshold), the two bounds (the best Lagrangian bound and the best expected
//! cost of an x̄), and the relative gap between them (log scale).
//!
//! Text is measured and (for PNG) drawn with a TrueType font of the system
//! (any `.ttf` under the usual font directories; DejaVu Sans preferred).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::run::PhResult;

/// Why the picture could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name says neither SVG nor PNG.
    #[error("{0}: the plot file must end in .svg or .png")]
    Format(PathBuf),
    /// No font to measure the labels with.
    #[error(
        "no TrueType font found under /usr/share/fonts, /usr/local/share/fonts or ~/.fonts to write the plot's labels; install one (Debian and Ubuntu: apt install fonts-dejavu-core)"
    )]
    NoFont,
    /// Drawing or writing failed.
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The plot file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Checks before a run that `path` can be drawn: its extension, and a font.
///
/// # Errors
/// [`PlotError::Format`] or [`PlotError::NoFont`].
pub fn check(path: &Path) -> Result<(), PlotError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg") | Some("png")) {
        return Err(PlotError::Format(path.to_path_buf()));
    }
    font()
}

/// Draws `result`'s history into `path` (SVG or PNG, by its extension).
///
/// # Errors
/// [`PlotError`] for another extension, no usable font, or a file that cannot be written.
pub fn plot(result: &PhResult, threshold: f64, path: &Path) -> Result<(), PlotError> {
    check(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let draw_err =
        |e: &dyn std::fmt::Display| PlotError::Draw { path: path.to_path_buf(), message: e.to_string() };
    let size = (1000, 900);
    if ext.as_deref() == Some("svg") {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw(&root, result, threshold).map_err(|e| draw_err(&e))?;
        root.present().map_err(|e| draw_err(&e))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw(&root, result, threshold).map_err(|e| draw_err(&e))?;
        root.present().map_err(|e| draw_err(&e))
    }
}

/// Registers a system font as "sans-serif" (once per process).
fn font() -> Result<(), PlotError> {
    static FONT: OnceLock<bool> = OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        let mut dirs = vec![PathBuf::from("/usr/share/fonts"), PathBuf::from("/usr/local/share/fonts")];
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(PathBuf::from(home).join(".fonts"));
        }
        let mut found: Vec<PathBuf> = dirs
            .iter()
            .flat_map(|d| walkdir::WalkDir::new(d).max_depth(4).into_iter().flatten())
            .map(|e| e.into_path())
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")))
            .collect();
        // A plain sans face first.
        let rank = |p: &PathBuf| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match n {
                "DejaVuSans.ttf" => 0,
                _ if n.contains("Sans") && !n.contains("Bold") && !n.contains("Oblique") => 1,
                _ => 2,
            }
        };
        found.sort_by_key(rank);
        found.into_iter().any(|p| {
            let Ok(bytes) = std::fs::read(&p) else { return false };
            // Registered fonts live for the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::NoFont)
    }
}

type DrawResult<E> = Result<(), DrawingAreaErrorKind<E>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &PhResult,
    threshold: f64,
) -> DrawResult<DB::ErrorType> {
    root.fill(&WHITE)?;
    let title = format!(
        "{}: {} scenarios{}, {} iterations{}",
        r.name,
        r.scenarios,
        if r.bundles < r.scenarios { format!(" in {} bundles", r.bundles) } else { String::new() },
        r.iterations,
        if r.converged { ", converged" } else { ", at the cap" }
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let panels = root.split_evenly((3, 1));
    let last = r.history.last().map_or(1, |h| h.iter).max(1) as f64;

    // Convergence, with the threshold.
    let conv: Vec<(f64, f64)> =
        r.history.iter().filter(|h| h.conv > 0.0).map(|h| (h.iter as f64, h.conv)).collect();
    let (lo, hi) = range(conv.iter().map(|p| p.1).chain([threshold]), true);
    let mut c = ChartBuilder::on(&panels[0])
        .caption("convergence: mean |x_s - xbar|", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..last, (lo..hi).log_scale())?;
    c.configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;
    c.draw_series(LineSeries::new(conv, &BLUE))?
        .label("convergence")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    c.draw_series(LineSeries::new(vec![(0.0, threshold), (last, threshold)], RED.stroke_width(1)))?
        .label("threshold")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    // Bounds: the best bound from the W's, and the expected cost of x̄ (the final one at the end).
    let lower: Vec<(f64, f64)> = r.history.iter().map(|h| (h.iter as f64, h.bound)).collect();
    let mut upper: Vec<(f64, f64)> =
        r.history.iter().filter_map(|h| h.upper.map(|u| (h.iter as f64, u))).collect();
    if let Some(e) = r.expected_cost {
        upper.push((last, e));
    }
    // The first iterations' bounds can be far off: the view follows the last half.
    let tail = |v: &[(f64, f64)]| v.iter().filter(|p| p.0 >= last / 2.0).map(|p| p.1).collect::<Vec<_>>();
    let (blo, bhi) = range(tail(&lower).into_iter().chain(tail(&upper)), false);
    let mut c = ChartBuilder::on(&panels[1])
        .caption("bounds", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..last, blo..bhi)?;
    c.configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.6e}"))
        .draw()?;
    c.draw_series(LineSeries::new(lower, &GREEN))?
        .label("best Lagrangian bound")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
    if !upper.is_empty() {
        c.draw_series(LineSeries::new(upper, &MAGENTA))?
            .label("expected cost of xbar")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], MAGENTA));
    }
    c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    // Gap, where both sides are known.
    let gap: Vec<(f64, f64)> = r
        .history
        .iter()
        .filter_map(|h| {
            let u = h.upper.or(if h.iter as f64 == last { r.expected_cost } else { None })?;
            let g = (u - h.bound).abs() / u.abs().max(1e-9);
            (g > 0.0).then_some((h.iter as f64, g))
        })
        .collect();
    let (glo, ghi) = range(gap.iter().map(|p| p.1), true);
    let mut c = ChartBuilder::on(&panels[2])
        .caption("relative gap between the bounds", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..last, (glo..ghi).log_scale())?;
    c.configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;
    c.draw_series(LineSeries::new(gap, &BLACK))?;
    Ok(())
}

/// A plotting range around `values` (positive only and by decades when `log`).
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let v: Vec<f64> = values.filter(|x| x.is_finite() && (!log || *x > 0.0)).collect();
    let (mut lo, mut hi) =
        v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    if v.is_empty() {
        return if log { (1e-8, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        lo = 10f64.powf(lo.log10().floor());
        hi = 10f64.powf(hi.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
    } else {
        let pad = ((hi - lo) * 0.05).max(hi.abs().max(1.0) * 1e-9);
        lo -= pad;
        hi += pad;
    }
    (lo, hi)
}
