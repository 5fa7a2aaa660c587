//! The in-memory model every reader produces and every solver consumes.
//!
//! A [`Model`] is a linear program with optional integer columns:
//! `min/max c'x + offset` subject to `row.lower <= A x <= row.upper` and
//! `col.lower <= x <= col.upper`. Readers for the CPLEX LP format ([`lp`]) and
//! MPS, fixed or free ([`mps`]), fill it from a stream, so a large or
//! gzip-compressed file is read once, line by line.

pub mod lp;
pub mod mps;
pub mod nl;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Optimisation direction of the objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sense {
    /// Minimise the objective (the default of both formats).
    Minimize,
    /// Maximise the objective.
    Maximize,
}

/// One decision variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Name as written in the file.
    pub name: String,
    /// Lower bound (`-inf` allowed).
    pub lower: f64,
    /// Upper bound (`+inf` allowed).
    pub upper: f64,
    /// Objective coefficient.
    pub cost: f64,
    /// Whether the column must take an integer value.
    pub integer: bool,
}

/// One constraint `lower <= sum(coef * x) <= upper`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Name as written in the file.
    pub name: String,
    /// Lower side (`-inf` for a `<=` row).
    pub lower: f64,
    /// Upper side (`+inf` for a `>=` row).
    pub upper: f64,
    /// Sparse coefficients: (column index, value).
    pub coefs: Vec<(u32, f64)>,
}

/// A linear or mixed-integer program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Problem name (from the file's NAME line, or the file stem).
    pub name: String,
    /// Direction of optimisation.
    pub sense: Sense,
    /// Constant added to the objective.
    pub offset: f64,
    /// Variables, in order of first appearance.
    pub cols: Vec<Column>,
    /// Constraints, in file order.
    pub rows: Vec<Row>,
    /// Quadratic objective terms `(i, j, q)` with `i ≤ j`: the upper triangle of a
    /// symmetric Q in `½ xᵀQx`, so `(j, j, q)` adds `q/2 · x_j²` and `(i, j, q)`
    /// with `i < j` adds `q · x_i x_j`. Solvers that take a QP read them (MPS
    /// `QUADOBJ`); progressive hedging builds diagonal ones.
    #[serde(default)]
    pub quad: Vec<(u32, u32, f64)>,
}

impl Model {
    /// An empty minimisation model.
    pub fn new(name: impl Into<String>) -> Self {
        Model {
            name: name.into(),
            sense: Sense::Minimize,
            offset: 0.0,
            cols: Vec::new(),
            rows: Vec::new(),
            quad: Vec::new(),
        }
    }

    /// The same problem as an external solver should read it: a minimisation
    /// with columns named `C0, C1, …` and rows `R0, R1, …` (safe in every MPS
    /// reader, whatever the original names were) and no constant term. The
    /// objective of this model is `sign · objective(copy) + self.offset`.
    pub fn for_external(&self) -> (Model, f64) {
        let sign = if self.sense == Sense::Maximize { -1.0 } else { 1.0 };
        let copy = Model {
            name: "meshsolve".into(),
            sense: Sense::Minimize,
            offset: 0.0,
            cols: self
                .cols
                .iter()
                .enumerate()
                .map(|(j, c)| Column { name: format!("C{j}"), cost: sign * c.cost, ..c.clone() })
                .collect(),
            rows: self
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| Row { name: format!("R{i}"), ..r.clone() })
                .collect(),
            quad: self.quad.iter().map(|&(i, j, q)| (i, j, sign * q)).collect(),
        };
        (copy, sign)
    }

    /// Number of integer columns.
    pub fn num_integers(&self) -> usize {
        self.cols.iter().filter(|c| c.integer).count()
    }

    /// Number of non-zero constraint coefficients.
    pub fn nnz(&self) -> usize {
        self.rows.iter().map(|r| r.coefs.len()).sum()
    }

    /// Makes the model safe for every back-end: repeated (row, column) entries
    /// are merged (summed, as the formats mean them), zero coefficients dropped;
    /// a coefficient, cost or quadratic term that is not finite, or a NaN bound,
    /// is refused naming the row and column.
    ///
    /// # Errors
    /// A message naming the offending row and column.
    pub fn normalize(&mut self) -> Result<(), String> {
        for c in &self.cols {
            if !c.cost.is_finite() {
                return Err(format!("objective coefficient of `{}` is not finite", c.name));
            }
            if c.lower.is_nan()
                || c.upper.is_nan()
                || c.lower == f64::INFINITY
                || c.upper == f64::NEG_INFINITY
            {
                return Err(format!("bounds of `{}` make no sense ([{}, {}])", c.name, c.lower, c.upper));
            }
        }
        if !self.offset.is_finite() {
            return Err("the objective constant is not finite".into());
        }
        for r in &mut self.rows {
            if r.lower.is_nan()
                || r.upper.is_nan()
                || r.lower == f64::INFINITY
                || r.upper == f64::NEG_INFINITY
            {
                return Err(format!("bounds of row `{}` make no sense ([{}, {}])", r.name, r.lower, r.upper));
            }
            if let Some(&(j, _)) = r.coefs.iter().find(|e| !e.1.is_finite()) {
                let col = self.cols.get(j as usize).map_or("?", |c| c.name.as_str());
                return Err(format!("coefficient of `{col}` in row `{}` is not finite", r.name));
            }
            if r.coefs.windows(2).any(|w| w[0].0 >= w[1].0) {
                r.coefs.sort_by_key(|e| e.0);
                r.coefs.dedup_by(|b, a| {
                    if a.0 == b.0 {
                        a.1 += b.1;
                        true
                    } else {
                        false
                    }
                });
            }
            r.coefs.retain(|e| e.1 != 0.0);
        }
        if let Some(&(i, j, _)) = self.quad.iter().find(|q| !q.2.is_finite()) {
            return Err(format!("quadratic coefficient of columns {i} and {j} is not finite"));
        }
        Ok(())
    }

    /// Objective value of `x` (including the offset).
    pub fn objective_of(&self, x: &[f64]) -> f64 {
        self.offset
            + self.cols.iter().zip(x).map(|(c, v)| c.cost * v).sum::<f64>()
            + self
                .quad
                .iter()
                .map(|&(i, j, q)| {
                    let (xi, xj) = (x[i as usize], x[j as usize]);
                    if i == j {
                        0.5 * q * xi * xi
                    } else {
                        q * xi * xj
                    }
                })
                .sum::<f64>()
    }

    /// Writes the model in free MPS to `NAME.mps` in a new private (0700) temporary
    /// directory, removed when the returned guard is dropped: a model in transit
    /// to a worker.
    ///
    /// # Errors
    /// When the directory or the file cannot be written.
    pub fn write_temp_mps(&self, name: &str) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
        let dir = tempfile::Builder::new().prefix("meshsolve-").tempdir()?;
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        let path = dir.path().join(format!("{}.mps", if safe.is_empty() { "model" } else { &safe }));
        let f = File::create(&path)?;
        self.write_mps(&mut std::io::BufWriter::new(f))?;
        Ok((dir, path))
    }

    /// Writes the model in free MPS; readers of this crate and every common solver take it.
    ///
    /// # Errors
    /// When writing to `out` fails.
    pub fn write_mps(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        // MPS cannot say that a row's lower side is above its upper side.
        if let Some(r) = self.rows.iter().find(|r| r.lower > r.upper) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("row `{}` needs {} <= ... <= {}: the model is infeasible", r.name, r.lower, r.upper),
            ));
        }
        writeln!(out, "NAME {}", if self.name.is_empty() { "model" } else { &self.name })?;
        if self.sense == Sense::Maximize {
            writeln!(out, "OBJSENSE\n    MAX")?;
        }
        // The objective row's name must not be one of the rows' own.
        let mut obj = String::from("obj");
        while self.rows.iter().any(|r| r.name == obj) {
            obj.push('_');
        }
        writeln!(out, "ROWS\n N {obj}")?;
        // A ranged row is written from its side of smaller magnitude (the other
        // side is that plus or minus the range, computed with the least rounding).
        let from_lower = |r: &Row| r.lower.abs() <= r.upper.abs();
        for r in &self.rows {
            let kind = match (r.lower.is_finite(), r.upper.is_finite()) {
                (true, true) if r.lower == r.upper => "E",
                (true, true) if from_lower(r) => "G",
                (true, true) => "L",
                (true, false) => "G",
                (false, true) => "L",
                (false, false) => "N",
            };
            writeln!(out, " {kind} {}", r.name)?;
        }
        // Column-major view of the row-major matrix.
        let mut by_col: Vec<Vec<(usize, f64)>> = vec![Vec::new(); self.cols.len()];
        for (i, r) in self.rows.iter().enumerate() {
            for &(j, v) in &r.coefs {
                by_col[j as usize].push((i, v));
            }
        }
        writeln!(out, "COLUMNS")?;
        let mut in_int = false;
        for (j, c) in self.cols.iter().enumerate() {
            if c.integer != in_int {
                let m = if c.integer { "INTORG" } else { "INTEND" };
                writeln!(out, "    MARKER 'MARKER' '{m}'")?;
                in_int = c.integer;
            }
            if c.cost != 0.0 {
                writeln!(out, "    {} {obj} {:e}", c.name, c.cost)?;
            }
            for &(i, v) in &by_col[j] {
                writeln!(out, "    {} {} {:e}", c.name, self.rows[i].name, v)?;
            }
            if c.cost == 0.0 && by_col[j].is_empty() {
                writeln!(out, "    {} {obj} 0", c.name)?;
            }
        }
        if in_int {
            writeln!(out, "    MARKER 'MARKER' 'INTEND'")?;
        }
        writeln!(out, "RHS")?;
        if self.offset != 0.0 {
            writeln!(out, "    rhs {obj} {:e}", -self.offset)?;
        }
        let mut ranges = Vec::new();
        for r in &self.rows {
            let rhs = if r.lower.is_finite() && (!r.upper.is_finite() || from_lower(r)) {
                r.lower
            } else {
                r.upper
            };
            if rhs.is_finite() && rhs != 0.0 {
                writeln!(out, "    rhs {} {:e}", r.name, rhs)?;
            }
            if r.lower.is_finite() && r.upper.is_finite() && r.lower != r.upper {
                ranges.push((&r.name, r.upper - r.lower));
            }
        }
        if !ranges.is_empty() {
            writeln!(out, "RANGES")?;
            for (n, v) in ranges {
                writeln!(out, "    rng {n} {v:e}")?;
            }
        }
        writeln!(out, "BOUNDS")?;
        for c in &self.cols {
            match (c.lower, c.upper) {
                (l, u) if l == u => writeln!(out, " FX bnd {} {l:e}", c.name)?,
                (l, u) if l == f64::NEG_INFINITY && u == f64::INFINITY => {
                    writeln!(out, " FR bnd {}", c.name)?
                }
                (l, u) => {
                    if l == f64::NEG_INFINITY {
                        writeln!(out, " MI bnd {}", c.name)?;
                    } else if l != 0.0 || c.integer || u < 0.0 {
                        // (A negative upper bound alone would make the lower one -inf.)
                        writeln!(out, " LO bnd {} {l:e}", c.name)?;
                    }
                    if u.is_finite() {
                        writeln!(out, " UP bnd {} {u:e}", c.name)?;
                    } else if c.integer {
                        writeln!(out, " PL bnd {}", c.name)?;
                    }
                }
            }
        }
        if !self.quad.is_empty() {
            writeln!(out, "QUADOBJ")?;
            for &(i, j, q) in &self.quad {
                writeln!(out, "    {} {} {q:e}", self.cols[i as usize].name, self.cols[j as usize].name)?;
            }
        }
        writeln!(out, "ENDATA")
    }
}

/// File formats the readers understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// CPLEX LP format.
    Lp,
    /// MPS, fixed or free.
    Mps,
}

impl Format {
    /// Guesses the format and compression from a file name
    /// (`.lp`, `.mps`, `.fixed`/`.free`, each optionally followed by `.gz`).
    pub fn from_path(path: &Path) -> Option<(Format, bool)> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let (stem, gz) = match name.strip_suffix(".gz") {
            Some(s) => (s.to_string(), true),
            None => (name, false),
        };
        let ext = stem.rsplit('.').next()?;
        match ext {
            "lp" => Some((Format::Lp, gz)),
            "mps" | "fixed" | "free" => Some((Format::Mps, gz)),
            _ => None,
        }
    }
}

/// Why a model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be opened or read. Retrying helps only if the file changes.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a well-formed model; fix the file.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// The model reads, but makes no sense (an infinite coefficient, NaN bounds); fix the file.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the row and column.
        message: String,
    },
    /// The file name says neither LP nor MPS.
    #[error("{path}: unknown model format; name it .lp, .mps (optionally .gz) or pass --format lp|mps")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
}

impl ModelError {
    /// A reader's error with its file; line 0 means the whole model (normalisation).
    fn from_parse(path: &Path, p: ParseError) -> Self {
        if p.line == 0 {
            ModelError::Invalid { path: path.to_path_buf(), message: p.message }
        } else {
            ModelError::Syntax { path: path.to_path_buf(), line: p.line, message: p.message }
        }
    }
}

/// A syntax error without the file name, which the caller adds.
#[derive(Debug)]
pub(crate) struct ParseError {
    pub line: usize,
    pub message: String,
}

pub(crate) fn syntax(line: usize, message: impl Into<String>) -> StreamError {
    StreamError::Parse(ParseError { line, message: message.into() })
}

pub(crate) type ParseResult<T> = Result<T, ParseError>;

pub(crate) fn perr<T>(line: usize, message: impl Into<String>) -> ParseResult<T> {
    Err(ParseError { line, message: message.into() })
}

/// Opens a model file, decompressing it on the fly when `gz` is set.
///
/// # Errors
/// [`ModelError::Io`] when the file cannot be opened.
pub fn open_stream(path: &Path, gz: bool) -> Result<Box<dyn BufRead + Send>, ModelError> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    Ok(stream_of(Box::new(file), gz))
}

/// A model's bytes from `from` as [`open_stream`] gives them (gzip undone,
/// capped at `MESHSOLVE_MAX_UNZIPPED_GB`).
pub fn stream_of(from: Box<dyn Read + Send>, gz: bool) -> Box<dyn BufRead + Send> {
    let reader: Box<dyn Read + Send> = if gz {
        let gb = limit("MESHSOLVE_MAX_UNZIPPED_GB", 64);
        Box::new(Capped { inner: flate2::read::MultiGzDecoder::new(from), left: gb << 30, gb })
    } else {
        from
    };
    Box::new(BufReader::with_capacity(1 << 16, reader))
}

/// A limit from the environment (`name`, a whole number), or `default`.
fn limit(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).filter(|v| *v > 0).unwrap_or(default)
}

/// Longest line a model file may have (bytes): `MESHSOLVE_MAX_LINE_MB`, default 64 MiB.
fn max_line() -> usize {
    (limit("MESHSOLVE_MAX_LINE_MB", 64) << 20) as usize
}

/// A decompressing reader that stops with an error past `left` bytes: a small
/// `.gz` must not unfold into more than a model can sensibly be.
struct Capped<R> {
    inner: R,
    left: u64,
    gb: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let gb = self.gb;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other(format!(
                "the decompressed model is larger than {gb} GiB (MESHSOLVE_MAX_UNZIPPED_GB sets the limit); is this a model file?"
            ))
        })?;
        Ok(n)
    }
}

/// Reads a model file, choosing the reader from `format` or the file name.
///
/// # Errors
/// [`ModelError`] when the file is missing, of an unknown format, or malformed (with its line and
/// what was expected).
pub fn read_file(path: &Path, format: Option<Format>) -> Result<Model, ModelError> {
    let (fmt, gz) = match (format, Format::from_path(path)) {
        (Some(f), guess) => (f, guess.map(|g| g.1).unwrap_or(false) || has_gz_suffix(path)),
        (None, Some(g)) => g,
        (None, None) => return Err(ModelError::UnknownFormat { path: path.to_path_buf() }),
    };
    let stream = open_stream(path, gz)?;
    let stem = model_stem(path);
    read_stream(stream, fmt, &stem).map_err(|e| match e {
        StreamError::Io(source) => ModelError::Io { path: path.to_path_buf(), source },
        StreamError::Parse(p) => ModelError::from_parse(path, p),
    })
}

fn has_gz_suffix(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The file name without directory, `.gz` and the format extension.
pub fn model_stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let name = name.strip_suffix(".gz").unwrap_or(&name).to_string();
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s.to_string(),
        _ => name,
    }
}

/// Errors of [`read_stream`]: I/O or syntax.
#[derive(Debug)]
pub(crate) enum StreamError {
    Io(std::io::Error),
    Parse(ParseError),
}

impl From<ParseError> for StreamError {
    fn from(p: ParseError) -> Self {
        StreamError::Parse(p)
    }
}

/// Reads from any buffered stream.
pub(crate) fn read_stream(
    stream: impl BufRead,
    fmt: Format,
    default_name: &str,
) -> Result<Model, StreamError> {
    let mut m = match fmt {
        Format::Lp => lp::read(stream, default_name)?,
        Format::Mps => mps::read(stream, default_name)?,
    };
    // Every model is normalised before any back-end sees it.
    m.normalize().map_err(|message| StreamError::Parse(ParseError { line: 0, message }))?;
    Ok(m)
}

/// Parses a model held in memory (used by tests and small generated models).
///
/// # Errors
/// [`ModelError::Parse`] with the line and what was expected.
pub fn parse_str(text: &str, fmt: Format) -> Result<Model, ModelError> {
    read_stream(text.as_bytes(), fmt, "model").map_err(|e| match e {
        StreamError::Io(source) => ModelError::Io { path: PathBuf::from("<memory>"), source },
        StreamError::Parse(p) => ModelError::from_parse(Path::new("<memory>"), p),
    })
}

/// Line iterator that counts lines and turns invalid UTF-8 into a syntax error.
pub(crate) struct Lines<R> {
    inner: R,
    buf: String,
    pub line: usize,
}

impl<R: BufRead> Lines<R> {
    pub fn new(inner: R) -> Self {
        Lines { inner, buf: String::new(), line: 0 }
    }

    /// The next line without its line ending, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<(usize, &str)>, StreamError> {
        self.buf.clear();
        let mut bytes = Vec::new();
        let cap = max_line();
        let n =
            (&mut self.inner).take(cap as u64 + 1).read_until(b'\n', &mut bytes).map_err(StreamError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if n > cap {
            return Err(StreamError::Parse(ParseError {
                line: self.line,
                message: format!(
                    "line is longer than {} MiB (MESHSOLVE_MAX_LINE_MB sets the limit); is this a model file?",
                    cap >> 20
                ),
            }));
        }
        match String::from_utf8(bytes) {
            Ok(s) => self.buf = s,
            Err(_) => {
                return Err(StreamError::Parse(ParseError {
                    line: self.line,
                    message: "line is not valid UTF-8 text; is this a model file?".into(),
                }))
            }
        }
        Ok(Some((self.line, self.buf.trim_end_matches(['\n', '\r']))))
    }
}

/// Name → index map used while building a model.
#[derive(Default)]
pub(crate) struct Names {
    map: HashMap<String, u32>,
}

impl Names {
    pub fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }
    pub fn insert(&mut self, name: &str, idx: u32) {
        self.map.insert(name.to_string(), idx);
    }
}

/// Parses a number token, accepting `inf`/`infinity` with an optional sign.
pub(crate) fn parse_number(tok: &str) -> Option<f64> {
    let lower = tok.to_ascii_lowercase();
    let (neg, body) = match lower.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    let v = match body {
        "inf" | "infinity" => f64::INFINITY,
        _ => {
            let first = body.chars().next()?;
            if !(first.is_ascii_digit() || first == '.') {
                return None;
            }
            body.parse::<f64>().ok()?
        }
    };
    Some(if neg { -v } else { v })
}
