//! meshsolve: a zero-config LAN mesh of LP/MIP solver servers.
pub mod bench;
pub mod certs;
pub mod cli;
pub mod client;
pub mod discovery;
pub mod dispatch;
pub mod examples;
pub mod local;
pub mod model;
pub mod nameserver;
pub mod ph;
pub mod protocol;
pub mod results;
pub mod schedule;
pub mod solver;
pub mod transport;
pub mod worker;
