//! Download links: `…/releases/download/{token}/{file name}`, where the token says which file
//! of which release, until when, for which key (a keyed hash, never the key) and whether to
//! count the download, and is authenticated with HMAC-SHA-256 under a key every centre
//! sharing the database shares. A link cannot be made for another file, extended, or moved
//! to another key without that key; it carries nothing a customer did not already know.

use base64::Engine;

/// Payload: release id (8), file position (2), expiry in Unix seconds (8), key tag (16),
/// count flag (1); then a 16-byte MAC.
const PAYLOAD: usize = 8 + 2 + 8 + 16 + 1;
const MAC: usize = 16;
/// Domain separation: a MAC under this key is a download link and nothing else.
const LINK_LABEL: &[u8] = b"keybridge-release-link/1\0";
const TAG_LABEL: &[u8] = b"keybridge-release-key-tag/1\0";

/// The link key (HMAC-SHA-256).
pub struct LinkKey(aws_lc_rs::hmac::Key);

/// What a valid link grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub release_id: u64,
    pub position: u16,
    pub expires: u64,
    pub key_tag: [u8; 16],
    pub count: bool,
}

impl LinkKey {
    pub fn new(secret: &[u8]) -> LinkKey {
        LinkKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret,
        ))
    }

    /// The keyed hash that stands for a KEY in links and in download counts.
    pub fn key_tag(&self, key: &[u8]) -> [u8; 16] {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.0);
        ctx.update(TAG_LABEL);
        ctx.update(key);
        let mut t = [0u8; 16];
        t.copy_from_slice(&ctx.sign().as_ref()[..16]);
        t
    }

    pub fn make(&self, l: &Link) -> String {
        let mut p = Vec::with_capacity(PAYLOAD + MAC);
        p.extend_from_slice(&l.release_id.to_be_bytes());
        p.extend_from_slice(&l.position.to_be_bytes());
        p.extend_from_slice(&l.expires.to_be_bytes());
        p.extend_from_slice(&l.key_tag);
        p.push(u8::from(l.count));
        let mac = self.mac(&p);
        p.extend_from_slice(&mac[..MAC]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(p)
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.0);
        ctx.update(LINK_LABEL);
        ctx.update(payload);
        ctx.sign().as_ref().to_vec()
    }

    /// The link a token stands for, if its MAC holds and it has not expired at `now` (Unix
    /// seconds). `None` for anything else, without saying what.
    pub fn check(&self, token: &str, now: u64) -> Option<Link> {
        if token.len() > 128 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        if raw.len() != PAYLOAD + MAC {
            return None;
        }
        let (p, mac) = raw.split_at(PAYLOAD);
        let want = self.mac(p);
        // Constant time: a mismatch position says nothing about the right MAC.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..MAC], mac)) {
            return None;
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut key_tag = [0u8; 16];
        key_tag.copy_from_slice(&p[18..34]);
        let l = Link {
            release_id: u64_at(0),
            position: u16::from_be_bytes([p[8], p[9]]),
            expires: u64_at(10),
            key_tag,
            count: p[34] == 1,
        };
        (now <= l.expires).then_some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_hold_only_as_made_and_until_they_expire() {
        let k = LinkKey::new(b"0123456789abcdef0123456789abcdef");
        let l = Link {
            release_id: 7,
            position: 1,
            expires: 1000,
            key_tag: k.key_tag(b"12345678901234567890"),
            count: true,
        };
        let t = k.make(&l);
        assert_eq!(k.check(&t, 999), Some(l.clone()));
        assert_eq!(k.check(&t, 1000), Some(l.clone()));
        assert_eq!(k.check(&t, 1001), None, "expired");
        let other = LinkKey::new(b"another key, another centre.....");
        assert_eq!(other.check(&t, 0), None, "another centre's link");
        // Every single changed character is refused.
        let bytes = t.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(b).expect("ascii");
            assert_eq!(k.check(&s, 0), None, "changed at {i}");
        }
        assert_eq!(k.check("", 0), None);
        assert_eq!(k.check(&"A".repeat(500), 0), None);
        assert_ne!(k.key_tag(b"a"), k.key_tag(b"b"));
    }
}
