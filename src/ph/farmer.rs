//! The farmer stochastic program (Birge & Louveaux, ch. 1) as one LP file per
//! scenario plus a PH spec, for any number of scenarios. Scenarios beyond the
//! first three add a U[0,1) jitter to the base yields drawn from MT19937,
//! reproducing the scalable farmer of PySP / mpi-sppy exactly.

use std::io::Write;
use std::path::Path;

const CROPS: [&str; 3] = ["WHEAT", "CORN", "SUGAR_BEETS"];
const PLANTING: [f64; 3] = [150.0, 230.0, 260.0];
const SUB_PRICE: [f64; 3] = [170.0, 150.0, 36.0];
const SUPER_PRICE: [f64; 3] = [0.0, 0.0, 10.0];
const QUOTA: [f64; 3] = [100000.0, 100000.0, 6000.0];
const PURCHASE: [f64; 3] = [238.0, 210.0, 100000.0];
const FEED: [f64; 3] = [200.0, 240.0, 0.0];
const BASE_YIELD: [[f64; 3]; 3] = [[2.0, 2.4, 16.0], [2.5, 3.0, 20.0], [3.0, 3.6, 24.0]];

/// The Mersenne Twister MT19937 with `init_genrand` seeding, as numpy's `RandomState(int)`.
pub struct Mt19937 {
    mt: [u32; 624],
    idx: usize,
}

impl Mt19937 {
    /// Seeds like `init_genrand(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1812433253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { mt, idx: 624 }
    }

    /// `genrand_int32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            for i in 0..624 {
                let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[i] = v;
            }
            self.idx = 0;
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `genrand_res53`: a double in [0, 1) with 53-bit resolution (numpy's `rand()`).
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67108864.0 + b) / 9007199254740992.0
    }
}

/// Yields (wheat, corn, sugar beets) of scenario `k`.
pub fn yields(k: usize) -> [f64; 3] {
    let mut y = BASE_YIELD[k % 3];
    if k / 3 > 0 {
        let mut rng = Mt19937::new(k as u32);
        for v in &mut y {
            *v += rng.next_f64();
        }
    }
    y
}

fn num(x: f64) -> String {
    let s = format!("{x}");
    s
}

/// The LP of scenario `k` (first-stage variables `DevotedAcreage_<CROP>`).
pub fn scenario_lp(k: usize) -> String {
    let y = yields(k);
    let mut s = format!("\\ farmer scenario {k}: yields {:?}\nMinimize\n cost:", y);
    for (c, crop) in CROPS.iter().enumerate() {
        s.push_str(&format!(
            " + {} DevotedAcreage_{crop} + {} QuantityPurchased_{crop} - {} QuantitySubQuotaSold_{crop}",
            num(PLANTING[c]),
            num(PURCHASE[c]),
            num(SUB_PRICE[c])
        ));
        if SUPER_PRICE[c] != 0.0 {
            s.push_str(&format!(" - {} QuantitySuperQuotaSold_{crop}", num(SUPER_PRICE[c])));
        }
        s.push('\n');
    }
    s.push_str("Subject To\n TotalAcreage: DevotedAcreage_WHEAT + DevotedAcreage_CORN + DevotedAcreage_SUGAR_BEETS <= 500\n");
    for (c, crop) in CROPS.iter().enumerate() {
        s.push_str(&format!(
            " CattleFeed_{crop}: {} DevotedAcreage_{crop} + QuantityPurchased_{crop} - QuantitySubQuotaSold_{crop} - QuantitySuperQuotaSold_{crop} >= {}\n",
            num(y[c]),
            num(FEED[c])
        ));
        s.push_str(&format!(
            " LimitSold_{crop}: QuantitySubQuotaSold_{crop} + QuantitySuperQuotaSold_{crop} - {} DevotedAcreage_{crop} <= 0\n",
            num(y[c])
        ));
    }
    s.push_str("Bounds\n");
    for (c, crop) in CROPS.iter().enumerate() {
        s.push_str(&format!(
            " 0 <= DevotedAcreage_{crop} <= 500\n 0 <= QuantitySubQuotaSold_{crop} <= {}\n",
            num(QUOTA[c])
        ));
    }
    s.push_str("End\n");
    s
}

/// Writes `scen0.lp` … `scen{n-1}.lp` and `farmer.toml` (equal probabilities) into `dir`.
///
/// # Errors
/// When the directory or a file cannot be written.
pub fn write(dir: &Path, n: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut spec = std::fs::File::create(dir.join("farmer.toml"))?;
    writeln!(spec, "# Farmer, {n} scenarios (Birge & Louveaux; scalable farmer of mpi-sppy).")?;
    writeln!(spec, "name = \"farmer{n}\"")?;
    writeln!(spec, "first_stage = [\"DevotedAcreage_*\"]")?;
    writeln!(spec, "rho = 1.0")?;
    for k in 0..n {
        std::fs::write(dir.join(format!("scen{k}.lp")), scenario_lp(k))?;
        writeln!(spec, "\n[[scenario]]\nfile = \"scen{k}.lp\"\nprobability = {}", 1.0 / n as f64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_yields_match_the_reference_generator() {
        let want = [
            (3, [2.5507979025745753, 3.108147822618105, 16.290904738912943]),
            (4, [3.4670298390136765, 3.5472322491757224, 20.972684359964884]),
            (5, [3.2219931710897396, 4.470732306177377, 24.206719155339428]),
            (8, [3.873429402791816, 4.568540662820932, 24.86919454021392]),
        ];
        for (k, y) in want {
            assert_eq!(yields(k), y, "scenario {k}");
        }
        assert_eq!(yields(1), [2.5, 3.0, 20.0]);
    }
}
