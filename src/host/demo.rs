//! `serve --demo`: a demo centre key that the host trusts, a software key with five licences,
//! a simulated USB key with a licence installed, and a blank simulated USB key. Made once; a
//! later start on the same data directory keeps what is there.

use super::{Host, HostError};
use crate::crypto::Signer;
use crate::licence::{self, Binding, Itn, LicenceTerms};
use crate::store::{atomic, keyfile};
use std::path::Path;

pub const KEY_ID: &str = "672B";
pub const SOFTWARE_KEY_NO: u64 = 7_131_766;
pub const USB_KEY_NO: u64 = 7_131_767;
pub const KEYED_SERIAL: u64 = 90_000_001;
pub const BLANK_SERIAL: u64 = 90_000_002;

/// Makes (once) the demo centre's key and puts its public key in the host's trust folder.
/// Runs before the host is built, so the host trusts it from the start.
pub fn prepare_centre(data_dir: &Path) -> Result<Signer, HostError> {
    let signer = keyfile::load_or_create(&data_dir.join("demo").join("centre-key.pem"))?;
    let trust = super::trust_dir(data_dir);
    atomic::ensure_dir(&trust)?;
    let pub_path = trust.join("demo-centre.pem");
    if !pub_path.exists() {
        atomic::write(&pub_path, signer.public_key().pem().as_bytes(), 0o644)?;
    }
    Ok(signer)
}

fn terms(key_no: u64, reg_no: u64, count: u32, binding: Binding) -> LicenceTerms {
    LicenceTerms {
        reg_no,
        activation_code: "4345-9320-2035-7421-5361".into(),
        itn: Itn::try_from("1234567890".to_string()).ok(),
        product_name: "Тестовая серия".into(),
        article: "1111111111111".into(),
        article_name: "Тестовая номенклатура для проверки работоспособности системы".into(),
        ..LicenceTerms::new(key_no, KEY_ID, count, binding)
    }
}

/// Provisions the demo keys on a data directory that has none yet; returns what it did, for
/// printing.
pub async fn provision(host: &Host, centre: &Signer) -> Result<Vec<String>, HostError> {
    let marker = host.data_dir().join("demo").join("provisioned");
    if marker.exists() {
        return Ok(vec![format!(
            "demo data already in {}: kept as it is",
            host.data_dir().display()
        )]);
    }
    let sign = |t: &LicenceTerms| licence::sign(t, centre).map_err(HostError::from);
    let mut said = Vec::new();

    let sw = terms(
        SOFTWARE_KEY_NO,
        202,
        5,
        Binding::Computer(host.computer_id().into()),
    );
    host.install_licence(sign(&sw)?).await?;
    said.push(format!(
        "software key {KEY_ID}.{SOFTWARE_KEY_NO}: 5 licences, bound to ComputerID {}",
        host.computer_id()
    ));

    for serial in [KEYED_SERIAL, BLANK_SERIAL] {
        if !host.sim().plugged().contains(&serial) {
            host.sim_plug(serial).await?;
        }
    }
    let usb = terms(USB_KEY_NO, 203, 1, Binding::Device(KEYED_SERIAL));
    host.install_licence(sign(&usb)?).await?;
    said.push(format!(
        "simulated USB key {KEYED_SERIAL}: licence {KEY_ID}.{USB_KEY_NO} installed (1 licence)"
    ));
    said.push(format!("simulated USB key {BLANK_SERIAL}: blank"));
    said.push("user memory passwords are empty on every key".into());

    atomic::write(&marker, b"demo provisioned\n", 0o644)?;
    Ok(said)
}
