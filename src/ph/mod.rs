//! Progressive hedging over the mesh: the spec, scenarios kept resident on
//! workers, the algorithm, and the extensive form for comparison.
pub mod augment;
pub mod bundle;
pub mod extensive;
pub mod facility;
pub mod farmer;
pub mod plot;
pub mod resident;
pub mod run;
pub mod spec;

pub use run::{run, PhIteration, PhOptions, PhResult, RhoStrategy};
pub use spec::PhSpec;
