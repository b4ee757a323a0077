//! Throughput of the host's hot paths, printed as figures: `cargo bench`.
//! (Under `cargo test` this target only checks that it builds.)

use keybridge::crypto::{HostResponseKey, KeyPair, LicenceKey};
use keybridge::hal::sim::SimBus;
use keybridge::hal::KeyDevice;
use keybridge::host::{Host, HostOptions, SessionRequest};
use keybridge::keymem::LockPolicy;
use keybridge::licence::{Binding, LicenceTerms, TrustStore};
use std::time::{Duration, Instant};

fn rate(name: &str, n: u32, f: impl FnMut(u32)) {
    let mut f = f;
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    let e = t.elapsed();
    println!(
        "{name:<48} {:>10.0} /s   ({:.3} ms each, n={n})",
        f64::from(n) / e.as_secs_f64(),
        e.as_secs_f64() * 1000.0 / f64::from(n)
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let signer = HostResponseKey::new(KeyPair::generate().expect("key"));
    let body = vec![b'x'; 4096];
    rate("response signature (RSA-2048, 4 KiB body)", 2000, |_| {
        signer
            .sign_response(b"20240101120000", &body)
            .expect("sign");
    });

    let dir = tempfile::tempdir().expect("tmp");
    let bus = SimBus::new(dir.path(), LockPolicy::default());
    let mut dev = bus.plug(1).expect("plug");
    let value = "v".repeat(3000);
    // A different value each time: an unchanged one is not committed (no fsync).
    rate("sim key: memory write 3 KB (protocol + fsync)", 300, |i| {
        dev.write_memory("", &format!("{i}{value}")).expect("write");
    });
    rate("sim key: memory read 3 KB (protocol)", 2000, |_| {
        dev.read_memory("").expect("read");
    });

    let rt = tokio::runtime::Runtime::new().expect("rt");
    let data = tempfile::tempdir().expect("tmp");
    let centre = LicenceKey::new(KeyPair::generate().expect("key"));
    let mut trust = TrustStore::default();
    trust.add(centre.public_key().clone());
    let host = Host::new(HostOptions {
        data_dir: data.path().into(),
        computer_id: "0".repeat(40),
        trust,
        session_lease: keybridge::host::LeasePolicy {
            session: Duration::from_secs(600),
            ..Default::default()
        },
        memory_policy: LockPolicy::default(),
        centre_url: None,
        centre_ca_file: None,
        centre_response_key: None,
    })
    .expect("host");
    let terms = LicenceTerms::new(7_131_766, "672B", 5, Binding::Computer("0".repeat(40)));
    let doc = keybridge::licence::sign(&terms, &centre).expect("sign");
    rt.block_on(host.install_licence(doc)).expect("install");
    let req = |id: String| SessionRequest {
        key_id: "672B".into(),
        client_session_id: id,
        app_name: "bench".into(),
        user_name: None,
        session_started: None,
        computer_name: None,
        info_base_name: None,
        access_code: None,
        key_no: Some(7_131_766),
        itn: None,
        iec: None,
        peer_ip: [127, 0, 0, 1].into(),
        client_version: None,
    };
    for i in 0..5 {
        host.open_session(req(format!("c{i}"))).expect("open");
    }
    rate("session renew (existing ClientSessionID)", 20_000, |i| {
        host.open_session(req(format!("c{}", i % 5)))
            .expect("renew");
    });
    rate("session refused (all licences held)", 20_000, |i| {
        assert!(host.open_session(req(format!("x{i}"))).is_err());
    });
}
