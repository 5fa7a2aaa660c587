//! meshsolve: a zero-config LAN mesh of LP/MIP solver servers.
//!
//! Workers ([`worker`]) advertise themselves ([`discovery`]); clients
//! ([`client`]) find them and send models over QUIC with mutual TLS
//! ([`transport`]), one request per stream, CBOR frames ([`protocol`]);
//! [`dispatch`] keeps every free slot busy and retries lost jobs, and [`ph`]
//! runs progressive hedging on top. The binaries (`src/bin/`) only turn flags
//! into a config and call this library.
//!
//! # Layout
//!
//! Dependencies point one way: a module may import only modules of a **lower
//! layer**, never one of its own layer or above, so there is no cycle between
//! modules. `tests/layers.rs` reads this table and fails on any import against it.
//!
//! | layer | module | what it owns |
//! |---|---|---|
//! | 0 | `model` | the `Model` (columns, rows, bounds, quadratic terms), its streaming LP, MPS and AMPL NL readers, normalisation, `write_mps` |
//! | 0 | `certs` | namespaces: names, home directory, the per-namespace CA, leaf identities |
//! | 1 | `protocol` | the vocabulary: every wire message, `Solution`, `Status`, `SolveOptions`, `WorkerAd`, PH steps; the one frame codec |
//! | 1 | `inputs` | model inputs as users name them: files, directories, patterns |
//! | 2 | `schedule` | placement, queueing and retries as pure state (no I/O, no clock) |
//! | 2 | `transport` | QUIC endpoints and TLS configs for workers, clients and name servers |
//! | 2 | `solver` | the `Solver` trait, the back-ends (built in, command-line, Python), which ones this box has, proximal subproblems, the child-process runner |
//! | 3 | `discovery` | the `Discovery` trait, mDNS, the name-server lookup, remembered workers, the fan-out that merges them |
//! | 4 | `worker` | the worker service: accept, admit, run solves in children, resident scenarios, register, licence pools, the job board |
//! | 4 | `client` | `Mesh`: the workers of a namespace, connections and relays, one request each |
//! | 4 | `nameserver` | the `meshns` service: leases, relay, the detached-job queue |
//! | 5 | `dispatch` | `Queue`: jobs over the mesh with retries, progress events, `wait_any`/`wait_all` |
//! | 6 | `ph` | progressive hedging: spec, resident scenarios, the algorithm, bundles, the extensive form, the plot, generators |
//!
//! Every task a module spawns has an owner that cancels and awaits it: a
//! `TaskTracker` or `JoinSet` held by the service, the `Mesh`, the `Queue` or
//! the discovery back-end that started it.

pub mod certs;
pub mod client;
pub mod discovery;
pub mod dispatch;
pub mod inputs;
pub mod model;
pub mod nameserver;
pub mod ph;
pub mod protocol;
pub mod schedule;
pub mod solver;
pub mod transport;
pub mod worker;
