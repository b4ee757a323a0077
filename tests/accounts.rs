//! The Service Manager account API on a real centre over loopback, on SQLite and on
//! PostgreSQL: every method with its success and failure envelopes, both request forms and
//! both types, each role's rights, every cross-account attempt, 10406, concurrent changes to
//! one account's users, and a user's session restriction enforced by a host.

mod common;
use common::centre::CentreServer;
use common::*;
use serde_json::{json, Value};

const ALICE: (&str, &str) = ("alice", "alice-pass-1");
const BOB: (&str, &str) = ("bob", "bob-pass-22");
const PAT: (&str, &str) = ("pat", "pat-pass-333");
const OLGA: (&str, &str) = ("olga", "olga-pass-4444");

/// A centre with: account 1010 (ITN 1234567890) owned by alice; account 2020 owned by bob;
/// servicing organisation 1000 (owner pat, operator olga) serving 1010 but not 2020; the
/// attached-info definitions and a tariff of 1000.
async fn setup(db: Option<&str>) -> CentreServer {
    let c = CentreServer::start_on(db).await;
    for (id, name, itn, (login, pw)) in [
        (1010, "ООО Альфа", Some("1234567890"), ALICE),
        (2020, "ООО Бета", None, BOB),
        (1000, "ООО Партнер", None, PAT),
    ] {
        let (s, j) = c
            .post(
                "/centre/v1/accounts",
                json!({"id": id, "name": name, "itn": itn,
                       "owner": {"login": login, "name": login, "password": pw}}),
                true,
            )
            .await;
        assert_eq!(s, 201, "{j}");
        assert_eq!(j["id"], id);
        assert_eq!(j["password"], Value::Null, "a given password is not echoed");
    }
    // The servicing organisation, by the CLI.
    let out = c.cli(&[
        "centre",
        "servant-add",
        "--id",
        "1000",
        "--servant-id",
        "00000",
        "--tariff-subscribe-allowed",
        "--tariff-selection-page",
        "<html><body>Выберите тариф</body></html>",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.cli(&[
        "centre",
        "servant-serve",
        "--account",
        "1010",
        "--servant",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, j) = c
        .post(
            "/centre/v1/accounts/1000/users",
            json!({"login": OLGA.0, "name": "Ольга", "password": OLGA.1, "role": "operator"}),
            true,
        )
        .await;
    assert_eq!(s, 201, "{j}");
    for (target, name, kind) in [
        ("account_field", "Регион", "string"),
        ("account_property", "Клиент с", "date"),
        ("account_property", "VIP", "boolean"),
        ("user_field", "ВнешнийПользователь", "boolean"),
    ] {
        let (s, j) = c
            .post(
                "/centre/v1/attached",
                json!({"target": target, "name": name, "type": kind}),
                true,
            )
            .await;
        assert_eq!(s, 201, "{j}");
    }
    let tariff = json!({
        "id": "000000021", "name": "ПРОФ", "tariff_id": "000000001",
        "brief_description": "5 сеансов, до 10 баз",
        "description_for_subscribers": {"html": "<p>ПРОФ<img src=\"image001\"/></p>",
            "images": [{"name": "image001", "data": "iVBORw0KGgo=\r\n"}]},
        "validity_periods": [
            {"id": "1YR", "name": "1 год", "quantity": 1, "cost": 1500, "comment": "Один календарный год", "period": "year"},
            {"id": "3MN", "name": "3 месяца", "quantity": 3, "cost": 499.5, "period": "month", "recommended": true}
        ]
    });
    let (s, j) = c
        .post("/centre/v1/servants/1000/tariffs", tariff, true)
        .await;
    assert_eq!(s, 201, "{j}");
    let ext = json!({"id": "000000005", "name": "Касса_Базовый", "tariff_id": "000000009", "is_extension": true});
    assert_eq!(
        c.post("/centre/v1/servants/1000/tariffs", ext, true)
            .await
            .0,
        201
    );
    c
}

/// `POST …/execute` as `user`, for account `acting`, method `method`, with `params`.
async fn exec(
    c: &CentreServer,
    user: (&str, &str),
    acting: Option<u64>,
    method: &str,
    params: Value,
) -> (u16, Value) {
    let mut body = params;
    body["general"] = json!({"type": "usr", "method": method, "version": 10});
    if let Some(a) = acting {
        body["auth"] = json!({"account": a});
    }
    c.account_api("POST", "/execute", Some(user), Some(&body))
        .await
}

/// The call succeeded (10200, HTTP 200); its answer.
async fn ok(
    c: &CentreServer,
    user: (&str, &str),
    acting: Option<u64>,
    method: &str,
    params: Value,
) -> Value {
    let (s, j) = exec(c, user, acting, method, params).await;
    assert_eq!(
        (s, &j["general"]["response"]),
        (200, &json!(10200)),
        "{method}: {j}"
    );
    assert_eq!(j["general"]["error"], false);
    assert_eq!(j["general"]["version"], 10, "the asked version is answered");
    j
}

/// The call was refused with `code` (and HTTP code − 10000), `error: true` and a message
/// containing `says`.
fn refused(r: (u16, Value), code: u64, says: &str) {
    let (s, j) = r;
    assert_eq!(
        (u64::from(s), &j["general"]["response"]),
        (code - 10_000, &json!(code)),
        "{j}"
    );
    assert_eq!(j["general"]["error"], true, "{j}");
    let m = j["general"]["message"].as_str().expect("message");
    assert!(m.contains(says), "{m:?} lacks {says:?}");
    for k in ["version", "sm_version", "sm_timezone"] {
        assert!(!j["general"][k].is_null(), "general.{k}: {j}");
    }
}

/// `exec` refused with `code`, its message containing `says` (see [`refused`]).
async fn refuses(
    c: &CentreServer,
    user: (&str, &str),
    acting: Option<u64>,
    method: &str,
    params: Value,
    code: u64,
    says: &str,
) {
    refused(exec(c, user, acting, method, params).await, code, says);
}

/// alice, owner of 1010, acting for it: the call succeeded.
async fn alice(c: &CentreServer, method: &str, params: Value) -> Value {
    ok(c, ALICE, Some(1010), method, params).await
}

/// alice, acting for 1010: the call was refused with `code`.
async fn alice_refused(c: &CentreServer, method: &str, params: Value, code: u64, says: &str) {
    refuses(c, ALICE, Some(1010), method, params, code, says).await;
}

async fn scenario(db: Option<&str>) {
    let c = setup(db).await;
    // account/list: GET form, POST with ext and with usr; a user sees only their accounts.
    let (s, j) = c
        .account_api("GET", "/execute/usr/account/list", Some(ALICE), None)
        .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(
        j["account"],
        json!([{"id": 1010, "name": "ООО Альфа", "role": "owner"}])
    );
    assert_eq!(j["general"]["version"], 19);
    let body = json!({"general": {"type": "ext", "method": "account/list"}});
    let (_, j) = c
        .account_api("POST", "/execute", Some(BOB), Some(&body))
        .await;
    assert_eq!(
        j["account"],
        json!([{"id": 2020, "name": "ООО Бета", "role": "owner"}])
    );
    // The servicing organisation's operator sees its own account and the one it serves.
    let j = ok(&c, OLGA, None, "account/list", json!({})).await;
    assert_eq!(
        j["account"],
        json!([{"id": 1000, "name": "ООО Партнер", "role": "operator"},
               {"id": 1010, "name": "ООО Альфа", "role": "operator"}])
    );
    let (_, v) = c.account_api("GET", "/version", None, None).await;
    assert_eq!(v["version"], 19);
    assert!(v["sm_version"].is_string());

    // account/info, update_info (a field not sent keeps its value).
    let j = alice(&c, "account/info", json!({"id": 1010})).await;
    assert_eq!(
        j["account"],
        json!({"id": 1010, "name": "ООО Альфа", "site": "", "city": "", "email": "", "phone": ""})
    );
    alice(
        &c,
        "account/update_info",
        json!({"id": 1010, "city": "Москва", "phone": "+7 (495) 765-43-21"}),
    )
    .await;
    alice(
        &c,
        "account/update_info",
        json!({"id": 1010, "site": "alpha.example"}),
    )
    .await;
    let j = alice(&c, "account/info", json!({"id": 1010})).await;
    assert_eq!(
        (
            &j["account"]["city"],
            &j["account"]["site"],
            &j["account"]["phone"]
        ),
        (
            &json!("Москва"),
            &json!("alpha.example"),
            &json!("+7 (495) 765-43-21")
        )
    );
    alice_refused(
        &c,
        "account/update_info",
        json!({"id": 1010, "name": ""}),
        10400,
        "name",
    )
    .await;

    // Servants: list, the deprecated servant_info, the tariff page, tariffs.
    let j = alice(&c, "account/servants/list", json!({"id": 1010})).await;
    assert_eq!(j["servants"][0]["id"], 1000);
    assert_eq!(j["servants"][0]["servant_id"], "00000");
    assert_eq!(j["servants"][0]["tariff_subscribe_allowed"], true);
    assert_eq!(j["servants"][0]["automatic_billing_allowed"], false);
    let j = alice(&c, "account/servant_info", json!({"id": 1010})).await;
    assert_eq!(j["servant"]["name"], "ООО Партнер");
    refuses(
        &c,
        BOB,
        Some(2020),
        "account/servant_info",
        json!({"id": 2020}),
        10404,
        "servicing",
    )
    .await;
    let j = alice(
        &c,
        "account/servants/tariff_selection_page",
        json!({"servant": 1000}),
    )
    .await;
    assert!(j["html"].as_str().expect("html").contains("Выберите тариф"));
    // The version-19 path form without `general` (the spec's servant_tariffs/list example).
    let body = json!({"servant": 1000, "scope": ["validity_periods"], "auth": {"account": 1010}});
    let (s, j) = c
        .account_api(
            "POST",
            "/execute/usr/account/servant_tariffs/list",
            Some(ALICE),
            Some(&body),
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let t = &j["servant_tariff"];
    assert_eq!(t.as_array().map(Vec::len), Some(2), "{j}");
    assert_eq!(t[0]["id"], "000000005");
    assert_eq!(
        t[1]["validity_periods"][0],
        json!({"id": "1YR", "name": "1 год", "quantity": 1, "cost": 1500, "comment": "Один календарный год", "period": "year", "recommended": false})
    );
    assert_eq!(t[1]["validity_periods"][1]["cost"], 499.5);
    let j = alice(&c, "account/servant_tariffs/list", json!({"servant": 1000})).await;
    assert!(
        j["servant_tariff"][0].get("validity_periods").is_none(),
        "{j}"
    );
    let j = alice(
        &c,
        "account/servant_tariffs/list",
        json!({"servant": 1000, "scope": ["is_extension"]}),
    )
    .await;
    assert_eq!(j["servant_tariff"].as_array().map(Vec::len), Some(1));
    let j = alice(
        &c,
        "account/servant_tariffs/list",
        json!({"servant": 1000, "available_tariffs": ["000000021"]}),
    )
    .await;
    assert_eq!(j["servant_tariff"][0]["id"], "000000021");
    alice_refused(
        &c,
        "account/servant_tariffs/list",
        json!({"servant": 1000, "scope": ["everything"]}),
        10400,
        "everything",
    )
    .await;
    // info by the string code and by its number.
    for id in [json!("000000021"), json!(21)] {
        let j = alice(
            &c,
            "account/servant_tariffs/info",
            json!({"servant": 1000, "id": id}),
        )
        .await;
        assert_eq!(j["servant_tariff"]["id"], "000000021");
        assert_eq!(
            j["servant_tariff"]["description_for_subscribers"]["images"][0]["name"],
            "image001"
        );
        assert_eq!(
            j["servant_tariff"]["validity_periods"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }
    alice_refused(
        &c,
        "account/servant_tariffs/info",
        json!({"servant": 1000, "id": "999"}),
        10404,
        "999",
    )
    .await;
    // bob's account is not served by 1000: its tariffs are not his to see.
    refuses(
        &c,
        BOB,
        Some(2020),
        "account/servant_tariffs/list",
        json!({"servant": 1000}),
        10404,
        "1000",
    )
    .await;

    // Attached info: 10406 names every unknown one and changes nothing; a merge keeps the rest.
    alice(
        &c,
        "account/update_attached_info",
        json!({"id": 1010,
        "fields": [{"key": "Регион", "value": "77"}],
        "properties": [{"key": "Клиент с", "value": "2025-03-01"}, {"key": "VIP", "value": true}]}),
    )
    .await;
    alice_refused(
        &c,
        "account/update_attached_info",
        json!({"id": 1010,
            "fields": [{"key": "Регион", "value": "50"}],
            "properties": [{"key": "ИНН", "value": "1"}, {"key": "КПП", "value": "2"}]}),
        10406,
        "Property 'ИНН' not found. Property 'КПП' not found.",
    )
    .await;
    alice(
        &c,
        "account/update_attached_info",
        json!({"id": 1010, "properties": [{"key": "VIP", "value": false}]}),
    )
    .await;
    let j = alice(&c, "account/attached_info", json!({"id": 1010})).await;
    assert_eq!(
        j["fields"],
        json!([{"key": "Регион", "value": "77", "type": "string"}]),
        "the refused call changed nothing"
    );
    assert_eq!(
        j["properties"],
        json!([
            {"key": "VIP", "value": false, "type": "boolean"},
            {"key": "Клиент с", "value": "2025-03-01T00:00:00.000Z", "type": "date"}
        ])
    );
    alice_refused(
        &c,
        "account/update_attached_info",
        json!({"id": 1010, "properties": [{"key": "VIP", "value": "yes"}]}),
        10400,
        "true or false",
    )
    .await;
    alice_refused(
        &c,
        "account/update_attached_info",
        json!({"id": 1010, "properties": [{"key": "VIP", "value": true, "type": "number"}]}),
        10400,
        "boolean",
    )
    .await;
    // A value of null clears it.
    alice(
        &c,
        "account/update_attached_info",
        json!({"id": 1010, "fields": [{"key": "Регион", "value": null}]}),
    )
    .await;
    let j = alice(&c, "account/attached_info", json!({"id": 1010})).await;
    assert_eq!(j["fields"], json!([]));

    // Users: create (with fields), add an existing one, info, list, set_role, restriction,
    // update_attached_info, delete (the service user remains: it can be added back).
    alice(&c, "account/users/create", json!({"id": 1010, "role": "administrator",
        "login": "Nestor", "password": "w13p-3q", "email": "nestor@example.com", "email_required": false,
        "name": "Иващенко Нестор Иванович", "phone": "+7 (495) 231-54-76", "timezone": "Europe/Moscow",
        "description": "Использует БП и ЗУП", "fields": [{"key": "ВнешнийПользователь", "value": true}]})).await;
    alice_refused(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "NESTOR", "name": "Другой", "password": "another-1"}),
        10409,
        "taken",
    )
    .await;
    alice_refused(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "x:y", "name": "X"}),
        10400,
        "login",
    )
    .await;
    alice_refused(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "shorty", "name": "S", "password": "123"}),
        10400,
        "password",
    )
    .await;
    alice_refused(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "noname"}),
        10400,
        "name",
    )
    .await;
    alice_refused(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "mailless", "name": "M", "email_required": true}),
        10400,
        "email",
    )
    .await;
    let j = ok(
        &c,
        ("nestor", "w13p-3q"),
        Some(1010),
        "account/users/info",
        json!({"id": 1010, "login": "Nestor"}),
    )
    .await;
    assert_eq!(
        j["user"],
        json!({"login": "Nestor", "is_temporary": false, "session_restriction": 0,
        "email": "nestor@example.com", "name": "Иващенко Нестор Иванович", "role": "administrator",
        "description": "Использует БП и ЗУП",
        "fields": [{"key": "ВнешнийПользователь", "value": true, "type": "boolean"}]})
    );
    // A user the account made, detached, comes back with users/add.
    alice(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "clerk", "name": "Клерк", "password": "clerk-pass-1"}),
    )
    .await;
    alice(
        &c,
        "account/users/delete",
        json!({"id": 1010, "login": "clerk"}),
    )
    .await;
    alice(&c, "account/users/add", json!({"id": 1010, "login": "clerk", "role": "user",
        "description": "", "force": false, "fields": [{"key": "ВнешнийПользователь", "value": false}]})).await;
    alice_refused(
        &c,
        "account/users/add",
        json!({"id": 1010, "login": "clerk"}),
        10409,
        "already",
    )
    .await;
    alice_refused(
        &c,
        "account/users/add",
        json!({"id": 1010, "login": "nobody"}),
        10404,
        "nobody",
    )
    .await;
    alice_refused(&c, "account/users/create", json!({"id": 1010, "login": "newbie", "name": "N", "fields": [{"key": "Нет такого", "value": 1}]}), 10406, "Attribute 'Нет такого' not found.").await;
    let j = alice(&c, "account/users/list", json!({"id": 1010})).await;
    let logins: Vec<&str> = j["user"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["login"].as_str().expect("l"))
        .collect();
    assert_eq!(
        logins,
        ["alice", "clerk", "Nestor"],
        "newbie was not created by the refused call"
    );
    let j = alice(
        &c,
        "account/users/list",
        json!({"id": 1010, "offset": 2, "limit": 1}),
    )
    .await;
    assert_eq!(j["user"].as_array().map(Vec::len), Some(1));
    assert_eq!(j["user"][0]["login"], "Nestor");
    alice_refused(
        &c,
        "account/users/list",
        json!({"id": 1010, "limit": 100000}),
        10400,
        "limit",
    )
    .await;
    alice(
        &c,
        "account/users/set_session_restriction",
        json!({"id": 1010, "login": "clerk", "restriction": 2}),
    )
    .await;
    alice(&c, "account/users/update_attached_info",
        json!({"id": 1010, "login": "clerk", "fields": [{"key": "ВнешнийПользователь", "value": true, "type": "boolean"}]})).await;
    let j = alice(
        &c,
        "account/users/info",
        json!({"id": 1010, "login": "CLERK"}),
    )
    .await;
    assert_eq!(
        (
            &j["user"]["session_restriction"],
            &j["user"]["fields"][0]["value"]
        ),
        (&json!(2), &json!(true))
    );
    alice(
        &c,
        "account/users/set_session_restriction",
        json!({"id": 1010, "login": "clerk"}),
    )
    .await;
    let j = alice(
        &c,
        "account/users/info",
        json!({"id": 1010, "login": "clerk"}),
    )
    .await;
    assert_eq!(
        j["user"]["session_restriction"], 0,
        "absent restriction means 0: any number"
    );
    alice(
        &c,
        "account/users/set_role",
        json!({"id": 1010, "login": "Nestor", "role": "owner"}),
    )
    .await;
    alice_refused(
        &c,
        "account/users/set_role",
        json!({"id": 1010, "login": "clerk", "role": "superuser"}),
        10400,
        "superuser",
    )
    .await;
    alice_refused(
        &c,
        "account/users/set_role",
        json!({"id": 1010, "login": "clerk", "role": "operator"}),
        10400,
        "servicing",
    )
    .await;
    alice(
        &c,
        "account/users/delete",
        json!({"id": 1010, "login": "clerk"}),
    )
    .await;
    alice_refused(
        &c,
        "account/users/delete",
        json!({"id": 1010, "login": "clerk"}),
        10404,
        "clerk",
    )
    .await;
    // clerk still logs in (the service user remains), with no account now.
    let j = ok(
        &c,
        ("clerk", "clerk-pass-1"),
        None,
        "account/list",
        json!({}),
    )
    .await;
    assert_eq!(j["account"], json!([]));
    alice(
        &c,
        "account/users/add",
        json!({"id": 1010, "login": "clerk"}),
    )
    .await;
    let j = alice(
        &c,
        "account/users/info",
        json!({"id": 1010, "login": "clerk"}),
    )
    .await;
    assert_eq!(
        j["user"]["fields"],
        json!([]),
        "detaching dropped her attributes in this account"
    );
    // The last owner stays: demoting both owners one after the other stops at the second.
    alice(
        &c,
        "account/users/set_role",
        json!({"id": 1010, "login": "alice", "role": "user"}),
    )
    .await;
    refuses(
        &c,
        ("nestor", "w13p-3q"),
        Some(1010),
        "account/users/set_role",
        json!({"id": 1010, "login": "nestor", "role": "administrator"}),
        10409,
        "owner",
    )
    .await;
    refuses(
        &c,
        ("nestor", "w13p-3q"),
        Some(1010),
        "account/users/delete",
        json!({"id": 1010, "login": "Nestor"}),
        10409,
        "owner",
    )
    .await;

    // Envelope errors.
    let bad = |body: Value| async {
        let b = body;
        c.account_api("POST", "/execute", Some(BOB), Some(&b)).await
    };
    refused(
        bad(json!({"general": {"type": "usr", "method": "account/nothing"}})).await,
        10501,
        "account/nothing",
    );
    refused(
        bad(json!({"general": {"type": "srv", "method": "account/list"}})).await,
        10400,
        "srv",
    );
    refused(
        bad(json!({"general": {"method": "account/list"}})).await,
        10400,
        "general.type",
    );
    refused(
        bad(json!({"general": {"type": "usr"}})).await,
        10400,
        "general.method",
    );
    refused(
        bad(json!({"general": {"type": "usr", "method": "account/info"}, "id": 2020})).await,
        10400,
        "auth.account",
    );
    refused(bad(json!({"general": {"type": "usr", "method": "account/info"}, "auth": {"account": 2020}})).await, 10400, "id");
    refused(bad(json!({"general": {"type": "usr", "method": "account/info"}, "auth": {"account": 2020}, "id": "2020"})).await, 10400, "id");
    refused(bad(json!({"general": {"type": "usr", "method": "account/info"}, "auth": {"account": 2020}, "id": 2020, "extra": 1})).await, 10400, "extra");
    refused(bad(json!([1, 2])).await, 10400, "object");
    let (s, _, body) = c
        .raw(
            "POST",
            "/a/adm/hs/ext_api/execute",
            Some(b"{not json"),
            None,
        )
        .await;
    assert_eq!(
        s,
        401,
        "credentials come first: {}",
        String::from_utf8_lossy(&body)
    );
    refused(
        c.account_api("GET", "/execute/usr/account/info", Some(BOB), None)
            .await,
        10400,
        "POST",
    );
    refused(
        c.account_api(
            "POST",
            "/execute/usr/account/list",
            Some(BOB),
            Some(&json!({"general": {"method": "account/info"}})),
        )
        .await,
        10400,
        "match the path",
    );
    refused(
        c.account_api("PUT", "/execute", Some(BOB), None).await,
        10405,
        "method",
    );
    refused(
        c.account_api("POST", "/execute", None, Some(&json!({})))
            .await,
        10401,
        "credentials",
    );
    refused(
        c.account_api("POST", "/execute", Some(("bob", "wrong")), Some(&json!({})))
            .await,
        10401,
        "wrong login or password",
    );
    refused(
        c.account_api("POST", "/execute", Some(("nobody", "x")), Some(&json!({})))
            .await,
        10401,
        "wrong login or password",
    );
    // What the centre's own layers answer under the API's path is in the envelope too.
    refused(
        c.account_api("POST", "/execute/usr", Some(BOB), Some(&json!({})))
            .await,
        10404,
        "no such path",
    );
    let huge =
        json!({"general": {"type": "usr", "method": "account/list"}, "pad": "x".repeat(2 << 20)});
    refused(
        c.account_api("POST", "/execute", Some(BOB), Some(&huge))
            .await,
        10413,
        "too large",
    );
}

#[tokio::test]
async fn every_method_on_sqlite() {
    scenario(None).await;
}

#[tokio::test]
async fn every_method_on_postgres() {
    let Some(url) = fresh_postgres("kb_accounts").await else {
        return;
    };
    scenario(Some(&url)).await;
}

/// What each role may do, and every attempt on another account refused alike.
#[tokio::test]
async fn roles_and_other_accounts() {
    let c = setup(None).await;
    alice(&c, "account/users/create",
        json!({"id": 1010, "login": "adm", "name": "Админ", "password": "adm-pass-1", "role": "administrator"})).await;
    alice(&c, "account/users/create",
        json!({"id": 1010, "login": "usr", "name": "Юзер", "password": "usr-pass-1", "role": "user"})).await;
    alice(&c, "account/users/create",
        json!({"id": 1010, "login": "ext", "name": "Адаптер", "password": "ext-pass-1", "role": "ext_administrator"})).await;
    let adm = ("adm", "adm-pass-1");
    let usr = ("usr", "usr-pass-1");
    let ext = ("ext", "ext-pass-1");

    // A plain user and an adaptation administrator read the account and themselves, not others; change nothing.
    for who in [usr, ext] {
        ok(&c, who, Some(1010), "account/info", json!({"id": 1010})).await;
        ok(
            &c,
            who,
            Some(1010),
            "account/users/info",
            json!({"id": 1010, "login": who.0}),
        )
        .await;
        refuses(
            &c,
            who,
            Some(1010),
            "account/users/info",
            json!({"id": 1010, "login": "alice"}),
            10403,
            "role",
        )
        .await;
        refuses(
            &c,
            who,
            Some(1010),
            "account/users/list",
            json!({"id": 1010}),
            10403,
            "role",
        )
        .await;
        refuses(
            &c,
            who,
            Some(1010),
            "account/update_info",
            json!({"id": 1010, "name": "Захват"}),
            10403,
            "role",
        )
        .await;
        refuses(
            &c,
            who,
            Some(1010),
            "account/users/set_role",
            json!({"id": 1010, "login": who.0, "role": "owner"}),
            10403,
            "role",
        )
        .await;
        refuses(
            &c,
            who,
            Some(1010),
            "account/users/create",
            json!({"id": 1010, "login": "sneak", "name": "S"}),
            10403,
            "role",
        )
        .await;
        refuses(
            &c,
            who,
            Some(1010),
            "account/update_attached_info",
            json!({"id": 1010, "properties": [{"key": "VIP", "value": true}]}),
            10403,
            "role",
        )
        .await;
    }
    let j = alice(&c, "account/info", json!({"id": 1010})).await;
    assert_eq!(j["account"]["name"], "ООО Альфа", "nothing changed");

    // An administrator manages users but not owners.
    ok(
        &c,
        adm,
        Some(1010),
        "account/users/set_session_restriction",
        json!({"id": 1010, "login": "usr", "restriction": 3}),
    )
    .await;
    ok(
        &c,
        adm,
        Some(1010),
        "account/update_info",
        json!({"id": 1010, "email": "a@alpha.example"}),
    )
    .await;
    refuses(
        &c,
        adm,
        Some(1010),
        "account/users/set_role",
        json!({"id": 1010, "login": "usr", "role": "owner"}),
        10403,
        "owner",
    )
    .await;
    refuses(
        &c,
        adm,
        Some(1010),
        "account/users/set_role",
        json!({"id": 1010, "login": "alice", "role": "user"}),
        10403,
        "owner",
    )
    .await;
    refuses(
        &c,
        adm,
        Some(1010),
        "account/users/delete",
        json!({"id": 1010, "login": "alice"}),
        10403,
        "owner",
    )
    .await;
    refuses(
        &c,
        adm,
        Some(1010),
        "account/users/set_session_restriction",
        json!({"id": 1010, "login": "alice", "restriction": 1}),
        10403,
        "owner",
    )
    .await;
    refuses(
        &c,
        adm,
        Some(1010),
        "account/users/create",
        json!({"id": 1010, "login": "boss2", "name": "B", "role": "owner"}),
        10403,
        "owner",
    )
    .await;

    // The servicing organisation's operator reads the accounts it serves, changes nothing,
    // and reaches no other account.
    ok(&c, OLGA, Some(1000), "account/info", json!({"id": 1010})).await;
    ok(
        &c,
        OLGA,
        Some(1000),
        "account/users/list",
        json!({"id": 1010}),
    )
    .await;
    ok(
        &c,
        OLGA,
        Some(1000),
        "account/attached_info",
        json!({"id": 1010}),
    )
    .await;
    refuses(
        &c,
        OLGA,
        Some(1000),
        "account/update_info",
        json!({"id": 1010, "name": "X"}),
        10403,
        "role",
    )
    .await;
    refuses(
        &c,
        OLGA,
        Some(1000),
        "account/users/set_role",
        json!({"id": 1010, "login": "usr", "role": "administrator"}),
        10403,
        "role",
    )
    .await;
    refuses(
        &c,
        OLGA,
        Some(1000),
        "account/info",
        json!({"id": 2020}),
        10404,
        "2020",
    )
    .await;
    refuses(
        &c,
        OLGA,
        Some(1010),
        "account/info",
        json!({"id": 1010}),
        10404,
        "1010",
    )
    .await;

    // Another customer's number, guessed: the same answer whether it exists or not, for
    // every method, and nothing changes.
    for (acting, id) in [
        (2020, 2020),
        (1010, 2020),
        (2020, 1010),
        (9999, 9999),
        (1010, 9999),
    ] {
        for (method, extra) in [
            ("account/info", json!({})),
            ("account/update_info", json!({"name": "Захват"})),
            ("account/attached_info", json!({})),
            ("account/users/list", json!({})),
            ("account/users/info", json!({"login": "bob"})),
            (
                "account/users/add",
                json!({"login": "alice", "role": "owner"}),
            ),
            (
                "account/users/create",
                json!({"login": "mole", "name": "M", "password": "mole-pass", "role": "owner"}),
            ),
            ("account/users/delete", json!({"login": "bob"})),
            (
                "account/users/set_role",
                json!({"login": "bob", "role": "user"}),
            ),
            (
                "account/users/set_session_restriction",
                json!({"login": "bob", "restriction": 1}),
            ),
            ("account/servants/list", json!({})),
        ] {
            let mut p = extra;
            p["id"] = json!(id);
            let (s, j) = exec(&c, ALICE, Some(acting), method, p).await;
            if acting == 1010 && id == 1010 {
                continue;
            }
            let who = if acting != 1010 { acting } else { id };
            assert_eq!(s, 404, "{method} {acting}/{id}: {j}");
            assert_eq!(
                j["general"]["message"],
                format!("account {who} not found or not available to you"),
                "{method}"
            );
        }
    }
    let j = ok(
        &c,
        BOB,
        Some(2020),
        "account/users/list",
        json!({"id": 2020}),
    )
    .await;
    assert_eq!(
        j["user"].as_array().map(Vec::len),
        Some(1),
        "bob's account is as it was: {j}"
    );
    let j = ok(&c, BOB, Some(2020), "account/info", json!({"id": 2020})).await;
    assert_eq!(j["account"]["name"], "ООО Бета");
    let out = c.cli(&["centre", "account-list"]);
    assert!(!stdout(&out).contains("mole"), "{}", stdout(&out));

    // Temporary access that has ended reads as no access. Owners are never temporary, and an
    // end in the past is refused.
    let until = |secs: i64| {
        keybridge::time::format(&(keybridge::time::now() + chrono::Duration::seconds(secs)))
    };
    for (role, when, says) in [
        ("owner", until(60), "owner"),
        ("administrator", until(-60), "past"),
    ] {
        let (s, j) = c
            .post("/centre/v1/accounts/2020/users",
                json!({"login": "tmp", "name": "Временный", "password": "tmp-pass-1", "role": role, "until": when}), true)
            .await;
        assert_eq!(s, 400, "{j}");
        assert!(j["error"].as_str().expect("e").contains(says), "{j}");
    }
    let (s, j) = c
        .post("/centre/v1/accounts/2020/users",
            json!({"login": "tmp", "name": "Временный", "password": "tmp-pass-1", "role": "administrator", "until": until(2)}), true)
        .await;
    assert_eq!(s, 201, "{j}");
    ok(
        &c,
        ("tmp", "tmp-pass-1"),
        Some(2020),
        "account/info",
        json!({"id": 2020}),
    )
    .await;
    refuses(
        &c,
        BOB,
        Some(2020),
        "account/users/set_role",
        json!({"id": 2020, "login": "tmp", "role": "owner"}),
        10400,
        "temporary",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    refuses(
        &c,
        ("tmp", "tmp-pass-1"),
        Some(2020),
        "account/info",
        json!({"id": 2020}),
        10404,
        "2020",
    )
    .await;
    let j = ok(
        &c,
        BOB,
        Some(2020),
        "account/users/info",
        json!({"id": 2020, "login": "tmp"}),
    )
    .await;
    assert_eq!(j["user"]["is_temporary"], true);

    // users/add reaches only users the account made or users of accounts the caller
    // administers: not another customer's people, whose existence it does not tell.
    ok(
        &c,
        BOB,
        Some(2020),
        "account/users/create",
        json!({"id": 2020, "login": "bobs-clerk", "name": "Клерк", "password": "clerk-pass"}),
    )
    .await;
    for login in ["alice", "Nestor", "no-such-login"] {
        refuses(
            &c,
            BOB,
            Some(2020),
            "account/users/add",
            json!({"id": 2020, "login": login}),
            10404,
            "that you may add",
        )
        .await;
    }
    ok(
        &c,
        BOB,
        Some(2020),
        "account/users/delete",
        json!({"id": 2020, "login": "bobs-clerk"}),
    )
    .await;
    ok(
        &c,
        BOB,
        Some(2020),
        "account/users/add",
        json!({"id": 2020, "login": "bobs-clerk"}),
    )
    .await;

    // Look-alike logins are one login; invisible characters are refused.
    alice(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "file", "name": "F"}),
    )
    .await;
    alice_refused(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "\u{fb01}le", "name": "F"}),
        10409,
        "taken",
    )
    .await;
    alice_refused(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "usr\u{200b}", "name": "U"}),
        10400,
        "invisible",
    )
    .await;

    // Twenty parallel calls with the right password share one check: none is refused.
    let usr_body = json!({"general": {"type": "usr", "method": "account/info"}, "auth": {"account": 1010}, "id": 1010});
    let calls = (0..20).map(|_| {
        c.account_api(
            "POST",
            "/execute",
            Some(("usr", "usr-pass-1")),
            Some(&usr_body),
        )
    });
    for (s, j) in futures::future::join_all(calls).await {
        assert_eq!(s, 200, "{j}");
    }

    // Failed logins from one address are throttled (10429 with Retry-After), and a right
    // password from it then waits too. A right password in between (sent in a header
    // spelled differently, so it is checked afresh) takes back only its own attempt: it does
    // not give the guesser a new round.
    let header = |spaces: usize| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode("usr:usr-pass-1");
        format!("Basic{}{b}", " ".repeat(spaces))
    };
    for _ in 0..9 {
        let r = c
            .account_api("POST", "/execute", Some(("bob", "guess")), Some(&json!({})))
            .await;
        refused(r, 10401, "wrong");
    }
    for spaces in [2, 3] {
        let r = c
            .client
            .post(format!("{}/a/adm/hs/ext_api/execute", c.base))
            .header("Authorization", header(spaces))
            .json(&usr_body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    }
    let mut last = (0, json!(null));
    for _ in 0..2 {
        last = c
            .account_api("POST", "/execute", Some(("bob", "guess")), Some(&json!({})))
            .await;
    }
    refused(last, 10429, "too many failed logins");
    refuses(
        &c,
        BOB,
        Some(2020),
        "account/info",
        json!({"id": 2020}),
        10429,
        "too many",
    )
    .await;
}

/// Concurrent role changes, detaches and creations on one account: never without an owner,
/// never one login twice.
async fn concurrent(db: Option<&str>) {
    let c = setup(db).await;
    for i in 0..6 {
        alice(&c, "account/users/create",
            json!({"id": 1010, "login": format!("o{i}"), "name": "O", "password": "owner-pass", "role": "owner"})).await;
    }
    let mut calls = Vec::new();
    for i in 0..6 {
        let who = (format!("o{i}"), "owner-pass".to_string());
        let c = &c;
        calls.push(async move {
            let me = (who.0.as_str(), who.1.as_str());
            // Each owner demotes the next and detaches alice, all at once.
            let a = exec(
                c,
                me,
                Some(1010),
                "account/users/set_role",
                json!({"id": 1010, "login": format!("o{}", (i + 1) % 6), "role": "user"}),
            )
            .await;
            let b = exec(
                c,
                me,
                Some(1010),
                "account/users/delete",
                json!({"id": 1010, "login": "alice"}),
            )
            .await;
            let d = exec(
                c,
                me,
                Some(1010),
                "account/users/create",
                json!({"id": 1010, "login": "twin", "name": "T", "password": "twin-pass"}),
            )
            .await;
            [a, b, d]
        });
    }
    let results = futures::future::join_all(calls).await;
    let created = results.iter().filter(|r| r[2].0 == 200).count();
    assert_eq!(created, 1, "one login once: {results:?}");
    for r in results.iter().flatten() {
        assert!(matches!(r.0, 200 | 403 | 404 | 409), "{r:?}");
    }
    // Whoever is still owner reads the account: it has at least one.
    let mut owners = 0;
    for i in 0..6 {
        let me = (format!("o{i}"), "owner-pass");
        let (s, j) = exec(
            &c,
            (me.0.as_str(), me.1),
            Some(1010),
            "account/users/list",
            json!({"id": 1010}),
        )
        .await;
        if s == 200 {
            owners = j["user"]
                .as_array()
                .expect("u")
                .iter()
                .filter(|u| u["role"] == "owner")
                .count();
            break;
        }
    }
    assert!(owners >= 1, "the account kept an owner");
}

#[tokio::test]
async fn concurrent_changes_on_sqlite() {
    concurrent(None).await;
}

#[tokio::test]
async fn concurrent_changes_on_postgres() {
    let Some(url) = fresh_postgres("kb_accounts_conc").await else {
        return;
    };
    concurrent(Some(&url)).await;
}

/// A user's session restriction, set through the account API, reaches a host with its next
/// update and refuses the session beyond it, until one ends.
#[tokio::test]
async fn session_restriction_reaches_the_host() {
    let c = setup(None).await;
    let product = json!({"key_id": "8A00", "product_name": "Бухгалтерия", "first_key_no": 5000000});
    assert_eq!(c.post("/centre/v1/products", product, true).await.0, 201);
    alice(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "Kassir", "name": "Кассир", "password": "kassir-pass"}),
    )
    .await;
    alice(
        &c,
        "account/users/set_session_restriction",
        json!({"id": 1010, "login": "kassir", "restriction": 1}),
    )
    .await;
    // A code of account 1010 (reserved for its ITN without naming it), and one of no account.
    let code = c
        .code(json!({"key_id": "8A00", "licence_count": 5, "account": 1010}))
        .await;
    let free = c.code(json!({"key_id": "8A00", "licence_count": 5})).await;
    let (_, list) = c.get("/centre/v1/codes", Some("admin")).await;
    let row = list["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .find(|r| r["code"] == code)
        .cloned()
        .expect("row");
    assert_eq!(row["account"], 1010);
    let config = format!(
        "[centre]\nurl = \"{}\"\nresponse_key = \"{}\"\n[licences]\ntrusted_centre_keys = [\"{}\"]\n",
        c.base,
        c.response_key_file().display(),
        c.trust_file().display()
    );
    let s = Server::start(Opts { demo: true, config }).await;
    let activate = |code: &str, itn: Value| json!({"ActivationCodeString": code, "ITN": itn, "IEC": null, "BlankKeyNo": null});
    assert_eq!(
        s.post("/api/licences", activate(&code, json!(1111111111)))
            .await
            .status,
        403,
        "reserved for the account's ITN"
    );
    let r = s
        .post("/api/licences", activate(&code, json!(1234567890)))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let owned_key = r.json()["KeyNo"].as_u64().expect("KeyNo");
    let out = c.cli(&["centre", "account-licences", "1010"]);
    let owned: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(owned["licences"][0]["key_no"], owned_key, "{owned}");
    assert!(owned["licences"][0]["binding"]
        .as_str()
        .expect("binding")
        .starts_with("computer:"));

    let session = |client: &str, user: &str, key: Option<u64>| {
        json!({"KeyID": "8A00", "ClientSessionID": client,
        "AppName": "1cv8", "UserName": user, "KeyNo": key})
    };
    assert_eq!(
        s.post("/api/sessions", session("k1", "KASSIR", Some(owned_key)))
            .await
            .status,
        201
    );
    s.post("/api/sessions", session("k2", "kassir", Some(owned_key)))
        .await
        .assert_error(403, "ESessionRestricted");
    // Other users are not restricted; the account's restriction does not reach another licence.
    assert_eq!(
        s.post("/api/sessions", session("a1", "alice", Some(owned_key)))
            .await
            .status,
        201
    );
    assert_eq!(
        s.post("/api/licences", activate(&free, json!(1234567890)))
            .await
            .status,
        201
    );
    assert_eq!(
        s.post(
            "/api/sessions",
            session("k3", "kassir", Some(owned_key + 1))
        )
        .await
        .status,
        201
    );
    // The first session ends: the next is allowed.
    let sessions = s.get("/api/sessions").await.json();
    let id = sessions["Sessions"]
        .as_array()
        .expect("s")
        .iter()
        .find(|x| x["ClientSessionID"] == "k1")
        .and_then(|x| x["ID"].as_str())
        .expect("k1")
        .to_owned();
    assert_eq!(
        s.call("DELETE", &format!("/api/sessions/{id}"), None)
            .await
            .status,
        202
    );
    assert_eq!(
        s.post("/api/sessions", session("k2", "kassir", Some(owned_key)))
            .await
            .status,
        201
    );
    s.post("/api/sessions", session("k4", "Kassir", Some(owned_key)))
        .await
        .assert_error(403, "ESessionRestricted");
    // The owner raises it to 2; the host learns at its next update.
    alice(
        &c,
        "account/users/set_session_restriction",
        json!({"id": 1010, "login": "kassir", "restriction": 2}),
    )
    .await;
    s.post("/api/sessions", session("k4", "Kassir", Some(owned_key)))
        .await
        .assert_error(403, "ESessionRestricted");
    assert_eq!(s.post("/api/licences/update", json!({})).await.status, 200);
    assert_eq!(
        s.post("/api/sessions", session("k4", "Kassir", Some(owned_key)))
            .await
            .status,
        201
    );
    s.post("/api/sessions", session("k5", "kassir", Some(owned_key)))
        .await
        .assert_error(403, "ESessionRestricted");
    // Sessions opened before a restriction existed count once it arrives.
    for client in ["n1", "n2"] {
        let r = s
            .post("/api/sessions", session(client, "Nestor", Some(owned_key)))
            .await;
        assert_eq!(r.status, 201);
    }
    alice(
        &c,
        "account/users/create",
        json!({"id": 1010, "login": "nestor", "name": "Нестор", "password": "nestor-pass"}),
    )
    .await;
    alice(
        &c,
        "account/users/set_session_restriction",
        json!({"id": 1010, "login": "nestor", "restriction": 2}),
    )
    .await;
    assert_eq!(s.post("/api/licences/update", json!({})).await.status, 200);
    // A seat is free (alice's session ends), but not for nestor.
    let sessions = s.get("/api/sessions").await.json();
    let id = sessions["Sessions"]
        .as_array()
        .expect("s")
        .iter()
        .find(|x| x["ClientSessionID"] == "a1")
        .and_then(|x| x["ID"].as_str())
        .expect("a1")
        .to_owned();
    assert_eq!(
        s.call("DELETE", &format!("/api/sessions/{id}"), None)
            .await
            .status,
        202
    );
    s.post("/api/sessions", session("n3", "NESTOR", Some(owned_key)))
        .await
        .assert_error(403, "ESessionRestricted");
    // Names that only look different are the same user.
    for name in [" nestor", "nestor ", "nes\u{200b}tor", "\u{ff2e}estor"] {
        s.post("/api/sessions", session("n4", name, Some(owned_key)))
            .await
            .assert_error(403, "ESessionRestricted");
    }
    // An offline host gets the same through the offline files: a licence fulfilled from a
    // request carries the restrictions, counted with the sessions on the account's others.
    let offline = c
        .code(json!({"key_id": "8A00", "licence_count": 3, "account": 1010}))
        .await;
    let (req, lic) = (s.dir.join("request.json"), s.dir.join("granted.licence"));
    let (r, l) = (req.to_str().expect("p"), lic.to_str().expect("p"));
    let out = s.cli(&[
        "licence",
        "request",
        "--code",
        &offline,
        "--itn",
        "1234567890",
        "--out",
        r,
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = c.cli(&["centre", "fulfil", r, "--out", l]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = s.cli(&["licence", "import", l]);
    assert!(out.status.success(), "{}", stdout(&out));
    let offline_key = owned_key + 2;
    assert_eq!(
        s.get(&format!("/api/licences/{offline_key}")).await.json()["Workable"],
        true
    );
    s.post("/api/sessions", session("k6", "kassir", Some(offline_key)))
        .await
        .assert_error(403, "ESessionRestricted");
    assert_eq!(
        s.post("/api/sessions", session("z1", "zoe", Some(offline_key)))
            .await
            .status,
        201
    );
}
