//! Purpose labels (domain separation). A labelled message is
//! `label ‖ 0x00 ‖ (u32-BE length ‖ field)…`: the label names what is signed and its format
//! version; the NUL ends it (no label is a prefix of another), and the length prefixes keep
//! the split between fields unambiguous, so one signed message can never be read as another.

/// Every kind of message our own keys sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// A licence document's payload, signed by a centre's licence key.
    Licence,
    /// An HTTP answer of the centre (QueryID, status, body), signed by its response key.
    CentreResponse,
    /// The challenge an offline activation request binds a USB key's proof to.
    OfflineRequest,
    /// A USB key's answer to an attestation challenge, signed by the key's own device key.
    DeviceAttestation,
}

impl Label {
    pub const fn as_str(self) -> &'static str {
        match self {
            Label::Licence => "keybridge-licence/2",
            Label::CentreResponse => "keybridge-centre-response/1",
            Label::OfflineRequest => "keybridge-offline-request/1",
            Label::DeviceAttestation => "keybridge-attest/2",
        }
    }
}

/// The bytes a signature of kind `label` over `fields` covers.
pub fn labelled(label: Label, fields: &[&[u8]]) -> Vec<u8> {
    let tag = label.as_str().as_bytes();
    let len: usize = fields.iter().map(|f| f.len() + 4).sum();
    let mut m = Vec::with_capacity(tag.len() + 1 + len);
    m.extend_from_slice(tag);
    m.push(0);
    for f in fields {
        // Fields are bounded far below 4 GiB by every caller (request and body limits).
        let n = u32::try_from(f.len()).unwrap_or(u32::MAX);
        m.extend_from_slice(&n.to_be_bytes());
        m.extend_from_slice(f);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_be_shifted() {
        assert_ne!(
            labelled(Label::CentreResponse, &[b"ab", b"c"]),
            labelled(Label::CentreResponse, &[b"a", b"bc"])
        );
        assert_ne!(
            labelled(Label::Licence, &[b"x"]),
            labelled(Label::CentreResponse, &[b"x"])
        );
    }
}
