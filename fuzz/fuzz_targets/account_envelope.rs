//! The account API's envelope: the body of `POST …/execute` (and of the version-19 path form
//! `…/execute/{type}/{method}`) up to the method's own parameters, as any client with a login
//! can send it.
//!
//! Input (so seeds can be written by hand, `fuzz/seeds/account_envelope`): the body; or, for
//! the path form, a first line `/{type}/{method}` (` GET` after it for a GET), then the body.
#![no_main]

use keybridge::centre::accounts::envelope::{parse_call, Echo, PathForm};
use keybridge::centre::accounts::methods::METHODS;
use libfuzzer_sys::fuzz_target;

fn path_form(line: &[u8]) -> Option<PathForm> {
    let line = std::str::from_utf8(line).ok()?;
    let (path, get) = match line.strip_suffix(" GET") {
        Some(p) => (p, true),
        None => (line, false),
    };
    let (kind, method) = path.strip_prefix('/')?.split_once('/')?;
    Some(PathForm {
        kind: kind.to_owned(),
        method: method.to_owned(),
        get,
    })
}

fuzz_target!(|data: &[u8]| {
    let (form, body) = match (data.first(), data.iter().position(|&b| b == b'\n')) {
        (Some(b'/'), Some(i)) => (path_form(&data[..i]), &data[i + 1..]),
        _ => (None, data),
    };
    let mut echo = Echo::default();
    match parse_call(body, form, &mut echo) {
        Ok(call) => assert!(METHODS.contains(&call.method.as_str())),
        Err(e) => assert!(matches!(e.code(), 10_400 | 10_501), "{e:?}"),
    }
    assert!(echo.version.is_none_or(|v| v <= 1000));
});
