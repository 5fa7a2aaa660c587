//! The AMPL NL format (Gay, "Writing .nl Files"), text (`g`) and binary
//! (`b`), for linear and mixed-integer programs: what Pyomo, JuMP and AMPL
//! hand to a solver executable. Nonlinear parts are refused with a message
//! that says so; malformed input is an error naming the line (text) or the
//! byte offset (binary), never a panic.
//!
//! Variables and constraints keep their NL order; they are named `x<j>` and
//! `c<i>` (the caller may attach the labels of Pyomo's `.col`/`.row` files).

use super::{Column, Model, Row, Sense};

/// Why an NL file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct NlError {
    /// `line N` (text) or `byte N` (binary).
    pub place: String,
    /// What was wrong.
    pub message: String,
}

/// An NL problem as read: the model and what a `.sol` file must echo.
#[derive(Debug, Clone, PartialEq)]
pub struct NlProblem {
    /// The linear or mixed-integer program; a missing objective is a zero objective.
    pub model: Model,
    /// The AMPL options of the header (`g3 1 1 0` → `[1, 1, 0]`), echoed in the `.sol` file.
    pub options: Vec<i64>,
    /// Whether the input was binary (the `.sol` is written in text either way).
    pub binary: bool,
    /// Objectives in the file (only the first is used).
    pub objectives: usize,
    /// Initial primal values given in an `x` segment, by variable index.
    pub initial: Vec<(usize, f64)>,
}

/// Counts from the 10 header lines.
#[derive(Debug, Default, Clone)]
struct Header {
    vars: usize,
    cons: usize,
    objs: usize,
    nl_cons: usize,
    logical_cons: usize,
    nlvc: usize,
    nlvo: usize,
    nlvb: usize,
    funcs: usize,
    nbv: usize,
    niv: usize,
    nlvoi: usize,
    common_exprs: usize,
}

/// Token access, the same for both encodings.
trait Tokens {
    /// Where the reader is, for error messages.
    fn place(&self) -> String;
    /// The next segment letter, expression code or bound digit; `None` at the end.
    fn next_char(&mut self) -> Option<u8>;
    fn int(&mut self) -> Result<i64, String>;
    fn float(&mut self) -> Result<f64, String>;
    fn name(&mut self) -> Result<String, String>;
    /// Skips what is left of a text line (nothing in binary).
    fn end_line(&mut self);
}

struct Text<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
}

impl Text<'_> {
    fn skip_blanks(&mut self) {
        while self.pos < self.data.len() && matches!(self.data[self.pos], b' ' | b'\t' | b'\r') {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &[u8] {
        self.skip_blanks();
        let start = self.pos;
        while self.pos < self.data.len()
            && !matches!(self.data[self.pos], b' ' | b'\t' | b'\r' | b'\n' | b'#')
        {
            self.pos += 1;
        }
        &self.data[start..self.pos]
    }
}

impl Tokens for Text<'_> {
    fn place(&self) -> String {
        format!("line {}", self.line)
    }

    fn next_char(&mut self) -> Option<u8> {
        loop {
            self.skip_blanks();
            match self.data.get(self.pos) {
                None => return None,
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                }
                Some(b'#') => self.end_line(),
                Some(&c) => {
                    self.pos += 1;
                    return Some(c);
                }
            }
        }
    }

    fn int(&mut self) -> Result<i64, String> {
        let t = self.token();
        let s = std::str::from_utf8(t).map_err(|_| "expected an integer".to_string())?;
        s.parse::<i64>().map_err(|_| format!("expected an integer, found `{s}`"))
    }

    fn float(&mut self) -> Result<f64, String> {
        let t = self.token();
        let s = std::str::from_utf8(t).map_err(|_| "expected a number".to_string())?;
        let v: f64 = s.parse().map_err(|_| format!("expected a number, found `{s}`"))?;
        if v.is_nan() {
            return Err(format!("`{s}` is not a number"));
        }
        Ok(v)
    }

    fn name(&mut self) -> Result<String, String> {
        let t = self.token();
        Ok(String::from_utf8_lossy(t).into_owned())
    }

    fn end_line(&mut self) {
        while self.pos < self.data.len() && self.data[self.pos] != b'\n' {
            self.pos += 1;
        }
        if self.pos < self.data.len() {
            self.pos += 1;
            self.line += 1;
        }
    }
}

/// The binary encoding: one byte per letter, 4-byte integers, 8-byte doubles,
/// in the byte order the header's arithmetic field names.
struct Binary<'a> {
    data: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl Binary<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end =
            self.pos.checked_add(N).filter(|&e| e <= self.data.len()).ok_or("unexpected end of file")?;
        let mut b = [0u8; N];
        b.copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(b)
    }
}

impl Tokens for Binary<'_> {
    fn place(&self) -> String {
        format!("byte {}", self.pos)
    }

    fn next_char(&mut self) -> Option<u8> {
        let c = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(c)
    }

    fn int(&mut self) -> Result<i64, String> {
        let b = self.take::<4>()?;
        Ok(if self.big_endian { i32::from_be_bytes(b) } else { i32::from_le_bytes(b) } as i64)
    }

    fn float(&mut self) -> Result<f64, String> {
        let b = self.take::<8>()?;
        let v = if self.big_endian { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) };
        if v.is_nan() {
            return Err("a number is NaN".into());
        }
        Ok(v)
    }

    fn name(&mut self) -> Result<String, String> {
        let n = self.int()?;
        let n = usize::try_from(n).map_err(|_| "negative name length".to_string())?;
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("unexpected end of file")?;
        let s = String::from_utf8_lossy(&self.data[self.pos..end]).into_owned();
        self.pos = end;
        Ok(s)
    }

    fn end_line(&mut self) {}
}

fn err(place: String, message: impl Into<String>) -> NlError {
    NlError { place, message: message.into() }
}

/// Parses the numbers of one header line (text, before any `#` comment).
fn header_numbers(line: &str) -> Result<Vec<i64>, String> {
    let body = line.split('#').next().unwrap_or("");
    body.split_whitespace()
        .map(|t| t.parse::<i64>().map_err(|_| format!("expected a number, found `{t}`")))
        .collect()
}

fn count(v: &[i64], i: usize, what: &str, limit: usize) -> Result<usize, String> {
    let x = v.get(i).copied().unwrap_or(0);
    let x = usize::try_from(x).map_err(|_| format!("negative {what} in the header"))?;
    if x > limit {
        return Err(format!("{what} ({x}) is larger than the file could hold"));
    }
    Ok(x)
}

/// The AMPL options and the variable and constraint counts of an NL header,
/// when at least that much of it is readable (to answer a file it refuses).
pub fn peek_header(data: &[u8]) -> Option<(Vec<i64>, usize, usize)> {
    let mut lines = data.split(|&b| b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned());
    let first = lines.next()?;
    let first = first.split('#').next()?.trim().to_string();
    if !matches!(first.as_bytes().first(), Some(b'g' | b'b')) {
        return None;
    }
    let opts = header_numbers(&first[1..]).ok()?;
    let (&n, rest) = opts.split_first()?;
    let options = rest.get(..usize::try_from(n).ok()?)?.to_vec();
    let sizes = header_numbers(&lines.next()?).ok()?;
    let vars = usize::try_from(*sizes.first()?).ok()?;
    let cons = usize::try_from(*sizes.get(1)?).ok()?;
    Some((options, vars, cons))
}

/// [`read`] on a thread with a stack large enough for [`MAX_DEPTH`] levels of
/// expression nesting.
///
/// # Errors
/// As [`read`]; also when the thread cannot be started.
pub fn read_on_big_stack(data: Vec<u8>, name: String) -> Result<NlProblem, NlError> {
    std::thread::Builder::new()
        .name("nl-reader".into())
        .stack_size(512 << 20)
        .spawn(move || read(&data, &name))
        .map_err(|e| err("reader".into(), format!("cannot start the reader: {e}")))?
        .join()
        .unwrap_or_else(|_| Err(err("reader".into(), "the reader failed")))
}

/// Reads an NL file held in memory.
///
/// # Errors
/// [`NlError`] naming the line or byte for malformed input, and saying so for
/// nonlinear expressions, logical constraints or imported functions.
pub fn read(data: &[u8], name: &str) -> Result<NlProblem, NlError> {
    if !matches!(data.first(), Some(b'g' | b'b')) {
        return Err(err(
            "line 1".into(),
            "not an NL file: the first line must start with `g` (text) or `b` (binary)",
        ));
    }
    // The ten header lines are text in both encodings.
    let mut lines = Vec::with_capacity(10);
    let mut pos = 0;
    for _ in 0..10 {
        let end = data[pos..].iter().position(|&b| b == b'\n').map(|e| pos + e).ok_or_else(|| {
            err(format!("line {}", lines.len() + 1), "the header ends early (an NL header has 10 lines)")
        })?;
        lines.push(String::from_utf8_lossy(&data[pos..end]).into_owned());
        pos = end + 1;
    }
    let first = lines[0].split('#').next().unwrap_or("").trim().to_string();
    let binary = match first.as_bytes().first() {
        Some(b'g') => false,
        Some(b'b') => true,
        _ => {
            return Err(err(
                "line 1".into(),
                "not an NL file: the first line must start with `g` (text) or `b` (binary)",
            ))
        }
    };
    let opts = header_numbers(&first[1..]).map_err(|m| err("line 1".into(), m))?;
    let options: Vec<i64> = match opts.split_first() {
        Some((&n, rest)) if n >= 0 && (n as usize) <= rest.len() && n <= 9 => rest[..n as usize].to_vec(),
        Some(_) => return Err(err("line 1".into(), "the option count does not match the options")),
        None => Vec::new(),
    };
    let limit = data.len();
    let nums: Vec<Vec<i64>> = lines[1..]
        .iter()
        .enumerate()
        .map(|(i, l)| header_numbers(l).map_err(|m| err(format!("line {}", i + 2), m)))
        .collect::<Result<_, _>>()?;
    let h = (|| -> Result<Header, String> {
        Ok(Header {
            vars: count(&nums[0], 0, "the variable count", limit)?,
            cons: count(&nums[0], 1, "the constraint count", limit)?,
            objs: count(&nums[0], 2, "the objective count", limit)?,
            logical_cons: count(&nums[0], 5, "the logical constraint count", limit)?,
            nl_cons: count(&nums[1], 0, "the nonlinear constraint count", limit)?,
            nlvc: count(&nums[3], 0, "nonlinear variables in constraints", limit)?,
            nlvo: count(&nums[3], 1, "nonlinear variables in objectives", limit)?,
            nlvb: count(&nums[3], 2, "nonlinear variables in both", limit)?,
            funcs: count(&nums[4], 1, "the function count", limit)?,
            nbv: count(&nums[5], 0, "binary variables", limit)?,
            niv: count(&nums[5], 1, "integer variables", limit)?,
            nlvoi: count(&nums[5], 4, "nonlinear integer variables in objectives", limit)?,
            common_exprs: nums[8].iter().map(|&x| x.max(0) as usize).sum(),
        })
    })()
    .map_err(|m| err("header".into(), m))?;
    if h.nl_cons > 0 || h.nlvc > 0 || h.nlvb > 0 {
        return Err(err(
            "header".into(),
            format!(
                "the model has {} nonlinear constraints; meshsolve solves linear and mixed-integer programs (with a linear or quadratic objective)",
                h.nl_cons.max(1)
            ),
        ));
    }
    if h.logical_cons > 0 || h.funcs > 0 || h.common_exprs > 0 {
        return Err(err(
            "header".into(),
            "logical constraints, imported functions and defined variables are not supported; meshsolve solves linear and mixed-integer programs",
        ));
    }
    let arith = nums[4].get(2).copied().unwrap_or(0);
    let text_line = 11;
    let body = &data[pos..];
    let problem = if binary {
        let big_endian = match arith {
            0 | 1 => false,
            2 => true,
            k => {
                return Err(err(
                    "line 6".into(),
                    format!("binary NL with arithmetic kind {k} (neither IEEE little nor big endian)"),
                ))
            }
        };
        let mut t = Binary { data: body, pos: 0, big_endian };
        segments(&mut t, &h, name)
    } else {
        let mut t = Text { data: body, pos: 0, line: text_line };
        segments(&mut t, &h, name)
    };
    let (model, initial) = problem?;
    Ok(NlProblem { model, options, binary, objectives: h.objs, initial })
}

/// What the segments build up, one method per segment kind. Each method reads
/// its segment after the letter and returns a message on bad input; the caller
/// adds the place.
struct Segments<'h> {
    h: &'h Header,
    m: Model,
    initial: Vec<(usize, f64)>,
    seen_b: bool,
    seen_r: bool,
    /// Constants found in constraint bodies (moved to the bounds at the end).
    con_const: Vec<f64>,
    sense: Option<Sense>,
    objective: Poly,
    /// First index of the binary variables (Gay's order).
    first_binary: usize,
}

/// Reads an index below `n`.
fn index(t: &mut impl Tokens, n: usize, what: &str) -> Result<usize, String> {
    let i = t.int()?;
    usize::try_from(i)
        .ok()
        .filter(|&i| i < n)
        .ok_or_else(|| format!("{what} index {i} out of range (0..{n})"))
}

/// Reads a count of at most `n`.
fn count_at_most(t: &mut impl Tokens, n: usize, what: &str) -> Result<usize, String> {
    let k = t.int()?;
    usize::try_from(k)
        .ok()
        .filter(|&k| k <= n)
        .ok_or_else(|| format!("{what}: {k} is more than there can be ({n})"))
}

impl<'h> Segments<'h> {
    fn new(h: &'h Header, name: &str) -> Self {
        let mut m = Model::new(name);
        // Gay's variable order; nonlinear constraints are refused, so only the
        // objective's nonlinear variables (continuous, then integer) come first,
        // then the linear ones: continuous, binary, integer.
        let nl_obj_only = h.nlvo;
        let nl_int_from = nl_obj_only.saturating_sub(h.nlvoi);
        let first_binary = h.vars.saturating_sub(h.nbv + h.niv).max(nl_obj_only);
        for j in 0..h.vars {
            let integer = if j < nl_obj_only { j >= nl_int_from } else { j >= first_binary };
            m.cols.push(Column {
                name: format!("x{j}"),
                lower: 0.0,
                upper: f64::INFINITY,
                cost: 0.0,
                integer,
            });
        }
        for i in 0..h.cons {
            m.rows.push(Row {
                name: format!("c{i}"),
                lower: f64::NEG_INFINITY,
                upper: f64::INFINITY,
                coefs: Vec::new(),
            });
        }
        Segments {
            h,
            m,
            initial: Vec::new(),
            seen_b: false,
            seen_r: false,
            con_const: vec![0.0; h.cons],
            sense: None,
            objective: Poly::default(),
            first_binary,
        }
    }

    fn is_binary(&self, j: usize) -> bool {
        j >= self.first_binary && j < self.first_binary + self.h.nbv
    }

    /// `C`: a constraint body, which must be constant for a linear constraint.
    fn constraint_body(&mut self, t: &mut impl Tokens) -> Result<(), String> {
        let i = index(t, self.h.cons, "constraint")?;
        t.end_line();
        let p = expr(t, self.h.vars, 0).map_err(|m| format!("constraint {i}: {m}"))?;
        if !p.lin.is_empty() || !p.quad.is_empty() {
            return Err(format!("constraint {i} is nonlinear; meshsolve solves linear and mixed-integer programs (with a linear or quadratic objective)"));
        }
        self.con_const[i] = p.c;
        Ok(())
    }

    /// `O`: an objective's sense and its nonlinear (at most quadratic) part.
    fn objective(&mut self, t: &mut impl Tokens) -> Result<(), String> {
        let i = index(t, self.h.objs, "objective")?;
        let kind = t.int()?;
        t.end_line();
        let p = expr(t, self.h.vars, 0).map_err(|m| format!("objective {i}: {m}"))?;
        if i == 0 {
            self.sense = Some(if kind != 0 { Sense::Maximize } else { Sense::Minimize });
            self.objective = p;
        }
        Ok(())
    }

    /// `S`: a suffix, read past.
    fn suffix(&mut self, t: &mut impl Tokens) -> Result<(), String> {
        let kind = t.int()?;
        let most = self.h.vars.max(self.h.cons).max(self.h.objs).max(1);
        let n = count_at_most(t, most, "suffix values")?;
        let _name = t.name()?;
        t.end_line();
        for _ in 0..n {
            t.int()?;
            if kind & 4 != 0 {
                t.float()?;
            } else {
                t.int()?;
            }
            t.end_line();
        }
        Ok(())
    }

    /// `x` (primal) or `d` (dual) initial values; the primal ones are kept.
    fn initial_values(&mut self, t: &mut impl Tokens, primal: bool) -> Result<(), String> {
        let lim = if primal { self.h.vars } else { self.h.cons };
        let k = count_at_most(t, lim, "initial values")?;
        t.end_line();
        for _ in 0..k {
            let j = index(t, lim, "initial value")?;
            let v = t.float()?;
            t.end_line();
            if primal {
                self.initial.push((j, v));
            }
        }
        Ok(())
    }

    /// `r`: constraint bounds.
    fn constraint_bounds(&mut self, t: &mut impl Tokens) -> Result<(), String> {
        t.end_line();
        self.seen_r = true;
        for (i, row) in self.m.rows.iter_mut().enumerate() {
            let (lo, up) = bounds(t).map_err(|m| format!("constraint {i}: {m}"))?;
            row.lower = lo;
            row.upper = up;
        }
        Ok(())
    }

    /// `b`: variable bounds; a binary keeps its [0, 1] domain inside them.
    fn variable_bounds(&mut self, t: &mut impl Tokens) -> Result<(), String> {
        t.end_line();
        self.seen_b = true;
        for j in 0..self.h.vars {
            let (lo, up) = bounds(t).map_err(|m| format!("variable {j}: {m}"))?;
            let (l0, u0) = if self.is_binary(j) { (0.0, 1.0) } else { (f64::NEG_INFINITY, f64::INFINITY) };
            let c = &mut self.m.cols[j];
            c.lower = lo.max(l0);
            c.upper = up.min(u0);
        }
        Ok(())
    }

    /// `k`/`K`: Jacobian column counts, read past (J gives the rows).
    fn column_counts(&mut self, t: &mut impl Tokens) -> Result<(), String> {
        let n = count_at_most(t, self.h.vars, "column counts")?;
        t.end_line();
        for _ in 0..n {
            t.int()?;
            t.end_line();
        }
        Ok(())
    }

    /// `J` (a constraint's linear terms) or `G` (an objective's).
    fn linear(&mut self, t: &mut impl Tokens, constraint: bool) -> Result<(), String> {
        let (n, what) = if constraint { (self.h.cons, "constraint") } else { (self.h.objs, "objective") };
        let i = index(t, n, what)?;
        let k = count_at_most(t, self.h.vars, "linear terms")?;
        t.end_line();
        for _ in 0..k {
            let j = index(t, self.h.vars, "variable")?;
            let v = t.float()?;
            t.end_line();
            if !v.is_finite() {
                return Err(format!("{what} {i}: coefficient of variable {j} is not finite"));
            }
            if constraint {
                self.m.rows[i].coefs.push((j as u32, v));
            } else if i == 0 {
                self.m.cols[j].cost += v;
            }
        }
        Ok(())
    }

    /// The model, once every segment is read.
    fn finish(mut self) -> Result<(Model, Vec<(usize, f64)>), String> {
        if self.h.vars > 0 && !self.seen_b {
            return Err("the variable bounds segment `b` is missing".into());
        }
        if self.h.cons > 0 && !self.seen_r {
            return Err("the constraint bounds segment `r` is missing".into());
        }
        let m = &mut self.m;
        // A constant in a constraint body moves to its bounds.
        for (row, c) in m.rows.iter_mut().zip(&self.con_const) {
            row.lower -= c;
            row.upper -= c;
        }
        m.sense = self.sense.unwrap_or(Sense::Minimize);
        m.offset = self.objective.c;
        for (&j, &v) in &self.objective.lin {
            m.cols[j].cost += v;
        }
        // ½ xᵀQx: a term c·x_j² is Q_jj = 2c; a term c·x_i·x_j (i < j) is Q_ij = c.
        for (&(i, j), &v) in &self.objective.quad {
            if v != 0.0 {
                m.quad.push((i as u32, j as u32, if i == j { 2.0 * v } else { v }));
            }
        }
        // Repeated entries merged, non-finite values refused: as for every reader.
        self.m.normalize()?;
        Ok((self.m, self.initial))
    }
}

fn segments(t: &mut impl Tokens, h: &Header, name: &str) -> Result<(Model, Vec<(usize, f64)>), NlError> {
    let mut s = Segments::new(h, name);
    loop {
        let place = t.place();
        let Some(seg) = t.next_char() else { break };
        let read = match seg {
            b'C' => s.constraint_body(t),
            b'O' => s.objective(t),
            b'S' => s.suffix(t),
            b'x' | b'd' => s.initial_values(t, seg == b'x'),
            b'r' => s.constraint_bounds(t),
            b'b' => s.variable_bounds(t),
            b'k' | b'K' => s.column_counts(t),
            b'J' | b'G' => s.linear(t, seg == b'J'),
            b'V' | b'F' | b'L' => Err(format!(
                "segment `{}`: defined variables, functions and logical constraints are not supported",
                seg as char
            )),
            other => Err(format!("unknown segment `{}`", (other as char).escape_default())),
        };
        // The segment's start names where it is; for long segments, say where it broke too.
        read.map_err(|message| {
            let here = t.place();
            let place = if here == place { place } else { format!("{place} (at {here})") };
            NlError { place, message }
        })?;
    }
    s.finish().map_err(|message| NlError { place: t.place(), message })
}

/// One `r`/`b` line: a type digit and its numbers.
fn bounds(t: &mut impl Tokens) -> Result<(f64, f64), String> {
    let kind = t.next_char().ok_or("unexpected end of file in a bounds segment")?;
    let r = match kind {
        b'0' => (t.float()?, t.float()?),
        b'1' => (f64::NEG_INFINITY, t.float()?),
        b'2' => (t.float()?, f64::INFINITY),
        b'3' => (f64::NEG_INFINITY, f64::INFINITY),
        b'4' => {
            let v = t.float()?;
            (v, v)
        }
        b'5' => return Err("complementarity constraints are not supported".into()),
        other => {
            return Err(format!("expected a bound type 0-5, found `{}`", (other as char).escape_default()))
        }
    };
    t.end_line();
    Ok(r)
}

/// A polynomial of degree at most 2 in the variables.
#[derive(Debug, Default, Clone, PartialEq)]
struct Poly {
    c: f64,
    lin: std::collections::BTreeMap<usize, f64>,
    /// Coefficient of `x_i·x_j`, `i ≤ j`.
    quad: std::collections::BTreeMap<(usize, usize), f64>,
}

/// Deepest expression tree read (a hostile file must not exhaust the stack;
/// [`read`] needs about 20 KiB of stack per level in a debug build, see
/// [`read_on_big_stack`]).
const MAX_DEPTH: usize = 10_000;
/// Most quadratic terms a product may create.
const MAX_QUAD_TERMS: usize = 1 << 22;

impl Poly {
    fn constant(c: f64) -> Poly {
        Poly { c, ..Default::default() }
    }

    fn degree(&self) -> usize {
        if !self.quad.is_empty() {
            2
        } else if !self.lin.is_empty() {
            1
        } else {
            0
        }
    }

    fn scale(mut self, k: f64) -> Poly {
        self.c *= k;
        self.lin.values_mut().for_each(|v| *v *= k);
        self.quad.values_mut().for_each(|v| *v *= k);
        self
    }

    fn add(mut self, o: Poly) -> Poly {
        self.c += o.c;
        for (k, v) in o.lin {
            *self.lin.entry(k).or_default() += v;
        }
        for (k, v) in o.quad {
            *self.quad.entry(k).or_default() += v;
        }
        self
    }

    fn mul(self, o: Poly) -> Result<Poly, String> {
        if self.degree() + o.degree() > 2 {
            return Err(
                "nonlinear expression (degree above 2); meshsolve takes linear or quadratic objectives"
                    .into(),
            );
        }
        if self.lin.len().saturating_mul(o.lin.len()) > MAX_QUAD_TERMS {
            return Err("quadratic expression too large".into());
        }
        let mut out = Poly::constant(self.c * o.c);
        for (&k, &v) in &self.lin {
            *out.lin.entry(k).or_default() += v * o.c;
        }
        for (&k, &v) in &o.lin {
            *out.lin.entry(k).or_default() += v * self.c;
        }
        for (&k, &v) in &self.quad {
            *out.quad.entry(k).or_default() += v * o.c;
        }
        for (&k, &v) in &o.quad {
            *out.quad.entry(k).or_default() += v * self.c;
        }
        for (&i, &a) in &self.lin {
            for (&j, &b) in &o.lin {
                *out.quad.entry((i.min(j), i.max(j))).or_default() += a * b;
            }
        }
        Ok(out)
    }
}

/// Reads one expression tree (Polish prefix) into a polynomial of degree ≤ 2.
fn expr(t: &mut impl Tokens, vars: usize, depth: usize) -> Result<Poly, String> {
    if depth > MAX_DEPTH {
        return Err("expression nested too deeply".into());
    }
    let code = t.next_char().ok_or("unexpected end of file in an expression")?;
    let p = match code {
        b'n' => Poly::constant(t.float()?),
        b's' | b'l' => Poly::constant(t.int()? as f64),
        b'v' => {
            let k = t.int()?;
            let k = usize::try_from(k).ok().filter(|&k| k < vars).ok_or_else(|| {
                format!("variable {k} is not a model variable (defined variables are not supported)")
            })?;
            let mut p = Poly::default();
            p.lin.insert(k, 1.0);
            p
        }
        b'o' => {
            let op = t.int()?;
            t.end_line();
            let sub = |t: &mut _| expr(t, vars, depth + 1);
            return match op {
                0 => Ok(sub(t)?.add(sub(t)?)),
                1 => Ok(sub(t)?.add(sub(t)?.scale(-1.0))),
                2 => sub(t)?.mul(sub(t)?),
                3 => {
                    let (a, b) = (sub(t)?, sub(t)?);
                    match b.degree() {
                        0 if b.c != 0.0 => Ok(a.scale(1.0 / b.c)),
                        _ => Err("division by a variable or by zero; meshsolve takes linear or quadratic objectives".into()),
                    }
                }
                5 => {
                    let (a, b) = (sub(t)?, sub(t)?);
                    match (b.degree(), b.c) {
                        (0, 0.0) => Ok(Poly::constant(1.0)),
                        (0, 1.0) => Ok(a),
                        (0, 2.0) => a.clone().mul(a),
                        _ => {
                            Err("power other than 0, 1 or 2; meshsolve takes linear or quadratic objectives"
                                .into())
                        }
                    }
                }
                16 => Ok(sub(t)?.scale(-1.0)),
                54 => {
                    let n = t.int()?;
                    t.end_line();
                    let n = usize::try_from(n).map_err(|_| "negative argument count".to_string())?;
                    let mut acc = Poly::default();
                    for _ in 0..n {
                        acc = acc.add(sub(t)?);
                    }
                    Ok(acc)
                }
                other => Err(format!(
                    "nonlinear function (opcode {other}); meshsolve takes linear or quadratic objectives"
                )),
            };
        }
        b'f' | b'h' => return Err("function calls and strings are not supported".into()),
        other => return Err(format!("expected an expression, found `{}`", (other as char).escape_default())),
    };
    t.end_line();
    if !p.c.is_finite() {
        return Err("constant is not finite".into());
    }
    Ok(p)
}

/// Writes `p` in the binary NL encoding (little endian): the converter the
/// tests use to check the binary reader on files Pyomo wrote as text.
///
/// # Errors
/// When writing to `out` fails.
pub fn write_binary(p: &NlProblem, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let m = &p.model;
    let nbin = m.cols.iter().filter(|c| c.integer && c.lower >= 0.0 && c.upper <= 1.0).count();
    let nint = m.num_integers() - nbin;
    // Column order must put continuous first, then binary, then integer; the
    // converter is for files whose order already is that (as Pyomo writes them).
    let opts: Vec<String> = p.options.iter().map(|o| o.to_string()).collect();
    writeln!(out, "b{} {}", p.options.len(), opts.join(" "))?;
    let nobj = usize::from(!m.cols.is_empty() || m.offset != 0.0).max(p.objectives.min(1));
    let eqns = m.rows.iter().filter(|r| r.lower == r.upper).count();
    let ranges =
        m.rows.iter().filter(|r| r.lower != r.upper && r.lower.is_finite() && r.upper.is_finite()).count();
    writeln!(out, " {} {} {} {} {}", m.cols.len(), m.rows.len(), nobj, ranges, eqns)?;
    writeln!(out, " 0 0")?;
    writeln!(out, " 0 0")?;
    writeln!(out, " 0 0 0")?;
    writeln!(out, " 0 0 1 1")?;
    writeln!(out, " {nbin} {nint} 0 0 0")?;
    writeln!(out, " {} {}", m.nnz(), m.cols.iter().filter(|c| c.cost != 0.0).count())?;
    writeln!(out, " 0 0")?;
    writeln!(out, " 0 0 0 0 0")?;
    let int = |out: &mut dyn std::io::Write, v: i64| out.write_all(&(v as i32).to_le_bytes());
    let dbl = |out: &mut dyn std::io::Write, v: f64| out.write_all(&v.to_le_bytes());
    for i in 0..m.rows.len() {
        out.write_all(b"C")?;
        int(out, i as i64)?;
        out.write_all(b"n")?;
        dbl(out, 0.0)?;
    }
    if nobj > 0 {
        out.write_all(b"O")?;
        int(out, 0)?;
        int(out, i64::from(m.sense == Sense::Maximize))?;
        out.write_all(b"n")?;
        dbl(out, m.offset)?;
    }
    let bound = |out: &mut dyn std::io::Write, lo: f64, up: f64| -> std::io::Result<()> {
        match (lo.is_finite(), up.is_finite()) {
            _ if lo == up => {
                out.write_all(b"4")?;
                out.write_all(&lo.to_le_bytes())
            }
            (true, true) => {
                out.write_all(b"0")?;
                out.write_all(&lo.to_le_bytes())?;
                out.write_all(&up.to_le_bytes())
            }
            (false, true) => {
                out.write_all(b"1")?;
                out.write_all(&up.to_le_bytes())
            }
            (true, false) => {
                out.write_all(b"2")?;
                out.write_all(&lo.to_le_bytes())
            }
            (false, false) => out.write_all(b"3"),
        }
    };
    out.write_all(b"r")?;
    for r in &m.rows {
        bound(out, r.lower, r.upper)?;
    }
    out.write_all(b"b")?;
    for c in &m.cols {
        bound(out, c.lower, c.upper)?;
    }
    for (i, r) in m.rows.iter().enumerate() {
        if r.coefs.is_empty() {
            continue;
        }
        out.write_all(b"J")?;
        int(out, i as i64)?;
        int(out, r.coefs.len() as i64)?;
        for &(j, v) in &r.coefs {
            int(out, j as i64)?;
            dbl(out, v)?;
        }
    }
    let g: Vec<(usize, f64)> =
        m.cols.iter().enumerate().filter(|(_, c)| c.cost != 0.0).map(|(j, c)| (j, c.cost)).collect();
    if nobj > 0 && !g.is_empty() {
        out.write_all(b"G")?;
        int(out, 0)?;
        int(out, g.len() as i64)?;
        for (j, v) in g {
            int(out, j as i64)?;
            dbl(out, v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A knapsack as Pyomo writes it (4 binaries, one constraint, maximise).
    const KNAPSACK: &str = "g3 1 1 0\t# problem unknown
 4 1 1 0 0 \t# vars, constraints, objectives, ranges, eqns
 0 0 0 0 0 0\t# nonlinear constrs, objs; ccons: lin, nonlin, nd, nzlb
 0 0\t# network constraints: nonlinear, linear
 0 0 0 \t# nonlinear vars in constraints, objectives, both
 0 0 0 1\t# linear network variables; functions; arith, flags
 4 0 0 0 0 \t# discrete variables: binary, integer, nonlinear (b,c,o)
 4 4 \t# nonzeros in Jacobian, obj. gradient
 0 0\t# max name lengths: constraints, variables
 0 0 0 0 0\t# common exprs: b,c,o,c1,o1
C0
n0
O0 1
n0
x0
r
1 14
b
0 0 1
0 0 1
0 0 1
0 0 1
k3
1
2
3
J0 4
0 5
1 7
2 4
3 3
G0 4
0 8
1 11
2 6
3 4
";

    #[test]
    fn reads_pyomo_text_and_its_binary_twin() {
        let p = read(KNAPSACK.as_bytes(), "ks").unwrap();
        assert!(!p.binary);
        assert_eq!(p.options, vec![1, 1, 0]);
        let m = &p.model;
        assert_eq!((m.cols.len(), m.rows.len(), m.num_integers()), (4, 1, 4));
        assert_eq!(m.sense, Sense::Maximize);
        assert_eq!(m.rows[0].upper, 14.0);
        assert_eq!(m.cols[1].cost, 11.0);
        assert!(m.cols.iter().all(|c| c.lower == 0.0 && c.upper == 1.0));
        let mut bin = Vec::new();
        write_binary(&p, &mut bin).unwrap();
        let q = read(&bin, "ks").unwrap();
        assert!(q.binary);
        assert_eq!(q.model, p.model);
    }

    #[test]
    fn garbage_and_nonlinear_inputs_are_errors_with_a_place() {
        assert!(read(b"", "x").unwrap_err().message.contains("not an NL file"));
        assert!(read(b"g3 1 1 0\n", "x").unwrap_err().message.contains("header"));
        assert!(read(b"hello\n", "x").is_err());
        let nonlinear = KNAPSACK.replace(" 0 0 0 0 0 0\t# nonlinear", " 1 0 0 0 0 0\t# nonlinear");
        let nonlinear = nonlinear.replace("C0\nn0", "C0\no2\nv0\nv1");
        assert!(read(nonlinear.as_bytes(), "x").unwrap_err().message.contains("nonlinear"));
        let bad_index = KNAPSACK.replace("J0 4\n0 5", "J0 4\n9 5");
        let e = read(bad_index.as_bytes(), "x").unwrap_err();
        assert!(e.message.contains("out of range") && e.place.starts_with("line"), "{e}");
        let cubic = KNAPSACK.replace("O0 1\nn0", "O0 1\no2\nv0\no2\nv1\nv2");
        assert!(read(cubic.as_bytes(), "x").unwrap_err().message.contains("degree"));
        let quad = KNAPSACK.replace("O0 1\nn0", "O0 1\no54\n3\no5\nv0\nn2\no2\nn3\no2\nv1\nv2\nn1.5");
        let q = read(quad.as_bytes(), "x").unwrap().model;
        assert_eq!(q.quad, vec![(0, 0, 2.0), (1, 2, 3.0)]);
        assert_eq!(q.offset, 1.5);
        let deep = KNAPSACK.replace("O0 1\nn0", &format!("O0 1\n{}n0", "o16\n".repeat(100_000)));
        let e = read_on_big_stack(deep.into_bytes(), "x".into()).unwrap_err();
        assert!(e.message.contains("deeply"), "{e}");
        let ok = KNAPSACK.replace("O0 1\nn0", &format!("O0 1\n{}n0", "o16\n".repeat(MAX_DEPTH - 1)));
        assert!(read_on_big_stack(ok.into_bytes(), "x".into()).is_ok());
        let huge = KNAPSACK.replace(" 4 1 1 0 0 \t# vars", " 2000000000 1 1 0 0 \t# vars");
        assert!(read(huge.as_bytes(), "x").is_err());
        let truncated = &KNAPSACK[..KNAPSACK.len() - 20];
        assert!(read(truncated.as_bytes(), "x").is_err());
        // Every prefix and every single-byte corruption: an error or a model, never a panic.
        for n in 0..KNAPSACK.len() {
            let _ = read(&KNAPSACK.as_bytes()[..n], "x");
            let mut b = KNAPSACK.as_bytes().to_vec();
            b[n] = b[n].wrapping_add(7);
            let _ = read(&b, "x");
        }
    }
}
