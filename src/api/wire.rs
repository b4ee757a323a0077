//! JSON shapes of the СЛК API, with its field names and types — including the odd ones the
//! spec's examples show (design §5 "Types on the wire"). Every field is present, `null` when
//! it has no value.

use crate::host::sysinfo::ServerInfo;
use crate::host::{Connection, KeyKind, LicenceEntry, Session};
use crate::time::{self, Timestamp};
use serde::Serialize;

#[derive(Serialize)]
pub struct ApiInfo {
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Urns")]
    pub urns: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerInfoJson {
    pub computer_name: String,
    #[serde(rename = "LocalIP")]
    pub local_ip: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    pub module_name: String,
    #[serde(rename = "PID")]
    pub pid: u32,
    #[serde(rename = "CPU")]
    pub cpu: String,
    pub version: String,
    #[serde(serialize_with = "time::wire::req")]
    pub started: Timestamp,
    #[serde(rename = "ComputerID")]
    pub computer_id: String,
}

impl From<ServerInfo> for ServerInfoJson {
    fn from(s: ServerInfo) -> Self {
        ServerInfoJson {
            computer_name: s.computer_name,
            local_ip: s.local_ip,
            os_type: s.os_type,
            os_version: s.os_version,
            module_name: s.module_name,
            pid: s.pid,
            cpu: s.cpu,
            version: s.version,
            started: s.started,
            computer_id: s.computer_id,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LicenceJson {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub file_name: String,
    pub enabled: bool,
    pub is_blank: bool,
    pub workable: bool,
    pub open_error: Option<String>,
    pub version: String,
    pub key_no: u64,
    #[serde(rename = "KeyID")]
    pub key_id: Option<String>,
    pub reg_no: Option<u64>,
    pub key_type: Option<u8>,
    pub service_type: Option<u32>,
    pub licence_count: u32,
    pub product_version: Option<u32>,
    pub product_version_name: Option<String>,
    pub blank_key_no: Option<u64>,
    pub activation_code: Option<String>,
    #[serde(serialize_with = "time::wire::opt")]
    pub activation_date: Option<Timestamp>,
    #[serde(serialize_with = "time::wire::opt")]
    pub start_date: Option<Timestamp>,
    pub period: Option<u32>,
    #[serde(serialize_with = "time::wire::opt")]
    pub expire_date: Option<Timestamp>,
    pub days_left: Option<i64>,
    pub expired: bool,
    pub flags: Option<String>,
    #[serde(rename = "ITN")]
    pub itn: Option<u64>,
    #[serde(rename = "IEC")]
    pub iec: Option<String>,
    pub product_name: Option<String>,
    pub article: Option<String>,
    pub article_name: Option<String>,
    pub message: Option<String>,
    pub message_type: Option<u8>,
    pub recovered: bool,
    #[serde(serialize_with = "time::wire::opt")]
    pub support_date: Option<Timestamp>,
    #[serde(serialize_with = "time::wire::opt")]
    pub support_end_date: Option<Timestamp>,
    pub support_period: Option<i64>,
    pub support_type: Option<u8>,
    #[serde(serialize_with = "time::wire::opt")]
    pub industry_support_date: Option<Timestamp>,
    #[serde(serialize_with = "time::wire::opt")]
    pub industry_support_end_date: Option<Timestamp>,
    pub industry_support_period: Option<i64>,
    pub industry_support_type: Option<u8>,
    pub industry_support_level: Option<u8>,
    pub industry_support_preferentials: Option<u8>,
    #[serde(serialize_with = "time::wire::opt")]
    pub update_date: Option<Timestamp>,
}

fn days_between(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<i64> {
    Some((b? - a?).num_days())
}

impl LicenceJson {
    pub fn new(e: &LicenceEntry, now: Timestamp) -> LicenceJson {
        let t = e.terms.as_ref();
        let v = t.map(|t| t.validity(now));
        LicenceJson {
            kind: match e.kind {
                KeyKind::Software => "Virtual",
                KeyKind::Usb => "USB",
            },
            file_name: e.file_name.clone(),
            enabled: true,
            is_blank: e.is_blank,
            workable: e.workable(),
            open_error: e.open_error.clone(),
            version: e.version.clone(),
            key_no: e.key_no,
            key_id: e.key_id.clone(),
            reg_no: t.map(|t| t.reg_no),
            key_type: t.map(|t| t.key_type.code()),
            service_type: t.map(|t| t.service_type),
            licence_count: t.map_or(0, |t| t.licence_count),
            product_version: t.map(|t| t.product_version),
            product_version_name: t.and_then(|t| t.product_version_name.clone()),
            blank_key_no: e.blank_key_no,
            activation_code: t.map(|t| t.activation_code.clone()),
            activation_date: t.map(|t| t.activation_date),
            start_date: t.and_then(|t| t.start_date),
            period: t.map(|t| t.period),
            expire_date: v.and_then(|v| v.expire_date),
            days_left: v.and_then(|v| v.days_left),
            expired: v.is_some_and(|v| v.expired),
            flags: t.map(|t| t.flags.to_string()),
            itn: t.and_then(|t| t.itn.as_ref().map(|i| i.as_number())),
            iec: t.and_then(|t| t.iec.as_ref().map(|i| i.as_str().to_owned())),
            product_name: t.map(|t| t.product_name.clone()),
            article: t.map(|t| t.article.clone()),
            article_name: t.map(|t| t.article_name.clone()),
            message: t.and_then(|t| t.message.clone()),
            message_type: t.and_then(|t| t.message_type),
            recovered: t.is_some_and(|t| t.recovered),
            support_date: t.and_then(|t| t.support_date),
            support_end_date: t.and_then(|t| t.support_end_date),
            support_period: t.and_then(|t| days_between(t.support_date, t.support_end_date)),
            support_type: t.and_then(|t| t.support_type),
            industry_support_date: t.and_then(|t| t.industry_support_date),
            industry_support_end_date: t.and_then(|t| t.industry_support_end_date),
            industry_support_period: t
                .and_then(|t| days_between(t.industry_support_date, t.industry_support_end_date)),
            industry_support_type: t.and_then(|t| t.industry_support_type),
            industry_support_level: t.and_then(|t| t.industry_support_level),
            industry_support_preferentials: t.and_then(|t| t.industry_support_preferentials),
            update_date: t.and_then(|t| t.update_date),
        }
    }
}

#[derive(Serialize)]
pub struct LicenceList {
    #[serde(rename = "Licences")]
    pub licences: Vec<LicenceJson>,
}

#[derive(Serialize)]
pub struct MemoryJson {
    #[serde(rename = "KeyNo")]
    pub key_no: u64,
    #[serde(rename = "Value")]
    pub value: String,
}

/// The 202 "Updated" answer of the memory commands and of closing a session. The spec gives
/// them no body; keybridge sends this one so that every signature covers a body of ours —
/// never the client's QueryID alone — and so the signed answer says what was changed on
/// what. `Code` and `Text` are those of the error body, so a client can read every answer's
/// status the same way.
#[derive(Serialize)]
pub struct Updated {
    #[serde(rename = "Code")]
    code: u16,
    #[serde(rename = "Text")]
    text: &'static str,
    /// `WriteMemory`, `SetMemoryPasswords`, `ResetMemory` or `CloseSession`.
    #[serde(rename = "Command")]
    command: &'static str,
    #[serde(flatten)]
    target: UpdatedTarget,
}

/// What an [`Updated`] answer changed: a key's memory (`KeyNo`) or a session (`ID`).
#[derive(Serialize)]
enum UpdatedTarget {
    #[serde(rename = "KeyNo")]
    KeyNo(u64),
    #[serde(rename = "ID")]
    Id(String),
}

impl Updated {
    fn new(command: &'static str, target: UpdatedTarget) -> Self {
        Updated {
            code: 202,
            text: "Updated",
            command,
            target,
        }
    }

    /// A memory command on key `key_no`.
    pub fn memory(command: &'static str, key_no: u64) -> Self {
        Self::new(command, UpdatedTarget::KeyNo(key_no))
    }

    /// `DELETE /api/sessions/{ID}`.
    pub fn session_closed(id: String) -> Self {
        Self::new("CloseSession", UpdatedTarget::Id(id))
    }
}

/// `Expired` of a session or connection, a string on the wire. Always "False": the host hands
/// out only leases that have not ended — each ended one is purged, on the monotonic clock,
/// before any lookup or list. `ExpireTime` is the wall-clock display of the lease, truncated to
/// milliseconds and moved by any step of the wall clock, so comparing it with the wall clock
/// called live leases expired (in their last millisecond, or for an hour after the clock was
/// set an hour ahead) while the host still counted them.
const LIVE: &str = "False";

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionJson {
    #[serde(rename = "ID")]
    pub id: String,
    pub session_number: String,
    pub is_server: bool,
    pub info_base_connection_str: Option<String>,
    pub app_name: String,
    pub computer_name: Option<String>,
    pub user_name: Option<String>,
    #[serde(serialize_with = "time::wire::req")]
    pub session_started: Timestamp,
    pub session_connection: String,
    pub access_code: Option<String>,
    #[serde(serialize_with = "time::wire::req")]
    pub expire_time: Timestamp,
    pub expired: &'static str,
    #[serde(rename = "KeyID")]
    pub key_id: String,
    pub used_licence: u64,
    /// Not in the spec: lets an external client find its own session (spec gap 41).
    #[serde(rename = "ClientSessionID")]
    pub client_session_id: String,
}

impl SessionJson {
    pub fn new(s: &Session) -> SessionJson {
        SessionJson {
            id: s.id.clone(),
            session_number: s.number.to_string(),
            is_server: false,
            info_base_connection_str: s.info_base_name.clone(),
            app_name: s.app_name.clone(),
            computer_name: s.computer_name.clone(),
            user_name: s.user_name.clone(),
            session_started: s.started,
            session_connection: s.connection_id.clone(),
            access_code: s.access_code.clone(),
            expire_time: s.expires,
            expired: LIVE,
            key_id: s.key_id.clone(),
            used_licence: s.key_no,
            client_session_id: s.client_session_id.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct SessionList {
    #[serde(rename = "Sessions")]
    pub sessions: Vec<SessionJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionJson {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "PeerIP")]
    pub peer_ip: String,
    #[serde(serialize_with = "time::wire::req")]
    pub created: Timestamp,
    #[serde(serialize_with = "time::wire::req")]
    pub last_used: Timestamp,
    #[serde(rename = "OSVersion")]
    pub os_version: Option<String>,
    pub computer_name: Option<String>,
    #[serde(rename = "LocalIP")]
    pub local_ip: Option<String>,
    pub process: String,
    #[serde(rename = "CPU")]
    pub cpu: Option<String>,
    #[serde(rename = "PID")]
    pub pid: Option<String>,
    pub is_server: bool,
    pub platform_version: Option<String>,
    pub module_name: Option<String>,
    pub version: Option<String>,
    #[serde(rename = "KeyID")]
    pub key_id: String,
    #[serde(serialize_with = "time::wire::req")]
    pub expire_time: Timestamp,
    pub expired: &'static str,
}

impl ConnectionJson {
    /// External-API clients do not report their OS, process or platform; those stay `null`.
    pub fn new(c: &Connection) -> ConnectionJson {
        ConnectionJson {
            id: c.id.clone(),
            peer_ip: c.peer_ip.to_string(),
            created: c.created,
            last_used: c.last_used,
            os_version: None,
            computer_name: c.computer_name.clone(),
            local_ip: None,
            process: c.process.clone(),
            cpu: None,
            pid: None,
            is_server: false,
            platform_version: None,
            module_name: None,
            version: c.version.clone(),
            key_id: c.key_id.clone(),
            expire_time: c.expires,
            expired: LIVE,
        }
    }
}

#[derive(Serialize)]
pub struct ConnectionList {
    #[serde(rename = "Connections")]
    pub connections: Vec<ConnectionJson>,
}
