//! Progressive hedging over the mesh.
pub mod augment;
pub mod farmer;
pub mod resident;
pub mod run;
pub mod spec;

pub use run::{run, PhIteration, PhOptions, PhResult};
pub use spec::PhSpec;
