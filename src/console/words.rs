//! The host's answers in the reader's language: errors (the centre's answer among them),
//! why a key is not workable, a USB key's state. The catalogue gives the words; the host's
//! own message (English, as the API and the log carry it) follows as the detail, so nothing
//! it said is lost in translation.

use super::i18n::Tr;
use crate::hal::DeviceError;
use crate::host::{DeviceRow, HostError, KeyKind, LicenceEntry};
use crate::keymem::MemoryError;
use crate::web::throttle::Refused;

/// The outcome of a change, in words: a sentence from the catalogue and, for a refusal, the
/// host's own message.
#[derive(Debug, Clone)]
pub struct Message {
    pub ok: bool,
    pub text: String,
    pub detail: Option<String>,
}

impl Message {
    pub fn ok(text: impl Into<String>) -> Message {
        Message {
            ok: true,
            text: text.into(),
            detail: None,
        }
    }

    pub fn error(text: impl Into<String>) -> Message {
        Message {
            ok: false,
            text: text.into(),
            detail: None,
        }
    }

    /// A refusal by the host, in words.
    pub fn host(t: Tr, e: &HostError) -> Message {
        let text = host_error(t, e);
        let raw = e.to_string();
        Message {
            ok: false,
            detail: (raw != text).then_some(raw),
            text,
        }
    }

    /// What the audit log records: `ok`, or `refused: ` and the host's own words.
    pub fn outcome(&self) -> String {
        if self.ok {
            "ok".into()
        } else {
            format!(
                "refused: {}",
                self.detail.as_deref().unwrap_or(self.text.as_str())
            )
        }
    }
}

/// What the centre's refusal reason means, in words.
fn centre_reason(t: Tr, reason: &str) -> Option<String> {
    let id = match reason {
        "unknown_code" => "centre.unknown_code",
        "unknown_licence" => "centre.unknown_licence",
        "already_activated" => "centre.already_activated",
        "itn_mismatch" => "centre.itn_mismatch",
        "restore_limit" => "centre.restore_limit",
        "restore_needs_vendor" => "centre.restore_needs_vendor",
        "device_not_genuine" => "centre.device_not_genuine",
        "challenge_refused" => "centre.challenge_refused",
        "unknown_key" => "centre.unknown_key",
        "unknown_product" => "centre.unknown_product",
        "invalid" => "centre.invalid",
        "throttled" | "challenges_full" => "centre.busy",
        _ => return None,
    };
    Some(t.s(id).to_owned())
}

fn memory_error(t: Tr, e: &MemoryError) -> String {
    match e {
        MemoryError::WrongPassword { attempts_left } => {
            t.f("herr.memory_wrong_password", &[attempts_left])
        }
        MemoryError::Locked { retry_after_secs } => t.f("herr.memory_locked", &[retry_after_secs]),
        MemoryError::TooLarge { max, .. } => t.f("herr.memory_too_large", &[max]),
        MemoryError::PasswordTooLong { max, .. } => t.f("herr.password_too_long", &[max]),
    }
}

fn device_error(t: Tr, e: &DeviceError) -> String {
    match e {
        DeviceError::Disconnected => t.s("dev.disconnected").into(),
        DeviceError::Timeout => t.s("dev.timeout").into(),
        DeviceError::Busy => t.s("dev.busy").into(),
        DeviceError::Memory(m) => memory_error(t, m),
        DeviceError::NotBlank => t.s("dev.not_blank").into(),
        DeviceError::NoLicence => t.s("dev.no_licence").into(),
        _ => t.s("dev.failed").into(),
    }
}

/// A host error in words.
pub fn host_error(t: Tr, e: &HostError) -> String {
    use HostError as H;
    match e {
        H::KeyNotFound(k) => t.f("herr.key_not_found", &[k]),
        H::KeyNotAttached(k) => t.f("herr.key_not_attached", &[k]),
        H::SessionNotFound(_) => t.s("herr.session_not_found").into(),
        H::ConnectionNotFound(_) => t.s("herr.connection_not_found").into(),
        H::Memory(m) => memory_error(t, m),
        H::Device { serial, error } => {
            format!(
                "{} {serial}: {}",
                t.s("herr.usb_key"),
                device_error(t, error)
            )
        }
        H::Licence(_) => t.s("herr.licence_invalid").into(),
        H::DeviceNotAttached(s) => t.f("herr.device_not_attached", &[s]),
        H::DeviceNotBlank(s) => t.f("herr.device_not_blank", &[s]),
        H::ActivationInProgress(s) => t.f("herr.activation_in_progress", &[s]),
        H::Store(_) => t.s("herr.storage").into(),
        H::CentreNotConfigured => t.s("herr.centre_not_configured").into(),
        H::CentreUnreachable { url, .. } => t.f("herr.centre_unreachable", &[url]),
        H::CentreUnverified { url, .. } => t.f("herr.centre_unverified", &[url]),
        H::CentreRefused { reason, .. } => match centre_reason(t, reason) {
            Some(words) => format!("{} {words}", t.s("herr.centre_refused")),
            None => t.s("herr.centre_refused").into(),
        },
        H::CentreBusy { .. } => t.s("centre.busy").into(),
        H::Internal(_) => t.s("err.internal").into(),
        H::NotImplemented(_) => t.s("herr.not_supported").into(),
        H::Invalid(_)
        | H::NoMatchingKey(_)
        | H::NoFreeLicence(_)
        | H::SessionRestricted { .. }
        | H::TooManySessions(_)
        | H::TooManyConnections(_) => t.s("herr.refused").into(),
    }
}

/// The activation throttle's refusal in words.
pub fn throttled(t: Tr, r: &Refused) -> Message {
    match r {
        Refused::Locked { retry_after, .. } => {
            Message::error(t.f("activation.throttled", &[&retry_after.as_secs().max(1)]))
        }
        Refused::Full => Message::error(t.s("activation.throttled_full")),
    }
}

/// Why a key cannot hand out a licence now, in words; `None` when it can. The host decides
/// ([`LicenceEntry::unusable_reason`]); this only says it.
pub fn problem(t: Tr, e: &LicenceEntry, now: crate::time::Timestamp) -> Option<String> {
    e.unusable_reason(now)?;
    if e.kind == KeyKind::Usb && !e.attached {
        return Some(t.s("problem.not_attached").into());
    }
    if e.open_error.is_some() {
        return Some(t.s("problem.not_workable").into());
    }
    let Some(terms) = &e.terms else {
        return Some(t.s("problem.blank").into());
    };
    let v = terms.validity(now);
    if v.expired {
        return Some(t.s("problem.expired").into());
    }
    if v.not_yet_valid {
        return Some(t.s("problem.not_yet_valid").into());
    }
    Some(t.s("problem.unusable").into())
}

/// A USB key's state in a word or two; its error, if any, is shown beside it.
pub fn device_state(t: Tr, d: &DeviceRow) -> String {
    match (&d.error, d.attached, d.blank, d.key_no) {
        (_, false, _, _) => t.s("devices.unplugged").into(),
        (Some(_), true, _, _) => t.s("devices.not_workable").into(),
        (None, true, true, _) => t.s("devices.blank").into(),
        (None, true, false, Some(k)) => t.f("devices.ready_with", &[&k]),
        (None, true, false, None) => t.s("devices.ready").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::i18n::Lang;

    #[test]
    fn the_centres_refusals_read_as_words_in_both_languages() {
        for lang in [Lang::En, Lang::Ru] {
            let t = Tr { lang };
            let e = HostError::CentreRefused {
                status: 404,
                reason: "unknown_code".into(),
                message: "unknown activation code".into(),
            };
            let m = Message::host(t, &e);
            assert!(!m.ok && !m.text.contains("unknown_code"), "{m:?}");
            assert_eq!(
                m.detail.as_deref(),
                Some("the licensing centre refused: unknown activation code")
            );
            assert!(m.outcome().contains("unknown activation code"));
            let m = Message::host(
                t,
                &HostError::Memory(MemoryError::WrongPassword { attempts_left: 4 }),
            );
            assert!(m.text.contains('4'), "{m:?}");
        }
        let en = Message::host(Tr { lang: Lang::En }, &HostError::KeyNotFound(5));
        let ru = Message::host(Tr { lang: Lang::Ru }, &HostError::KeyNotFound(5));
        assert_ne!(en.text, ru.text);
    }
}
