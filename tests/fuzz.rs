//! A seeded mutation fuzzer over everything that reads bytes from a file or a
//! peer: the LP, MPS and NL readers (with model normalisation) and the frame
//! decoder. Seeds are the shipped examples and small models of every feature;
//! each case mutates one seed (flip, delete, duplicate or insert bytes, swap
//! lines, replace numbers by absurd ones) and must come back as a model or a
//! clean error, never a panic; reader errors name a line. 20 000 cases by
//! default; `MESHSOLVE_FUZZ_CASES` runs more.

mod common;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::examples;
use meshsolve::model::{nl, parse_str, Format, ModelError};
use meshsolve::protocol::{Request, Response};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const ABSURD: &[&str] = &[
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "-inf",
    "0",
    "-0",
    "1e-400",
    "99999999999999999999999",
    "-",
    "+",
    ".",
    "e5",
    "1e308",
    "4294967296",
    "-2147483649",
    "\u{0}",
    "\u{202e}",
];

fn mutate(seed: &[u8], r: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + r.below(4) {
        if b.is_empty() {
            b.push(b'x');
        }
        let i = r.below(b.len());
        match r.below(8) {
            0 => b[i] ^= 1 << r.below(8),
            1 => {
                let n = r.below(16).min(b.len() - i);
                b.drain(i..i + n);
            }
            2 => {
                let n = r.below(64).min(b.len() - i);
                let piece: Vec<u8> = b[i..i + n].to_vec();
                b.splice(i..i, piece);
            }
            3 => b.insert(i, [b'\n', b' ', b':', b'-', b'\t', 0, 0xff, b'\''][r.below(8)]),
            4 => {
                // Replace a number with an absurd one.
                let text = String::from_utf8_lossy(&b).into_owned();
                let starts: Vec<usize> =
                    text.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(k, _)| k).collect();
                if let Some(&s) = starts.get(r.below(starts.len())) {
                    let e = text[s..]
                        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                        .map_or(text.len(), |k| s + k);
                    b = format!("{}{}{}", &text[..s], ABSURD[r.below(ABSURD.len())], &text[e..]).into_bytes();
                }
            }
            5 => {
                // Swap two lines.
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() > 1 {
                    let (x, y) = (r.below(lines.len()), r.below(lines.len()));
                    lines.swap(x, y);
                }
                b = lines.join("\n").into_bytes();
            }
            6 => b.truncate(i),
            _ => {
                // Duplicate a whole line (duplicate entries, rows defined twice).
                let text = String::from_utf8_lossy(&b).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let k = r.below(lines.len());
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(k, lines[k]);
                    b = out.join("\n").into_bytes();
                }
            }
        }
    }
    b
}

const SMALL_MPS: &str = "NAME t\nOBJSENSE\n    MAX\nROWS\n N obj\n L c1\n G c2\n E c3\n N free\nCOLUMNS\n x obj 1 c1 1\n x c2 1\n    MARKER 'MARKER' 'INTORG'\n y obj 2 c3 1\n    MARKER 'MARKER' 'INTEND'\n z c1 -1 free 3\nRHS\n rhs c1 4 c2 1\n rhs obj -3\nRANGES\n rng c1 2 c3 -1\nBOUNDS\n UP bnd x 10\n MI bnd z\n BV bnd y\nQUADOBJ\n x x 2\n x z 1\nENDATA\n";
const SMALL_LP: &str = "\\ comment\nMaximize\n obj: 3 x + 2 y - z + [ 2 x ^ 2 + x * y ] / 2 + 5\nSubject To\n c1: x + y <= 4\n c2: -3 <= x - y <= 7\n c3: x + z >= -1e30\n c4: 2 x + 3 y = 6\nBounds\n 0 <= x <= 10\n y free\n -inf <= z <= 3\nGeneral\n y\nBinary\n w\nEnd\n";
const SMALL_NL: &str = "g3 1 1 0\n 4 1 1 0 0\n 0 0 0 0 0 0\n 0 0\n 0 0 0\n 0 0 0 1\n 4 0 0 0 0\n 4 4\n 0 0\n 0 0 0 0 0\nC0\nn0\nO0 1\nn0\nx0\nr\n1 14\nb\n0 0 1\n0 0 1\n0 0 1\n0 0 1\nk3\n1\n2\n3\nJ0 4\n0 5\n1 7\n2 4\n3 3\nG0 4\n0 8\n1 11\n2 6\n3 4\n";

fn check_model_error(e: &ModelError, case: u64, text: &[u8]) {
    let msg = e.to_string();
    assert!(!msg.is_empty(), "case {case}: empty error for {:?}", String::from_utf8_lossy(text));
    // Syntax errors name the line: `<memory>:N: ...`.
    if let ModelError::Syntax { line, .. } = e {
        assert!(*line >= 1, "case {case}: line 0 in a syntax error: {msg}");
    }
}

#[test]
fn readers_and_the_frame_decoder_never_panic() {
    let cases: u64 =
        std::env::var("MESHSOLVE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let ex = examples();
    let mut lp_seeds: Vec<Vec<u8>> = vec![SMALL_LP.as_bytes().to_vec()];
    for f in ["knapsack.lp", "farmer/scen0.lp", "marketsplit.lp"] {
        lp_seeds.push(std::fs::read(ex.join(f)).unwrap());
    }
    let mps_seeds: Vec<Vec<u8>> = vec![SMALL_MPS.as_bytes().to_vec()];
    let nl_seeds: Vec<Vec<u8>> = vec![SMALL_NL.as_bytes().to_vec()];
    let frames: Vec<Vec<u8>> = vec![
        meshsolve::protocol::encode(&Request::Status).unwrap(),
        meshsolve::protocol::encode(&Request::List).unwrap(),
        meshsolve::protocol::encode(&Response::Started).unwrap(),
    ];
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let mut models = 0u64;
    for case in 0..cases {
        let kind = r.below(4);
        let seeds = match kind {
            0 => &lp_seeds,
            1 => &mps_seeds,
            2 => &nl_seeds,
            _ => &frames,
        };
        let seed = &seeds[r.below(seeds.len())];
        let bytes = mutate(seed, &mut r);
        let outcome = catch_unwind(AssertUnwindSafe(|| match kind {
            0 | 1 => {
                let Ok(text) = std::str::from_utf8(&bytes) else { return };
                let fmt = if kind == 0 { Format::Lp } else { Format::Mps };
                match parse_str(text, fmt) {
                    Ok(m) => {
                        models += 1;
                        // A model that reads must also be writable (or refused) without panic.
                        let _ = m.write_mps(&mut Vec::new());
                    }
                    Err(e) => check_model_error(&e, case, &bytes),
                }
            }
            2 => {
                let _ = nl::read(&bytes, "fuzz");
            }
            _ => {
                let _ =
                    meshsolve::protocol::frame::read_msg_blocking::<Request>(&mut bytes.as_slice(), 1 << 20);
                let _ =
                    meshsolve::protocol::frame::read_msg_blocking::<Response>(&mut bytes.as_slice(), 1 << 20);
            }
        }));
        assert!(
            outcome.is_ok(),
            "case {case} (kind {kind}) panicked on input {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(models > 0, "no mutated model was readable: the mutations are too harsh to test anything");
}
