//! The small CLI commands: key, verify, licence import, sim, auth.

use super::{CliResult, DataArgs, FaultKind, SimCommand};
use crate::control::{self, Command};
use crate::crypto::{self, password::PasswordHash, PublicKey};
use crate::licence::{self, Binding, TrustStore};
use crate::store::{keyfile, software_keys};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn key_public(d: &DataArgs) -> CliResult {
    let config = d.config()?;
    let dir = d.data_dir(&config, false);
    let path = dir.join(keyfile::SERVER_KEY_FILE);
    if !path.exists() {
        return Err(format!(
            "no server key in {}: start the host once (keybridge serve --data {}) to make it",
            dir.display(),
            dir.display()
        ));
    }
    let signer = keyfile::load(&path).map_err(|e| e.to_string())?;
    print!("{}", signer.public_key().pem());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  curl -s -D headers.txt -o body.json -u admin:admin -H 'Licence-QueryID: 42' http://127.0.0.1:9099/api/licences\n  keybridge verify --public-key host.pem --headers headers.txt --body body.json"
)]
pub struct VerifyArgs {
    /// The response body exactly as received.
    #[arg(long, value_name = "FILE")]
    body: PathBuf,
    /// The response headers (as `curl -D` saves them); the signature and QueryID are taken
    /// from there.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["signature", "query_id"])]
    headers: Option<PathBuf>,
    /// The Licence-Signature value (base64).
    #[arg(long, required_unless_present = "headers")]
    signature: Option<String>,
    /// The Licence-QueryID the request sent, if any.
    #[arg(long)]
    query_id: Option<String>,
    /// The host's public key (PEM), e.g. from `keybridge key public` or GET /api/publickey.
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// Take the public key from this host data directory instead.
    #[command(flatten)]
    data: DataArgs,
}

/// Signature and QueryID from a saved header block; the last response in the file wins
/// (curl writes one block per response when following redirects).
fn from_headers(text: &str) -> (Option<String>, Option<String>) {
    let (mut sig, mut qsig, mut qid) = (None, None, None);
    for line in text.lines() {
        if line.starts_with("HTTP/") {
            (sig, qsig, qid) = (None, None, None);
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_owned());
        match name.trim().to_ascii_lowercase().as_str() {
            "licence-signature" => sig = value,
            "licence-querysignature" => qsig = value,
            "licence-queryid" => qid = value,
            _ => {}
        }
    }
    (sig.or(qsig), qid)
}

/// Why a (QueryID, body) pair cannot be an answer the host sent, whatever its signature: the
/// host signs only QueryIDs of its alphabet, never an empty body, and only JSON objects or
/// its PEM public key. A pair outside that is refused before the signature is looked at, so
/// a signature over other bytes cannot be passed off as an answer.
fn not_an_answer(query_id: Option<&str>, body: &[u8]) -> Option<String> {
    use crate::web::signing::{query_id_ok, MAX_QUERY_ID};
    if let Some(q) = query_id {
        if !query_id_ok(q.as_bytes()) {
            let shown: String = q.chars().take(80).collect();
            return Some(format!(
                "the QueryID {shown:?} is not one the host answers (1-{MAX_QUERY_ID} characters of A-Z, a-z, 0-9, '.', '_', ':', '-'); the host refuses such a request, so no genuine answer carries it"
            ));
        }
    }
    if body.is_empty() {
        return Some(
            "the body is empty; the host never signs an empty body (a HEAD answer carries no signature), so this is not an answer it sent".into(),
        );
    }
    if !(body.starts_with(b"{") || body.starts_with(b"-----BEGIN PUBLIC KEY-----")) {
        return Some(
            "the body is neither a JSON object nor the host's PEM public key; the host signs nothing else".into(),
        );
    }
    None
}

pub fn verify(a: &VerifyArgs) -> CliResult {
    let key = match &a.public_key {
        Some(p) => {
            let pem = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => {
            let config = a.data.config()?;
            let dir = a.data.data_dir(&config, false);
            keyfile::load(&dir.join(keyfile::SERVER_KEY_FILE))
                .map_err(|e| e.to_string())?
                .public_key()
                .clone()
        }
    };
    let body = std::fs::read(&a.body).map_err(|e| format!("{}: {e}", a.body.display()))?;
    let (sig, qid) = match &a.headers {
        Some(h) => {
            let text = std::fs::read_to_string(h).map_err(|e| format!("{}: {e}", h.display()))?;
            let (s, q) = from_headers(&text);
            (
                s.ok_or_else(|| format!("{}: no Licence-Signature header", h.display()))?,
                q,
            )
        }
        None => (a.signature.clone().unwrap_or_default(), a.query_id.clone()),
    };
    if let Some(why) = not_an_answer(qid.as_deref(), &body) {
        println!("refused: {why}");
        return Ok(ExitCode::from(1));
    }
    let sig = crypto::unb64(&sig).ok_or("the signature is not base64")?;
    let mut message = qid.unwrap_or_default().into_bytes();
    message.extend_from_slice(&body);
    match key.verify_raw(&message, &sig) {
        Ok(()) => {
            println!("signature OK (key {})", key.fingerprint());
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => {
            println!("signature does NOT verify");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn licence_import(file: &Path, d: &DataArgs) -> CliResult {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let config = d.config()?;
    let dir = d.data_dir(&config, false);
    // A running host installs it itself (and is the only way onto a USB key).
    match control::call(
        &dir,
        &Command::InstallLicence {
            licence: crypto::b64(&bytes),
        },
    ) {
        Ok(a) if a.ok => {
            println!("{}", a.message);
            return Ok(ExitCode::SUCCESS);
        }
        Ok(a) => return Err(a.message),
        Err(control::ControlError::NotRunning(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    // No host running: check the file as the host would, then put it in place.
    let mut trust = TrustStore::default();
    trust.add_dir(&crate::host::trust_dir(&dir))?;
    for p in &config.licences.trusted_centre_keys {
        trust.add_file(p)?;
    }
    let terms = licence::open(&bytes, &trust).map_err(|e| format!("{}: {e}", file.display()))?;
    match &terms.binding {
        Binding::Device(serial) => {
            return Err(format!(
                "this licence is for USB key {serial}: start the host with the key attached, then import again"
            ))
        }
        Binding::Computer(_) => {
            let id = crate::host::computer_id(config.computer_id.as_deref())?;
            terms
                .check_binding(&Binding::Computer(id))
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    crate::store::atomic::ensure_dir(&dir).map_err(|e| e.to_string())?;
    let path = software_keys::licence_path(&dir, &terms.key_id, terms.key_no);
    software_keys::write_licence(&path, &bytes).map_err(|e| e.to_string())?;
    println!(
        "licence {}.{} installed as {}",
        terms.key_id,
        terms.key_no,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn licence_request(
    code: &str,
    itn: Option<String>,
    iec: Option<String>,
    blank_key_no: Option<u64>,
    out: &Path,
    d: &DataArgs,
) -> CliResult {
    use crate::centre::wire::{ActivateBody, OfflineRequest, WireBinding, REQUEST_FORMAT};
    // The same local checks as the online path: a typo never reaches the vendor.
    let code = crate::centre::ActivationCode::parse(code).map_err(|e| e.to_string())?;
    let itn = itn.map(crate::licence::Itn::try_from).transpose()?;
    let iec = iec.map(crate::licence::Iec::try_from).transpose()?;
    let (binding, device_proof) = match blank_key_no {
        Some(serial) => {
            let challenge = crate::hal::attest::offline_challenge(
                &code.to_string(),
                itn.as_ref().map(crate::licence::Itn::as_str),
                iec.as_ref().map(crate::licence::Iec::as_str),
                serial,
            );
            let cmd = Command::AttestBlank {
                serial,
                challenge: hex::encode(challenge),
            };
            let a = answer(d, cmd)?;
            let proof = serde_json::from_value(a.data).map_err(|e| format!("device proof: {e}"))?;
            (WireBinding::Device(serial), Some(proof))
        }
        None => {
            let config = d.config()?;
            let id = crate::host::computer_id(config.computer_id.as_deref())?;
            (WireBinding::Computer(id), None)
        }
    };
    let request = OfflineRequest {
        format: REQUEST_FORMAT.into(),
        activation: ActivateBody {
            code: code.to_string(),
            itn: itn.map(String::from),
            iec: iec.map(String::from),
            binding,
            device_proof,
            challenge: None,
        },
    };
    let bytes = serde_json::to_vec_pretty(&request).map_err(|e| e.to_string())?;
    // It carries the activation code and the ITN (the restore proof): the user's eyes only.
    crate::store::atomic::write(out, &bytes, 0o600).map_err(|e| e.to_string())?;
    println!("activation request written to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn answer(d: &DataArgs, cmd: Command) -> Result<control::Answer, String> {
    let config = d.config()?;
    let dir = d.data_dir(&config, false);
    let a = control::call(&dir, &cmd).map_err(|e| e.to_string())?;
    if a.ok {
        Ok(a)
    } else {
        Err(a.message)
    }
}

pub fn sim(cmd: SimCommand) -> CliResult {
    match cmd {
        SimCommand::Plug { serial, data } => {
            let serial = serial.unwrap_or_else(|| {
                use rand::Rng;
                rand::thread_rng().gen_range(80_000_000..90_000_000)
            });
            println!("{}", answer(&data, Command::SimPlug { serial })?.message);
        }
        SimCommand::Unplug { serial, data } => {
            println!("{}", answer(&data, Command::SimUnplug { serial })?.message);
        }
        SimCommand::Fault {
            serial,
            kind,
            after_reports,
            data,
        } => {
            use crate::hal::sim::SimFault;
            let fault = match kind {
                FaultKind::Silent => SimFault::Silent { after_reports },
                FaultKind::Unplug => SimFault::Unplug { after_reports },
                FaultKind::UnplugBeforeReply => SimFault::UnplugBeforeReply,
                FaultKind::BadCrc => SimFault::BadCrc,
            };
            println!(
                "{}",
                answer(&data, Command::SimFault { serial, fault })?.message
            );
        }
        SimCommand::List(data) => {
            let a = answer(&data, Command::SimList)?;
            for row in a.data.as_array().into_iter().flatten() {
                let plugged = row["plugged"].as_bool().unwrap_or(false);
                println!(
                    "{}\t{}",
                    row["serial"],
                    if plugged { "plugged" } else { "unplugged" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn auth_hash() -> CliResult {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password: {e}"))?;
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        return Err("empty password".into());
    }
    println!("password_hash = \"{}\"", PasswordHash::new(pw));
    Ok(ExitCode::SUCCESS)
}
