//! Live pages: `GET /events` is a server-sent event stream that says `change` whenever the
//! host's keys, USB devices, sessions or connections change, and the pages with live regions
//! (`data-live` in the templates) fetch themselves again then — so a plug, an unplug or a
//! session opened elsewhere shows without a reload.
//!
//! The host has no change feed, so one watcher task compares a digest of what the pages show
//! every [`TICK`], and only while someone listens. Streams are bounded ([`MAX_STREAMS`]; past
//! that a page falls back to polling), carry no data but the word, end when their console
//! session does (a 204 then tells the browser not to come back), and keep the connection
//! moving more often than the server's idle timeout. The stream is the one console answer
//! that is not signed (it cannot be buffered to sign; it says nothing but "look again").

use super::{cookie, Console, SESSION_COOKIE};
use crate::host::Host;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How often the watcher looks at the host.
pub const TICK: Duration = Duration::from_millis(500);
/// Event streams open at once, over every console session.
pub const MAX_STREAMS: usize = 16;
/// A stream ends after this long (the browser opens a new one at once).
const MAX_STREAM_LIFE: Duration = Duration::from_secs(600);
/// Sessions and connections looked at for the digest (the Sessions page lists as many).
pub const LISTED: usize = 1000;

pub struct Live {
    tx: Arc<watch::Sender<[u8; 32]>>,
    /// Turns true when the server is asked to stop: open streams end at once, so a shutdown
    /// does not wait out its timeout for pages left open.
    stopping: watch::Sender<bool>,
    watcher: tokio::sync::OnceCell<()>,
    streams: Arc<Semaphore>,
    /// Below the server's idle timeout, so an open stream is never cut as idle.
    keep_alive: Duration,
}

/// What the live regions show, as one digest: a change in it is a change on some page.
fn digest(host: &Host) -> [u8; 32] {
    let mut h = Sha256::new();
    let (sessions, n) = host.sessions(0, LISTED);
    h.update(n.to_le_bytes());
    for s in &sessions {
        h.update(s.id.as_bytes());
        h.update(s.key_no.to_le_bytes());
    }
    let (connections, n) = host.connections(0, LISTED);
    h.update(n.to_le_bytes());
    for c in &connections {
        h.update(c.id.as_bytes());
    }
    h.update(serde_json::to_vec(&host.devices()).unwrap_or_default());
    for e in host.licences() {
        h.update(e.key_no.to_le_bytes());
        h.update([
            u8::from(e.is_blank),
            u8::from(e.attached),
            u8::from(e.open_error.is_some()),
        ]);
    }
    h.finalize().into()
}

/// [`digest`] on the blocking pool: it copies every licence entry (10,000 on a big host).
async fn digest_off_workers(host: &Arc<Host>) -> Option<[u8; 32]> {
    let host = host.clone();
    tokio::task::spawn_blocking(move || digest(&host))
        .await
        .ok()
}

impl Live {
    pub fn new(keep_alive: Duration) -> Live {
        Live {
            tx: Arc::new(watch::channel([0; 32]).0),
            stopping: watch::channel(false).0,
            watcher: tokio::sync::OnceCell::new(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            keep_alive: keep_alive.clamp(Duration::from_millis(50), Duration::from_secs(15)),
        }
    }

    /// A receiver of changes; starts the watcher on first use, from a digest taken before
    /// the first stream is answered (a change made once a stream is open is never part of
    /// the starting point). It stops when the console goes.
    async fn subscribe(&self, host: &Arc<Host>) -> watch::Receiver<[u8; 32]> {
        self.watcher
            .get_or_init(|| async {
                if let Some(d) = digest_off_workers(host).await {
                    self.tx.send_replace(d);
                }
                let stopping = self.stopping.clone();
                tokio::spawn(async move {
                    crate::web::server::stop_requested().await;
                    stopping.send_replace(true);
                });
                let tx = Arc::downgrade(&self.tx);
                let host = host.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(TICK).await;
                        let Some(tx) = tx.upgrade() else { break };
                        if tx.receiver_count() == 0 {
                            continue;
                        }
                        if let Some(d) = digest_off_workers(&host).await {
                            tx.send_if_modified(|v| std::mem::replace(v, d) != d);
                        }
                    }
                });
            })
            .await;
        let mut rx = self.tx.subscribe();
        rx.mark_unchanged();
        rx
    }
}

struct Stream {
    rx: watch::Receiver<[u8; 32]>,
    stopping: watch::Receiver<bool>,
    console: Arc<Console>,
    token: String,
    until: tokio::time::Instant,
    _permit: OwnedSemaphorePermit,
}

/// `GET /events`: `change` whenever what the pages show changed.
pub async fn events(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let token = cookie(&headers, SESSION_COOKIE).unwrap_or("").to_owned();
    if !c.sessions.is_live(&token) {
        // No session (logged out, expired): 204 tells EventSource to stop.
        return unsigned(StatusCode::NO_CONTENT.into_response());
    }
    let Ok(permit) = c.live.streams.clone().try_acquire_owned() else {
        // The page polls instead.
        return unsigned((StatusCode::SERVICE_UNAVAILABLE, "busy").into_response());
    };
    let st = Stream {
        rx: c.live.subscribe(&c.api.host).await,
        stopping: c.live.stopping.subscribe(),
        console: c.clone(),
        token,
        until: tokio::time::Instant::now() + MAX_STREAM_LIFE,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if *st.stopping.borrow() {
                return None;
            }
            tokio::select! {
                changed = st.rx.changed() => {
                    changed.ok()?;
                    let e = Event::default().event("change").data("1");
                    return Some((Ok::<_, Infallible>(e), st));
                }
                () = tokio::time::sleep(Duration::from_secs(5)) => {
                    if !st.console.sessions.is_live(&st.token) {
                        return None;
                    }
                }
                () = tokio::time::sleep_until(st.until) => return None,
                _ = st.stopping.changed() => return None,
            }
        }
    });
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(c.live.keep_alive));
    unsigned(sse.into_response())
}

fn unsigned(mut r: Response) -> Response {
    r.extensions_mut()
        .insert(crate::web::signing::StreamedUnsigned);
    r
}
