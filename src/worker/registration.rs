//! The worker's side of a static name server: register over an outbound
//! connection from the worker's own UDP socket, keep the lease alive, register
//! again after the name server restarts, and serve the streams it relays.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::discovery::registry::{call, resolve, RegistryError};
use crate::protocol::{NsReply, Request, WorkerAd};
use crate::transport;

/// Worker side: registers `ad` with the name server at `addr` and keeps the
/// registration alive, reconnecting (and re-registering) whenever the
/// connection drops, e.g. after a name server restart. Streams the name server
/// opens on this connection (relayed jobs) are served by `serve`.
pub(crate) async fn keep_registered<F, Fut>(
    endpoint: quinn::Endpoint,
    ns_addr: String,
    namespace: String,
    ad: WorkerAd,
    stop: CancellationToken,
    serve: F,
) where
    F: Fn(quinn::Connection) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let server_name = transport::ns_server_name(&namespace);
    let mut backoff = Duration::from_millis(250);
    let mut warned = false;
    while !stop.is_cancelled() {
        let attempt = async {
            let addr = resolve(&ns_addr).await?;
            let conn = endpoint.connect(addr, &server_name)?.await?;
            let reply = call(&conn, &Request::Register(ad.clone())).await?;
            let lease = match reply {
                NsReply::Leased { seconds } if seconds.is_finite() => {
                    Duration::from_secs_f64(seconds.clamp(0.5, 3600.0))
                }
                NsReply::Refused(m) => return Err(RegistryError::Refused(m)),
                other => return Err(RegistryError::Unexpected(format!("{other:?}"))),
            };
            Ok::<_, RegistryError>((conn, lease))
        };
        let (conn, lease) = match tokio::select! { r = attempt => r, _ = stop.cancelled() => break } {
            Ok(v) => v,
            Err(e) => {
                if !warned {
                    warn!("cannot register with name server {ns_addr}: {e}; retrying");
                    warned = true;
                }
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => break }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        info!(%ns_addr, "registered with the name server");
        warned = false;
        backoff = Duration::from_millis(250);
        // Owned here: aborted below before the next registration.
        let serving = tokio::spawn(serve(conn.clone()));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(lease / 3) => {}
                _ = conn.closed() => break,
            }
            match call(&conn, &Request::Refresh { instance: ad.instance.clone() }).await {
                Ok(NsReply::Leased { .. }) => {}
                Ok(other) => {
                    warn!("name server dropped the registration ({other:?}); registering again");
                    break;
                }
                Err(e) => {
                    warn!("lost the name server: {e}; reconnecting");
                    break;
                }
            }
        }
        serving.abort();
        let _ = serving.await;
        conn.close(0u32.into(), b"re-registering");
    }
}
