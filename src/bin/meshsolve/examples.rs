//! Models shipped inside the binaries, so the demo and the benchmark need no files.

/// The farmer extensive form, 3 scenarios (optimal objective -108390).
pub const FARMER_LP: &str = include_str!("../../../examples/farmer/farmer.lp");

/// A small 0-1 "market split" instance that plain branch and bound cannot finish:
/// a solve of it runs until its time limit.
pub const MARKET_SPLIT_LP: &str = include_str!("../../../examples/marketsplit.lp");
