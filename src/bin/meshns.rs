//! `meshns`: the static name server for networks where multicast is blocked.

#[path = "cli/mod.rs"]
mod cli;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use meshsolve::{certs, nameserver};
use tokio_util::sync::CancellationToken;

/// Rendezvous and relay for meshsolve workers and clients where mDNS cannot reach
/// (multicast blocked, several subnets). Point workers and clients at it with
/// PYRO_NS_HOSTNAME=this-host (and PYRO_NS_PORT if not 9090), or with --ns.
///
/// It serves every namespace whose CA it holds under its home directory, each
/// isolated exactly as on the LAN: a peer's TLS certificate must be signed by the CA
/// of the namespace it asks for. Workers register and refresh a lease; clients list
/// their namespace's workers, and reach those they cannot reach directly through it.
#[derive(Parser, Debug)]
#[command(name = "meshns", version, max_term_width = 100)]
struct Opts {
    /// UDP port (Pyro's PYRO_NS_PORT).
    #[arg(long, short = 'p', env = "PYRO_NS_PORT", default_value_t = nameserver::DEFAULT_PORT)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Namespaces to serve (repeatable) [default: every namespace CA under the home
    /// directory, or your own namespace if there is none].
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
    /// Directory holding namespace CAs [default: ~/.config/meshsolve].
    #[arg(long, env = "MESHSOLVE_HOME")]
    home: Option<PathBuf>,
    /// Registration lease: a worker that stops refreshing disappears after this long.
    #[arg(long, default_value = "6s", value_parser = cli::parse_duration)]
    lease: Duration,
    /// Where detached batches (`meshsolve --detach`) and their results are kept
    /// [default: HOME/.meshns-queue]; they survive a restart.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Bytes of queued models each namespace may keep here, in MiB [default: 10240]; a
    /// submit past it is refused with a message saying so.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    queue_quota: Option<u64>,
    /// How long a finished detached batch's results are kept (e.g. 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = cli::parse_duration)]
    keep_results: Duration,
    /// Log level or filter (error, warn, info, debug); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    cli::init_tracing(&opts.log_level);
    match cli::runtime().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run(opts))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshns: error: {e:#}");
            ExitCode::from(if e.downcast_ref::<cli::Usage>().is_some() { 2 } else { 1 })
        }
    }
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let home = opts.home.unwrap_or_else(certs::default_home);
    let mut namespaces = opts.namespaces;
    if namespaces.is_empty() {
        namespaces = nameserver::namespaces_in(&home);
    }
    if namespaces.is_empty() {
        namespaces.push(certs::default_namespace());
    }
    for ns in &namespaces {
        certs::validate_namespace(ns).map_err(|e| cli::Usage(format!("{e} (--namespace NAME)")))?;
    }
    if opts.lease < Duration::from_millis(500) {
        return Err(cli::Usage("--lease must be at least 500ms (e.g. --lease 6s)".into()).into());
    }
    let state_dir = opts.state_dir.unwrap_or_else(|| home.join(".meshns-queue"));
    let cfg = nameserver::NsConfig {
        bind: SocketAddr::new(opts.bind, opts.port),
        namespaces,
        home,
        lease: opts.lease,
        state_dir,
        queue_limits: nameserver::queue::QueueLimits {
            quota: opts.queue_quota.map_or(nameserver::queue::QueueLimits::default().quota, |m| m << 20),
            keep: opts.keep_results,
        },
    };
    let shutdown = CancellationToken::new();
    let _signals = cli::on_signals(shutdown.clone(), "meshns");
    nameserver::run(cfg, shutdown, |addr| eprintln!("meshns: listening on {addr}")).await?;
    Ok(())
}
