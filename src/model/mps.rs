//! MPS reader (fixed and free format; fields are split on whitespace, so
//! names must not contain blanks, which every real-world file respects).

use std::io::BufRead;

use super::{parse_number, perr, syntax, Column, Lines, Model, Names, ParseResult, Row, Sense, StreamError};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Section {
    None,
    Name,
    ObjSense,
    Rows,
    Columns,
    Rhs,
    Ranges,
    Bounds,
    QuadObj,
    QMatrix,
    End,
}

#[derive(Clone, Copy, PartialEq)]
enum RowKind {
    E,
    L,
    G,
    /// A free row other than the objective: kept (it constrains nothing, but
    /// row numbers, and so duals, stay those of the file).
    N,
}

struct Builder {
    model: Model,
    row_names: Names,
    col_names: Names,
    kinds: Vec<RowKind>,
    rhs: Vec<f64>,
    range: Vec<Option<f64>>,
    obj_name: Option<String>,
    in_integer: bool,
    /// Integer columns from a MARKER block whose upper bound was never set.
    marker_int: Vec<bool>,
    upper_set: Vec<bool>,
    /// Columns given a lower bound (a later negative UP then keeps it).
    lower_set: Vec<bool>,
}

/// Reads an MPS model.
pub(crate) fn read(stream: impl BufRead, default_name: &str) -> Result<Model, StreamError> {
    let mut lines = Lines::new(stream);
    let mut b = Builder {
        model: Model::new(default_name),
        row_names: Names::default(),
        col_names: Names::default(),
        kinds: Vec::new(),
        rhs: Vec::new(),
        range: Vec::new(),
        obj_name: None,
        in_integer: false,
        marker_int: Vec::new(),
        upper_set: Vec::new(),
        lower_set: Vec::new(),
    };
    let mut section = Section::None;
    let mut saw_rows = false;
    while let Some((ln, raw)) = lines.next_line()? {
        if raw.starts_with('*') || raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split_whitespace().collect();
        let header = !raw.starts_with([' ', '\t']);
        if header {
            let key = fields[0].to_ascii_uppercase();
            section = match key.as_str() {
                "NAME" => {
                    if let Some(n) = fields.get(1) {
                        b.model.name = n.to_string();
                    }
                    Section::Name
                }
                "OBJSENSE" => {
                    if let Some(s) = fields.get(1) {
                        set_sense(&mut b.model, s, ln)?;
                    }
                    Section::ObjSense
                }
                "OBJSENS" => Section::ObjSense,
                "ROWS" => {
                    saw_rows = true;
                    Section::Rows
                }
                "COLUMNS" => Section::Columns,
                "RHS" => Section::Rhs,
                "RANGES" => Section::Ranges,
                "BOUNDS" => Section::Bounds,
                "QUADOBJ" => Section::QuadObj,
                "QMATRIX" => Section::QMatrix,
                "ENDATA" => Section::End,
                "OBJNAME" => Section::Name,
                other => {
                    return Err(syntax(ln,
                        format!(
                            "unknown MPS section `{other}`; expected NAME, ROWS, COLUMNS, RHS, RANGES, BOUNDS, QUADOBJ or ENDATA (data lines must start with a blank)"
                        )))
                }
            };
            if section == Section::End {
                break;
            }
            continue;
        }
        match section {
            Section::ObjSense => set_sense(&mut b.model, fields[0], ln)?,
            Section::Rows => b.row(&fields, ln)?,
            Section::Columns => b.column(&fields, ln)?,
            Section::Rhs => b.rhs(&fields, ln)?,
            Section::Ranges => b.ranges(&fields, ln)?,
            Section::Bounds => b.bounds(&fields, ln)?,
            Section::QuadObj => b.quad(&fields, ln, false)?,
            Section::QMatrix => b.quad(&fields, ln, true)?,
            Section::None | Section::Name => {
                return Err(syntax(ln, "data line before the ROWS section; is this an MPS file?"))
            }
            Section::End => unreachable!("loop ends at ENDATA"),
        }
    }
    if section != Section::End {
        return Err(syntax(
            lines.line.max(1),
            if saw_rows {
                "file ends without ENDATA; is it truncated?"
            } else {
                "no ROWS section found; is this an MPS file?"
            },
        ));
    }
    Ok(b.finish())
}

fn set_sense(model: &mut Model, word: &str, ln: usize) -> ParseResult<()> {
    model.sense = match word.to_ascii_uppercase().as_str() {
        "MAX" | "MAXIMIZE" | "MAXIMISE" => Sense::Maximize,
        "MIN" | "MINIMIZE" | "MINIMISE" => Sense::Minimize,
        other => return perr(ln, format!("OBJSENSE `{other}`; expected MIN or MAX")),
    };
    Ok(())
}

fn number(tok: &str, ln: usize, what: &str) -> ParseResult<f64> {
    match parse_number(tok) {
        Some(v) if v.is_infinite() && !tok.to_ascii_lowercase().contains("inf") => {
            perr(ln, format!("number `{tok}` out of range for {what} (write 1e30 or inf for infinity)"))
        }
        Some(v) if !v.is_nan() => Ok(v),
        _ => perr(ln, format!("expected a number for {what}, found `{tok}`")),
    }
}

impl Builder {
    fn row(&mut self, f: &[&str], ln: usize) -> ParseResult<()> {
        if f.len() < 2 {
            return perr(ln, "ROWS line needs a type (N, E, L, G) and a name");
        }
        let name = f[1];
        let kind = match f[0].to_ascii_uppercase().as_str() {
            "N" if self.obj_name.is_none() => {
                self.obj_name = Some(name.to_string());
                return Ok(());
            }
            "N" => RowKind::N,
            "E" => RowKind::E,
            "L" => RowKind::L,
            "G" => RowKind::G,
            other => return perr(ln, format!("row type `{other}`; expected N, E, L or G")),
        };
        if self.row_names.get(name).is_some() {
            return perr(ln, format!("row `{name}` defined twice"));
        }
        let idx = self.model.rows.len() as u32;
        self.row_names.insert(name, idx);
        self.model.rows.push(Row { name: name.to_string(), lower: 0.0, upper: 0.0, coefs: Vec::new() });
        self.kinds.push(kind);
        self.rhs.push(0.0);
        self.range.push(None);
        Ok(())
    }

    fn column(&mut self, f: &[&str], ln: usize) -> ParseResult<()> {
        if f.len() >= 3 && f[1].trim_matches('\'').eq_ignore_ascii_case("MARKER") {
            match f[2].trim_matches('\'').to_ascii_uppercase().as_str() {
                "INTORG" => self.in_integer = true,
                "INTEND" => self.in_integer = false,
                other => return perr(ln, format!("MARKER `{other}`; expected INTORG or INTEND")),
            }
            return Ok(());
        }
        if f.len() != 3 && f.len() != 5 {
            return perr(
                ln,
                format!("COLUMNS line has {} fields; expected: column row value [row value]", f.len()),
            );
        }
        let col = match self.col_names.get(f[0]) {
            Some(j) => j,
            None => {
                let j = self.model.cols.len() as u32;
                self.col_names.insert(f[0], j);
                self.model.cols.push(Column {
                    name: f[0].to_string(),
                    lower: 0.0,
                    upper: f64::INFINITY,
                    cost: 0.0,
                    integer: self.in_integer,
                });
                self.marker_int.push(self.in_integer);
                self.upper_set.push(false);
                self.lower_set.push(false);
                j
            }
        };
        for pair in f[1..].chunks(2) {
            let v = number(pair[1], ln, &format!("coefficient of `{}` in row `{}`", f[0], pair[0]))?;
            if self.obj_name.as_deref() == Some(pair[0]) {
                self.model.cols[col as usize].cost += v;
            } else if let Some(i) = self.row_names.get(pair[0]) {
                if v != 0.0 {
                    self.model.rows[i as usize].coefs.push((col, v));
                }
            } else {
                return perr(
                    ln,
                    format!("column `{}` refers to row `{}`, which ROWS does not define", f[0], pair[0]),
                );
            }
        }
        Ok(())
    }

    /// Pairs of (row, value), with an optional leading set name.
    fn pairs<'a>(f: &'a [&'a str], ln: usize, section: &str) -> ParseResult<&'a [&'a str]> {
        match f.len() {
            2 | 4 => Ok(f),
            3 | 5 => Ok(&f[1..]),
            n => perr(ln, format!("{section} line has {n} fields; expected: [set] row value [row value]")),
        }
    }

    fn rhs(&mut self, f: &[&str], ln: usize) -> ParseResult<()> {
        for pair in Self::pairs(f, ln, "RHS")?.chunks(2) {
            let v = number(pair[1], ln, &format!("right-hand side of `{}`", pair[0]))?;
            if self.obj_name.as_deref() == Some(pair[0]) {
                self.model.offset = -v;
            } else if let Some(i) = self.row_names.get(pair[0]) {
                self.rhs[i as usize] = v;
            } else {
                return perr(ln, format!("RHS for row `{}`, which ROWS does not define", pair[0]));
            }
        }
        Ok(())
    }

    fn ranges(&mut self, f: &[&str], ln: usize) -> ParseResult<()> {
        for pair in Self::pairs(f, ln, "RANGES")?.chunks(2) {
            let v = number(pair[1], ln, &format!("range of `{}`", pair[0]))?;
            match self.row_names.get(pair[0]) {
                Some(i) => self.range[i as usize] = Some(v),
                None => return perr(ln, format!("RANGES for row `{}`, which ROWS does not define", pair[0])),
            }
        }
        Ok(())
    }

    /// A `QUADOBJ` line (upper triangle) or a `QMATRIX` line (both triangles:
    /// only the upper one is kept).
    fn quad(&mut self, f: &[&str], ln: usize, full: bool) -> ParseResult<()> {
        if f.len() != 3 {
            return perr(ln, "quadratic objective line needs two columns and a value");
        }
        let col = |n: &str| -> ParseResult<u32> {
            self.col_names.get(n).map_or_else(
                || perr(ln, format!("quadratic term on column `{n}`, which COLUMNS does not define")),
                Ok,
            )
        };
        let (a, b) = (col(f[0])?, col(f[1])?);
        let v = number(f[2], ln, "a quadratic coefficient")?;
        if !v.is_finite() {
            return perr(ln, "quadratic coefficient out of range");
        }
        if full && a > b {
            return Ok(());
        }
        self.model.quad.push((a.min(b), a.max(b), v));
        Ok(())
    }

    fn bounds(&mut self, f: &[&str], ln: usize) -> ParseResult<()> {
        if f.len() < 2 {
            return perr(ln, "BOUNDS line needs a type, a column and usually a value");
        }
        let kind = f[0].to_ascii_uppercase();
        let needs_value = matches!(kind.as_str(), "UP" | "LO" | "FX" | "LI" | "UI" | "SC");
        let (col_name, value) = match (f.len(), needs_value) {
            (2, false) => (f[1], None),
            (3, false) => (f[2], None),
            (3, true) => (f[1], Some(f[2])),
            (4, _) => (f[2], Some(f[3])),
            (n, _) => {
                return perr(ln, format!("BOUNDS line has {n} fields; expected: type [set] column value"))
            }
        };
        // BV, FR, MI, PL with a value (some writers add one): ignore it, except BV's.
        let col = match self.col_names.get(col_name) {
            Some(j) => j as usize,
            None => return perr(ln, format!("bound on column `{col_name}`, which COLUMNS does not define")),
        };
        let val = match value {
            Some(t) => Some(number(t, ln, &format!("bound of `{col_name}`"))?),
            None => None,
        };
        let need = || -> ParseResult<f64> {
            match val {
                Some(v) => Ok(v),
                None => perr(ln, format!("bound type {kind} needs a value")),
            }
        };
        let c = &mut self.model.cols[col];
        match kind.as_str() {
            "UP" => {
                let v = need()?;
                c.upper = v;
                // A negative upper bound alone makes the lower one -inf (the MPS
                // convention), unless the file gave the lower bound itself.
                if v < 0.0 && c.lower == 0.0 && !self.lower_set[col] {
                    c.lower = f64::NEG_INFINITY;
                }
                self.upper_set[col] = true;
            }
            "LO" => {
                c.lower = need()?;
                self.lower_set[col] = true;
            }
            "FX" => {
                let v = need()?;
                c.lower = v;
                c.upper = v;
                self.upper_set[col] = true;
            }
            "FR" => {
                c.lower = f64::NEG_INFINITY;
                c.upper = f64::INFINITY;
                self.upper_set[col] = true;
            }
            "MI" => {
                c.lower = f64::NEG_INFINITY;
                self.lower_set[col] = true;
            }
            "PL" => {
                c.upper = f64::INFINITY;
                self.upper_set[col] = true;
            }
            "BV" => {
                c.lower = 0.0;
                c.upper = 1.0;
                c.integer = true;
                self.upper_set[col] = true;
            }
            "LI" => {
                c.lower = need()?;
                c.integer = true;
                self.lower_set[col] = true;
            }
            "UI" => {
                let v = need()?;
                c.upper = v;
                c.integer = true;
                self.upper_set[col] = true;
            }
            "SC" => return perr(ln, "semi-continuous bounds (SC) are not supported by meshsolve's solvers"),
            other => {
                return perr(
                    ln,
                    format!("bound type `{other}`; expected UP, LO, FX, FR, MI, PL, BV, LI or UI"),
                )
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Model {
        for (i, row) in self.model.rows.iter_mut().enumerate() {
            let rhs = self.rhs[i];
            let (lo, up) = match (self.kinds[i], self.range[i]) {
                (RowKind::E, None) => (rhs, rhs),
                (RowKind::L, None) => (f64::NEG_INFINITY, rhs),
                (RowKind::G, None) => (rhs, f64::INFINITY),
                (RowKind::E, Some(r)) if r >= 0.0 => (rhs, rhs + r),
                (RowKind::E, Some(r)) => (rhs + r, rhs),
                (RowKind::L, Some(r)) => (rhs - r.abs(), rhs),
                (RowKind::G, Some(r)) => (rhs, rhs + r.abs()),
                (RowKind::N, _) => (f64::NEG_INFINITY, f64::INFINITY),
            };
            row.lower = lo;
            row.upper = up;
        }
        for (j, c) in self.model.cols.iter_mut().enumerate() {
            // Integer columns of a MARKER block with no upper bound are binary by convention.
            if self.marker_int[j] && !self.upper_set[j] && c.lower <= 0.0 {
                c.upper = 1.0;
            }
        }
        self.model
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{parse_str, Format, Sense};

    #[test]
    fn free_format_and_ranges() {
        let m = parse_str(
            "NAME t\nOBJSENSE\n    MAX\nROWS\n N obj\n L c1\n G c2\n E c3\nCOLUMNS\n x obj 1 c1 1\n x c2 1\n    MARKER MARKER INTORG\n y obj 2 c3 1\n    MARKER MARKER INTEND\nRHS\n rhs c1 4 c2 1\n rhs obj -3\nRANGES\n rng c1 2 c3 -1\nBOUNDS\n UP bnd x 10\nENDATA\n",
            Format::Mps,
        )
        .unwrap();
        assert_eq!(m.sense, Sense::Maximize);
        assert_eq!(m.offset, 3.0);
        assert_eq!((m.rows[0].lower, m.rows[0].upper), (2.0, 4.0));
        assert_eq!((m.rows[2].lower, m.rows[2].upper), (-1.0, 0.0));
        assert!(m.cols[1].integer);
        assert_eq!(m.cols[1].upper, 1.0);
        assert_eq!(m.cols[0].upper, 10.0);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_str("NAME t\nROWS\n N obj\nCOLUMNS\n x obj abc\nENDATA\n", Format::Mps).unwrap_err();
        let s = e.to_string();
        assert!(s.contains(":5:") && s.contains("expected a number"), "{s}");
        let e = parse_str("NAME t\nROWS\n N obj\n", Format::Mps).unwrap_err();
        assert!(e.to_string().contains("ENDATA"), "{e}");
    }
}

/// `read(write(m)) == m` over many random models (a seeded generator, no
/// extra dependency): every bound combination, ranged and free rows, integer
/// columns, both senses, constants, quadratic terms, and a row named like the
/// objective. `MESHSOLVE_PROPTEST_CASES` raises the count.
#[cfg(test)]
mod round_trip {
    use crate::model::{parse_str, Column, Format, Model, Row, Sense};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick(&mut self, xs: &[f64]) -> f64 {
            xs[self.below(xs.len() as u64) as usize]
        }
    }

    const VALUES: &[f64] =
        &[f64::NEG_INFINITY, -1e30, -3.5, -1.0, 0.0, 0.25, 1.0, 2.0, 7.0, 1e30, f64::INFINITY];

    fn bounds(r: &mut Rng) -> (f64, f64) {
        loop {
            let (l, u) = (r.pick(VALUES), r.pick(VALUES));
            if l != f64::INFINITY && u != f64::NEG_INFINITY && l <= u {
                return (l, u);
            }
        }
    }

    fn model(r: &mut Rng) -> Model {
        let mut m = Model::new("m");
        m.sense = if r.below(2) == 0 { Sense::Minimize } else { Sense::Maximize };
        m.offset = r.pick(&[0.0, 0.0, 1.5, -4.0]);
        for j in 0..r.below(6) {
            let (lower, upper) = bounds(r);
            let integer = r.below(3) == 0
                && lower.is_finite() == upper.is_finite()
                && lower.abs() < 1e9
                && upper.abs() < 1e9;
            m.cols.push(Column {
                name: format!("x{j}"),
                lower,
                upper,
                cost: r.pick(&[0.0, 1.0, -2.5, 3.0]),
                integer,
            });
        }
        let n = m.cols.len() as u64;
        for i in 0..r.below(6) {
            let (lower, upper) = bounds(r);
            let mut coefs = Vec::new();
            if n > 0 {
                for j in 0..n {
                    if r.below(2) == 0 {
                        coefs.push((j as u32, r.pick(&[1.0, -1.0, 2.5, 1e-3, -7.0])));
                    }
                }
            }
            // Now and then a row with the objective's usual name.
            let name = if r.below(8) == 0 { "obj".to_string() } else { format!("r{i}") };
            if m.rows.iter().any(|x| x.name == name) {
                continue;
            }
            m.rows.push(Row { name, lower, upper, coefs });
        }
        if n > 0 && r.below(4) == 0 {
            let j = r.below(n) as u32;
            m.quad.push((j, j, 2.0));
        }
        m
    }

    #[test]
    fn what_mps_cannot_say_is_refused_or_spelled_out() {
        let mut m = Model::new("m");
        m.cols.push(Column { name: "x".into(), lower: 0.0, upper: -1.0, cost: 1.0, integer: false });
        let mut text = Vec::new();
        m.write_mps(&mut text).unwrap();
        let back = parse_str(std::str::from_utf8(&text).unwrap(), Format::Mps).unwrap();
        assert_eq!((back.cols[0].lower, back.cols[0].upper), (0.0, -1.0), "an empty column stays empty");
        m.rows.push(Row { name: "r".into(), lower: 1.0, upper: 0.0, coefs: vec![(0, 1.0)] });
        let e = m.write_mps(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("infeasible"), "{e}");
    }

    #[test]
    fn write_then_read_gives_the_same_model() {
        let cases: u64 =
            std::env::var("MESHSOLVE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..cases {
            let mut m = model(&mut r);
            m.normalize().unwrap();
            let mut text = Vec::new();
            m.write_mps(&mut text).unwrap();
            let text = String::from_utf8(text).unwrap();
            let back = parse_str(&text, Format::Mps).unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
            assert_eq!(back.sense, m.sense, "case {case}\n{text}");
            assert_eq!(back.offset, m.offset, "case {case}\n{text}");
            assert_eq!(back.cols, m.cols, "case {case}\n{text}");
            assert_eq!(back.rows, m.rows, "case {case}\n{text}");
            assert_eq!(back.quad, m.quad, "case {case}\n{text}");
        }
    }
}
