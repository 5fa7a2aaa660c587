//! Helpers shared by the three binaries (included by each with `#[path]`, not
//! part of the library): the async runtime, duration parsing, logging set-up,
//! and signals.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// The async runtime of every binary: one thread. A job's path (client, QUIC,
/// worker, solver process) is a chain of small wake-ups; on one thread each is a
/// function call, across threads each is a futex wake and a context switch,
/// which measured 0.1 ms of a tiny job's 0.4 ms on a 2-core box. Work that takes
/// long (reading or writing big models, building an extensive form, probing
/// solvers) goes to `spawn_blocking`: the thread must keep QUIC's keep-alives
/// flowing, or peers take this process for dead after the idle timeout.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Parses `500ms`, `10s`, `5m`, `2h`, `1h30m` (humantime) or a bare number of seconds.
/// Never panics: an absurd value is an error that says what to type.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let hint = "use e.g. 500ms, 10s, 5m, 2h or 1h30m";
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{s}` is not a valid duration; {hint}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration ({e}); {hint}"))
}

/// Writes a line to stderr; a closed pipe is ignored (a reader that went away
/// must never stop a process from stopping, nor panic it).
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// Writes a line to stdout; a closed pipe is ignored.
#[allow(dead_code)] // Only meshsolve's drop-in dialects print results this way.
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{args}");
}

/// A command-line mistake: the message says what to type instead; exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Logs to stderr; `RUST_LOG` overrides `level`.
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},mdns_sd=warn,quinn=warn,rustls=warn"))
    });
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// First SIGINT/SIGTERM cancels `token`; a second one exits at once with 130.
/// The signal task lives as long as the returned handle.
#[must_use = "signals are watched only while the handle lives"]
pub fn on_signals(token: CancellationToken, who: &'static str) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        stderr_line(format_args!("{who}: stopping (press Ctrl-C again to exit at once)"));
        token.cancel();
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        stderr_line(format_args!("{who}: exiting now"));
        std::process::exit(130);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("abc").is_err());
        // Absurd values are errors, never panics.
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("1e23").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("NaN").is_err());
    }
}
