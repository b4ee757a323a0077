//! Certificates made at test time with rcgen: a test CA and a server certificate it issued
//! for `localhost` and 127.0.0.1. Nothing is committed; the files live in a temporary
//! directory that goes with the value.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;

pub struct Pki {
    _tmp: tempfile::TempDir,
    /// The CA certificate (PEM), what a client must trust.
    pub ca_pem: String,
    pub ca: PathBuf,
    /// The server's certificate chain (leaf, then the CA) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A private key that belongs to no certificate here.
    pub other_key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "keybridge test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("server certificate");

        let dir = tmp.path();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write");
            p
        };
        let ca_pem = ca_cert.pem();
        Pki {
            ca: write("ca.pem", &ca_pem),
            cert: write("server.pem", &format!("{}{}", leaf_cert.pem(), ca_pem)),
            key: write("server-key.pem", &leaf_key.serialize_pem()),
            other_key: write(
                "other-key.pem",
                &KeyPair::generate().expect("key").serialize_pem(),
            ),
            ca_pem,
            _tmp: tmp,
        }
    }
}
