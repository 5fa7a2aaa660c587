//! CPLEX LP format reader: objective, constraints (with ranges), bounds,
//! general/binary sections. Statements may span lines; the file is tokenised
//! lazily, one line at a time.

use std::collections::VecDeque;
use std::io::BufRead;

use super::{syntax, Column, Lines, Model, Names, Row, Sense, StreamError};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sec {
    Min,
    Max,
    SubjectTo,
    Bounds,
    General,
    Binary,
    Semi,
    Sos,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Le,
    Ge,
    Eq,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(Cmp),
    Plus,
    Minus,
    Colon,
    Section(Sec),
    Eof,
}

fn section_of(line: &str) -> Option<(Sec, usize)> {
    let lower = line.trim_start().to_ascii_lowercase();
    let lead = line.len() - line.trim_start().len();
    let two = [("subject to", Sec::SubjectTo), ("such that", Sec::SubjectTo)];
    for (kw, s) in two {
        if let Some(rest) = lower.strip_prefix(kw) {
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                return Some((s, lead + kw.len()));
            }
        }
    }
    let word_end = lower.find(char::is_whitespace).unwrap_or(lower.len());
    let word = &lower[..word_end];
    let sec = match word {
        "min" | "minimize" | "minimise" | "minimum" => Sec::Min,
        "max" | "maximize" | "maximise" | "maximum" => Sec::Max,
        "st" | "s.t." | "st." => Sec::SubjectTo,
        "bounds" | "bound" => Sec::Bounds,
        "general" | "generals" | "gen" | "integer" | "integers" => Sec::General,
        "binary" | "binaries" | "bin" => Sec::Binary,
        "semi-continuous" | "semis" | "semi" => Sec::Semi,
        "sos" => Sec::Sos,
        "end" => Sec::End,
        _ => return None,
    };
    // A keyword must stand alone on its line (or be followed by a statement for min/max).
    Some((sec, lead + word_end))
}

struct Tokens<R> {
    lines: Lines<R>,
    pending: VecDeque<(Tok, usize)>,
    done: bool,
}

impl<R: BufRead> Tokens<R> {
    fn fill(&mut self, n: usize) -> Result<(), StreamError> {
        while self.pending.len() < n && !self.done {
            let Some((ln, line)) = self.lines.next_line()? else {
                self.done = true;
                break;
            };
            let line = match line.find('\\') {
                Some(i) => &line[..i],
                None => line,
            }
            .to_string();
            let mut rest: &str = &line;
            if let Some((sec, end)) = section_of(&line) {
                self.pending.push_back((Tok::Section(sec), ln));
                rest = &line[end..];
            }
            tokenize(rest, ln, &mut self.pending)?;
        }
        Ok(())
    }

    fn peek(&mut self, k: usize) -> Result<&Tok, StreamError> {
        self.fill(k + 1)?;
        Ok(self.pending.get(k).map(|t| &t.0).unwrap_or(&Tok::Eof))
    }

    fn next(&mut self) -> Result<(Tok, usize), StreamError> {
        self.fill(1)?;
        Ok(self.pending.pop_front().unwrap_or((Tok::Eof, self.lines.line)))
    }

    fn line(&mut self) -> usize {
        self.pending.front().map(|t| t.1).unwrap_or(self.lines.line)
    }
}

fn tokenize(s: &str, ln: usize, out: &mut VecDeque<(Tok, usize)>) -> Result<(), StreamError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'*' => i += 1,
            b':' => {
                out.push_back((Tok::Colon, ln));
                i += 1
            }
            b'+' => {
                out.push_back((Tok::Plus, ln));
                i += 1
            }
            b'-' => {
                out.push_back((Tok::Minus, ln));
                i += 1
            }
            b'<' | b'>' | b'=' => {
                let two = b.get(i + 1).copied();
                let (op, len) = match (c, two) {
                    (b'<', Some(b'=')) | (b'=', Some(b'<')) => (Cmp::Le, 2),
                    (b'>', Some(b'=')) | (b'=', Some(b'>')) => (Cmp::Ge, 2),
                    (b'<', _) => (Cmp::Le, 1),
                    (b'>', _) => (Cmp::Ge, 1),
                    _ => (Cmp::Eq, 1),
                };
                out.push_back((Tok::Op(op), ln));
                i += len;
            }
            b'[' | b']' | b'^' => {
                return Err(syntax(ln, "quadratic terms ([ ... ]) are not supported; meshsolve solves linear and mixed-integer models"))
            }
            b'0'..=b'9' | b'.' if c != b'.' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                while i < b.len() {
                    let d = b[i];
                    let exp_sign = (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E');
                    if d.is_ascii_digit() || d == b'.' || d == b'e' || d == b'E' || exp_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let t = &s[start..i];
                match t.parse::<f64>() {
                    Ok(v) if v.is_infinite() => {
                        return Err(syntax(ln, format!("number `{t}` out of range (write inf for infinity)")))
                    }
                    Ok(v) => out.push_back((Tok::Num(v), ln)),
                    Err(_) => return Err(syntax(ln, format!("malformed number `{t}`"))),
                }
            }
            _ => {
                let start = i;
                while i < b.len() && !b" \t\r:+-<>=[]^*\\".contains(&b[i]) {
                    i += 1;
                }
                let t = &s[start..i];
                match t.to_ascii_lowercase().as_str() {
                    "inf" | "infinity" => out.push_back((Tok::Num(f64::INFINITY), ln)),
                    _ => out.push_back((Tok::Name(t.to_string()), ln)),
                }
            }
        }
    }
    Ok(())
}

struct Builder {
    model: Model,
    cols: Names,
    rows: Names,
    /// Columns whose bounds a `general` section made integer but that never got an upper bound.
    touched: Vec<bool>,
}

impl Builder {
    fn col(&mut self, name: &str) -> u32 {
        if let Some(j) = self.cols.get(name) {
            return j;
        }
        let j = self.model.cols.len() as u32;
        self.cols.insert(name, j);
        self.model.cols.push(Column {
            name: name.to_string(),
            lower: 0.0,
            upper: f64::INFINITY,
            cost: 0.0,
            integer: false,
        });
        self.touched.push(false);
        j
    }
}

/// A linear expression: terms and a constant.
#[derive(Default)]
struct Expr {
    terms: Vec<(u32, f64)>,
    constant: f64,
}

/// Reads an optional sign sequence and returns the product (+1 / -1).
fn signs<R: BufRead>(t: &mut Tokens<R>) -> Result<f64, StreamError> {
    let mut s = 1.0;
    loop {
        match t.peek(0)? {
            Tok::Plus => {}
            Tok::Minus => s = -s,
            _ => return Ok(s),
        }
        t.next()?;
    }
}

/// Parses `[+-] [num] name | [+-] num ...` until a token that cannot continue the expression.
fn expr<R: BufRead>(t: &mut Tokens<R>, b: &mut Builder, what: &str) -> Result<Expr, StreamError> {
    let mut e = Expr::default();
    let mut first = true;
    loop {
        let next = t.peek(0)?.clone();
        let starts_term =
            matches!(next, Tok::Plus | Tok::Minus) || (first && matches!(next, Tok::Num(_) | Tok::Name(_)));
        if !starts_term {
            return Ok(e);
        }
        // A name followed by a colon starts the next statement.
        if let (Tok::Name(_), Tok::Colon) = (&next, t.peek(1)?) {
            return Ok(e);
        }
        let ln = t.line();
        let s = signs(t)?;
        match t.peek(0)?.clone() {
            Tok::Num(v) => {
                t.next()?;
                let is_var = matches!(t.peek(0)?, Tok::Name(_)) && !matches!(t.peek(1)?, Tok::Colon);
                if is_var {
                    let Tok::Name(n) = t.next()?.0 else { unreachable!("peeked a name") };
                    let j = b.col(&n);
                    e.terms.push((j, s * v));
                } else {
                    e.constant += s * v;
                }
            }
            Tok::Name(n) => {
                t.next()?;
                let j = b.col(&n);
                e.terms.push((j, s));
            }
            other => {
                return Err(syntax(
                    ln,
                    format!(
                        "in {what}: expected a coefficient or a variable name after a sign, found {}",
                        show(&other)
                    ),
                ))
            }
        }
        first = false;
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Num(v) => format!("number {v}"),
        Tok::Name(n) => format!("`{n}`"),
        Tok::Op(_) => "a comparison operator".into(),
        Tok::Plus => "`+`".into(),
        Tok::Minus => "`-`".into(),
        Tok::Colon => "`:`".into(),
        Tok::Section(s) => format!("section keyword {s:?}"),
        Tok::Eof => "end of file".into(),
    }
}

fn signed_number<R: BufRead>(t: &mut Tokens<R>, what: &str) -> Result<f64, StreamError> {
    let ln = t.line();
    let s = signs(t)?;
    match t.next()? {
        (Tok::Num(v), _) => Ok(s * v),
        (other, l) => Err(syntax(l.max(ln), format!("in {what}: expected a number, found {}", show(&other)))),
    }
}

/// Reads a CPLEX LP model.
pub(crate) fn read(stream: impl BufRead, default_name: &str) -> Result<Model, StreamError> {
    let mut t = Tokens { lines: Lines::new(stream), pending: VecDeque::new(), done: false };
    let mut b = Builder {
        model: Model::new(default_name),
        cols: Names::default(),
        rows: Names::default(),
        touched: Vec::new(),
    };
    let mut saw_objective = false;
    loop {
        let (tok, ln) = t.next()?;
        match tok {
            Tok::Eof => break,
            Tok::Section(Sec::End) => break,
            Tok::Section(s @ (Sec::Min | Sec::Max)) => {
                if saw_objective {
                    return Err(syntax(ln, "a second objective section; an LP file has exactly one"));
                }
                saw_objective = true;
                b.model.sense = if s == Sec::Max { Sense::Maximize } else { Sense::Minimize };
                objective(&mut t, &mut b)?;
            }
            Tok::Section(Sec::SubjectTo) => constraints(&mut t, &mut b)?,
            Tok::Section(Sec::Bounds) => bounds(&mut t, &mut b)?,
            Tok::Section(s @ (Sec::General | Sec::Binary | Sec::Semi)) => integers(&mut t, &mut b, s)?,
            Tok::Section(Sec::Sos) => return Err(syntax(ln, "SOS sections are not supported")),
            other => {
                return Err(syntax(ln, format!(
                    "expected a section keyword (minimize, maximize, subject to, bounds, general, binary, end), found {}; is this an LP file?",
                    show(&other)
                )))
            }
        }
    }
    if !saw_objective {
        return Err(syntax(
            t.lines.line.max(1),
            "no objective section (minimize or maximize) found; is this an LP file?",
        ));
    }
    Ok(b.model)
}

fn objective<R: BufRead>(t: &mut Tokens<R>, b: &mut Builder) -> Result<(), StreamError> {
    if let (Tok::Name(_), Tok::Colon) = (t.peek(0)?.clone(), t.peek(1)?) {
        t.next()?;
        t.next()?;
    }
    let e = expr(t, b, "the objective")?;
    for (j, v) in e.terms {
        b.model.cols[j as usize].cost += v;
    }
    b.model.offset += e.constant;
    expect_section(t, "the objective")
}

fn expect_section<R: BufRead>(t: &mut Tokens<R>, what: &str) -> Result<(), StreamError> {
    match t.peek(0)?.clone() {
        Tok::Section(_) | Tok::Eof => Ok(()),
        other => {
            let ln = t.line();
            Err(syntax(
                ln,
                format!("in {what}: unexpected {}; expected `+`, `-` or a new section", show(&other)),
            ))
        }
    }
}

fn constraints<R: BufRead>(t: &mut Tokens<R>, b: &mut Builder) -> Result<(), StreamError> {
    loop {
        if matches!(t.peek(0)?, Tok::Section(_) | Tok::Eof) {
            return Ok(());
        }
        let ln = t.line();
        let name = if let (Tok::Name(n), Tok::Colon) = (t.peek(0)?.clone(), t.peek(1)?) {
            t.next()?;
            t.next()?;
            n
        } else {
            format!("R{}", b.model.rows.len() + 1)
        };
        let what = format!("constraint `{name}`");
        // Ranged form: number op expr op number.
        let mut lower_side = None;
        let sign_then_num = matches!(t.peek(0)?, Tok::Plus | Tok::Minus)
            && matches!(t.peek(1)?, Tok::Num(_))
            && matches!(t.peek(2)?, Tok::Op(_));
        if (matches!(t.peek(0)?, Tok::Num(_)) && matches!(t.peek(1)?, Tok::Op(_))) || sign_then_num {
            let v = signed_number(t, &what)?;
            let Tok::Op(op) = t.next()?.0 else { unreachable!("peeked an operator") };
            lower_side = Some((v, op));
        }
        let e = expr(t, b, &what)?;
        let (op, l2) = match t.next()? {
            (Tok::Op(op), l) => (op, l),
            (other, l) if lower_side.is_none() => {
                return Err(syntax(
                    l.max(ln),
                    format!("in {what}: expected <=, >= or = after the expression, found {}", show(&other)),
                ))
            }
            _ => (Cmp::Eq, ln),
        };
        let _ = l2;
        let rhs = signed_number(t, &what)? - e.constant;
        let (mut lo, mut up) = match op {
            Cmp::Le => (f64::NEG_INFINITY, rhs),
            Cmp::Ge => (rhs, f64::INFINITY),
            Cmp::Eq => (rhs, rhs),
        };
        if let Some((v, lop)) = lower_side {
            let v = v - e.constant;
            match lop {
                Cmp::Le => lo = v,
                Cmp::Ge => up = v,
                Cmp::Eq => {
                    lo = v;
                    up = v
                }
            }
        }
        if b.rows.get(&name).is_some() {
            return Err(syntax(ln, format!("constraint `{name}` defined twice")));
        }
        b.rows.insert(&name, b.model.rows.len() as u32);
        let mut coefs = e.terms;
        coefs.sort_by_key(|c| c.0);
        coefs.dedup_by(|a, b2| {
            if a.0 == b2.0 {
                b2.1 += a.1;
                true
            } else {
                false
            }
        });
        coefs.retain(|c| c.1 != 0.0);
        b.model.rows.push(Row { name, lower: lo, upper: up, coefs });
    }
}

fn bounds<R: BufRead>(t: &mut Tokens<R>, b: &mut Builder) -> Result<(), StreamError> {
    loop {
        let ln = t.line();
        match t.peek(0)?.clone() {
            Tok::Section(_) | Tok::Eof => return Ok(()),
            Tok::Name(n) => {
                t.next()?;
                let j = b.col(&n) as usize;
                match t.next()? {
                    (Tok::Name(w), _) if w.eq_ignore_ascii_case("free") => {
                        b.model.cols[j].lower = f64::NEG_INFINITY;
                        b.model.cols[j].upper = f64::INFINITY;
                    }
                    (Tok::Op(op), _) => {
                        let v = signed_number(t, &format!("the bound on `{n}`"))?;
                        apply(&mut b.model.cols[j], op, v, false);
                        b.touched[j] = true;
                    }
                    (other, l) => {
                        return Err(syntax(
                            l,
                            format!(
                                "in the bound on `{n}`: expected <=, >=, = or `free`, found {}",
                                show(&other)
                            ),
                        ))
                    }
                }
            }
            Tok::Num(_) | Tok::Plus | Tok::Minus => {
                let v = signed_number(t, "a bound")?;
                let op = match t.next()? {
                    (Tok::Op(op), _) => op,
                    (other, l) => {
                        return Err(syntax(
                            l,
                            format!("in a bound: expected <=, >= or = after {v}, found {}", show(&other)),
                        ))
                    }
                };
                let n = match t.next()? {
                    (Tok::Name(n), _) => n,
                    (other, l) => {
                        return Err(syntax(
                            l,
                            format!("in a bound: expected a variable name, found {}", show(&other)),
                        ))
                    }
                };
                let j = b.col(&n) as usize;
                apply(&mut b.model.cols[j], op, v, true);
                b.touched[j] = true;
                if let Tok::Op(op2) = t.peek(0)?.clone() {
                    t.next()?;
                    let v2 = signed_number(t, &format!("the bound on `{n}`"))?;
                    apply(&mut b.model.cols[j], op2, v2, false);
                }
            }
            other => {
                return Err(syntax(
                    ln,
                    format!(
                        "in bounds: expected a bound such as `x <= 4`, `0 <= x <= 4` or `x free`, found {}",
                        show(&other)
                    ),
                ))
            }
        }
    }
}

/// Applies `x op v` (or `v op x` when `value_first`).
fn apply(c: &mut Column, op: Cmp, v: f64, value_first: bool) {
    let op = match (op, value_first) {
        (Cmp::Le, true) => Cmp::Ge,
        (Cmp::Ge, true) => Cmp::Le,
        (o, _) => o,
    };
    match op {
        Cmp::Le => c.upper = v,
        Cmp::Ge => c.lower = v,
        Cmp::Eq => {
            c.lower = v;
            c.upper = v
        }
    }
}

fn integers<R: BufRead>(t: &mut Tokens<R>, b: &mut Builder, sec: Sec) -> Result<(), StreamError> {
    loop {
        match t.peek(0)?.clone() {
            Tok::Section(_) | Tok::Eof => return Ok(()),
            Tok::Name(n) => {
                let ln = t.line();
                t.next()?;
                let j = b.col(&n) as usize;
                match sec {
                    Sec::General => b.model.cols[j].integer = true,
                    Sec::Binary => {
                        let c = &mut b.model.cols[j];
                        c.integer = true;
                        c.lower = c.lower.max(0.0);
                        c.upper = c.upper.min(1.0);
                    }
                    _ => return Err(syntax(ln, format!("semi-continuous variable `{n}` is not supported"))),
                }
            }
            other => {
                let ln = t.line();
                return Err(syntax(
                    ln,
                    format!("expected a variable name in the integer section, found {}", show(&other)),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{parse_str, Format, Sense};

    #[test]
    fn reads_a_small_mip() {
        let m = parse_str(
            "\\ comment\nMaximize\n obj: 3 x + 2 y - z + 5\nSubject To\n c1: x + y\n   <= 4\n c2: x + 3y >= 2\n c3: -2 <= x - z <= 8\n e0: = +0\nBounds\n x <= 40\n -inf <= z <= 3\n y free\nGeneral\n x\nBinary\n w\nEnd\n",
            Format::Lp,
        )
        .unwrap();
        assert_eq!(m.sense, Sense::Maximize);
        assert_eq!(m.offset, 5.0);
        assert_eq!(m.cols.len(), 4);
        assert_eq!(m.rows.len(), 4);
        assert_eq!(m.rows[0].upper, 4.0);
        assert_eq!((m.rows[2].lower, m.rows[2].upper), (-2.0, 8.0));
        assert!(m.rows[3].coefs.is_empty());
        assert_eq!(m.cols[2].lower, f64::NEG_INFINITY);
        assert!(m.cols[0].integer && m.cols[3].integer);
        assert_eq!(m.cols[1].lower, f64::NEG_INFINITY);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse_str("min\n obj: x\nst\n c1: x + <= 4\nend\n", Format::Lp).unwrap_err();
        assert!(e.to_string().contains(":4:"), "{e}");
        let e = parse_str("hello world\n", Format::Lp).unwrap_err();
        assert!(e.to_string().contains(":1:"), "{e}");
    }
}
