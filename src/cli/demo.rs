//! `serve --demo`: a demo licensing centre runs in-process (SQLite in the data directory) with
//! a key the host trusts. On first start the host activates, through that centre and its
//! ordinary activation path, a software key with five licences and a key on a simulated USB
//! key; a second simulated USB key stays blank. Every start prints a few unused activation
//! codes, so a new user can activate within a minute. A later start keeps what is there.

use crate::centre::{ActivationRequest, Centre, CentreError, CodeSpec, DeviceChallenge, Product};
use crate::crypto::{CentreResponseKey, LicenceKey};
use crate::host::{Host, HostError};
use crate::licence::{Binding, Flags, Itn};
use crate::store::{atomic, keyfile};
use std::path::{Path, PathBuf};

pub const KEY_ID: &str = "672B";
pub const SOFTWARE_KEY_NO: u64 = 7_131_766;
pub const KEYED_SERIAL: u64 = 90_000_001;
pub const BLANK_SERIAL: u64 = 90_000_002;
pub const ITN: &str = "1234567890";
/// The demo customer account: the codes of the demo belong to it.
pub const ACCOUNT: u64 = 1010;
/// Its owner and a plain user (passwords made at the first start, kept in the demo folder).
pub const OWNER: &str = "demo-owner";
pub const USER: &str = "demo-user";
/// Unused codes kept on offer.
const FRESH_CODES: usize = 3;

/// Makes (once) the demo centre's keys and puts its licence key in the host's trust folder.
/// Runs before the host is built, so the host trusts it from the start.
pub fn prepare_centre(data_dir: &Path) -> Result<(LicenceKey, CentreResponseKey), HostError> {
    let demo = data_dir.join("demo");
    // The demo centre's keys and database (every unused code) are its user's alone.
    crate::centre::ensure_private_dir(&demo)
        .map_err(|e| HostError::Internal(format!("{}: {e}", demo.display())))?;
    let signer = LicenceKey::new(keyfile::load_or_create(&demo.join("centre-key.pem"))?);
    let response = CentreResponseKey::new(keyfile::load_or_create(
        &demo.join("centre-response-key.pem"),
    )?);
    let trust = crate::host::trust_dir(data_dir);
    atomic::ensure_dir(&trust)?;
    let pub_path = trust.join("demo-centre.pem");
    if !pub_path.exists() {
        atomic::write(&pub_path, signer.public_key().pem().as_bytes(), 0o644)?;
    }
    let response_pub = response_key_path(data_dir);
    if !response_pub.exists() {
        atomic::write(&response_pub, response.public_key().pem().as_bytes(), 0o644)?;
    }
    Ok((signer, response))
}

/// The demo centre's response key (public), which the host checks the centre's answers with.
pub fn response_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo").join("centre-response.pem")
}

/// The key the host checks its centre's answers with: `[centre] response_key`, or the demo
/// centre's when the demo centre is the host's centre (`serve --demo` without `[centre] url`).
pub fn centre_response_key(
    config: &crate::config::Config,
    data_dir: &Path,
    demo: bool,
) -> Result<Option<crate::crypto::PublicKey>, String> {
    let path = match (&config.centre.response_key, &config.centre.url) {
        (Some(p), _) => p.clone(),
        (None, None) if demo => response_key_path(data_dir),
        (None, _) => return Ok(None),
    };
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| format!("[centre] response_key {}: {e}", path.display()))?;
    crate::crypto::PublicKey::from_pem(&pem)
        .map(Some)
        .map_err(|e| format!("[centre] response_key {}: {e}", path.display()))
}

/// The demo centre's database.
pub fn centre_db(data_dir: &Path) -> PathBuf {
    data_dir.join("demo").join("centre.db")
}

fn centre_error(e: CentreError) -> HostError {
    HostError::Internal(format!("demo centre: {e}"))
}

/// Provisions the demo keys on a data directory that has none yet, and tops up the unused
/// codes; returns what it did, for printing.
pub async fn provision(
    host: &Host,
    centre: &Centre,
    account_api: &str,
) -> Result<Vec<String>, HostError> {
    let marker = host.data_dir().join("demo").join("provisioned");
    let mut said = Vec::new();
    let itn = Itn::try_from(ITN.to_string()).ok();
    let account = demo_account(host.data_dir(), centre).await?;
    if marker.exists() {
        said.push(format!(
            "demo data already in {}: kept as it is",
            host.data_dir().display()
        ));
    } else {
        let product = Product {
            key_id: KEY_ID.into(),
            product_name: "Тестовая серия".into(),
            article: "1111111111111".into(),
            article_name: "Тестовая номенклатура для проверки работоспособности системы".into(),
            product_version: 0,
            product_version_name: None,
            flags: Flags(0),
            first_key_no: Some(SOFTWARE_KEY_NO),
        };
        match centre.add_product(&product).await {
            Ok(()) | Err(CentreError::ProductExists(_)) => {}
            Err(e) => return Err(centre_error(e)),
        }
        for serial in [KEYED_SERIAL, BLANK_SERIAL] {
            if !host.sim().plugged().contains(&serial) {
                host.sim_plug(serial).await?;
            }
        }
        for (count, blank) in [(5, None), (1, Some(KEYED_SERIAL))] {
            let code = centre
                .issue_code(&CodeSpec {
                    account: Some(ACCOUNT),
                    ..CodeSpec::new(KEY_ID, count)
                })
                .await
                .map_err(centre_error)?;
            // Activated at the demo centre itself (a configured [centre] url may be another
            // centre), installed through the host's verified install path.
            let (binding, device_proof) = match blank {
                Some(serial) => {
                    // Activated like an offline request: the proof is bound to this request.
                    let challenge = crate::hal::attest::offline_challenge(
                        &code.to_string(),
                        itn.as_ref().map(Itn::as_str),
                        None,
                        serial,
                    );
                    (
                        Binding::Device(serial),
                        Some(host.attest_blank(serial, challenge).await?),
                    )
                }
                None => (Binding::Computer(host.computer_id().into()), None),
            };
            let request = ActivationRequest {
                code,
                itn: itn.clone(),
                iec: None,
                binding,
                device_proof,
                // Straight to the centre, like `centre fulfil`: never over HTTP.
                challenge: DeviceChallenge::RequestBound,
            };
            let (_, doc) = centre.activate(&request).await.map_err(centre_error)?;
            let e = host.install_licence(doc).await?;
            said.push(match blank {
                None => format!(
                    "software key {KEY_ID}.{}: {count} licences, bound to ComputerID {}",
                    e.key_no,
                    host.computer_id()
                ),
                Some(s) => format!(
                    "simulated USB key {s}: licence {KEY_ID}.{} installed ({count} licence)",
                    e.key_no
                ),
            });
        }
        said.push(format!("simulated USB key {BLANK_SERIAL}: blank"));
        said.push("user memory passwords are empty on every key".into());
        atomic::write(&marker, b"demo provisioned\n", 0o644)?;
    }
    let codes = centre.list_codes().await.map_err(centre_error)?;
    let mut fresh: Vec<String> = codes
        .into_iter()
        .filter(|c| c.activation.is_none())
        .map(|c| c.code)
        .collect();
    while fresh.len() < FRESH_CODES {
        let code = centre
            .issue_code(&CodeSpec {
                account: Some(ACCOUNT),
                ..CodeSpec::new(KEY_ID, 2)
            })
            .await
            .map_err(centre_error)?;
        fresh.push(code.to_string());
    }
    said.push(format!(
        "demo customer account {ACCOUNT} (ITN {ITN}; the demo codes are its) at the account API {account_api}/execute:"
    ));
    for (login, role, password) in &account {
        said.push(format!("  {login} ({role}) password {password}"));
    }
    if let Some((login, _, password)) = account.first() {
        said.push(format!(
            "  try: curl -u {login}:{password} {account_api}/execute/usr/account/list"
        ));
    }
    said.push(format!(
        "unused demo activation codes (2 licences each; POST /api/licences with ITN {ITN}, or add \"BlankKeyNo\": {BLANK_SERIAL} for the blank):"
    ));
    said.extend(fresh.into_iter().map(|c| format!("  {c}")));
    Ok(said)
}

/// Makes (once) the demo customer account with its owner and a plain user, and returns each
/// user's login, role and password. The passwords are made at random the first time and kept
/// in `demo/account-users` (0600, in the private demo folder), so every start can print them.
async fn demo_account(
    data_dir: &Path,
    centre: &Centre,
) -> Result<Vec<(String, String, String)>, HostError> {
    use crate::centre::accounts::admin;
    let file = data_dir.join("demo").join("account-users");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let users: Vec<(String, String, String)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ' ');
                Some((f.next()?.into(), f.next()?.into(), f.next()?.into()))
            })
            .collect();
        if users.len() == 2 {
            return Ok(users);
        }
    }
    let fail = |e: crate::centre::accounts::AccountError| centre_error(e.into());
    let (owner_pw, user_pw) = (admin::generated_password(), admin::generated_password());
    if centre.account_card(ACCOUNT).await.is_ok() {
        // The account is there but its passwords were lost: new ones.
        for (login, pw) in [(OWNER, &owner_pw), (USER, &user_pw)] {
            let body = admin::PasswordBody {
                password: Some(pw.clone()),
            };
            admin::reset_password(centre, login, &body)
                .await
                .map_err(fail)?;
        }
    } else {
        add_demo_account(centre, &owner_pw, &user_pw)
            .await
            .map_err(fail)?;
    }
    let users = vec![
        (OWNER.to_owned(), "owner".to_owned(), owner_pw),
        (USER.to_owned(), "user".to_owned(), user_pw),
    ];
    let text: String = users
        .iter()
        .map(|(l, r, p)| format!("{l} {r} {p}\n"))
        .collect();
    atomic::write(&file, text.as_bytes(), 0o600)?;
    Ok(users)
}

async fn add_demo_account(
    centre: &Centre,
    owner_pw: &str,
    user_pw: &str,
) -> Result<(), crate::centre::accounts::AccountError> {
    use crate::centre::accounts::admin::{self, AccountBody, MemberBody, UserBody};
    let user = |login: &str, name: &str, password: &str| UserBody {
        login: login.into(),
        name: Some(name.into()),
        email: None,
        password: Some(password.into()),
    };
    admin::add_account(
        centre,
        &AccountBody {
            id: Some(ACCOUNT),
            name: "ООО «Демо»".into(),
            itn: Some(ITN.into()),
            iec: None,
            site: String::new(),
            city: String::new(),
            email: String::new(),
            phone: String::new(),
            owner: user(OWNER, "Демо Владелец", owner_pw),
        },
    )
    .await?;
    admin::add_member(
        centre,
        ACCOUNT,
        &MemberBody {
            user: user(USER, "Демо Пользователь", user_pw),
            role: "user".into(),
            until: None,
        },
    )
    .await?;
    Ok(())
}

/// The demo release (issue 10): a distribution of the demo product, its configuration, and
/// the version the demo's curl command says is installed.
pub const RELEASE_TYPE: &str = "KEYBRIDGE_DEMO";
pub const RELEASE_VERSION: &str = "1.0.0.2";
pub const RELEASE_CONF: &str = "КомплекснаяАвтоматизация_CRM";
pub const RELEASE_CONF_VERSION: &str = "2.5.8.191";

/// The demo centre's release settings: its store in the demo folder.
pub fn release_settings(data_dir: &Path) -> crate::centre::releases::ReleaseSettings {
    crate::centre::releases::ReleaseSettings::new(data_dir.join("demo").join("releases"))
}

/// Publishes (once) the demo release, with a small file made here, and returns the lines to
/// print: a ready `curl` command that lists it for the demo software key's activation code.
pub async fn release(centre: &Centre, url: &str) -> Result<Vec<String>, HostError> {
    use crate::centre::releases::ReleaseMeta;
    let meta = ReleaseMeta {
        type_: RELEASE_TYPE.into(),
        version: RELEASE_VERSION.into(),
        name: "ДемоРасширение".into(),
        description: "A demo release of the demo product series 672B".into(),
        developer: "keybridge".into(),
        changelog: "- The first demo release.".into(),
        promo_link: String::new(),
        lic_product_id: KEY_ID.into(),
        lic_feature_id: None,
        conf: RELEASE_CONF.into(),
        tested_conf_versions: vec![RELEASE_CONF_VERSION.into()],
        min_conf_version: "2.5.8.0".into(),
    };
    let exists = centre
        .release_exists(RELEASE_TYPE, RELEASE_VERSION)
        .await
        .map_err(|e| HostError::Internal(format!("demo release: {e}")))?;
    if !exists {
        let releases = centre
            .releases()
            .map_err(|e| HostError::Internal(format!("demo release: {e}")))?;
        let mut s = releases
            .store
            .stage()
            .await
            .map_err(|e| HostError::Internal(format!("demo release: {e}")))?;
        let text = format!(
            "keybridge demo release {RELEASE_VERSION} of {RELEASE_TYPE}\n{}",
            "This file stands for a distribution (a .cfe or a .zip).\n".repeat(64)
        );
        s.write(axum::body::Bytes::from(text.into_bytes()))
            .await
            .map_err(|e| HostError::Internal(format!("demo release: {e}")))?;
        let f = s
            .finish(format!("{RELEASE_TYPE}_{RELEASE_VERSION}.txt"))
            .await
            .map_err(|e| HostError::Internal(format!("demo release: {e}")))?;
        centre
            .publish_release(&meta, vec![f])
            .await
            .map_err(|e| HostError::Internal(format!("demo release: {e}")))?;
    }
    let key = centre
        .list_codes()
        .await
        .map_err(centre_error)?
        .into_iter()
        .find(|c| {
            c.activation
                .as_ref()
                .is_some_and(|a| a.key_no == SOFTWARE_KEY_NO)
        })
        .map(|c| c.code);
    let Some(key) = key else {
        return Ok(vec![format!(
            "demo release {RELEASE_TYPE} {RELEASE_VERSION} published (no demo software key to list it for)"
        )]);
    };
    let body = serde_json::json!({
        "INSTALLED_VERSION": "1.0.0.1",
        "TYPE": RELEASE_TYPE,
        "CONF": RELEASE_CONF,
        "CONF_VERSION": RELEASE_CONF_VERSION,
        "KEY": key,
        "SHOW_UNTESTED": "N",
        "COUNT_DOWNLOADS": "Y",
    });
    Ok(vec![
        format!("demo release {RELEASE_TYPE} {RELEASE_VERSION} of series {KEY_ID}; list it for the demo licence's KEY with:"),
        format!(
            "  curl -s -X POST {url}/centre/v1/releases/available -H 'Content-Type: application/json' -d '{body}'"
        ),
        format!("the centre's API page: {url}/centre/docs/"),
    ])
}
