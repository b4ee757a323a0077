//! External sessions and the connections they arrive on, both held as leases. A session
//! holds one licence of one key until its lease ends or it is released; the count of
//! sessions on a key never exceeds its LicenceCount because allocation happens under one lock.
//! Leases run on the monotonic clock; the wall-clock times kept beside them are for display.
//! Both tables are capped ([`LeasePolicy`]) and indexed so that a request costs O(log n) plus
//! the leases that have ended, whatever the number of live ones.

use super::keys::LicenceEntry;
use super::{Host, HostError};
use crate::licence::{Iec, Itn, LicenceTerms};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What a client sends to `POST /api/sessions`, already validated.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub key_id: String,
    pub client_session_id: String,
    pub app_name: String,
    pub user_name: Option<String>,
    pub session_started: Option<Timestamp>,
    pub computer_name: Option<String>,
    pub info_base_name: Option<String>,
    pub access_code: Option<String>,
    pub key_no: Option<u64>,
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
    pub peer_ip: IpAddr,
    pub client_version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub number: u64,
    pub client_session_id: String,
    pub key_id: String,
    pub key_no: u64,
    pub app_name: String,
    pub user_name: Option<String>,
    pub computer_name: Option<String>,
    pub info_base_name: Option<String>,
    pub access_code: Option<String>,
    pub started: Timestamp,
    pub connection_id: String,
    /// When the lease ends, for display (the lease itself runs on the monotonic clock).
    pub expires: Timestamp,
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub peer_ip: IpAddr,
    pub created: Timestamp,
    pub last_used: Timestamp,
    pub computer_name: Option<String>,
    pub process: String,
    pub version: Option<String>,
    pub key_id: String,
    pub expires: Timestamp,
}

/// The result of `POST /api/sessions`: a new session (201) or the existing one renewed (200).
#[derive(Debug)]
pub enum Opened {
    Created(LicenceEntry),
    Existing(LicenceEntry),
}

/// Live sessions a host holds at most unless `[leases] max_sessions` says otherwise.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;
/// Connections a host keeps at most unless `[leases] max_connections` says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// How long leases last and how many the host keeps: every session and connection costs
/// memory, so both tables are capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    pub session: Duration,
    pub max_sessions: usize,
    /// A new connection beyond this replaces the idle one (no session) that expires first;
    /// with none idle the session is refused.
    pub max_connections: usize,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy {
            session: Duration::from_secs(300),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// (peer, computer, application, series): what makes a new session share a connection.
type ConnectionKey = (IpAddr, Option<String>, String, String);

/// A lease in the deadline index: a session by its number, a connection by its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lease {
    Session(u64),
    Connection(u64),
}

struct SessionSlot {
    session: Session,
    /// (account, user in lower case) when the session's licence belongs to an account and
    /// the session names a user: what [`Leases::per_user`] counts it under.
    account_user: Option<AccountUser>,
    /// When the lease ends, on the monotonic clock: a wall-clock step never ends or extends it.
    deadline: Instant,
}

struct ConnectionSlot {
    connection: Connection,
    deadline: Instant,
    /// Creation order, for listing and for the deadline index.
    seq: u64,
    /// The key it is found by, so removal needs no search.
    key: ConnectionKey,
    /// Live sessions on it; a connection with none is idle.
    sessions: usize,
}

/// Sessions and connections with their indexes. Every operation costs O(log n) plus O(1) per
/// lease that has ended: nothing here walks a whole table.
#[derive(Default)]
pub(super) struct Leases {
    sessions: HashMap<String, SessionSlot>,
    /// Session number → ID: list order.
    by_number: BTreeMap<u64, String>,
    by_client: HashMap<String, String>,
    connections: HashMap<String, ConnectionSlot>,
    /// Creation sequence → ID: list order.
    by_seq: BTreeMap<u64, String>,
    connection_keys: HashMap<ConnectionKey, String>,
    /// Every lease that has not yet been found ended, earliest first.
    deadlines: BTreeSet<(Instant, Lease)>,
    /// Connections without sessions, earliest deadline first: the first to make room.
    idle: BTreeSet<(Instant, u64)>,
    /// Sessions per KeyNo.
    in_use: HashMap<u64, usize>,
    /// (KeyNo, session number): a key's sessions without a walk over the others.
    by_key: BTreeSet<(u64, u64)>,
    /// Sessions per (account, user) on the account's licences, for session restrictions.
    per_user: HashMap<AccountUser, usize>,
    next_number: u64,
    next_seq: u64,
}

/// An account's code and a user name as restrictions compare it (`licence::user_key`).
type AccountUser = (u64, String);

/// The account a licence belongs to and the number of sessions it allows `user`, if it
/// restricts them (logins match UserName regardless of case).
fn restriction(t: &LicenceTerms, user: Option<&str>) -> Option<(AccountUser, u32)> {
    let a = t.account.as_ref()?;
    let user = crate::licence::user_key(user?);
    let limit = a
        .session_limits
        .iter()
        .find(|l| crate::licence::user_key(&l.user) == user)?
        .sessions;
    Some(((a.id, user), limit))
}

fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode_upper(b)
}

impl Leases {
    /// Drops every lease that has ended, freeing its licence: only those are visited.
    fn purge(&mut self, now: Instant) {
        while let Some(&(at, lease)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match lease {
                Lease::Session(number) => {
                    if let Some(id) = self.by_number.get(&number).cloned() {
                        self.remove_session(&id, now);
                    }
                }
                // A connection still holding sessions stays until its last one ends.
                Lease::Connection(seq) => {
                    let idle = self
                        .by_seq
                        .get(&seq)
                        .and_then(|id| self.connections.get(id))
                        .is_some_and(|c| c.sessions == 0);
                    if idle {
                        self.remove_connection(seq);
                    }
                }
            }
        }
    }

    fn remove_session(&mut self, id: &str, now: Instant) -> Option<Session> {
        let slot = self.sessions.remove(id)?;
        let s = slot.session;
        self.by_number.remove(&s.number);
        self.by_key.remove(&(s.key_no, s.number));
        self.by_client.remove(&s.client_session_id);
        self.deadlines
            .remove(&(slot.deadline, Lease::Session(s.number)));
        if let Some(n) = self.in_use.get_mut(&s.key_no) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_use.remove(&s.key_no);
            }
        }
        if let Some(au) = slot.account_user {
            if let Some(n) = self.per_user.get_mut(&au) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_user.remove(&au);
                }
            }
        }
        self.release_connection(&s.connection_id, now);
        Some(s)
    }

    /// A session has left connection `id`: the connection goes now if its own lease has
    /// ended too, or becomes idle.
    fn release_connection(&mut self, id: &str, now: Instant) {
        let Some(c) = self.connections.get_mut(id) else {
            return;
        };
        c.sessions = c.sessions.saturating_sub(1);
        if c.sessions > 0 {
            return;
        }
        let (deadline, seq) = (c.deadline, c.seq);
        if deadline <= now {
            self.remove_connection(seq);
        } else {
            self.idle.insert((deadline, seq));
        }
    }

    fn remove_connection(&mut self, seq: u64) {
        let Some(id) = self.by_seq.remove(&seq) else {
            return;
        };
        if let Some(c) = self.connections.remove(&id) {
            self.connection_keys.remove(&c.key);
            self.deadlines
                .remove(&(c.deadline, Lease::Connection(c.seq)));
            self.idle.remove(&(c.deadline, c.seq));
        }
    }

    fn in_use(&self, key_no: u64) -> usize {
        self.in_use.get(&key_no).copied().unwrap_or(0)
    }

    /// Whether licence `t` may give `user` one more session: false when its account
    /// restricts the user and they hold that many sessions on the account's licences.
    fn user_may(&self, t: &LicenceTerms, user: Option<&str>) -> bool {
        restriction(t, user)
            .is_none_or(|(au, limit)| self.per_user.get(&au).copied().unwrap_or(0) < limit as usize)
    }

    /// Extends connection `id`'s lease to at least `deadline` and records the client's use.
    fn touch_connection(
        &mut self,
        id: &str,
        version: Option<&String>,
        now: Timestamp,
        expires: Timestamp,
        deadline: Instant,
    ) {
        let Some(c) = self.connections.get_mut(id) else {
            return;
        };
        c.connection.last_used = now;
        c.connection.expires = c.connection.expires.max(expires);
        if let Some(v) = version {
            c.connection.version = Some(v.clone());
        }
        if deadline > c.deadline {
            let old = c.deadline;
            c.deadline = deadline;
            let seq = c.seq;
            self.deadlines.remove(&(old, Lease::Connection(seq)));
            self.deadlines.insert((deadline, Lease::Connection(seq)));
            if self.idle.remove(&(old, seq)) {
                self.idle.insert((deadline, seq));
            }
        }
    }

    /// The connection a new session arrives on: the one its peer, computer, application and
    /// series already have, or a new one. A full table first drops the idle connection whose
    /// lease ends soonest.
    fn connection_for(
        &mut self,
        req: &SessionRequest,
        now: Timestamp,
        expires: Timestamp,
        deadline: Instant,
        max: usize,
    ) -> Result<String, HostError> {
        let key = (
            req.peer_ip,
            req.computer_name.clone(),
            req.app_name.clone(),
            req.key_id.clone(),
        );
        if let Some(id) = self.connection_keys.get(&key).cloned() {
            self.touch_connection(&id, req.client_version.as_ref(), now, expires, deadline);
            return Ok(id);
        }
        if self.connections.len() >= max {
            let Some(&(_, seq)) = self.idle.first() else {
                return Err(HostError::TooManyConnections(max));
            };
            self.remove_connection(seq);
        }
        let id = new_id();
        self.next_seq += 1;
        let seq = self.next_seq;
        self.connections.insert(
            id.clone(),
            ConnectionSlot {
                connection: Connection {
                    id: id.clone(),
                    peer_ip: req.peer_ip,
                    created: now,
                    last_used: now,
                    computer_name: req.computer_name.clone(),
                    process: req.app_name.clone(),
                    version: req.client_version.clone(),
                    key_id: req.key_id.clone(),
                    expires,
                },
                deadline,
                seq,
                key: key.clone(),
                sessions: 0,
            },
        );
        self.by_seq.insert(seq, id.clone());
        self.connection_keys.insert(key, id.clone());
        self.deadlines.insert((deadline, Lease::Connection(seq)));
        // Idle until the session that asked for it is attached.
        self.idle.insert((deadline, seq));
        Ok(id)
    }

    fn attach_session(&mut self, conn: &str) {
        if let Some(c) = self.connections.get_mut(conn) {
            c.sessions += 1;
            if c.sessions == 1 {
                let (deadline, seq) = (c.deadline, c.seq);
                self.idle.remove(&(deadline, seq));
            }
        }
    }
}

fn matches(t: &LicenceTerms, req: &SessionRequest) -> bool {
    t.key_id == req.key_id
        && req.key_no.is_none_or(|n| n == t.key_no)
        && req.itn.as_ref().is_none_or(|i| t.itn.as_ref() == Some(i))
        && req.iec.as_ref().is_none_or(|i| t.iec.as_ref() == Some(i))
}

impl Host {
    /// Opens (or renews) an external session and gives it a licence.
    ///
    /// A renewal (a ClientSessionID that has a session) only extends the leases of the session
    /// and of its own connection. What it says about itself — AppName, ComputerName, UserName,
    /// KeyID, filters — is not looked at: the session keeps the fields, the licence and the
    /// connection it was opened with, so varying them can neither move the session nor make
    /// connections.
    pub fn open_session(&self, req: SessionRequest) -> Result<Opened, HostError> {
        self.open_session_at(req, crate::time::now(), Instant::now())
    }

    /// [`Host::open_session`] at a given time, so tests can move the clock.
    fn open_session_at(
        &self,
        req: SessionRequest,
        now: Timestamp,
        clock: Instant,
    ) -> Result<Opened, HostError> {
        let policy = self.lease_policy;
        let deadline = clock + policy.session;
        let expires = now
            + chrono::Duration::from_std(policy.session)
                .unwrap_or_else(|_| chrono::Duration::seconds(300));
        let mut leases = self.leases();
        leases.purge(clock);

        if let Some(id) = leases.by_client.get(&req.client_session_id).cloned() {
            let held = leases
                .sessions
                .get(&id)
                .map(|s| (s.session.key_no, s.session.connection_id.clone()));
            if let Some((key_no, conn)) = held {
                let usable = self.first_entry_where(|k| k.key_no == key_no && k.usable(now));
                if let Some(entry) = usable {
                    leases.touch_connection(
                        &conn,
                        req.client_version.as_ref(),
                        now,
                        expires,
                        deadline,
                    );
                    if let Some(s) = leases.sessions.get_mut(&id) {
                        let (old, number) = (s.deadline, s.session.number);
                        s.deadline = deadline;
                        s.session.expires = expires;
                        leases.deadlines.remove(&(old, Lease::Session(number)));
                        leases.deadlines.insert((deadline, Lease::Session(number)));
                    }
                    return Ok(Opened::Existing(entry));
                }
            }
            // Its key has gone (unplugged, expired, replaced): the old session cannot be
            // extended; release it and serve the request as a new one.
            leases.remove_session(&id, clock);
        }

        // The lowest free usable key, found without copying the others.
        let user = req.user_name.as_deref();
        let free = self.first_entry_where(|k| {
            k.terms.is_some_and(|t| {
                matches(t, &req)
                    && leases.in_use(k.key_no) < t.licence_count as usize
                    && leases.user_may(t, user)
            }) && k.usable(now)
        });
        let Some(entry) = free else {
            return Err(self.refusal(&req, now, &leases));
        };
        // Counted under its account whether or not the user is restricted now: a restriction
        // that arrives with a later update counts the sessions already open.
        let account_user = entry
            .terms
            .as_ref()
            .and_then(|t| t.account.as_ref())
            .zip(user)
            .map(|(a, u)| (a.id, crate::licence::user_key(u)));
        if leases.sessions.len() >= policy.max_sessions {
            return Err(HostError::TooManySessions(policy.max_sessions));
        }
        let conn = leases.connection_for(&req, now, expires, deadline, policy.max_connections)?;
        leases.attach_session(&conn);
        leases.next_number += 1;
        let number = leases.next_number;
        let id = new_id();
        let session = Session {
            id: id.clone(),
            number,
            client_session_id: req.client_session_id.clone(),
            key_id: req.key_id.clone(),
            key_no: entry.key_no,
            app_name: req.app_name.clone(),
            user_name: req.user_name.clone(),
            computer_name: req.computer_name.clone(),
            info_base_name: req.info_base_name.clone(),
            access_code: req.access_code.clone(),
            started: req.session_started.unwrap_or(now),
            connection_id: conn,
            expires,
        };
        *leases.in_use.entry(entry.key_no).or_insert(0) += 1;
        if let Some(au) = &account_user {
            *leases.per_user.entry(au.clone()).or_insert(0) += 1;
        }
        leases.by_client.insert(req.client_session_id, id.clone());
        leases.by_number.insert(number, id.clone());
        leases.by_key.insert((entry.key_no, number));
        leases.deadlines.insert((deadline, Lease::Session(number)));
        leases.sessions.insert(
            id,
            SessionSlot {
                session,
                account_user,
                deadline,
            },
        );
        Ok(Opened::Created(entry))
    }

    /// Why no key can serve `req`: none matches usably, the user holds what their account
    /// allows them, or every licence is held.
    fn refusal(&self, req: &SessionRequest, now: Timestamp, leases: &Leases) -> HostError {
        let matching = self.entries_where(|_, t| t.is_some_and(|t| matches(t, req)));
        let usable: Vec<&LicenceEntry> = matching
            .iter()
            .filter(|e| e.unusable_reason(now).is_none())
            .collect();
        // A licence with a free seat that the user's restriction alone keeps from them.
        let restricted = usable.iter().find_map(|e| {
            let t = e.terms.as_ref()?;
            if leases.in_use(e.key_no) >= t.licence_count as usize {
                return None;
            }
            let ((account, _), limit) = restriction(t, req.user_name.as_deref())?;
            (!leases.user_may(t, req.user_name.as_deref())).then_some((account, limit))
        });
        if let Some((account, limit)) = restricted {
            return HostError::SessionRestricted {
                user: req.user_name.clone().unwrap_or_default(),
                account,
                limit,
            };
        }
        if usable.is_empty() {
            let why = if matching.is_empty() {
                describe_filters(req)
            } else {
                matching
                    .iter()
                    .filter_map(|e| e.unusable_reason(now))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return HostError::NoMatchingKey(why);
        }
        let total = licence_total(
            usable
                .iter()
                .filter_map(|e| e.terms.as_ref().map(|t| t.licence_count)),
        );
        HostError::NoFreeLicence(format!(
            "series {}: {total} licence(s) on {} key(s), all held by sessions",
            req.key_id,
            usable.len()
        ))
    }

    /// Releases a session before its lease ends.
    pub fn close_session(&self, id: &str) -> Result<Session, HostError> {
        let clock = Instant::now();
        let mut leases = self.leases();
        leases.purge(clock);
        leases
            .remove_session(id, clock)
            .ok_or_else(|| HostError::SessionNotFound(id.into()))
    }

    /// Live sessions, oldest first: `limit` of them from `offset`, and how many there are.
    pub fn sessions(&self, offset: usize, limit: usize) -> (Vec<Session>, usize) {
        let mut leases = self.leases();
        leases.purge(Instant::now());
        let page = leases
            .by_number
            .values()
            .skip(offset)
            .take(limit)
            .filter_map(|id| leases.sessions.get(id))
            .map(|s| s.session.clone())
            .collect();
        (page, leases.sessions.len())
    }

    /// Live sessions on key `key_no`, oldest first, at most `limit`: read from the per-key
    /// index, so a key's page costs its own sessions, not the table's.
    pub fn sessions_of_key(&self, key_no: u64, limit: usize) -> Vec<Session> {
        let mut leases = self.leases();
        leases.purge(Instant::now());
        leases
            .by_key
            .range((key_no, 0)..=(key_no, u64::MAX))
            .take(limit)
            .filter_map(|(_, n)| leases.by_number.get(n))
            .filter_map(|id| leases.sessions.get(id))
            .map(|s| s.session.clone())
            .collect()
    }

    /// Live sessions per KeyNo (keys without any are absent): the counters the allocation
    /// keeps, copied, not a count over the table.
    pub fn sessions_per_key(&self) -> HashMap<u64, usize> {
        let mut leases = self.leases();
        leases.purge(Instant::now());
        leases.in_use.clone()
    }

    pub fn session(&self, id: &str) -> Result<Session, HostError> {
        let mut leases = self.leases();
        leases.purge(Instant::now());
        leases
            .sessions
            .get(id)
            .map(|s| s.session.clone())
            .ok_or_else(|| HostError::SessionNotFound(id.into()))
    }

    /// Connections in the order they were made: `limit` of them from `offset`, and how many
    /// there are.
    pub fn connections(&self, offset: usize, limit: usize) -> (Vec<Connection>, usize) {
        let mut leases = self.leases();
        leases.purge(Instant::now());
        let page = leases
            .by_seq
            .values()
            .skip(offset)
            .take(limit)
            .filter_map(|id| leases.connections.get(id))
            .map(|c| c.connection.clone())
            .collect();
        (page, leases.connections.len())
    }

    pub fn connection(&self, id: &str) -> Result<Connection, HostError> {
        let mut leases = self.leases();
        leases.purge(Instant::now());
        leases
            .connections
            .get(id)
            .map(|c| c.connection.clone())
            .ok_or_else(|| HostError::ConnectionNotFound(id.into()))
    }
}

fn describe_filters(req: &SessionRequest) -> String {
    let mut parts = vec![format!("KeyID={}", req.key_id)];
    if let Some(n) = req.key_no {
        parts.push(format!("KeyNo={n}"));
    }
    if let Some(i) = &req.itn {
        parts.push(format!("ITN={}", i.as_str()));
    }
    if let Some(i) = &req.iec {
        parts.push(format!("IEC={}", i.as_str()));
    }
    format!("no key has {}", parts.join(", "))
}

/// The licences on some keys together, for a message: in u64 and saturating, so that no
/// number of keys can overflow it (each holds up to a million, in a u32).
fn licence_total(counts: impl Iterator<Item = u32>) -> u64 {
    counts.fold(0u64, |sum, n| sum.saturating_add(u64::from(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPair, LicenceKey};

    #[test]
    fn the_licence_total_does_not_overflow() {
        assert_eq!(licence_total([3, 4].into_iter()), 7);
        // 5,000 keys of a million licences each: beyond u32.
        assert_eq!(
            licence_total(std::iter::repeat_n(1_000_000, 5_000)),
            5_000_000_000
        );
        assert_eq!(
            licence_total(std::iter::repeat_n(u32::MAX, 3)),
            3 * u64::from(u32::MAX)
        );
    }
    use crate::licence::{Binding, TrustStore};
    use crate::store::software_keys;

    const KEY_NO: u64 = 7_131_766;
    const LEASE: Duration = Duration::from_secs(300);

    /// A host with one software key of series 672B holding `count` licences.
    fn host(
        dir: &std::path::Path,
        count: u32,
        max_sessions: usize,
        max_connections: usize,
    ) -> Host {
        let centre = LicenceKey::new(KeyPair::generate().expect("key"));
        let mut trust = TrustStore::default();
        trust.add(centre.public_key().clone());
        let id = "0".repeat(40);
        let terms = LicenceTerms::new(KEY_NO, "672B", count, Binding::Computer(id.clone()));
        let doc = crate::licence::sign(&terms, &centre).expect("sign");
        software_keys::write_licence(&software_keys::licence_path(dir, "672B", KEY_NO), &doc)
            .expect("write");
        Host::new(super::super::HostOptions {
            data_dir: dir.into(),
            computer_id: id,
            trust,
            session_lease: LeasePolicy {
                session: LEASE,
                max_sessions,
                max_connections,
            },
            memory_policy: crate::keymem::LockPolicy::default(),
            centre_url: None,
            centre_ca_file: None,
            centre_response_key: None,
        })
        .expect("host")
    }

    fn req(client: &str, computer: &str) -> SessionRequest {
        SessionRequest {
            key_id: "672B".into(),
            client_session_id: client.into(),
            app_name: "app".into(),
            user_name: None,
            session_started: None,
            computer_name: Some(computer.into()),
            info_base_name: None,
            access_code: None,
            key_no: None,
            itn: None,
            iec: None,
            peer_ip: [127, 0, 0, 1].into(),
            client_version: None,
        }
    }

    /// Every index agrees with the tables (a full walk; tests only).
    fn check(l: &Leases) {
        assert_eq!(l.by_number.len(), l.sessions.len());
        assert_eq!(l.by_key.len(), l.sessions.len());
        assert_eq!(l.by_client.len(), l.sessions.len());
        assert_eq!(l.by_seq.len(), l.connections.len());
        assert_eq!(l.connection_keys.len(), l.connections.len());
        assert_eq!(l.in_use.values().sum::<usize>(), l.sessions.len());
        assert!(l.in_use.values().all(|n| *n > 0));
        let mut held: HashMap<&str, usize> = HashMap::new();
        for s in l.sessions.values() {
            assert!(l
                .deadlines
                .contains(&(s.deadline, Lease::Session(s.session.number))));
            assert!(l.by_key.contains(&(s.session.key_no, s.session.number)));
            assert!(l.connections.contains_key(&s.session.connection_id));
            *held.entry(s.session.connection_id.as_str()).or_default() += 1;
        }
        for (id, c) in &l.connections {
            assert_eq!(c.sessions, held.get(id.as_str()).copied().unwrap_or(0));
            assert_eq!(l.idle.contains(&(c.deadline, c.seq)), c.sessions == 0);
            assert_eq!(l.connection_keys.get(&c.key), Some(id));
        }
        let sessions_due = l
            .deadlines
            .iter()
            .filter(|(_, lease)| matches!(lease, Lease::Session(_)))
            .count();
        assert_eq!(sessions_due, l.sessions.len());
        assert!(l.deadlines.len() <= l.sessions.len() + l.connections.len());
        assert!(l.idle.len() <= l.connections.len());
    }

    #[test]
    fn renewals_with_other_fields_keep_their_connection_and_fields() {
        let d = tempfile::tempdir().expect("tmp");
        let h = host(d.path(), 5, 100, 100);
        let (now, clock) = (crate::time::now(), Instant::now());
        for c in ["a", "b", "c"] {
            let opened = h.open_session_at(req(c, &format!("pc-{c}")), now, clock);
            assert!(matches!(opened, Ok(Opened::Created(_))));
        }
        for i in 0..300u32 {
            let mut r = req(["a", "b", "c"][i as usize % 3], &format!("elsewhere-{i}"));
            r.app_name = format!("app-{i}");
            r.key_id = format!("{:04X}", i);
            r.peer_ip = [10, 0, (i / 256) as u8, (i % 256) as u8].into();
            let renewed = h.open_session_at(r, now, clock + Duration::from_millis(u64::from(i)));
            assert!(matches!(renewed, Ok(Opened::Existing(_))), "{renewed:?}");
        }
        let l = h.leases();
        check(&l);
        assert_eq!(l.connections.len(), 3);
        assert_eq!(l.sessions.len(), 3);
        for s in l.sessions.values() {
            let c = &s.session.client_session_id;
            assert_eq!(
                s.session.computer_name.as_deref(),
                Some(&*format!("pc-{c}"))
            );
            assert_eq!(
                (s.session.app_name.as_str(), s.session.key_id.as_str()),
                ("app", "672B")
            );
            // The renewals extended both leases.
            assert!(s.deadline >= clock + LEASE + Duration::from_millis(297));
            assert!(l.connections[&s.session.connection_id].deadline >= s.deadline);
        }
    }

    #[test]
    fn expiry_empties_every_index_and_frees_the_licences() {
        let d = tempfile::tempdir().expect("tmp");
        let h = host(d.path(), 5, 100, 100);
        let (now, clock) = (crate::time::now(), Instant::now());
        for i in 0..5 {
            let c = format!("s{i}");
            // Two sessions per computer share a connection.
            h.open_session_at(req(&c, &format!("pc{}", i / 2)), now, clock)
                .expect("open");
        }
        assert!(matches!(
            h.open_session_at(req("late", "pc9"), now, clock),
            Err(HostError::NoFreeLicence(_))
        ));
        {
            let l = h.leases();
            check(&l);
            assert_eq!((l.sessions.len(), l.connections.len()), (5, 3));
            assert_eq!(l.in_use(KEY_NO), 5);
        }
        // One released early: its connection stays (another session is on it).
        let first = h.leases().by_number[&1].clone();
        h.close_session(&first).expect("close");
        check(&h.leases());

        let later = clock + LEASE + Duration::from_secs(1);
        h.leases().purge(later);
        {
            let l = h.leases();
            check(&l);
            assert!(l.sessions.is_empty() && l.connections.is_empty());
            assert!(l.deadlines.is_empty() && l.idle.is_empty() && l.in_use.is_empty());
            assert!(l.by_key.is_empty());
        }
        assert!(matches!(
            h.open_session_at(req("late", "pc9"), now, later),
            Ok(Opened::Created(_))
        ));
    }

    #[test]
    fn a_keys_sessions_and_the_counts_come_from_the_indexes() {
        let d = tempfile::tempdir().expect("tmp");
        let h = host(d.path(), 5, 100, 100);
        let (now, clock) = (crate::time::now(), Instant::now());
        for c in ["a", "b", "c"] {
            h.open_session_at(req(c, "pc"), now, clock).expect("open");
        }
        let b = h.leases().by_client["b"].clone();
        h.close_session(&b).expect("close");
        let listed: Vec<String> = h
            .sessions_of_key(KEY_NO, 10)
            .into_iter()
            .map(|s| s.client_session_id)
            .collect();
        assert_eq!(listed, ["a", "c"]);
        assert_eq!(h.sessions_of_key(KEY_NO, 1).len(), 1);
        assert!(h.sessions_of_key(KEY_NO + 1, 10).is_empty());
        assert_eq!(h.sessions_per_key(), HashMap::from([(KEY_NO, 2)]));
        check(&h.leases());
    }

    #[test]
    fn caps_refuse_sessions_and_reuse_idle_connections() {
        let d = tempfile::tempdir().expect("tmp");
        let h = host(d.path(), 5, 3, 2);
        let (now, clock) = (crate::time::now(), Instant::now());
        h.open_session_at(req("a", "pc-a"), now, clock).expect("a");
        h.open_session_at(req("b", "pc-b"), now, clock).expect("b");
        // Both connections hold a session: no room for a third computer.
        assert!(matches!(
            h.open_session_at(req("c", "pc-c"), now, clock),
            Err(HostError::TooManyConnections(2))
        ));
        // A computer that has a connection still gets in.
        h.open_session_at(req("a2", "pc-a"), now, clock)
            .expect("a2");
        assert!(matches!(
            h.open_session_at(req("d", "pc-a"), now, clock),
            Err(HostError::TooManySessions(3))
        ));
        // Renewals are never refused by a cap.
        assert!(matches!(
            h.open_session_at(req("a", "pc-z"), now, clock),
            Ok(Opened::Existing(_))
        ));
        // b's connection goes idle when b ends; the next new computer takes its place.
        let b = h.leases().by_client["b"].clone();
        h.close_session(&b).expect("close");
        check(&h.leases());
        h.open_session_at(req("c", "pc-c"), now, clock).expect("c");
        let l = h.leases();
        check(&l);
        assert_eq!(l.connections.len(), 2);
        let computers: BTreeSet<_> = l
            .connections
            .values()
            .filter_map(|c| c.connection.computer_name.clone())
            .collect();
        assert_eq!(computers, ["pc-a", "pc-c"].map(String::from).into());
    }
}
