//! Licence pools: a licence shared by several boxes (a Gurobi token server, a
//! FlexLM server) runs at most its number of seats at once, across every worker
//! of the namespace that names it (`meshworker --licence-pool gurobi=tok1:41954/10`).
//!
//! The count lives with one of those workers, the pool's *keeper*: the oldest of
//! the live workers that advertise the pool (start time, then instance name; every
//! worker sees the same adverts, so they agree without a vote, and a worker that
//! joins never displaces the keeper; a new worker listens for 1.5 s first). Not with
//! clients, which come and go and do not know what else runs; not only with the
//! name server, which is optional. A worker about to run a pooled solver asks the
//! keeper for a seat over QUIC and holds it as long as the stream lives: the seat
//! comes back when the solve ends, and by itself when the holder dies (its
//! connection times out). Requests wait in line, first come first served, and the
//! job's client is told `waiting for gurobi licence (10/10 in use)`. If the keeper
//! itself dies, holders ask the next keeper, counting the seats they already use.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::discovery::{DiscoveryEvent, WorkerAd};
use crate::protocol::{
    read_msg, write_msg, LeaseRequest, LeaseState, PoolInfo, Request, Response, MAX_CONTROL,
};

/// A pool is one licence server's seats for one solver.
type PoolKey = (String, String);

fn key(p: &PoolInfo) -> PoolKey {
    (p.solver.clone(), p.server.clone())
}

#[derive(Default)]
struct Seats {
    in_use: u32,
    line: VecDeque<u64>,
}

/// The seats of the pools this worker keeps.
#[derive(Default)]
struct Keeper {
    seats: Mutex<HashMap<PoolKey, Seats>>,
    changed: Notify,
    next_ticket: std::sync::atomic::AtomicU64,
}

/// One seat taken from a [`Keeper`]; given back on drop.
struct Seat {
    keeper: Arc<Keeper>,
    key: PoolKey,
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Ok(mut s) = self.keeper.seats.lock() {
            if let Some(s) = s.get_mut(&self.key) {
                s.in_use = s.in_use.saturating_sub(1);
            }
        }
        self.keeper.changed.notify_waiters();
    }
}

impl Keeper {
    /// Waits in line for a seat of `pool` (at once when `running`), telling
    /// `waits` how full the pool is while it waits.
    async fn acquire(
        self: &Arc<Self>,
        pool: &PoolInfo,
        running: bool,
        waits: &mpsc::UnboundedSender<LeaseState>,
    ) -> Seat {
        let k = key(pool);
        let ticket = self.next_ticket.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut s) = self.seats.lock() {
            let seats = s.entry(k.clone()).or_default();
            if running {
                seats.in_use += 1;
                return Seat { keeper: self.clone(), key: k };
            }
            seats.line.push_back(ticket);
        }
        // Leaves the line if the request is dropped while it waits.
        struct InLine<'a>(&'a Keeper, &'a PoolKey, u64, bool);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                if !self.3 {
                    if let Ok(mut s) = self.0.seats.lock() {
                        if let Some(s) = s.get_mut(self.1) {
                            s.line.retain(|t| *t != self.2);
                        }
                    }
                    self.0.changed.notify_waiters();
                }
            }
        }
        let mut place = InLine(self, &k, ticket, false);
        let mut told = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = match self.seats.lock() {
                Ok(mut s) => {
                    let seats = s.entry(k.clone()).or_default();
                    if seats.in_use < pool.size && seats.line.front() == Some(&ticket) {
                        seats.line.pop_front();
                        seats.in_use += 1;
                        None
                    } else {
                        Some((seats.in_use, pool.size))
                    }
                }
                Err(_) => None,
            };
            match state {
                None => {
                    place.3 = true;
                    self.changed.notify_waiters();
                    return Seat { keeper: self.clone(), key: k.clone() };
                }
                Some(now) if told != Some(now) => {
                    told = Some(now);
                    let _ = waits.send(LeaseState::Waiting { in_use: now.0, size: now.1 });
                }
                Some(_) => {}
            }
            notified.await;
        }
    }
}

/// A seat held by this worker, local or from a remote keeper.
pub(crate) struct Lease {
    _seat: Option<Seat>,
    /// Holds the stream to the keeper (and moves to the next keeper if it dies).
    _remote: Option<AbortOnDropHandle<()>>,
}

/// This worker's view of the pools it names.
pub(crate) struct Pools {
    me: String,
    /// When this worker started (Unix milliseconds), as advertised.
    since: u64,
    started: Instant,
    mine: Vec<PoolInfo>,
    keeper: Arc<Keeper>,
    /// Other workers of the namespace that name a pool, by instance.
    peers: Mutex<HashMap<String, WorkerAd>>,
    /// Keepers that did not answer lately: skipped for a while.
    suspect: Mutex<HashMap<String, Instant>>,
    endpoint: quinn::Endpoint,
    conns: tokio::sync::Mutex<HashMap<SocketAddr, quinn::Connection>>,
}

/// How long a new worker listens for the other workers of its pools before it
/// counts seats itself (mDNS answers within about a second).
const SETTLE: Duration = Duration::from_millis(1500);

/// How long an unreachable keeper is passed over.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

impl Pools {
    pub(crate) fn new(me: String, since: u64, mine: Vec<PoolInfo>, endpoint: quinn::Endpoint) -> Arc<Self> {
        Arc::new(Pools {
            me,
            since,
            started: Instant::now(),
            mine,
            keeper: Arc::default(),
            peers: Mutex::default(),
            suspect: Mutex::default(),
            endpoint,
            conns: tokio::sync::Mutex::default(),
        })
    }

    /// The pool `solver` draws on here, if any.
    pub(crate) fn pool_of(&self, solver: &str) -> Option<PoolInfo> {
        self.mine.iter().find(|p| p.solver == solver).cloned()
    }

    /// Whether this worker names any pool (and must watch its peers).
    pub(crate) fn any(&self) -> bool {
        !self.mine.is_empty()
    }

    /// Follows the adverts of the namespace's workers (from discovery).
    pub(crate) fn seen(&self, ev: DiscoveryEvent) {
        let Ok(mut peers) = self.peers.lock() else { return };
        match ev {
            DiscoveryEvent::Up(ad) if ad.instance != self.me => {
                if ad.pools.is_empty() {
                    peers.remove(&ad.instance);
                } else {
                    peers.insert(ad.instance.clone(), ad);
                }
            }
            DiscoveryEvent::Up(_) => {}
            DiscoveryEvent::Down(i) => {
                peers.remove(&i);
            }
        }
    }

    /// The keeper of `pool`: `None` when it is this worker.
    fn keeper_of(&self, pool: &PoolInfo) -> Option<WorkerAd> {
        let k = key(pool);
        let suspect = self.suspect.lock().map(|s| s.clone()).unwrap_or_default();
        let peers = self.peers.lock().map(|p| p.clone()).unwrap_or_default();
        peers
            .into_values()
            .filter(|ad| ad.pools.iter().any(|p| key(p) == k))
            .filter(|ad| suspect.get(&ad.instance).is_none_or(|t| t.elapsed() > SUSPECT_FOR))
            .filter(|ad| (ad.since, &ad.instance) < (self.since, &self.me))
            .min_by(|a, b| (a.since, &a.instance).cmp(&(b.since, &b.instance)))
    }

    /// Takes a seat of `pool`, waiting in line; `waits` hears how full it is.
    pub(crate) async fn lease(
        self: &Arc<Self>,
        pool: &PoolInfo,
        waits: mpsc::UnboundedSender<LeaseState>,
    ) -> Lease {
        loop {
            let Some(keeper) = self.keeper_of(pool) else {
                // A worker that just started first learns which older workers name the pool.
                let settle = SETTLE.saturating_sub(self.started.elapsed());
                if !settle.is_zero() {
                    tokio::time::sleep(settle).await;
                    continue;
                }
                let seat = self.keeper.acquire(pool, false, &waits).await;
                debug!(pool = %pool.spec(), "seat from this worker (the keeper)");
                return Lease { _seat: Some(seat), _remote: None };
            };
            match self.remote(&keeper, pool, false, &waits).await {
                Ok((send, recv)) => {
                    debug!(pool = %pool.spec(), keeper = %keeper.instance, "seat granted");
                    let me = self.clone();
                    let pool = pool.clone();
                    let holder =
                        tokio::spawn(async move { me.hold(pool, keeper.instance, send, recv).await });
                    return Lease { _seat: None, _remote: Some(AbortOnDropHandle::new(holder)) };
                }
                Err(e) => {
                    warn!(keeper = %keeper.instance, "licence pool keeper unreachable ({e}); asking the next one");
                    if let Ok(mut s) = self.suspect.lock() {
                        s.insert(keeper.instance.clone(), Instant::now());
                    }
                }
            }
        }
    }

    /// Keeps a granted seat: if the keeper goes away while the solve runs, the
    /// seat is counted again by the next keeper.
    async fn hold(
        self: Arc<Self>,
        pool: PoolInfo,
        mut keeper: String,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let (waits, _) = mpsc::unbounded_channel();
        let mut stream = Some((send, recv));
        while let Some((send, mut recv)) = stream.take() {
            // The keeper never sends more on a granted stream: an end or an error means it is gone.
            let _ = read_msg::<Response>(&mut recv, MAX_CONTROL).await;
            drop((send, recv));
            info!(%keeper, pool = %pool.spec(), "licence pool keeper gone; moving the seat");
            if let Ok(mut s) = self.suspect.lock() {
                s.insert(keeper.clone(), Instant::now());
            }
            match self.keeper_of(&pool) {
                None => {
                    let _seat = self.keeper.acquire(&pool, true, &waits).await;
                    // Held until the lease (and so this task) is dropped.
                    std::future::pending::<()>().await;
                }
                Some(next) => match self.remote(&next, &pool, true, &waits).await {
                    Ok(granted) => {
                        stream = Some(granted);
                        keeper = next.instance;
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// Asks `keeper` for a seat; the stream once granted.
    async fn remote(
        &self,
        keeper: &WorkerAd,
        pool: &PoolInfo,
        running: bool,
        waits: &mpsc::UnboundedSender<LeaseState>,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
        let conn = self.connection(keeper).await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let req = LeaseRequest { pool: pool.clone(), holder: self.me.clone(), running };
        write_msg(&mut send, &Request::Lease(req)).await.map_err(|e| e.to_string())?;
        loop {
            match read_msg::<Response>(&mut recv, MAX_CONTROL).await {
                Ok(Some(Response::Lease(LeaseState::Granted))) => return Ok((send, recv)),
                Ok(Some(Response::Lease(w @ LeaseState::Waiting { .. }))) => {
                    let _ = waits.send(w);
                }
                Ok(Some(Response::Failed { message, .. })) => return Err(message),
                Ok(other) => return Err(format!("unexpected answer {other:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    async fn connection(&self, keeper: &WorkerAd) -> Result<quinn::Connection, String> {
        let addr = keeper.best_addr().ok_or("keeper advertises no address")?;
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&addr).filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let connecting =
            self.endpoint.connect(addr, crate::transport::server_name()).map_err(|e| e.to_string())?;
        let c = tokio::time::timeout(Duration::from_secs(3), connecting)
            .await
            .map_err(|_| format!("{addr} did not answer within 3 s"))?
            .map_err(|e| e.to_string())?;
        conns.insert(addr, c.clone());
        Ok(c)
    }

    /// Serves a seat to another worker on `send`/`recv` until it ends the stream.
    pub(crate) async fn serve(
        &self,
        req: LeaseRequest,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
    ) {
        let size = self.mine.iter().find(|p| key(p) == key(&req.pool)).map_or(req.pool.size, |p| p.size);
        let pool = PoolInfo { size, ..req.pool.clone() };
        let (waits, mut told) = mpsc::unbounded_channel();
        let seat = {
            let acquire = self.keeper.acquire(&pool, req.running, &waits);
            tokio::pin!(acquire);
            loop {
                tokio::select! {
                    seat = &mut acquire => break seat,
                    Some(w) = told.recv() => {
                        if write_msg(send, &Response::Lease(w)).await.is_err() {
                            return;
                        }
                    }
                    // The asker gave up (its job was cancelled, or it died): its stream ended.
                    _ = read_msg::<Response>(recv, MAX_CONTROL) => return,
                }
            }
        };
        debug!(holder = %req.holder, pool = %pool.spec(), "seat lent");
        if write_msg(send, &Response::Lease(LeaseState::Granted)).await.is_err() {
            return;
        }
        // Held until the holder finishes the stream or its connection dies.
        let _ = read_msg::<Response>(recv, MAX_CONTROL).await;
        drop(seat);
        debug!(holder = %req.holder, pool = %pool.spec(), "seat returned");
    }
}
