//! `meshsolve`: solve LP/MIP models on the workers of your namespace. Thin:
//! flags → a config → the library; each subcommand lives in its own module.

mod ampl;
mod args;
mod bench;
mod bench_backends;
mod cbc;
mod certs_cmd;
mod check;
#[path = "../cli/mod.rs"]
mod cli;
mod demo;
mod detached;
mod doctor;
mod dropin;
mod examples;
mod local;
mod ph_cmd;
mod race;
mod report;
mod results;
mod solve;
mod top;
mod workers;

use std::process::ExitCode;

use clap::Parser;
use meshsolve::solver;

use crate::args::{Cmd, Opts, Usage};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == solver::process::CHILD_FLAG) {
        return ExitCode::from(solver::process::child_main() as u8);
    }
    // Modelling tools call solver executables in their own dialects: answer those
    // before clap sees the arguments.
    let raw: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let dialect = dropin::sniff(&raw);
    if matches!(dialect, Some(dropin::Dialect::Ampl | dropin::Dialect::Cbc)) {
        // A modelling tool's child: if the tool dies (even by SIGKILL), we get
        // SIGTERM and cancel the remote solve instead of leaving it running.
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    }
    match dialect {
        Some(dropin::Dialect::Version) => {
            println!("{}", dropin::VERSION_LINE);
            return ExitCode::SUCCESS;
        }
        Some(dropin::Dialect::Ampl) => {
            cli::init_tracing("warn");
            return ExitCode::from(ampl::run(&raw));
        }
        Some(dropin::Dialect::Cbc) => {
            cli::init_tracing("warn");
            return ExitCode::from(cbc::run(&raw));
        }
        None => {}
    }
    // The native command line, like other Unix tools, ends quietly when the reader of
    // its output goes away (`| head`); the drop-in dialects above never die of it.
    // SAFETY: setting a signal disposition at start-up, before any thread exists,
    // to the default handler (no Rust code runs in it).
    #[allow(unsafe_code)]
    unsafe {
        let _ =
            nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    let opts = Opts::parse();
    cli::init_tracing(&opts.mesh.log_level);
    match cli::runtime().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run(opts))) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("meshsolve: error: {e:#}");
            ExitCode::from(if e.downcast_ref::<Usage>().is_some() { 2 } else { 1 })
        }
    }
}

async fn run(opts: Opts) -> anyhow::Result<u8> {
    let mesh = opts.mesh.config()?;
    let m = &mesh;
    match opts.cmd {
        Some(Cmd::Workers { json }) => workers::workers(m, json).await,
        Some(Cmd::Shutdown) => workers::shutdown(m).await,
        Some(Cmd::Certs(c)) => certs_cmd::certs_cmd(m, c),
        Some(Cmd::Check { models }) => check::check(&models),
        Some(Cmd::Demo) => demo::demo(m).await,
        Some(Cmd::Collect { batch, until_done, json, out }) => {
            detached::collect(m, &batch, until_done, json, out).await
        }
        Some(Cmd::Ps { all, json }) => workers::ps(m, all, json).await,
        Some(Cmd::Kill { job }) => workers::kill(m, &job).await,
        Some(Cmd::Top { interval }) => top::top(m, interval).await,
        Some(Cmd::Doctor { json }) => doctor::doctor(m, json).await,
        Some(Cmd::Batches { delete, json }) => detached::batches(m, delete.as_deref(), json).await,
        Some(Cmd::Bench(b)) => bench::command(m, b).await,
        Some(Cmd::Ph(p)) => ph_cmd::ph(m, p).await,
        None => solve::solve(m, &opts.solve.config()?).await,
    }
}
