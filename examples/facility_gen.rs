//! Writes a stochastic capacitated facility location problem (a two-stage
//! stochastic MIP): one LP per scenario and a PH spec.
//!
//! ```sh
//! cargo run --release --example facility_gen -- 8 20 10 /tmp/facility   # facilities customers scenarios DIR
//! meshsolve ph /tmp/facility/facility.toml --ef
//! ```
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (f, c, s, dir, seed) = match args.as_slice() {
        [f, c, s, dir] => (f, c, s, dir, "1"),
        [f, c, s, dir, seed] => (f, c, s, dir, seed.as_str()),
        _ => anyhow::bail!("usage: facility_gen FACILITIES CUSTOMERS SCENARIOS DIR [SEED]"),
    };
    let size = meshsolve::ph::facility::Size {
        facilities: f.parse()?,
        customers: c.parse()?,
        scenarios: s.parse()?,
        seed: seed.parse()?,
    };
    meshsolve::ph::facility::write(std::path::Path::new(dir), size)?;
    println!("wrote {} scenarios and facility.toml to {dir}", size.scenarios);
    Ok(())
}
