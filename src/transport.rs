//! QUIC endpoints with TLS 1.3 and mutual authentication against the
//! namespace CA.
//!
//! Both ends trust exactly one root, their namespace's CA. A worker refuses a
//! client whose certificate another CA signed, and a client refuses a worker
//! likewise, during the handshake, before any message is exchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::ring::default_provider;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::certs::{Identity, WORKER_NAME};
use crate::protocol::ALPN;

/// A connection with no packets for this long is dead (worker killed, cable
/// pulled), sized for a LAN; `MESHSOLVE_IDLE_TIMEOUT` (seconds, 0.5 to 600)
/// overrides it on both sides (the shorter one wins). Keep-alives go four
/// times per timeout, so a busy but healthy peer is never taken for dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1200);

/// The idle timeout in force (see [`IDLE_TIMEOUT`]).
pub fn idle_timeout() -> Duration {
    std::env::var("MESHSOLVE_IDLE_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| (0.5..=600.0).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(IDLE_TIMEOUT)
}

/// Errors setting up TLS or endpoints.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TLS configuration could not be built from the identity (corrupt certificate or key).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(default_provider())
}

fn roots(id: &Identity) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots.add(id.ca.clone()).map_err(|e| TransportError::Tls(e.to_string()))?;
    Ok(Arc::new(roots))
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = idle_timeout();
    t.keep_alive_interval(Some(idle / 4));
    // At most 600 s (checked in idle_timeout), far below QUIC's limit of 2^62 ms.
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    t.max_concurrent_uni_streams(0u8.into());
    t.max_concurrent_bidi_streams(1024u32.into());
    Arc::new(t)
}

/// Server side of a worker: TLS 1.3, client certificates required and checked against the CA.
///
/// # Errors
/// [`TransportError`] when the identity cannot be turned into a TLS configuration.
pub fn server_config(id: &Identity) -> Result<quinn::ServerConfig, TransportError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(id)?, provider())
        .build()
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport_config());
    Ok(cfg)
}

/// Client side: trusts only the namespace CA and presents its own leaf.
///
/// # Errors
/// [`TransportError`] when the identity cannot be turned into a TLS configuration.
pub fn client_config(id: &Identity) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots(id)?)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport_config());
    Ok(cfg)
}

/// Binds a worker endpoint.
///
/// # Errors
/// [`TransportError`] when the TLS configuration fails or the UDP address cannot be bound.
pub fn server_endpoint(id: &Identity, addr: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
    quinn::Endpoint::server(server_config(id)?, addr).map_err(|source| TransportError::Bind { addr, source })
}

/// Binds a client endpoint on an ephemeral port (IPv6 dual-stack when possible).
///
/// # Errors
/// [`TransportError`] when the TLS configuration fails or no UDP port can be bound.
pub fn client_endpoint(id: &Identity) -> Result<quinn::Endpoint, TransportError> {
    let v6: SocketAddr = "[::]:0".parse().expect("literal address");
    let v4: SocketAddr = "0.0.0.0:0".parse().expect("literal address");
    let mut ep = match quinn::Endpoint::client(v6) {
        Ok(ep) => ep,
        Err(_) => quinn::Endpoint::client(v4).map_err(|source| TransportError::Bind { addr: v4, source })?,
    };
    ep.set_default_client_config(client_config(id)?);
    Ok(ep)
}

/// Server name the client asks for; every worker certificate carries it.
pub fn server_name() -> &'static str {
    WORKER_NAME
}

/// Turns a connection error into a sentence a user can act on.
pub fn explain_connect_error(addr: SocketAddr, namespace: &str, err: &quinn::ConnectionError) -> String {
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("unknownissuer")
        || lower.contains("unknown ca")
        || lower.contains("unknownca")
        || lower.contains("badcertificate")
        || lower.contains("bad certificate")
        || lower.contains("certificate")
    {
        format!(
            "worker {addr} refused the TLS handshake or presented a certificate not signed by namespace `{namespace}`'s CA ({text}); \
             it belongs to another namespace, or this box needs the namespace CA: `meshsolve certs export` on a member box, `meshsolve certs import FILE` here"
        )
    } else if lower.contains("timed out") {
        format!("worker {addr} did not answer ({text}); is it still running and is UDP to it allowed?")
    } else if lower.contains("alpn")
        || lower.contains("no_application_protocol")
        || lower.contains("noapplicationprotocol")
    {
        format!("worker {addr} speaks another meshsolve protocol version ({text}); upgrade both to the same release")
    } else {
        format!("connection to worker {addr} failed: {text}")
    }
}

/// TLS server name a client or worker of namespace `ns` asks the name server for:
/// the namespace in hex, split into DNS labels, under `.meshns`.
pub fn ns_server_name(ns: &str) -> String {
    let hex: String = ns.bytes().map(|b| format!("{b:02x}")).collect();
    let labels: Vec<String> =
        hex.as_bytes().chunks(60).map(|c| format!("x{}", String::from_utf8_lossy(c))).collect();
    format!("{}.meshns", labels.join("."))
}

/// The namespace a name-server TLS server name stands for.
pub fn ns_of_server_name(name: &str) -> Option<String> {
    let body = name.strip_suffix(".meshns")?;
    let mut hex = String::new();
    for label in body.split('.') {
        hex.push_str(label.strip_prefix('x')?);
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Picks the name server's certificate for the namespace named by the client's SNI.
#[derive(Debug)]
struct SniResolver {
    keys: std::collections::HashMap<String, Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.keys.get(hello.server_name()?).cloned()
    }
}

/// Server side of a name server serving several namespaces: one certificate per
/// namespace, chosen by SNI; client certificates of any of those namespaces are
/// accepted at the handshake, and [`client_namespace_ok`] then checks that the
/// client belongs to the namespace it asked for.
///
/// # Errors
/// [`TransportError`] when a namespace CA cannot be turned into a TLS configuration.
pub fn name_server_config(cas: &[crate::certs::NamespaceCa]) -> Result<quinn::ServerConfig, TransportError> {
    let tls_err = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let mut roots = RootCertStore::empty();
    let mut keys = std::collections::HashMap::new();
    for ca in cas {
        roots.add(ca.cert.clone()).map_err(|e| tls_err(&e))?;
        let name = ns_server_name(&ca.namespace);
        let id = ca.issue(&name).map_err(|e| tls_err(&e))?;
        let key = rustls::crypto::ring::sign::any_supported_type(&id.key).map_err(|e| tls_err(&e))?;
        keys.insert(name, Arc::new(rustls::sign::CertifiedKey::new(id.chain, key)));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| tls_err(&e))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SniResolver { keys }));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| tls_err(&e))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport_config());
    Ok(cfg)
}

/// The namespace a name-server connection asked for (SNI), if its client
/// certificate is signed by that namespace's CA; `None` otherwise.
pub fn client_namespace_ok(conn: &quinn::Connection, cas: &[crate::certs::NamespaceCa]) -> Option<String> {
    let hd = conn.handshake_data()?.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?;
    let ns = ns_of_server_name(hd.server_name.as_deref()?)?;
    let ca = cas.iter().find(|c| c.namespace == ns)?;
    let chain = conn.peer_identity()?.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    let (leaf, rest) = chain.split_first()?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).ok()?;
    let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().ok()?;
    v.verify_client_cert(leaf, rest, rustls::pki_types::UnixTime::now()).ok()?;
    Some(ns)
}

/// Keeps a flood of failed handshakes (a stranger, a scanner) from flooding the
/// log: at most `per_window` warnings every 10 s, and the next one says how many
/// were left out.
#[derive(Debug)]
pub struct LogBudget {
    per_window: u32,
    state: std::sync::Mutex<(std::time::Instant, u32, u32)>,
}

impl LogBudget {
    /// A budget of `per_window` lines per 10 s.
    pub fn new(per_window: u32) -> Self {
        LogBudget { per_window, state: std::sync::Mutex::new((std::time::Instant::now(), 0, 0)) }
    }

    /// Whether to log this one; when yes, how many were left out before it.
    pub fn allow(&self) -> Option<u32> {
        let Ok(mut s) = self.state.lock() else { return Some(0) };
        if s.0.elapsed() >= Duration::from_secs(10) {
            s.0 = std::time::Instant::now();
            s.1 = 0;
        }
        if s.1 < self.per_window {
            s.1 += 1;
            Some(std::mem::take(&mut s.2))
        } else {
            s.2 += 1;
            None
        }
    }
}

/// How much of a model file is moved per disk read or write: one trip to the
/// blocking pool per MiB, not per 8 KiB.
pub const FILE_CHUNK: usize = 1 << 20;

/// Files up to this size are read on the calling async thread: from the page
/// cache that takes microseconds, less than a trip to the blocking pool.
pub const INLINE_READ: u64 = 256 << 10;

/// Copies a whole file into a stream; the number of bytes sent. A small file
/// (by its length now) is read in one go; a large one in [`FILE_CHUNK`]s read
/// off the async thread, the next read running while the last chunk is sent,
/// and handed to QUIC without another copy.
///
/// # Errors
/// When the file cannot be read or the stream fails (a peer that stops it).
pub async fn send_file(mut file: std::fs::File, to: &mut quinn::SendStream) -> std::io::Result<u64> {
    use std::io::Read;
    let len = file.metadata()?.len();
    if len <= INLINE_READ {
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes)?;
        let n = bytes.len() as u64;
        to.write_chunk(bytes.into()).await.map_err(std::io::Error::from)?;
        return Ok(n);
    }
    let read_ahead = |mut f: std::fs::File| {
        tokio::task::spawn_blocking(move || {
            // Into spare capacity: the buffer is not zeroed first.
            let mut buf = Vec::with_capacity(FILE_CHUNK);
            (&mut f).take(FILE_CHUNK as u64).read_to_end(&mut buf)?;
            Ok::<_, std::io::Error>((f, buf))
        })
    };
    let mut sent = 0u64;
    let mut next = read_ahead(file);
    loop {
        let (f, buf) = next.await.map_err(std::io::Error::other)??;
        if buf.is_empty() {
            return Ok(sent);
        }
        next = read_ahead(f);
        sent += buf.len() as u64;
        to.write_chunk(buf.into()).await.map_err(std::io::Error::from)?;
    }
}

/// Receives `size` bytes from a stream into a new file at `path`; the number of
/// bytes received (fewer when the peer finished early). Writes go to the disk in
/// [`FILE_CHUNK`]s off the async thread while the next chunk arrives. A stream
/// that brings nothing for `stall` is given up with `TimedOut` (a stuck peer
/// must not hold a task or disk space for ever).
///
/// # Errors
/// When the file cannot be created or written (`StorageFull` when the disk is
/// full), the stream fails, or it stalls.
pub async fn receive_file(
    from: &mut quinn::RecvStream,
    size: u64,
    path: &std::path::Path,
    stall: Duration,
) -> std::io::Result<u64> {
    type Pending = tokio::task::JoinHandle<std::io::Result<(std::fs::File, Vec<u8>)>>;
    // Two buffers take turns: one fills from the stream (the bytes are copied
    // while still in the cache, and QUIC reuses its packet buffers at once)
    // while the other is written; it comes back empty for the next turn.
    let write = |mut f: std::fs::File, mut buf: Vec<u8>| -> Pending {
        tokio::task::spawn_blocking(move || {
            std::io::Write::write_all(&mut f, &buf)?;
            buf.clear();
            Ok((f, buf))
        })
    };
    let file = tokio::fs::File::create(path).await?.into_std().await;
    // The whole size at once: the disk says now whether the model fits
    // (StorageFull), and the writes that follow need no block allocation.
    // A file system that cannot preallocate just writes as it goes.
    let len = i64::try_from(size).unwrap_or(i64::MAX);
    if let Err(nix::errno::Errno::ENOSPC) =
        nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, len)
    {
        return Err(std::io::ErrorKind::StorageFull.into());
    }
    let turn = usize::try_from(size).unwrap_or(usize::MAX).min(FILE_CHUNK);
    let mut pending = write(file, Vec::with_capacity(turn));
    let mut buf = Vec::with_capacity(turn);
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(turn - buf.len());
        let chunk = match tokio::time::timeout(stall, from.read_chunk(want, true)).await {
            Err(_) => {
                let msg = format!("no model bytes for {} s", stall.as_secs());
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, msg));
            }
            Ok(r) => r.map_err(std::io::Error::other)?,
        };
        let Some(chunk) = chunk else { break };
        left -= chunk.bytes.len() as u64;
        buf.extend_from_slice(&chunk.bytes);
        if buf.len() >= turn {
            let (f, empty) = pending.await.map_err(std::io::Error::other)??;
            pending = write(f, std::mem::replace(&mut buf, empty));
        }
    }
    let (f, _) = pending.await.map_err(std::io::Error::other)??;
    write(f, buf).await.map_err(std::io::Error::other)??;
    Ok(size - left)
}

#[cfg(test)]
mod log_budget_tests {
    #[test]
    fn a_flood_is_cut_and_counted() {
        let b = super::LogBudget::new(3);
        let allowed: Vec<Option<u32>> = (0..10).map(|_| b.allow()).collect();
        assert_eq!(allowed.iter().filter(|a| a.is_some()).count(), 3);
        assert_eq!(allowed[0], Some(0));
    }
}
