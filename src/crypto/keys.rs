//! One key, one purpose. Each type here holds one private key and signs one kind of message;
//! nothing else in the crate can sign. The table in `docs/security.md` says who holds which.

use super::label::Label;
use super::{CryptoError, KeyPair, PublicKey};

macro_rules! purpose_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(KeyPair);

        impl $name {
            pub fn new(key: KeyPair) -> Self {
                $name(key)
            }

            pub fn public_key(&self) -> &PublicKey {
                self.0.public_key()
            }
        }
    };
}

purpose_key!(
    /// The centre's licence-issuing key: signs licence documents and nothing else.
    LicenceKey
);
purpose_key!(
    /// The centre's response key: signs the centre's HTTP answers and nothing else.
    CentreResponseKey
);
purpose_key!(
    /// A host's response key: signs `/api` answers exactly as the СЛК spec defines them.
    HostResponseKey
);
purpose_key!(
    /// A USB key manufacturer's key: certifies each key's own device key at manufacture.
    FactoryKey
);
purpose_key!(
    /// The key inside one USB key: answers attestation challenges.
    DeviceKey
);

impl LicenceKey {
    /// Signs a licence payload (the exact JSON bytes the licence file carries).
    pub fn sign_licence(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.0.sign_labelled(Label::Licence, &[payload])
    }
}

/// What a centre response signature covers: the label, the request's `Licence-QueryID` (empty
/// when it sent none), the status code and the body as sent.
pub fn centre_response_fields<'a>(
    query_id: &'a [u8],
    status: &'a [u8; 2],
    body: &'a [u8],
) -> [&'a [u8]; 3] {
    [query_id, status, body]
}

impl CentreResponseKey {
    pub fn sign_response(
        &self,
        query_id: &[u8],
        status: u16,
        body: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let s = status.to_be_bytes();
        self.0.sign_labelled(
            Label::CentreResponse,
            &centre_response_fields(query_id, &s, body),
        )
    }
}

impl PublicKey {
    /// Checks a centre response signature (see [`CentreResponseKey::sign_response`]).
    pub fn verify_centre_response(
        &self,
        query_id: &[u8],
        status: u16,
        body: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        let s = status.to_be_bytes();
        self.verify_labelled(
            Label::CentreResponse,
            &centre_response_fields(query_id, &s, body),
            signature,
        )
    }
}

impl HostResponseKey {
    /// Signs `QueryID ‖ body`, the bytes 1C clients check (spec §1.3; `docs/signing.md`).
    /// No label: clients expect exactly these bytes. It is safe because this key signs
    /// nothing else, the QueryID is limited to a short safe alphabet, and no body is empty
    /// (`web::signing` enforces both before calling this).
    pub fn sign_response(&self, query_id: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut m = Vec::with_capacity(query_id.len() + body.len());
        m.extend_from_slice(query_id);
        m.extend_from_slice(body);
        self.0.sign_raw(&m)
    }
}

/// The manufacturer's certificate message for a USB key: `"keybridge-device/1" ‖ serial
/// (u64 LE) ‖ device public key (DER)`. Its layout predates [`Label`]'s and is kept so keys
/// already made stay valid; its own fixed label still sets it apart from every other kind.
pub fn device_certificate_message(serial: u64, device_key_der: &[u8]) -> Vec<u8> {
    [
        b"keybridge-device/1".as_slice(),
        &serial.to_le_bytes(),
        device_key_der,
    ]
    .concat()
}

impl FactoryKey {
    pub fn certify(&self, serial: u64, device_key_der: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.0
            .sign_raw(&device_certificate_message(serial, device_key_der))
    }
}

/// The fields of a USB key's attestation answer: challenge, serial (u64 LE), blank (1 byte).
pub fn attestation_fields<'a>(
    challenge: &'a [u8; 32],
    serial: &'a [u8; 8],
    blank: &'a [u8; 1],
) -> [&'a [u8]; 3] {
    [challenge, serial, blank]
}

impl DeviceKey {
    /// Answers an attestation challenge: the key says which serial it is and whether it is
    /// blank, for this challenge only.
    pub fn attest(
        &self,
        challenge: &[u8; 32],
        serial: u64,
        blank: bool,
    ) -> Result<Vec<u8>, CryptoError> {
        let (s, b) = (serial.to_le_bytes(), [u8::from(blank)]);
        self.0.sign_labelled(
            Label::DeviceAttestation,
            &attestation_fields(challenge, &s, &b),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_of_one_purpose_is_no_other() {
        let pair = KeyPair::generate().expect("key");
        let pem = pair.to_pkcs8_pem().expect("pem");
        let public = pair.public_key().clone();
        let licence = LicenceKey::new(pair);
        let response = CentreResponseKey::new(KeyPair::from_pkcs8_pem(&pem).expect("key"));
        let host = HostResponseKey::new(KeyPair::from_pkcs8_pem(&pem).expect("key"));
        // The same key under three purposes (never done in practice) still cannot be
        // confused: each signature verifies only as what it is.
        let l = licence.sign_licence(b"{}").expect("sign");
        assert!(public.verify_centre_response(b"", 200, b"{}", &l).is_err());
        assert!(public.verify_raw(b"{}", &l).is_err());
        let r = response.sign_response(b"q", 200, b"{}").expect("sign");
        assert!(public.verify_centre_response(b"q", 200, b"{}", &r).is_ok());
        assert!(public.verify_centre_response(b"q", 404, b"{}", &r).is_err());
        assert!(public
            .verify_labelled(Label::Licence, &[b"{}"], &r)
            .is_err());
        let h = host.sign_response(b"q", b"{}").expect("sign");
        assert!(public.verify_raw(b"q{}", &h).is_ok());
        assert!(public
            .verify_labelled(Label::Licence, &[b"q{}"], &h)
            .is_err());
    }
}
