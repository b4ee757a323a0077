//! The licence file, as anyone who can put a file in the licence folder or on a USB key can
//! write it: the envelope and signature check (`licence::open`), the unverified claim the
//! host reads of superseded files (`licence::claim`), and the terms reader behind the
//! signature (`licence::parse_terms`), which the fuzzer reaches directly since it cannot sign.
#![no_main]

use keybridge::crypto::{KeyPair, LicenceKey};
use keybridge::licence::{self, Binding, LicenceError, TrustStore};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn trust() -> &'static TrustStore {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    TRUST.get_or_init(|| {
        let key = LicenceKey::new(KeyPair::generate().expect("key"));
        let mut t = TrustStore::default();
        t.add(key.public_key().clone());
        t
    })
}

fuzz_target!(|data: &[u8]| {
    match licence::open(data, trust()) {
        Ok(_) => panic!("bytes nobody signed were opened as a licence"),
        Err(e) => assert!(!matches!(e, LicenceError::Signing(_)), "{e:?}"),
    }
    let _ = licence::claim(data);
    match licence::parse_terms(data) {
        Ok(t) => {
            t.validate().expect("parse_terms validates");
            let again = serde_json::to_vec(&t).expect("JSON");
            assert_eq!(licence::parse_terms(&again).expect("reads back"), t);
            // Dates computed at any moment a clock could show, and the binding compared.
            for ms in [
                i64::MIN / 4,
                -1,
                0,
                1_700_000_000_000,
                253_402_300_799_999,
                i64::MAX / 4,
            ] {
                if let Some(now) = chrono::DateTime::from_timestamp_millis(ms) {
                    let _ = t.validity(now);
                }
            }
            let _ = t.check_binding(&Binding::Device(1));
            let _ = t.blank_key_no();
        }
        Err(e) => assert!(matches!(e, LicenceError::Invalid(_)), "{e:?}"),
    }
});
