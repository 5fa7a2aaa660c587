//! Writes the scalable farmer: one LP per scenario and a PH spec.
//!
//! ```sh
//! cargo run --release --example farmer_gen -- 30 /tmp/farmer30
//! meshsolve ph /tmp/farmer30/farmer.toml --ef
//! ```
fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(n), Some(dir)) = (args.next(), args.next()) else {
        anyhow::bail!(
            "usage: farmer_gen N DIR   (N scenarios; yields jittered as in mpi-sppy's scalable farmer)"
        );
    };
    let n: usize = n.parse()?;
    meshsolve::ph::farmer::write(std::path::Path::new(&dir), n)?;
    println!("wrote {n} scenarios and farmer.toml to {dir}");
    Ok(())
}
