//! The host API's request parameters, as any client can send them: the query string and the
//! JSON body (`Params::parse`) and every typed reader of them, the session parameters of
//! `POST /api/sessions`, a `{KeyNo}` path segment, the `Licence-QueryID` header, the
//! `User-Agent` a session records, and the dates a client gives.
//!
//! Input (so seeds can be written by hand, `fuzz/seeds/params`): one byte choosing the
//! endpoint's parameter list, the query string up to the first newline, then the body. The
//! query line is also tried as a path segment, a QueryID, a User-Agent and a date.
#![no_main]

use keybridge::api::params::{key_no, Accepts, Params};
use keybridge::api::{parse_session_request, SESSION_PARAMETERS};
use keybridge::web::signing::query_id_ok;
use libfuzzer_sys::fuzz_target;

/// Memory writes and password changes, and the lists' paging.
const MEMORY: Accepts = &["Password", "Value", "NewPassword", "NewWritePassword"];
const LIST: Accepts = &["Offset", "Limit"];

fn bad_request(e: &keybridge::api::error::ApiError) {
    assert_eq!(e.status.as_u16(), 400, "{e:?}");
    assert_eq!(e.exception, "EBadRequest", "{e:?}");
    assert!(!e.message.trim().is_empty(), "{e:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&endpoint, rest)) = data.split_first() else {
        return;
    };
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    // The digits '0'..'3' pick the lists in this order (b'0' % 4 == 0).
    let sessions = endpoint % 4 == 0;
    let accepts = match endpoint % 4 {
        0 => SESSION_PARAMETERS,
        1 => MEMORY,
        2 => LIST,
        _ => &[],
    };
    // A URI's query is text; bytes that are not UTF-8 never reach the parser.
    let query = std::str::from_utf8(line).ok();
    match Params::parse(query, body, accepts, "POST /api/fuzz") {
        Ok(p) => {
            for name in accepts {
                let _ = p.text(name).map_err(|e| bad_request(&e));
                let _ = p.text_max(name, 16).map_err(|e| bad_request(&e));
                let _ = p.required(name, 16).map_err(|e| bad_request(&e));
                let _ = p.number(name).map_err(|e| bad_request(&e));
                let _ = p.positive(name).map_err(|e| bad_request(&e));
                let _ = p.itn(name).map_err(|e| bad_request(&e));
                let _ = p.iec(name).map_err(|e| bad_request(&e));
            }
            if sessions {
                let mut headers = http::HeaderMap::new();
                if let Ok(ua) = http::HeaderValue::from_bytes(line) {
                    headers.insert(http::header::USER_AGENT, ua);
                }
                let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 5));
                if let Err(e) = parse_session_request(&p, peer, &headers) {
                    bad_request(&e);
                }
            }
        }
        Err(e) => bad_request(&e),
    }
    let rule = (1..=64).contains(&line.len())
        && line
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(b));
    assert_eq!(query_id_ok(line), rule);
    if let Some(text) = query {
        match key_no(text) {
            Ok(n) => assert!(n > 0 && text.parse::<u64>() == Ok(n)),
            Err(e) => bad_request(&e),
        }
        if let Some(t) = keybridge::time::parse_client(text) {
            let _ = keybridge::time::format(&t);
        }
    }
});
