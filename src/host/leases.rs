//! External sessions and the connections they arrive on, both held as leases. A session
//! holds one licence of one key until its lease ends or it is released; the count of
//! sessions on a key never exceeds its LicenceCount because allocation happens under one lock.

use super::keys::LicenceEntry;
use super::{Host, HostError};
use crate::licence::{Iec, Itn};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::net::IpAddr;

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

#[derive(Default)]
pub(super) struct Leases {
    sessions: HashMap<String, Session>,
    by_client: HashMap<String, String>,
    connections: HashMap<String, Connection>,
    /// (peer, computer, application, series) → connection ID.
    connection_keys: HashMap<(IpAddr, Option<String>, String, String), String>,
    next_number: u64,
}

fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode_upper(b)
}

impl Leases {
    /// Drops every lease that has ended, freeing its licence.
    fn purge(&mut self, now: Timestamp) {
        let dead: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.expires <= now)
            .map(|s| s.id.clone())
            .collect();
        for id in dead {
            self.remove_session(&id);
        }
        let live: std::collections::HashSet<&String> =
            self.sessions.values().map(|s| &s.connection_id).collect();
        let gone: Vec<String> = self
            .connections
            .values()
            .filter(|c| c.expires <= now && !live.contains(&c.id))
            .map(|c| c.id.clone())
            .collect();
        for id in gone {
            self.connections.remove(&id);
            self.connection_keys.retain(|_, v| *v != id);
        }
    }

    fn remove_session(&mut self, id: &str) -> Option<Session> {
        let s = self.sessions.remove(id)?;
        self.by_client.remove(&s.client_session_id);
        Some(s)
    }

    fn in_use(&self, key_no: u64) -> usize {
        self.sessions
            .values()
            .filter(|s| s.key_no == key_no)
            .count()
    }

    /// The connection a request arrives on, created or touched.
    fn touch_connection(
        &mut self,
        req: &SessionRequest,
        now: Timestamp,
        expires: Timestamp,
    ) -> String {
        let k = (
            req.peer_ip,
            req.computer_name.clone(),
            req.app_name.clone(),
            req.key_id.clone(),
        );
        if let Some(id) = self.connection_keys.get(&k) {
            if let Some(c) = self.connections.get_mut(id) {
                c.last_used = now;
                c.expires = c.expires.max(expires);
                c.version = req.client_version.clone().or(c.version.take());
                return id.clone();
            }
        }
        let id = new_id();
        self.connections.insert(
            id.clone(),
            Connection {
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
        );
        self.connection_keys.insert(k, id.clone());
        id
    }
}

fn matches(e: &LicenceEntry, req: &SessionRequest) -> bool {
    let Some(t) = &e.terms else { return false };
    t.key_id == req.key_id
        && req.key_no.is_none_or(|n| n == t.key_no)
        && req.itn.as_ref().is_none_or(|i| t.itn.as_ref() == Some(i))
        && req.iec.as_ref().is_none_or(|i| t.iec.as_ref() == Some(i))
}

impl Host {
    /// Opens (or renews) an external session and gives it a licence.
    pub fn open_session(&self, req: SessionRequest) -> Result<Opened, HostError> {
        let now = crate::time::now();
        let expires = now
            + chrono::Duration::from_std(self.session_lease)
                .unwrap_or_else(|_| chrono::Duration::seconds(300));
        let mut leases = self.leases();
        leases.purge(now);
        let table = self.licences();

        if let Some(id) = leases.by_client.get(&req.client_session_id).cloned() {
            let key_no = leases.sessions.get(&id).map(|s| s.key_no);
            let usable = key_no.and_then(|n| {
                table
                    .iter()
                    .find(|e| e.key_no == n && e.unusable_reason(now).is_none())
            });
            if let Some(entry) = usable {
                let entry = entry.clone();
                let conn = leases.touch_connection(&req, now, expires);
                if let Some(s) = leases.sessions.get_mut(&id) {
                    s.expires = expires;
                    s.connection_id = conn;
                }
                return Ok(Opened::Existing(entry));
            }
            // Its key has gone (unplugged, expired, replaced): the old session cannot be
            // extended; release it and serve the request as a new one.
            leases.remove_session(&id);
        }

        let matching: Vec<&LicenceEntry> = table.iter().filter(|e| matches(e, &req)).collect();
        let usable: Vec<&LicenceEntry> = matching
            .iter()
            .copied()
            .filter(|e| e.unusable_reason(now).is_none())
            .collect();
        if usable.is_empty() {
            let why = if matching.is_empty() {
                describe_filters(&req)
            } else {
                matching
                    .iter()
                    .filter_map(|e| e.unusable_reason(now))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return Err(HostError::NoMatchingKey(why));
        }
        let free = usable.iter().find(|e| {
            let count = e.terms.as_ref().map_or(0, |t| t.licence_count as usize);
            leases.in_use(e.key_no) < count
        });
        let Some(entry) = free else {
            let total: u32 = usable
                .iter()
                .filter_map(|e| e.terms.as_ref().map(|t| t.licence_count))
                .sum();
            return Err(HostError::NoFreeLicence(format!(
                "series {}: {total} licence(s) on {} key(s), all held by sessions",
                req.key_id,
                usable.len()
            )));
        };
        let entry = (*entry).clone();
        let conn = leases.touch_connection(&req, now, expires);
        leases.next_number += 1;
        let id = new_id();
        let session = Session {
            id: id.clone(),
            number: leases.next_number,
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
        leases.by_client.insert(req.client_session_id, id.clone());
        leases.sessions.insert(id, session);
        Ok(Opened::Created(entry))
    }

    /// Releases a session before its lease ends.
    pub fn close_session(&self, id: &str) -> Result<Session, HostError> {
        let mut leases = self.leases();
        leases.purge(crate::time::now());
        leases
            .remove_session(id)
            .ok_or_else(|| HostError::SessionNotFound(id.into()))
    }

    /// Live sessions, oldest first.
    pub fn sessions(&self) -> Vec<Session> {
        let mut leases = self.leases();
        leases.purge(crate::time::now());
        let mut v: Vec<Session> = leases.sessions.values().cloned().collect();
        v.sort_by_key(|s| s.number);
        v
    }

    pub fn session(&self, id: &str) -> Result<Session, HostError> {
        let mut leases = self.leases();
        leases.purge(crate::time::now());
        leases
            .sessions
            .get(id)
            .cloned()
            .ok_or_else(|| HostError::SessionNotFound(id.into()))
    }

    pub fn connections(&self) -> Vec<Connection> {
        let mut leases = self.leases();
        leases.purge(crate::time::now());
        let mut v: Vec<Connection> = leases.connections.values().cloned().collect();
        v.sort_by_key(|c| c.created);
        v
    }

    pub fn connection(&self, id: &str) -> Result<Connection, HostError> {
        let mut leases = self.leases();
        leases.purge(crate::time::now());
        leases
            .connections
            .get(id)
            .cloned()
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
