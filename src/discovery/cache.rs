//! Remembered workers: every worker and client writes the workers it knows to
//! a small directory under the namespace's home (`<home>/<ns>/peers/`, one
//! file per worker instance), and a client starting cold tries them directly,
//! alongside mDNS. An entry is only a hint: a remembered worker is reported up
//! only after a status request over mutual TLS has proved it belongs to the
//! namespace (so a stale address, a port reused by something else or another
//! namespace's worker costs one failed probe, never a job).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::{BoxFuture, Discovery, DiscoveryError, DiscoveryEvent, WorkerAd};
use crate::protocol::{read_msg, write_msg, Request, WorkerStatus, MAX_CONTROL};
use crate::transport;

/// How long one probe of a remembered worker may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Entries older than this are forgotten.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest entry file read.
const MAX_ENTRY: u64 = 64 * 1024;

/// The directory of remembered workers of a namespace.
pub fn dir(ns_dir: &Path) -> PathBuf {
    ns_dir.join("peers")
}

/// A file name for an instance (instance names are free text).
fn file_name(instance: &str) -> String {
    let safe: String = instance
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let h = ring::digest::digest(&ring::digest::SHA256, instance.as_bytes());
    let tag: String = h.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{tag}.json", &safe[..safe.len().min(64)])
}

/// Remembers `ad` (atomically; errors are ignored: the cache is only a hint).
pub fn remember(dir: &Path, ad: &WorkerAd) {
    let Ok(bytes) = serde_json::to_vec(ad) else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let path = dir.join(file_name(&ad.instance));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &path)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Forgets `instance` (it said goodbye).
pub fn forget(dir: &Path, instance: &str) {
    let _ = std::fs::remove_file(dir.join(file_name(instance)));
}

/// The remembered workers, newest first; unreadable or old entries are removed.
pub fn entries(dir: &Path) -> Vec<WorkerAd> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(SystemTime, WorkerAd)> = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let old = SystemTime::now().duration_since(modified).is_ok_and(|age| age > MAX_AGE);
        let ad = (meta.len() <= MAX_ENTRY)
            .then(|| std::fs::read(&path).ok())
            .flatten()
            .and_then(|b| serde_json::from_slice::<WorkerAd>(&b).ok());
        match ad {
            Some(ad) if !old => out.push((modified, ad)),
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out.into_iter().map(|(_, ad)| ad).collect()
}

/// Remembered workers as a discovery source: each is probed once, and
/// reported up only when it answers over the namespace's TLS.
pub struct Remembered {
    endpoint: quinn::Endpoint,
    dir: PathBuf,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Remembered {
    /// Probes through `endpoint` (a client endpoint of the namespace) the workers remembered in `dir`.
    pub fn new(endpoint: quinn::Endpoint, dir: PathBuf) -> Self {
        Remembered { endpoint, dir, cancel: CancellationToken::new(), tasks: TaskTracker::new() }
    }
}

/// One status request to `addr`; the worker's answer if it proves itself.
async fn probe(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Option<WorkerStatus> {
    let exchange = async {
        let conn = endpoint.connect(addr, transport::server_name()).ok()?.await.ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        write_msg(&mut send, &Request::Status).await.ok()?;
        send.finish().ok()?;
        let st = read_msg::<WorkerStatus>(&mut recv, MAX_CONTROL).await.ok()??;
        conn.close(0u32.into(), b"probed");
        Some(st)
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange).await.ok().flatten()
}

impl Discovery for Remembered {
    fn announce(&self, ad: &WorkerAd) -> Result<(), DiscoveryError> {
        remember(&self.dir, ad);
        Ok(())
    }

    fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        let (tx, rx) = mpsc::unbounded_channel();
        for ad in entries(&self.dir) {
            let (endpoint, tx, cancel) = (self.endpoint.clone(), tx.clone(), self.cancel.clone());
            self.tasks.spawn(async move {
                let Some(addr) = ad.best_addr() else { return };
                let answer = tokio::select! {
                    _ = cancel.cancelled() => return,
                    a = probe(&endpoint, addr) => a,
                };
                match answer {
                    Some(st) if !st.draining => {
                        debug!(instance = %st.name, %addr, "remembered worker answers");
                        let up = WorkerAd {
                            instance: st.name,
                            namespace: st.namespace,
                            solvers: st.solvers,
                            slots: st.slots,
                            version: st.version,
                            addrs: vec![addr],
                            ..ad
                        };
                        let _ = tx.send(DiscoveryEvent::Up(up));
                    }
                    _ => debug!(instance = %ad.instance, %addr, "remembered worker does not answer"),
                }
            });
        }
        Ok(rx)
    }

    fn settled(&self) -> bool {
        self.tasks.is_empty()
    }

    fn is_hint(&self) -> bool {
        true
    }

    fn shutdown(&self) -> BoxFuture<'_> {
        Box::pin(async move {
            self.cancel.cancel();
            self.tasks.close();
            self.tasks.wait().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(instance: &str) -> WorkerAd {
        WorkerAd {
            instance: instance.into(),
            namespace: "ns".into(),
            addrs: vec![([127, 0, 0, 1], 9).into()],
            solvers: Vec::new(),
            slots: 1,
            ca_fingerprint: "ca".into(),
            protocol: 1,
            version: String::new(),
            relay: None,
            pools: Vec::new(),
            since: 0,
        }
    }

    #[test]
    fn remember_forget_and_garbage() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("peers");
        remember(&dir, &ad("host-1"));
        remember(&dir, &ad("../../etc/passwd"));
        assert_eq!(entries(&dir).len(), 2);
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| e.unwrap().path().parent() == Some(dir.as_path())));
        forget(&dir, "host-1");
        assert_eq!(entries(&dir).len(), 1);
        std::fs::write(dir.join("junk.json"), b"{not json").unwrap();
        assert_eq!(entries(&dir).len(), 1, "garbage entries are skipped");
        assert!(!dir.join("junk.json").exists(), "and removed");
    }
}
