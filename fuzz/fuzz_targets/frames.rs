//! The USB key's wire, as a device (or anything on the bus posing as one) can send it: frame
//! decoding, report reassembly, the firmware's request decoder, the host's reply readers, and
//! the host's side of a whole command against a device answering with these bytes.
//!
//! The first byte picks what the rest is, so the fuzzer can reach past the CRC (which it
//! could not forge by chance) into the decoders behind it.
#![no_main]

use keybridge::hal::protocol::command::{decode_attestation, decode_info, Reply, Request};
use keybridge::hal::protocol::frame::{Frame, MAX_PAYLOAD};
use keybridge::hal::protocol::report::{split, Reassembler, Report, REPORT_SIZE};
use keybridge::hal::{KeyDevice, ProtocolDevice, Transport, TransportError};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// A device that answers with the given reports, then times out.
struct Scripted(std::vec::IntoIter<Report>);

impl Transport for Scripted {
    fn write_report(&mut self, _: &Report) -> Result<(), TransportError> {
        Ok(())
    }
    fn read_report(&mut self, _: Duration) -> Result<Report, TransportError> {
        self.0.next().ok_or(TransportError::Timeout)
    }
    fn describe(&self) -> String {
        "fuzz".into()
    }
}

fn reports(bytes: &[u8]) -> Vec<Report> {
    bytes
        .chunks(REPORT_SIZE)
        .map(|c| {
            let mut r = [0u8; REPORT_SIZE];
            r[..c.len()].copy_from_slice(c);
            r
        })
        .collect()
}

/// Everything that reads a frame's code and payload.
fn decoders(f: &Frame) {
    if let Ok(r) = Request::from_frame(f) {
        // What the firmware accepts is exactly what the host would have sent for it.
        assert_eq!(r.to_frame(f.tag).expect("fits").payload, f.payload);
    }
    if let Ok(r) = Reply::from_frame(f) {
        let _ = r.into_result();
    }
    let _ = decode_info(&f.payload);
    let _ = decode_attestation(&f.payload);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // Raw bytes as one frame: decoding is canonical.
        0 => {
            if let Ok(f) = Frame::decode(rest) {
                assert_eq!(f.encode().expect("re-encode"), rest);
                decoders(&f);
            }
        }
        // Raw bytes as a stream of reports.
        1 => {
            let mut re = Reassembler::default();
            for r in reports(rest) {
                if let Ok(Some(bytes)) = re.push(&r) {
                    assert!(
                        bytes.len() <= MAX_PAYLOAD + 64,
                        "{} bytes held",
                        bytes.len()
                    );
                    if let Ok(f) = Frame::decode(&bytes) {
                        decoders(&f);
                    }
                }
            }
        }
        // Code, tag and payload as they arrive past the CRC.
        2 => {
            if rest.len() >= 3 {
                let tag = u16::from_le_bytes([rest[1], rest[2]]);
                let f = Frame::new(rest[0], tag, rest[3..].to_vec());
                decoders(&f);
            }
        }
        // The host sends a command; the device answers with garbage reports (the first
        // `rest[1]` bytes) and then a well-formed frame of tag 1 with this status and payload.
        _ => {
            if rest.len() < 3 {
                return;
            }
            let (command, garbage_len) = (rest[0], usize::from(rest[1]));
            let rest = &rest[2..];
            let (garbage, reply) = rest.split_at(garbage_len.min(rest.len()));
            let mut script = reports(garbage);
            if let Some((&status, payload)) = reply.split_first() {
                if let Ok(bytes) = Frame::new(status, 1, payload.to_vec()).encode() {
                    script.extend(split(&bytes).expect("one frame"));
                }
            }
            let mut d = ProtocolDevice::new(Scripted(script.into_iter()))
                .with_timeout(Duration::from_secs(5));
            let _ = match command % 6 {
                0 => d.info().map(drop),
                1 => d.read_licence().map(drop),
                2 => d.read_memory("").map(drop),
                3 => d.attest(&[0; 32]).map(drop),
                4 => d.install_licence(b"{}"),
                _ => d.write_memory("p", "v"),
            };
        }
    }
});
