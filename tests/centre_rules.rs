//! The centre's rules on both databases it supports: SQLite always; PostgreSQL on the server
//! that `scripts/test` starts (URL in KEYBRIDGE_TEST_POSTGRES).

mod common;

use keybridge::centre::{
    ActivationCode, ActivationRequest, Centre, CentreError, CodeSpec, DeviceChallenge,
    LicenceProof, Product, RestoreRequest,
};
use keybridge::crypto::{KeyPair, LicenceKey};
use keybridge::licence::{self, Binding, Flags, Iec, Itn, TrustStore};

fn signer() -> LicenceKey {
    LicenceKey::new(KeyPair::generate().expect("key"))
}

fn product() -> Product {
    Product {
        key_id: "672B".into(),
        product_name: "Тестовая серия".into(),
        article: "1111111111111".into(),
        article_name: "Test".into(),
        product_version: 2,
        product_version_name: Some("2.0".into()),
        flags: Flags(0b11),
        first_key_no: None,
    }
}

fn computer(c: char) -> Binding {
    Binding::Computer(c.to_string().repeat(40))
}

fn req(code: &ActivationCode, binding: Binding) -> ActivationRequest {
    ActivationRequest {
        code: code.clone(),
        itn: None,
        iec: None,
        binding,
        device_proof: None,
        challenge: DeviceChallenge::None,
    }
}

fn itn(s: &str) -> Option<Itn> {
    Some(Itn::try_from(s.to_string()).expect("itn"))
}

fn iec(s: &str) -> Option<Iec> {
    Some(Iec::try_from(s.to_string()).expect("iec"))
}

fn proof(
    key_no: u64,
    code: &ActivationCode,
    itn_: Option<&str>,
    iec_: Option<&str>,
) -> LicenceProof {
    LicenceProof {
        key_id: "672B".into(),
        key_no,
        code: code.clone(),
        itn: itn_.and_then(itn),
        iec: iec_.and_then(iec),
    }
}

fn restore(key_no: u64, code: &ActivationCode, itn_: &str, binding: Binding) -> RestoreRequest {
    RestoreRequest {
        key_id: "672B".into(),
        key_no,
        code: code.clone(),
        itn: itn(itn_),
        iec: None,
        binding,
    }
}

async fn scenario(url: &str) {
    let centre = std::sync::Arc::new(Centre::open(url, signer()).await.expect("open"));
    let mut trust = TrustStore::default();
    trust.add(centre.licence_key().public_key().clone());

    centre.add_product(&product()).await.expect("product");
    assert!(matches!(
        centre.add_product(&product()).await,
        Err(CentreError::ProductExists(_))
    ));
    let mut spec = CodeSpec::new("672B", 5);
    spec.period_days = 365;
    let code = centre.issue_code(&spec).await.expect("code");

    // Activation gives a signed licence the host can open, with centre-assigned numbers.
    let (terms, doc) = centre
        .activate(&req(&code, computer('A')))
        .await
        .expect("activate");
    assert_eq!(
        (terms.key_no, terms.reg_no, terms.licence_count),
        (1_000_001, 1, 5)
    );
    assert_eq!(terms.product_version_name.as_deref(), Some("2.0"));
    assert_eq!(terms.activation_code, code.to_string());
    let opened = licence::open(&doc, &trust).expect("open");
    assert_eq!(opened, terms);
    opened.check_binding(&computer('A')).expect("binding");
    assert!(opened.validity(keybridge::time::now()).days_left == Some(365));

    // Same binding again: the same licence, byte for byte. Another binding: refused.
    let (_, again) = centre
        .activate(&req(&code, computer('A')))
        .await
        .expect("again");
    assert_eq!(again, doc);
    assert!(matches!(
        centre.activate(&req(&code, computer('B'))).await,
        Err(CentreError::AlreadyActivated)
    ));

    // KeyNo and RegNo are unique per series.
    let code2 = centre
        .issue_code(&CodeSpec::new("672B", 1))
        .await
        .expect("code");
    let (t2, _) = centre
        .activate(&req(&code2, computer('Z')))
        .await
        .expect("activate");
    assert_eq!((t2.key_no, t2.reg_no), (1_000_002, 2));

    // A code reserved for an ITN refuses any other ITN, and none.
    let mut reserved = CodeSpec::new("672B", 1);
    reserved.itn = Some(Itn::try_from("7700000000".to_string()).expect("itn"));
    let code3 = centre.issue_code(&reserved).await.expect("code");
    let mut r = req(&code3, computer('C'));
    assert!(matches!(
        centre.activate(&r).await,
        Err(CentreError::ItnMismatch)
    ));
    r.itn = Some(Itn::try_from("7700000001".to_string()).expect("itn"));
    assert!(matches!(
        centre.activate(&r).await,
        Err(CentreError::ItnMismatch)
    ));
    r.itn = reserved.itn.clone();
    let (t3, _) = centre.activate(&r).await.expect("reserved");
    assert_eq!(t3.itn, reserved.itn);

    // Unknown codes and unknown products.
    let stranger = ActivationCode::generate();
    assert!(matches!(
        centre.activate(&req(&stranger, computer('A'))).await,
        Err(CentreError::UnknownCode)
    ));
    assert!(matches!(
        centre.issue_code(&CodeSpec::new("FFFF", 1)).await,
        Err(CentreError::UnknownProduct(_))
    ));

    // Restore onto a new binding, within the limit, for whoever proves ownership: the code
    // and the ITN (and IEC) it was activated for.
    let mut once = CodeSpec::new("672B", 2);
    once.restore_limit = 1;
    let code4 = centre.issue_code(&once).await.expect("code");
    let (t4, _) = centre
        .activate(&ActivationRequest {
            itn: itn("7712345678"),
            iec: iec("771201001"),
            ..req(&code4, computer('D'))
        })
        .await
        .expect("activate");
    let with_iec = |binding| RestoreRequest {
        iec: iec("771201001"),
        ..restore(t4.key_no, &code4, "7712345678", binding)
    };
    // Each missing or wrong part of the proof reads exactly like an unknown licence.
    for wrong in [
        restore(t4.key_no, &code4, "7712345678", computer('E')), // IEC left out
        RestoreRequest {
            itn: itn("7712345679"),
            ..with_iec(computer('E'))
        },
        RestoreRequest {
            itn: None,
            ..with_iec(computer('E'))
        },
        RestoreRequest {
            iec: iec("771201002"),
            ..with_iec(computer('E'))
        },
        RestoreRequest {
            code: code.clone(),
            ..with_iec(computer('E'))
        },
        RestoreRequest {
            key_no: 42,
            ..with_iec(computer('E'))
        },
    ] {
        assert!(matches!(
            centre.restore(&wrong).await,
            Err(CentreError::NotProven)
        ));
    }
    let (moved, doc4) = centre
        .restore(&with_iec(computer('E')))
        .await
        .expect("restore");
    assert!(moved.recovered);
    assert_eq!(moved.binding, computer('E'));
    assert!(moved.update_date.is_some());
    licence::open(&doc4, &trust)
        .expect("open")
        .check_binding(&computer('E'))
        .expect("binding");
    // Restoring to where it already is costs nothing; moving again exceeds the limit.
    centre
        .restore(&with_iec(computer('E')))
        .await
        .expect("same binding");
    assert!(matches!(
        centre.restore(&with_iec(computer('F'))).await,
        Err(CentreError::RestoreLimit { .. })
    ));
    // Never onto a USB key by restore.
    assert!(matches!(
        centre.restore(&with_iec(Binding::Device(7))).await,
        Err(CentreError::Device(_))
    ));
    // A licence activated without an ITN has nothing to prove ownership with beyond its
    // code: the vendor moves it.
    assert!(matches!(
        centre
            .restore(&restore(terms.key_no, &code, "7712345678", computer('Q')))
            .await,
        Err(CentreError::RestoreNeedsVendor { .. })
    ));

    // The current version needs the code it was issued from, with the ITN and IEC it was
    // activated for; anything wrong, and an unknown licence, give the same refusal.
    let (ok_itn, ok_iec) = (Some("7712345678"), Some("771201001"));
    let (now4, _) = centre
        .current(&proof(t4.key_no, &code4, ok_itn, ok_iec))
        .await
        .expect("current");
    assert_eq!(now4.binding, computer('E'));
    let (first, _) = centre
        .current(&proof(terms.key_no, &code, None, None))
        .await
        .expect("no ITN: the code alone");
    assert_eq!(first.key_no, terms.key_no);
    for p in [
        proof(42, &code4, ok_itn, ok_iec),
        proof(t4.key_no, &code, ok_itn, ok_iec),
        proof(t4.key_no, &stranger, ok_itn, ok_iec),
        proof(t4.key_no, &code4, None, ok_iec),
        proof(t4.key_no, &code4, ok_itn, None),
        proof(t4.key_no, &code4, Some("7712345679"), ok_iec),
        proof(terms.key_no, &code, ok_itn, None),
    ] {
        assert!(matches!(
            centre.current(&p).await,
            Err(CentreError::NotProven)
        ));
    }

    // The vendor's listing.
    let codes = centre.list_codes().await.expect("list");
    assert_eq!(codes.len(), 4);
    let c4 = codes
        .iter()
        .find(|c| c.code == code4.to_string())
        .expect("code4");
    let a = c4.activation.as_ref().expect("activated");
    assert_eq!((a.restores, a.binding.clone()), (1, computer('E')));

    // Racing activations of one code: one binding wins, the others are refused.
    let code5 = centre
        .issue_code(&CodeSpec::new("672B", 1))
        .await
        .expect("code");
    let mut tasks = Vec::new();
    for i in 0..12u64 {
        let (centre, code5) = (centre.clone(), code5.clone());
        tasks.push(tokio::spawn(async move {
            centre
                .activate(&req(&code5, Binding::Computer(format!("{:040}", i % 3))))
                .await
        }));
    }
    let mut winners = std::collections::HashSet::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok((t, _)) => {
                winners.insert(t.binding);
            }
            Err(CentreError::AlreadyActivated) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "one code, one binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_on_sqlite() {
    let d = tempfile::tempdir().expect("tmp");
    scenario(&keybridge::centre::sqlite_url(&d.path().join("centre.db"))).await;
    // Reopening runs no migration twice and keeps the data.
    let c = Centre::open(
        &keybridge::centre::sqlite_url(&d.path().join("centre.db")),
        signer(),
    )
    .await
    .expect("reopen");
    assert_eq!(c.list_codes().await.expect("list").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_on_postgres() {
    let Some(url) = common::fresh_postgres("keybridge_rules").await else {
        return;
    };
    scenario(&url).await;
}

/// A USB key binding needs the key's proof: genuine (certified by a trusted manufacturer),
/// blank, for this code and this serial. Driven through real simulated keys and the protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_bindings_need_a_genuine_blank() {
    use keybridge::hal::sim::SimBus;
    use keybridge::hal::KeyDevice;
    let d = tempfile::tempdir().expect("tmp");
    let sim = SimBus::new(
        &d.path().join("sim"),
        keybridge::keymem::LockPolicy::default(),
    );
    let mut blank = sim.plug(900).expect("plug");
    let mut keyed = sim.plug(901).expect("plug");
    keyed.install_licence(b"something").expect("install");
    let manufacturers = SimBus::factory_public_dir(&d.path().join("sim"));
    let centre = Centre::open(
        &keybridge::centre::sqlite_url(&d.path().join("c.db")),
        signer(),
    )
    .await
    .expect("open")
    .with_manufacturers(manufacturers.clone());
    centre.add_product(&product()).await.expect("product");
    let code = centre
        .issue_code(&CodeSpec::new("672B", 1))
        .await
        .expect("code");
    let nonce =
        |serial| keybridge::hal::attest::offline_challenge(&code.to_string(), None, None, serial);
    let with_proof = |serial, proof| ActivationRequest {
        device_proof: proof,
        challenge: DeviceChallenge::RequestBound,
        ..req(&code, Binding::Device(serial))
    };
    let refused = |r: Result<_, CentreError>| match r {
        Err(CentreError::Device(m)) => m,
        Err(e) => panic!("unexpected: {e}"),
        Ok(_) => panic!("accepted"),
    };

    // No proof; a proof for another code (nonce); another key's proof; a keyed key's proof.
    refused(centre.activate(&with_proof(900, None)).await);
    let stale = blank
        .attest(&keybridge::hal::attest::offline_challenge(
            "other", None, None, 900,
        ))
        .expect("attest");
    assert!(
        refused(centre.activate(&with_proof(900, Some(stale))).await).contains("does not verify")
    );
    let other = keyed.attest(&nonce(901)).expect("attest");
    assert!(
        refused(centre.activate(&with_proof(900, Some(other.clone()))).await).contains("not 900")
    );
    assert!(refused(centre.activate(&with_proof(901, Some(other))).await).contains("not blank"));
    // A key from an untrusted factory.
    let d2 = tempfile::tempdir().expect("tmp");
    let fake_bus = SimBus::new(d2.path(), keybridge::keymem::LockPolicy::default());
    let mut fake = fake_bus.plug(900).expect("plug");
    let forged = fake.attest(&nonce(900)).expect("attest");
    assert!(
        refused(centre.activate(&with_proof(900, Some(forged))).await)
            .contains("trusted manufacturer")
    );

    // The genuine blank: accepted.
    let proof = blank.attest(&nonce(900)).expect("attest");
    let (t, _) = centre
        .activate(&with_proof(900, Some(proof)))
        .await
        .expect("activate");
    assert_eq!(t.binding, Binding::Device(900));
    assert!(manufacturers.join("sim-factory.pem").exists());
}

/// Online, a USB key's proof answers a challenge the centre issued, which is used once and
/// expires; outstanding challenges are capped. Driven through a real simulated key.
async fn challenges(url: &str, sim_dir: &std::path::Path) {
    use keybridge::hal::sim::SimBus;
    use keybridge::hal::KeyDevice;
    let sim = SimBus::new(sim_dir, keybridge::keymem::LockPolicy::default());
    let mut blank = sim.plug(910).expect("plug");
    let centre = std::sync::Arc::new(
        Centre::open(url, signer())
            .await
            .expect("open")
            .with_manufacturers(SimBus::factory_public_dir(sim_dir))
            .with_challenge_limits(std::time::Duration::from_secs(60), 5),
    );
    centre.add_product(&product()).await.expect("product");
    let online = |code: &ActivationCode, proof, challenge| ActivationRequest {
        device_proof: Some(proof),
        challenge,
        ..req(code, Binding::Device(910))
    };
    let refused = |r: Result<_, CentreError>| match r {
        Err(CentreError::Challenge(m)) => m,
        Err(e) => panic!("unexpected: {e}"),
        Ok(_) => panic!("accepted"),
    };

    // No challenge at all: refused, however good the proof.
    let code = centre
        .issue_code(&CodeSpec::new("672B", 1))
        .await
        .expect("code");
    let p = blank
        .attest(&keybridge::hal::attest::offline_challenge(
            &code.to_string(),
            None,
            None,
            910,
        ))
        .expect("attest");
    refused(
        centre
            .activate(&online(&code, p, DeviceChallenge::None))
            .await,
    );
    // A challenge the centre never issued (the request-bound one, say): refused.
    let bound = keybridge::hal::attest::offline_challenge(&code.to_string(), None, None, 910);
    let p = blank.attest(&bound).expect("attest");
    assert!(refused(
        centre
            .activate(&online(&code, p, DeviceChallenge::Issued(bound)))
            .await
    )
    .contains("unknown, already used"));

    let fresh = || async {
        centre
            .issue_code(&CodeSpec::new("672B", 1))
            .await
            .expect("code")
    };

    // No challenge without a code the centre issued: a failed proof.
    let unknown = ActivationCode::generate();
    assert!(matches!(
        centre.issue_challenge(&unknown).await,
        Err(ref e @ CentreError::NoChallenge) if e.is_failed_proof()
    ));

    // A challenge issued for one code does not serve another: refused, and not used up.
    let code_b = fresh().await;
    let (c, expires) = centre.issue_challenge(&code).await.expect("challenge");
    assert!(expires > keybridge::time::now());
    let p = blank.attest(&c).expect("attest");
    assert!(refused(
        centre
            .activate(&online(&code_b, p.clone(), DeviceChallenge::Issued(c)))
            .await
    )
    .contains("issued for another activation code"));
    // For its own code: accepted once. The same challenge and proof again — for the same
    // code or another — are refused: a recorded proof cannot be replayed.
    let (t, _) = centre
        .activate(&online(&code, p.clone(), DeviceChallenge::Issued(c)))
        .await
        .expect("activate");
    assert_eq!(t.binding, Binding::Device(910));
    refused(
        centre
            .activate(&online(&code, p.clone(), DeviceChallenge::Issued(c)))
            .await,
    );
    refused(
        centre
            .activate(&online(&code_b, p, DeviceChallenge::Issued(c)))
            .await,
    );
    // An activated code still gets challenges (a key whose activation was cut off fetches
    // its licence with one), but only the key it was activated for gets the licence: that
    // key again (still blank) is answered with the same licence, another blank is refused.
    let (c2, _) = centre
        .issue_challenge(&code)
        .await
        .expect("challenge again");
    let again = centre
        .activate(&online(
            &code,
            blank.attest(&c2).expect("attest"),
            DeviceChallenge::Issued(c2),
        ))
        .await
        .expect("the same key again");
    assert_eq!(
        (again.0.key_no, again.0.binding),
        (t.key_no, Binding::Device(910))
    );
    let mut other = sim.plug(911).expect("plug");
    let (c3, _) = centre.issue_challenge(&code).await.expect("challenge");
    let mut req = online(
        &code,
        other.attest(&c3).expect("attest"),
        DeviceChallenge::Issued(c3),
    );
    req.binding = Binding::Device(911);
    assert!(matches!(
        centre.activate(&req).await,
        Err(CentreError::AlreadyActivated)
    ));

    // Many parallel uses of one challenge (its code, same proof): exactly one wins.
    let code_p = fresh().await;
    let (c, _) = centre.issue_challenge(&code_p).await.expect("challenge");
    let p = blank.attest(&c).expect("attest");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (centre, r) = (
            centre.clone(),
            online(&code_p, p.clone(), DeviceChallenge::Issued(c)),
        );
        tasks.push(tokio::spawn(async move { centre.activate(&r).await }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => won += 1,
            Err(CentreError::Challenge(_)) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(won, 1, "one challenge, one activation");

    // An expired challenge is refused; expired ones are purged, so they never fill the
    // table. (A second centre on the same database, with a short lifetime.)
    let short = Centre::open(url, signer())
        .await
        .expect("open")
        .with_manufacturers(SimBus::factory_public_dir(sim_dir))
        .with_challenge_limits(std::time::Duration::from_millis(200), 5);
    let code4 = fresh().await;
    let (c, _) = short.issue_challenge(&code4).await.expect("challenge");
    let p = blank.attest(&c).expect("attest");
    for _ in 0..2 {
        short.issue_challenge(&code4).await.expect("challenge");
    }
    let code5 = fresh().await;
    for _ in 0..2 {
        short.issue_challenge(&code5).await.expect("challenge");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(refused(
        short
            .activate(&online(&code4, p, DeviceChallenge::Issued(c)))
            .await
    )
    .contains("expired"));
    short
        .issue_challenge(&code4)
        .await
        .expect("expired ones purged");
    assert_eq!(short.outstanding_challenges().await.expect("count"), 1);

    // At most 3 outstanding for one code: the fourth is refused (429 over HTTP) with the
    // time until its oldest expires; other codes are not affected. (`short`'s last one
    // expires first, so the count below is exact.)
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let code6 = fresh().await;
    for _ in 0..3 {
        centre.issue_challenge(&code6).await.expect("challenge");
    }
    match centre.issue_challenge(&code6).await {
        Err(CentreError::ChallengesForCode { retry_after }) => {
            assert!((1..=60).contains(&retry_after), "{retry_after}")
        }
        other => panic!("unexpected: {:?}", other.map(|_| ())),
    }
    // At most 5 outstanding in all (3 + 2): the sixth is refused (503 over HTTP) while they
    // are valid, though its code has room.
    let code7 = fresh().await;
    for _ in 0..2 {
        centre.issue_challenge(&code7).await.expect("challenge");
    }
    assert!(matches!(
        centre.issue_challenge(&code7).await,
        Err(CentreError::ChallengesFull)
    ));
    assert_eq!(centre.outstanding_challenges().await.expect("count"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenges_on_sqlite() {
    let d = tempfile::tempdir().expect("tmp");
    challenges(
        &keybridge::centre::sqlite_url(&d.path().join("c.db")),
        &d.path().join("sim"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenges_on_postgres() {
    let Some(url) = common::fresh_postgres("keybridge_challenges").await else {
        return;
    };
    let d = tempfile::tempdir().expect("tmp");
    challenges(&url, &d.path().join("sim")).await;
}
