//! Listeners that hold up under slow and many clients.
//!
//! Every accepted connection is admitted by a [`Tracker`], which caps
//! connections in all and per peer address. When a cap is reached the
//! connection that has been idle the longest (of that peer, or of all) is
//! shed, so a flood of connections that send nothing, or a byte now and
//! then, cannot keep a legitimate client out: its new connection takes the
//! place of the oldest silent one. A shed connection's reads fail at once.
//!
//! [`serve_http`] serves an axum router over HTTP/1.1 and HTTP/2 (over TLS
//! when given) with a TLS handshake timeout, a timeout on reading a
//! request's headers (which also ends idle keep-alive connections), and a
//! timeout on reading its body. [`incoming`] gives tonic servers the same
//! admission for their connections.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The bounds of one listener.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Connections open at once; past it the longest idle is shed.
    pub max_connections: usize,
    /// Connections open at once from one address; past it that address's
    /// longest idle is shed.
    pub max_per_peer: usize,
    /// Time to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to send a request's headers, counted from when the connection
    /// waits for them (so also the longest idle time between requests).
    pub header_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
}

impl Default for Limits {
    /// 4,096 connections in all and 1,024 from one address (this machine
    /// allows 20,000 open files); 10 s for a handshake, 15 s for headers,
    /// 60 s for a body (4 MiB at 70 KB/s).
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_per_peer: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Checks the bounds; the error names the field at fault.
    pub fn check(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections: must be at least 1".into());
        }
        if self.max_per_peer == 0 || self.max_per_peer > self.max_connections {
            return Err(format!(
                "max_connections_per_peer: {} is not within 1..={}",
                self.max_per_peer, self.max_connections
            ));
        }
        for (name, d) in [
            ("handshake_timeout_seconds", self.handshake_timeout),
            ("header_timeout_seconds", self.header_timeout),
            ("body_timeout_seconds", self.body_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name}: must be at least 1 second"));
            }
        }
        Ok(())
    }
}

/// One connection's liveness, shared by its IO and the tracker.
#[derive(Debug)]
struct Activity {
    /// Milliseconds since the tracker began, at the last byte read or written.
    last: AtomicU64,
    shed: AtomicBool,
    /// The last reader's waker, woken when the connection is shed.
    waker: futures::task::AtomicWaker,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    conns: HashMap<u64, (IpAddr, Arc<Activity>)>,
    per_peer: HashMap<IpAddr, usize>,
    shed: u64,
}

/// Admits connections within a listener's caps (see the crate's documentation).
#[derive(Debug)]
pub struct Tracker {
    limits: Limits,
    began: Instant,
    state: Mutex<State>,
}

/// A connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    tracker: Arc<Tracker>,
    id: u64,
    activity: Arc<Activity>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut st = self.tracker.lock();
        if let Some((peer, _)) = st.conns.remove(&self.id) {
            if let Some(n) = st.per_peer.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    st.per_peer.remove(&peer);
                }
            }
        }
    }
}

impl Tracker {
    pub fn new(limits: Limits) -> Arc<Tracker> {
        Arc::new(Tracker {
            limits,
            began: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// (open connections, connections shed since start).
    pub fn counts(&self) -> (usize, u64) {
        let st = self.lock();
        (st.conns.len(), st.shed)
    }

    /// Admits a connection from `peer`, shedding the longest idle one of the
    /// peer (at its cap) or of all (at the total cap) to make room.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Admitted {
        let mut st = self.lock();
        let shed = |st: &mut State, only: Option<IpAddr>| {
            let victim = st
                .conns
                .iter()
                .filter(|(_, (p, a))| {
                    only.is_none_or(|o| *p == o) && !a.shed.load(Ordering::Relaxed)
                })
                .min_by_key(|(_, (_, a))| a.last.load(Ordering::Relaxed))
                .map(|(id, (p, a))| (*id, *p, a.clone()));
            if let Some((id, p, a)) = victim {
                a.shed.store(true, Ordering::Relaxed);
                a.waker.wake();
                // Its place is free now; the connection ends when it is next polled.
                st.conns.remove(&id);
                if let Some(n) = st.per_peer.get_mut(&p) {
                    *n -= 1;
                }
                st.shed += 1;
                tracing::debug!(peer = %p, "shed the longest idle connection");
            }
        };
        if st.per_peer.get(&peer).copied().unwrap_or(0) >= self.limits.max_per_peer {
            shed(&mut st, Some(peer));
        }
        if st.conns.len() >= self.limits.max_connections {
            shed(&mut st, None);
        }
        let id = st.next;
        st.next += 1;
        let activity = Arc::new(Activity {
            last: AtomicU64::new(self.now_ms()),
            shed: AtomicBool::new(false),
            waker: futures::task::AtomicWaker::new(),
        });
        st.conns.insert(id, (peer, activity.clone()));
        *st.per_peer.entry(peer).or_insert(0) += 1;
        Admitted {
            tracker: self.clone(),
            id,
            activity,
        }
    }
}

/// An IO whose traffic marks its connection as active, and whose reads and
/// writes fail once the tracker shed it.
#[derive(Debug)]
pub struct Tracked<IO> {
    io: IO,
    admitted: Admitted,
    peer: SocketAddr,
    local: Option<SocketAddr>,
}

impl<IO> Tracked<IO> {
    pub fn new(io: IO, admitted: Admitted, peer: SocketAddr, local: Option<SocketAddr>) -> Self {
        Tracked {
            io,
            admitted,
            peer,
            local,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn touch(&self) {
        let a = &self.admitted;
        a.activity.last.store(a.tracker.now_ms(), Ordering::Relaxed);
    }

    fn shed(&self) -> bool {
        self.admitted.activity.shed.load(Ordering::Relaxed)
    }
}

fn shed_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection shed: the listener is at its cap and this one was idle the longest",
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.shed() {
            return Poll::Ready(Err(shed_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                self.admitted.activity.waker.register(cx.waker());
                if self.shed() {
                    return Poll::Ready(Err(shed_error()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.shed() {
            return Poll::Ready(Err(shed_error()));
        }
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.shed() {
            return Poll::Ready(Err(shed_error()));
        }
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Tracked<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.peer),
        }
    }
}

/// Accepts the next connection, admitted under the tracker's caps; waits
/// and goes on when accepting fails (out of file descriptors and the like).
pub async fn accept(listener: &TcpListener, tracker: &Arc<Tracker>) -> Tracked<TcpStream> {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr().ok();
                let admitted = tracker.admit(peer.ip());
                return Tracked::new(tcp, admitted, peer, local);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The listener's connections as a stream for a tonic server, each admitted
/// under the tracker's caps.
pub fn incoming(
    listener: TcpListener,
    tracker: Arc<Tracker>,
) -> impl futures::Stream<Item = std::io::Result<Tracked<TcpStream>>> + Send + 'static {
    futures::stream::unfold((listener, tracker), |(l, t)| async move {
        let conn = accept(&l, &t).await;
        Some((Ok(conn), (l, t)))
    })
}

/// The client's address, put on every request [`serve_http`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener` (over TLS when given) within `tracker`'s
/// limits until `shutdown`; connections already open finish on their own.
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    tracker: Arc<Tracker>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    let limits = *tracker.limits();
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            c = accept(&listener, &tracker) => c,
            _ = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let peer = conn.peer();
        let app = app.clone().layer(axum::Extension(Peer(peer)));
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(256)
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(20));
            let served = match acceptor {
                Some(a) => {
                    let tls = match tokio::time::timeout(limits.handshake_timeout, a.accept(conn))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    };
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await
                }
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(conn), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_a_cap_the_longest_idle_connection_of_the_peer_is_shed() {
        let t = Tracker::new(Limits {
            max_connections: 3,
            max_per_peer: 2,
            ..Limits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = t.admit(a);
        std::thread::sleep(Duration::from_millis(5));
        let second = t.admit(a);
        second
            .activity
            .last
            .store(t.now_ms() + 10, Ordering::Relaxed);
        // A third from `a`: its longest idle (the first) goes.
        let third = t.admit(a);
        assert!(first.activity.shed.load(Ordering::Relaxed));
        assert!(!second.activity.shed.load(Ordering::Relaxed));
        assert_eq!(t.counts(), (2, 1));
        // Another peer fills the total; one more sheds the longest idle of all.
        let other = t.admit(b);
        assert_eq!(t.counts(), (3, 1));
        third
            .activity
            .last
            .store(t.now_ms() + 20, Ordering::Relaxed);
        other
            .activity
            .last
            .store(t.now_ms() + 30, Ordering::Relaxed);
        let _fourth = t.admit(b);
        assert!(second.activity.shed.load(Ordering::Relaxed));
        assert_eq!(t.counts(), (3, 2));
        drop(first);
        drop(second);
        assert_eq!(t.counts(), (3, 2), "a shed place is not freed twice");
        drop(third);
        assert_eq!(t.counts().0, 2);
    }

    #[test]
    fn bad_limits_are_named() {
        let bad = Limits {
            max_per_peer: 0,
            ..Limits::default()
        };
        assert!(bad
            .check()
            .unwrap_err()
            .starts_with("max_connections_per_peer"));
        assert!(Limits::default().check().is_ok());
    }
}
