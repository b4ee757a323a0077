//! Property tests (proptest) over everything that reads bytes a stranger chose: the host API's
//! request parameters, the licence file and its terms, the USB key's frames and reports, and
//! the account API's envelope. Two properties throughout: arbitrary input never panics and is
//! refused with a typed error that says what was wrong, and what the crate itself writes reads
//! back unchanged (encode → decode is the identity; decode accepts only what encode writes).
//!
//! The same parsers are fuzzed under `fuzz/` (docs/fuzzing.md); what the fuzzer finds is kept
//! here, as a case named after it.

use keybridge::api::error::ApiError;
use keybridge::api::params::{key_no, Params};
use keybridge::centre::accounts::envelope::{self, AccountError, Echo, PathForm};
use keybridge::centre::accounts::methods::METHODS;
use keybridge::crypto::{KeyPair, LicenceKey};
use keybridge::hal::protocol::command::{
    decode_attestation, decode_info, encode_attestation, encode_info, Reply, Request, Status,
};
use keybridge::hal::protocol::frame::{Frame, FrameError, MAX_PAYLOAD};
use keybridge::hal::protocol::report::{split, Reassembler, Report, REPORT_DATA, REPORT_SIZE};
use keybridge::hal::{
    Attestation, DeviceError, DeviceInfo, KeyDevice, ProtocolDevice, Transport, TransportError,
};
use keybridge::licence::{
    self, AccountTerms, Binding, Flags, Iec, Itn, KeyType, LicenceError, LicenceTerms,
    SessionLimit, TrustStore,
};
use keybridge::time::Timestamp;
use keybridge::web::signing::query_id_ok;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

// ----- shared strategies -----

/// Any text, control characters, surrogates' neighbours and astral planes included.
fn text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max).prop_map(String::from_iter)
}

/// Text of 1..=max characters.
fn text1(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 1..=max).prop_map(String::from_iter)
}

/// A query string: mostly the characters that mean something to the decoder, so the strict
/// percent-decoding is reached, plus anything at all.
fn query_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z%=&+0-9a-fA-F;#?]{0,40}",
        "(Key[A-Za-z]{0,4}|%[0-9a-fA-Fg]{0,2}|[=&+]|%[cdefCDEF][0-9a-fA-F]|[a-z]){0,12}",
        text(40),
    ]
}

/// A JSON value of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text(24).prop_map(Value::String),
        "[0-9]{0,25}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(text(8), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn is_bad_request(e: &ApiError) -> bool {
    e.status.as_u16() == 400 && e.exception == "EBadRequest" && !e.message.trim().is_empty()
}

// ----- the host API's request parameters -----

/// The parameters of `PUT /api/licences/{KeyNo}/memory` and of `POST /api/sessions`.
const MEMORY: &[&str] = &["Password", "Value", "NewPassword", "NewWritePassword"];

fn sessions() -> &'static [&'static str] {
    keybridge::api::SESSION_PARAMETERS
}

/// Values for some of `names`.
fn values_for(names: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(
        proptest::sample::select(names).prop_map(str::to_owned),
        text(30),
        0..=names.len(),
    )
}

/// `name=value&…`, each part form-urlencoded by the `url` crate (an encoder independent of the
/// host's decoder).
fn form_encode<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn json_body(values: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::to_vec(values).expect("JSON")
}

/// What `query_id_ok` should say, written from the rule in docs/signing.md.
fn query_id_oracle(q: &[u8]) -> bool {
    (1..=64).contains(&q.len())
        && q.iter()
            .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any query string and body is either understood or refused with a 400 that says why;
    /// what is understood names only the declared parameters.
    #[test]
    fn parameters_never_panic(
        q in proptest::option::of(query_like()),
        body in prop_oneof![
            vec(any::<u8>(), 0..64),
            json_value().prop_map(|v| serde_json::to_vec(&v).expect("JSON")),
            "[{}\\[\\]\":,0-9a-zA-Z \\\\\u{feff}]{0,40}".prop_map(String::into_bytes),
        ],
        accepts in prop_oneof![Just(MEMORY), Just(sessions()), Just(&[][..])],
    ) {
        match Params::parse(q.as_deref(), &body, accepts, "POST /api/test") {
            Ok(p) => {
                for name in accepts {
                    // Every reader answers or refuses cleanly, whatever the value's type.
                    let _ = p.text(name).map_err(|e| assert!(is_bad_request(&e), "{e:?}"));
                    let _ = p.number(name).map_err(|e| assert!(is_bad_request(&e), "{e:?}"));
                    let _ = p.itn(name).map_err(|e| assert!(is_bad_request(&e), "{e:?}"));
                    let _ = p.iec(name).map_err(|e| assert!(is_bad_request(&e), "{e:?}"));
                }
            }
            Err(e) => prop_assert!(is_bad_request(&e), "{e:?}"),
        }
    }

    /// Values sent in the query string, in the JSON body, or split between the two arrive
    /// exactly as sent, whatever their characters.
    #[test]
    fn parameter_values_round_trip(values in values_for(MEMORY), split_at in 0usize..5) {
        let check = |p: Params| -> Result<(), TestCaseError> {
            for name in MEMORY {
                prop_assert_eq!(p.text(name).expect("text"), values.get(*name).cloned());
            }
            Ok(())
        };
        let query = form_encode(&values);
        check(Params::parse(Some(&query), b"", MEMORY, "PUT /m").expect("query"))?;
        check(Params::parse(None, &json_body(&values), MEMORY, "PUT /m").expect("body"))?;
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend(json_body(&values));
        check(Params::parse(None, &bom, MEMORY, "PUT /m").expect("body after a BOM"))?;
        let (mut in_query, mut in_body) = (BTreeMap::new(), BTreeMap::new());
        for (i, (k, v)) in values.iter().enumerate() {
            let half = if i < split_at { &mut in_query } else { &mut in_body };
            half.insert(k.clone(), v.clone());
        }
        let q = form_encode(&in_query);
        check(Params::parse(Some(&q), &json_body(&in_body), MEMORY, "PUT /m").expect("both"))?;
    }

    /// A parameter given twice is refused, even with the same value: in the query string, or
    /// in both the query string and the body.
    #[test]
    fn a_parameter_twice_is_refused(
        name in proptest::sample::select(MEMORY),
        a in text(10),
        b in text(10),
    ) {
        let (n, a, b) = (name.to_string(), a, b);
        let twice = form_encode([(&n, &a), (&n, &b)]);
        let e = Params::parse(Some(&twice), b"", MEMORY, "PUT /m").expect_err("twice in the query");
        prop_assert!(is_bad_request(&e) && e.message.contains("twice"), "{e:?}");
        let once = form_encode([(&n, &a)]);
        let body = serde_json::to_vec(&json!({ name: b })).expect("JSON");
        let e = Params::parse(Some(&once), &body, MEMORY, "PUT /m").expect_err("query and body");
        prop_assert!(is_bad_request(&e) && e.message.contains("both"), "{e:?}");
    }

    /// Every u64 is read back from the query string, from a JSON number and from a JSON
    /// string; KeyNo refuses 0.
    #[test]
    fn numbers_round_trip(n in prop_oneof![any::<u64>(), 0u64..1000, Just(u64::MAX)]) {
        let q = format!("KeyNo={n}");
        let p = Params::parse(Some(&q), b"", sessions(), "POST /s").expect("query");
        prop_assert_eq!(p.number("KeyNo").expect("number"), Some(n));
        for body in [json!({"KeyNo": n}), json!({"KeyNo": n.to_string()})] {
            let b = serde_json::to_vec(&body).expect("JSON");
            let p = Params::parse(None, &b, sessions(), "POST /s").expect("body");
            prop_assert_eq!(p.number("KeyNo").expect("number"), Some(n));
            let positive = p.positive("KeyNo");
            if n == 0 {
                prop_assert!(is_bad_request(&positive.expect_err("0")));
            } else {
                prop_assert_eq!(positive.expect("positive"), Some(n));
            }
        }
        prop_assert_eq!(key_no(&n.to_string()).ok(), (n > 0).then_some(n));
    }

    /// A number given as text is accepted exactly when it is plain decimal digits within u64.
    #[test]
    fn number_text_matches_its_rule(s in prop_oneof![text(24), "[0-9+\\- .e]{0,22}"]) {
        let b = serde_json::to_vec(&json!({"KeyNo": s})).expect("JSON");
        let p = Params::parse(None, &b, sessions(), "POST /s").expect("body");
        let digits = !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        let expected = if s.is_empty() { Some(None) } else if digits { s.parse::<u64>().ok().map(Some) } else { None };
        match p.number("KeyNo") {
            Ok(v) => prop_assert_eq!(Some(v), expected),
            Err(e) => prop_assert!(expected.is_none() && is_bad_request(&e), "{s:?}: {e:?}"),
        }
        // The path's {KeyNo}: the same rule, and positive.
        match key_no(&s) {
            Ok(n) => prop_assert!(digits && n > 0 && s.parse::<u64>() == Ok(n)),
            Err(e) => {
                prop_assert!(is_bad_request(&e));
                prop_assert!(!digits || s.parse::<u64>().map_or(true, |n| n == 0));
            }
        }
    }

    /// An ITN sent as a JSON number loses its leading zeros; it is padded back.
    #[test]
    fn itn_and_iec_as_numbers(itn in 0u64..10_000_000_000, iec in 0u64..1_000_000_000) {
        let b = serde_json::to_vec(&json!({"ITN": itn, "IEC": iec})).expect("JSON");
        let p = Params::parse(None, &b, sessions(), "POST /s").expect("body");
        let got = p.itn("ITN").expect("itn").expect("given");
        prop_assert_eq!(got.as_str(), format!("{itn:010}"));
        let got = p.iec("IEC").expect("iec").expect("given");
        prop_assert_eq!(got.as_str(), format!("{iec:09}"));
    }

    /// `POST /api/sessions`: any values of any JSON type under the declared names give a
    /// session request or a 400; an accepted request has its required fields.
    #[test]
    fn session_parameters_never_panic(
        values in btree_map(proptest::sample::select(sessions()), json_value(), 0..8),
        user_agent in proptest::option::of(text(200)),
    ) {
        let body: Map<String, Value> =
            values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let b = serde_json::to_vec(&body).expect("JSON");
        let p = Params::parse(None, &b, sessions(), "POST /api/sessions").expect("declared names");
        let mut headers = axum::http::HeaderMap::new();
        if let Some(ua) = user_agent.and_then(|u| axum::http::HeaderValue::from_str(&u).ok()) {
            headers.insert(axum::http::header::USER_AGENT, ua);
        }
        let peer = "127.0.0.1:5".parse().expect("addr");
        match keybridge::api::parse_session_request(&p, peer, &headers) {
            Ok(r) => {
                prop_assert!(!r.key_id.trim().is_empty() && !r.client_session_id.trim().is_empty());
                prop_assert!(r.client_version.is_none_or(|v| v.chars().count() <= 128));
            }
            Err(e) => prop_assert!(is_bad_request(&e), "{e:?}"),
        }
    }

    /// `Licence-QueryID`: accepted exactly by its documented rule, whatever the bytes.
    #[test]
    fn query_ids_follow_their_rule(
        q in prop_oneof![vec(any::<u8>(), 0..80), "[A-Za-z0-9.:_\\-]{0,70}".prop_map(String::into_bytes)],
    ) {
        prop_assert_eq!(query_id_ok(&q), query_id_oracle(&q));
    }

    /// `SessionStarted` and the other client dates: any text parses or is refused.
    #[test]
    fn client_dates_never_panic(s in prop_oneof![text(40), "[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}([T ][0-9:.]{0,14}(Z|[+-][0-9:]{0,6})?)?"]) {
        if let Some(t) = keybridge::time::parse_client(&s) {
            // What was read formats and reads back as the same moment (to the millisecond).
            let shown = keybridge::time::format(&t);
            let again = keybridge::time::parse_client(&shown);
            prop_assume!(t.timestamp_subsec_nanos() % 1_000_000 == 0);
            prop_assert_eq!(again, Some(t), "{:?} → {}", s, shown);
        }
    }
}

// ----- the licence file -----

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // 1970 to the end of 9999, to the millisecond: what `validate` accepts.
    (0i64..=253_402_300_799_000)
        .prop_map(|ms| chrono::DateTime::from_timestamp_millis(ms).expect("in range"))
}

fn binding() -> impl Strategy<Value = Binding> {
    prop_oneof![
        "[!-~]{1,128}".prop_map(Binding::Computer),
        (1u64..).prop_map(Binding::Device),
    ]
}

/// Terms `validate` accepts: every field anywhere within its limits.
fn terms() -> impl Strategy<Value = LicenceTerms> {
    let ids = (
        1u64..=i64::MAX as u64,
        "[A-Za-z0-9]{1,16}",
        0u64..=i64::MAX as u64,
        prop_oneof![
            Just(KeyType::Main),
            Just(KeyType::Additional),
            Just(KeyType::Demo)
        ],
        any::<u32>(),
        1u32..=1_000_000,
        any::<u32>(),
        proptest::option::of(text(256)),
    );
    let dates = (
        timestamp(),
        proptest::option::of(timestamp()),
        0u32..=36_525,
        any::<u32>().prop_map(Flags),
        proptest::option::of("[0-9]{10}|[0-9]{12}"),
        proptest::option::of("[0-9]{9}"),
        text(64),
        text(256),
    );
    let words = (
        text(64),
        text(100),
        proptest::option::of(text(4096)),
        proptest::option::of(0u8..=2),
        any::<bool>(),
        proptest::option::of(timestamp()),
        proptest::option::of(timestamp()),
        proptest::option::of(0u8..=2),
    );
    let industry = (
        proptest::option::of(timestamp()),
        proptest::option::of(timestamp()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(timestamp()),
        binding(),
        proptest::option::of((1u64..=i64::MAX as u64, vec((text1(32), 1u32..), 0..4))),
    );
    (ids, dates, words, industry).prop_map(|(i, d, w, n)| LicenceTerms {
        key_no: i.0,
        key_id: i.1,
        reg_no: i.2,
        key_type: i.3,
        service_type: i.4,
        licence_count: i.5,
        product_version: i.6,
        product_version_name: i.7,
        activation_date: d.0,
        start_date: d.1,
        period: d.2,
        flags: d.3,
        itn: d.4.map(|s| Itn::try_from(s).expect("10 or 12 digits")),
        iec: d.5.map(|s| Iec::try_from(s).expect("9 digits")),
        activation_code: d.6,
        product_name: d.7,
        article: w.0,
        article_name: w.1,
        message: w.2,
        message_type: w.3,
        recovered: w.4,
        support_date: w.5,
        support_end_date: w.6,
        support_type: w.7,
        industry_support_date: n.0,
        industry_support_end_date: n.1,
        industry_support_type: n.2,
        industry_support_level: n.3,
        industry_support_preferentials: n.4,
        update_date: n.5,
        binding: n.6,
        account: n.7.map(|(id, limits)| AccountTerms {
            id,
            session_limits: limits
                .into_iter()
                .map(|(user, sessions)| SessionLimit { user, sessions })
                .collect(),
        }),
    })
}

/// One centre key for the whole file (RSA key generation is the slow part).
fn centre() -> &'static LicenceKey {
    static KEY: OnceLock<LicenceKey> = OnceLock::new();
    KEY.get_or_init(|| LicenceKey::new(KeyPair::generate().expect("key")))
}

fn trust() -> TrustStore {
    let mut t = TrustStore::default();
    t.add(centre().public_key().clone());
    t
}

/// One licence signed by [`centre`], and its terms, for the tampering property.
fn signed() -> &'static (LicenceTerms, Vec<u8>) {
    static DOC: OnceLock<(LicenceTerms, Vec<u8>)> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut t = LicenceTerms::new(7_131_766, "672B", 5, Binding::Computer("PC-1".into()));
        t.product_name = "Продукт".into();
        t.account = Some(AccountTerms {
            id: 1010,
            session_limits: vec![SessionLimit {
                user: "anna".into(),
                sessions: 2,
            }],
        });
        let doc = licence::sign(&t, centre()).expect("sign");
        (t, doc)
    })
}

fn is_typed(e: &LicenceError) -> bool {
    // Every refusal says something; none is the signing error (which only `sign` gives).
    !e.to_string().trim().is_empty() && !matches!(e, LicenceError::Signing(_))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes are never a licence, and are refused with a reason.
    #[test]
    fn arbitrary_bytes_are_not_a_licence(bytes in prop_oneof![
        vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| serde_json::to_vec(&v).expect("JSON")),
    ]) {
        let e = licence::open(&bytes, &trust()).expect_err("made-up bytes");
        prop_assert!(is_typed(&e), "{e:?}");
        let _ = licence::claim(&bytes);
        let e = licence::parse_terms(&bytes).expect_err("made-up terms");
        prop_assert!(matches!(e, LicenceError::Invalid(_)), "{e:?}");
    }

    /// An envelope of the right shape, from the trusted signer or another, with any payload
    /// and signature: never opened.
    #[test]
    fn made_up_envelopes_are_refused(
        format in prop_oneof![Just(licence::FORMAT.to_owned()), Just(licence::FORMAT_V1.to_owned()), text(20)],
        trusted in any::<bool>(),
        payload in prop_oneof![
            vec(any::<u8>(), 0..200),
            terms().prop_map(|t| serde_json::to_vec(&t).expect("JSON")),
        ],
        signature in vec(any::<u8>(), 0..300),
        raw in proptest::option::of(text(30)),
    ) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let signer = if trusted { centre().public_key().fingerprint().to_owned() } else { "0".repeat(64) };
        let env = json!({
            "format": format,
            "signer": signer,
            "payload": raw.clone().unwrap_or_else(|| b64.encode(&payload)),
            "signature": raw.unwrap_or_else(|| b64.encode(&signature)),
        });
        let bytes = serde_json::to_vec(&env).expect("JSON");
        let e = licence::open(&bytes, &trust()).expect_err("unsigned");
        prop_assert!(is_typed(&e), "{e:?}");
        if format == licence::FORMAT_V1 {
            prop_assert_eq!(e, LicenceError::Superseded);
        }
    }

    /// Terms within their limits pass `validate` and read back as written.
    #[test]
    fn terms_round_trip(t in terms()) {
        let payload = serde_json::to_vec(&t).expect("JSON");
        prop_assert_eq!(licence::parse_terms(&payload).expect("valid terms"), t);
    }

    /// Terms with one field replaced by any JSON value: read or refused, never a panic; what
    /// is read is valid, writes back the same, and its dates can be computed at any moment.
    #[test]
    fn mutated_terms_never_panic(
        t in terms(),
        field in 0usize..40,
        value in json_value(),
        now in any::<i64>(),
    ) {
        let mut v = serde_json::to_value(&t).expect("JSON");
        let obj = v.as_object_mut().expect("object");
        let keys: Vec<String> = obj.keys().cloned().collect();
        match keys.get(field) {
            Some(k) => { obj.insert(k.clone(), value); }
            None => { obj.insert(format!("extra{field}"), value); }
        }
        let payload = serde_json::to_vec(&v).expect("JSON");
        match licence::parse_terms(&payload) {
            Ok(read) => {
                prop_assert!(read.validate().is_ok());
                let again = serde_json::to_vec(&read).expect("JSON");
                prop_assert_eq!(licence::parse_terms(&again).expect("again"), read.clone());
                if let Some(now) = chrono::DateTime::from_timestamp_millis(now) {
                    let _ = read.validity(now);
                }
            }
            Err(e) => prop_assert!(matches!(e, LicenceError::Invalid(_)), "{e:?}"),
        }
    }

    /// A signed licence with any one bit changed is refused, or (where the change is only in
    /// the envelope's layout) opens to exactly the same terms.
    #[test]
    fn a_changed_bit_is_caught(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (t, doc) = signed();
        let mut d = doc.clone();
        let i = pos.index(d.len());
        d[i] ^= 1 << bit;
        match licence::open(&d, &trust()) {
            Ok(read) => prop_assert_eq!(&read, t, "byte {} bit {}", i, bit),
            Err(e) => prop_assert!(is_typed(&e), "{e:?}"),
        }
    }
}

proptest! {
    // RSA signing per case: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// What the centre signs, the host opens to the same terms; the unverified claim agrees.
    #[test]
    fn signed_licences_round_trip(t in terms()) {
        let doc = licence::sign(&t, centre()).expect("sign");
        prop_assert_eq!(licence::open(&doc, &trust()).expect("open"), t.clone());
        let c = licence::claim(&doc).expect("claim");
        prop_assert_eq!((c.key_no, c.key_id, c.activation_code), (t.key_no, t.key_id, t.activation_code));
        // Another centre's key does not open it.
        prop_assert!(matches!(
            licence::open(&doc, &TrustStore::default()),
            Err(LicenceError::UntrustedSigner(_))
        ));
    }
}

// ----- the USB key's frames and reports -----

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..300),
        1 => vec(any::<u8>(), MAX_PAYLOAD - 64..=MAX_PAYLOAD),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u8>(), any::<u16>(), payload()).prop_map(|(c, t, p)| Frame::new(c, t, p))
}

/// A report as a confused or hostile device might send it: mostly plausible headers.
fn report() -> impl Strategy<Value = Report> {
    (
        prop_oneof![Just(0x80u8), Just(0x40), Just(0xC0), Just(0), any::<u8>()],
        prop_oneof![0u8..4, any::<u8>()],
        prop_oneof![0u8..=61, any::<u8>()],
        vec(any::<u8>(), REPORT_SIZE - 3),
    )
        .prop_map(|(flags, seq, len, data)| {
            let mut r = [0u8; REPORT_SIZE];
            r[0] = flags;
            r[1] = seq;
            r[2] = len;
            r[3..].copy_from_slice(&data);
            r
        })
}

fn request() -> impl Strategy<Value = Request> {
    let s = || text(40);
    prop_oneof![
        Just(Request::GetInfo),
        Just(Request::ReadLicence),
        Just(Request::ResetMemory),
        payload().prop_map(Request::InstallLicence),
        payload().prop_map(Request::ReplaceLicence),
        s().prop_map(|password| Request::ReadMemory { password }),
        (s(), text(2000)).prop_map(|(password, value)| Request::WriteMemory { password, value }),
        (s(), s(), s(), s()).prop_map(|(read, write, new_read, new_write)| Request::SetPasswords {
            read,
            write,
            new_read,
            new_write
        }),
        any::<[u8; 32]>().prop_map(|nonce| Request::Attest { nonce }),
    ]
}

/// A device that answers with the reports given, then times out.
struct Scripted(std::vec::IntoIter<Report>);

impl Transport for Scripted {
    fn write_report(&mut self, _: &Report) -> Result<(), TransportError> {
        Ok(())
    }
    fn read_report(&mut self, _: Duration) -> Result<Report, TransportError> {
        self.0.next().ok_or(TransportError::Timeout)
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Frames round-trip, whole and split into reports.
    #[test]
    fn frames_round_trip(f in frame()) {
        let bytes = f.encode().expect("encode");
        prop_assert_eq!(Frame::decode(&bytes).expect("decode"), f.clone());
        let reports = split(&bytes).expect("split");
        prop_assert_eq!(reports.len(), bytes.len().div_ceil(REPORT_DATA));
        let mut re = Reassembler::default();
        let (last, init) = reports.split_last().expect("one report at least");
        for r in init {
            prop_assert_eq!(re.push(r).expect("push"), None);
        }
        prop_assert_eq!(re.push(last).expect("last").expect("a whole frame"), bytes);
    }

    /// Decoding arbitrary bytes never panics; what decodes is exactly what `encode` writes
    /// for it (one encoding per frame, so nothing is read two ways).
    #[test]
    fn arbitrary_frames_decode_canonically(bytes in prop_oneof![
        vec(any::<u8>(), 0..80),
        (frame(), vec(any::<u8>(), 0..4)).prop_map(|(f, mut extra)| {
            let mut b = f.encode().expect("encode");
            b.append(&mut extra);
            b
        }),
        (any::<u8>(), any::<u16>(), vec(any::<u8>(), 0..40)).prop_map(|(code, tag, body)| {
            // Right magic, version and length; the CRC is whatever follows.
            let mut b = b"KB\x01".to_vec();
            b.push(code);
            b.extend(tag.to_le_bytes());
            b.extend((body.len().saturating_sub(4) as u16).to_le_bytes());
            b.extend(body);
            b
        }),
    ]) {
        match Frame::decode(&bytes) {
            Ok(f) => prop_assert_eq!(f.encode().expect("re-encode"), bytes),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// The CRC covers every byte: any one flipped bit is caught.
    #[test]
    fn a_flipped_bit_is_caught(f in frame(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = f.encode().expect("encode");
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let e = Frame::decode(&bytes).expect_err("a changed bit");
        // Where it lands decides the error; the header's own fields are named.
        match i {
            0 | 1 => prop_assert_eq!(e, FrameError::Magic),
            2 => prop_assert!(matches!(e, FrameError::Version(_))),
            6 | 7 => prop_assert!(matches!(e, FrameError::Length { .. }), "{e:?}"),
            _ => prop_assert_eq!(e, FrameError::Crc),
        }
    }

    /// Any sequence of reports never panics the reassembler nor makes it hold more than one
    /// frame's worth; and after any garbage, a well-formed frame still arrives whole.
    #[test]
    fn reassembler_survives_garbage(garbage in vec(report(), 0..40), f in frame()) {
        let mut re = Reassembler::default();
        for r in &garbage {
            if let Ok(Some(bytes)) = re.push(r) {
                prop_assert!(bytes.len() <= MAX_PAYLOAD + 64, "{} bytes", bytes.len());
            }
        }
        let bytes = f.encode().expect("encode");
        let reports = split(&bytes).expect("split");
        let mut out = None;
        for r in &reports {
            out = re.push(r).expect("a well-formed report");
        }
        prop_assert_eq!(out.expect("whole"), bytes);
    }

    /// Requests round-trip through frames and reports, as the firmware reads them.
    #[test]
    fn requests_round_trip(r in request(), tag in any::<u16>()) {
        let f = r.to_frame(tag).expect("fits");
        let bytes = f.encode().expect("encode");
        let back = Frame::decode(&bytes).expect("decode");
        prop_assert_eq!(back.tag, tag);
        prop_assert_eq!(Request::from_frame(&back).expect("request"), r);
    }

    /// The firmware's request decoder: any opcode and payload gives a request or a status to
    /// refuse with; a request it accepts encodes back to the same payload.
    #[test]
    fn arbitrary_requests_decode_canonically(code in prop_oneof![1u8..=9, any::<u8>()], payload in vec(any::<u8>(), 0..120)) {
        let f = Frame::new(code, 7, payload.clone());
        match Request::from_frame(&f) {
            Ok(r) => prop_assert_eq!(r.to_frame(7).expect("fits").payload, payload),
            Err(s) => prop_assert!(matches!(s, Status::UnknownCommand | Status::BadPayload)),
        }
    }

    /// The host's readers of replies: any status byte and payload, refused with a
    /// protocol error or read; what the device encodes reads back.
    #[test]
    fn replies_never_panic(
        code in any::<u8>(),
        p in vec(any::<u8>(), 0..80),
        serial in any::<u64>(),
        blank in any::<bool>(),
        caps in any::<(u16, u16, u8, u8)>(),
        fields in (vec(any::<u8>(), 0..300), vec(any::<u8>(), 0..300), vec(any::<u8>(), 0..300)),
    ) {
        if let Ok(r) = Reply::from_frame(&Frame::new(code, 1, p.clone())) {
            let _ = r.into_result();
        }
        prop_assert!(matches!(decode_info(&p), Ok(_) | Err(DeviceError::Protocol(_))));
        prop_assert!(matches!(decode_attestation(&p), Ok(_) | Err(DeviceError::Protocol(_))));
        let info = DeviceInfo {
            serial,
            firmware: format!("{}.{}", caps.2, caps.3),
            blank,
            memory_capacity: caps.0,
            licence_capacity: caps.1,
        };
        prop_assert_eq!(decode_info(&encode_info(&info, caps.2, caps.3)).expect("info"), info);
        let a = Attestation { serial, blank, device_key: fields.0, certificate: fields.1, signature: fields.2 };
        prop_assert_eq!(decode_attestation(&encode_attestation(&a).expect("fits")).expect("attestation"), a);
    }

    /// The host's side of the conversation against a device that answers anything: every
    /// command ends in an answer or an error, never a panic or a hang.
    #[test]
    fn the_host_survives_a_hostile_device(
        replies in vec(report(), 0..12),
        framed in proptest::option::of((any::<u8>(), vec(any::<u8>(), 0..200))),
        command in 0u8..5,
    ) {
        let mut reports = replies;
        if let Some((status, payload)) = framed {
            // A well-formed reply to the first command (tag 1), after whatever came first.
            let bytes = Frame::new(status, 1, payload).encode().expect("encode");
            reports.extend(split(&bytes).expect("split"));
        }
        let mut d = ProtocolDevice::new(Scripted(reports.into_iter())).with_timeout(Duration::from_secs(5));
        let r = match command {
            0 => d.info().map(drop),
            1 => d.read_licence().map(drop),
            2 => d.read_memory("").map(drop),
            3 => d.attest(&[0; 32]).map(drop),
            _ => d.write_memory("p", "v"),
        };
        if let Err(e) = r {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

// ----- the account API's envelope -----

fn is_refusal(e: &AccountError) -> bool {
    matches!(
        e,
        AccountError::BadRequest(_) | AccountError::UnknownMethod(_)
    ) && matches!(e.code(), 10_400 | 10_501)
        && !e.to_string().is_empty()
}

fn path_form() -> impl Strategy<Value = Option<PathForm>> {
    proptest::option::of((
        prop_oneof![Just("usr".to_owned()), Just("srv".to_owned()), text(6)],
        prop_oneof![
            proptest::sample::select(METHODS).prop_map(str::to_owned),
            text(30)
        ],
        any::<bool>(),
    ))
    .prop_map(|f| f.map(|(kind, method, get)| PathForm { kind, method, get }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any body, by either form: a call or a 10400/10501 refusal.
    #[test]
    fn arbitrary_envelopes_never_panic(
        body in prop_oneof![
            vec(any::<u8>(), 0..120),
            json_value().prop_map(|v| serde_json::to_vec(&v).expect("JSON")),
            (json_value(), json_value(), json_value()).prop_map(|(g, a, rest)| {
                serde_json::to_vec(&json!({"general": g, "auth": a, "id": rest})).expect("JSON")
            }),
        ],
        form in path_form(),
    ) {
        let mut echo = Echo::default();
        match envelope::parse_call(&body, form, &mut echo) {
            Ok(c) => prop_assert!(METHODS.contains(&c.method.as_str())),
            Err(e) => prop_assert!(is_refusal(&e), "{e:?}"),
        }
        prop_assert!(echo.version.is_none_or(|v| v <= 1000));
    }

    /// A well-formed call is read back as sent: method, acting account, version and the
    /// method's own parameters, by the envelope and by the path form.
    #[test]
    fn well_formed_calls_round_trip(
        method in proptest::sample::select(METHODS),
        version in proptest::option::of(0u64..=1000),
        account in proptest::option::of(any::<u64>()),
        debug in any::<bool>(),
        params in btree_map("[a-z_]{1,12}", json_value(), 0..4),
    ) {
        let params: Map<String, Value> = params
            .into_iter()
            .filter(|(k, _)| k != "general" && k != "auth")
            .collect();
        let mut general = json!({"type": "usr", "method": method});
        if let Some(v) = version {
            general["version"] = json!(v);
        }
        if debug {
            general["debug"] = json!(true);
        }
        let mut body = params.clone();
        body.insert("general".into(), general);
        if let Some(a) = account {
            body.insert("auth".into(), json!({"account": a}));
        }
        let bytes = serde_json::to_vec(&body).expect("JSON");
        // The parameters as a JSON reader reads these very bytes (serde_json may read a large
        // float one unit off what it wrote); the envelope must pass exactly that on.
        let params: Map<String, Value> = serde_json::from_slice::<Map<String, Value>>(&bytes)
            .expect("JSON")
            .into_iter()
            .filter(|(k, _)| k != "general" && k != "auth")
            .collect();
        let mut echo = Echo::default();
        let c = envelope::parse_call(&bytes, None, &mut echo).expect("a well-formed call");
        prop_assert_eq!(c.method.as_str(), method);
        prop_assert_eq!(c.acting, account);
        prop_assert_eq!(c.debug, debug);
        prop_assert_eq!(&c.params, &params);
        prop_assert_eq!(echo.version, version);
        // The path form, without general.
        body.remove("general");
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let params: Map<String, Value> = serde_json::from_slice::<Map<String, Value>>(&bytes)
            .expect("JSON")
            .into_iter()
            .filter(|(k, _)| k != "auth")
            .collect();
        let form = PathForm { kind: "usr".into(), method: method.into(), get: false };
        let c = envelope::parse_call(&bytes, Some(form), &mut Echo::default()).expect("path form");
        prop_assert_eq!(c.method.as_str(), method);
        prop_assert_eq!(c.params, params);
    }
}

// ----- fixed attacks -----

/// JSON nested far deeper than any request needs, in every parser that reads JSON from a
/// stranger: refused with a clean error (serde_json's depth limit), not a stack overflow.
#[test]
fn deeply_nested_json_is_refused_not_overflowed() {
    for depth in [200usize, 100_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let mut body = open.repeat(depth).into_bytes();
            body.extend(close.repeat(depth).into_bytes());
            let wrapped = [b"{\"Value\":".as_slice(), &body, b"}"].concat();
            for b in [&body, &wrapped] {
                let e = Params::parse(None, b, MEMORY, "PUT /m").expect_err("too deep");
                assert!(is_bad_request(&e), "{e:?}");
                let e = envelope::parse_call(b, None, &mut Echo::default()).expect_err("too deep");
                assert!(is_refusal(&e), "{e:?}");
                let e = licence::parse_terms(b).expect_err("too deep");
                assert!(matches!(e, LicenceError::Invalid(_)), "{e:?}");
                assert!(licence::open(b, &TrustStore::default()).is_err());
                assert!(licence::claim(b).is_none());
            }
        }
    }
}
