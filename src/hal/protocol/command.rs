//! Commands and replies, and their payload encodings. Strings are `u16 length | UTF-8`.

use super::frame::{Frame, FrameError, MAX_PAYLOAD};
use crate::hal::{DeviceError, DeviceInfo, PasswordChange};
use crate::keymem::MemoryError;

pub mod opcode {
    pub const GET_INFO: u8 = 0x01;
    pub const READ_LICENCE: u8 = 0x02;
    pub const INSTALL_LICENCE: u8 = 0x03;
    pub const READ_MEMORY: u8 = 0x04;
    pub const WRITE_MEMORY: u8 = 0x05;
    pub const SET_PASSWORDS: u8 = 0x06;
    pub const RESET_MEMORY: u8 = 0x07;
    pub const REPLACE_LICENCE: u8 = 0x08;
    pub const ATTEST: u8 = 0x09;
}

/// Reply status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0x00,
    WrongPassword = 0x10,
    Locked = 0x11,
    NotBlank = 0x12,
    NoLicence = 0x13,
    TooLarge = 0x14,
    PasswordTooLong = 0x15,
    BadFrame = 0x20,
    UnknownCommand = 0x21,
    BadPayload = 0x22,
    StorageFailure = 0x30,
}

impl Status {
    pub fn from_code(c: u8) -> Option<Status> {
        use Status::*;
        [
            Ok,
            WrongPassword,
            Locked,
            NotBlank,
            NoLicence,
            TooLarge,
            PasswordTooLong,
            BadFrame,
            UnknownCommand,
            BadPayload,
            StorageFailure,
        ]
        .into_iter()
        .find(|s| *s as u8 == c)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    GetInfo,
    ReadLicence,
    InstallLicence(Vec<u8>),
    /// Replaces the installed licence (an update from the centre); refused on a blank.
    ReplaceLicence(Vec<u8>),
    ReadMemory {
        password: String,
    },
    WriteMemory {
        password: String,
        value: String,
    },
    SetPasswords {
        read: String,
        write: String,
        new_read: String,
        new_write: String,
    },
    ResetMemory,
    /// Proves the device genuine: it signs the nonce with its factory-certified key.
    Attest {
        nonce: [u8; 32],
    },
}

/// A device's reply: status plus payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub payload: Vec<u8>,
}

/// Appends `u16 length | bytes`; a field longer than the length can say is refused.
fn put_bytes(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), FrameError> {
    let n = u16::try_from(b.len()).map_err(|_| FrameError::FieldTooLarge {
        field,
        size: b.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), FrameError> {
    put_bytes(out, field, s.as_bytes())
}

/// A whole-payload field (a licence document) must fit one frame.
fn put_all(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), FrameError> {
    if b.len() > MAX_PAYLOAD {
        return Err(FrameError::FieldTooLarge {
            field,
            size: b.len(),
            max: MAX_PAYLOAD,
        });
    }
    out.extend_from_slice(b);
    Ok(())
}

/// Reads length-prefixed strings off a payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u16()?;
        let b = self.bytes(usize::from(n))?;
        String::from_utf8(b.to_vec()).ok()
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

impl Request {
    /// Encodes the request; a field too large for the protocol is refused, never cut.
    pub fn to_frame(&self, tag: u16) -> Result<Frame, FrameError> {
        let mut p = Vec::new();
        let code = match self {
            Request::GetInfo => opcode::GET_INFO,
            Request::ReadLicence => opcode::READ_LICENCE,
            Request::InstallLicence(doc) => {
                put_all(&mut p, "the licence", doc)?;
                opcode::INSTALL_LICENCE
            }
            Request::ReplaceLicence(doc) => {
                put_all(&mut p, "the licence", doc)?;
                opcode::REPLACE_LICENCE
            }
            Request::ReadMemory { password } => {
                put_str(&mut p, "the read password", password)?;
                opcode::READ_MEMORY
            }
            Request::WriteMemory { password, value } => {
                put_str(&mut p, "the write password", password)?;
                put_str(&mut p, "the memory value", value)?;
                opcode::WRITE_MEMORY
            }
            Request::SetPasswords {
                read,
                write,
                new_read,
                new_write,
            } => {
                put_str(&mut p, "the read password", read)?;
                put_str(&mut p, "the write password", write)?;
                put_str(&mut p, "the new read password", new_read)?;
                put_str(&mut p, "the new write password", new_write)?;
                opcode::SET_PASSWORDS
            }
            Request::ResetMemory => opcode::RESET_MEMORY,
            Request::Attest { nonce } => {
                p.extend_from_slice(nonce);
                opcode::ATTEST
            }
        };
        if p.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(p.len()));
        }
        Ok(Frame::new(code, tag, p))
    }

    /// Device side: decodes a request frame. `Err` carries the status to reply with.
    pub fn from_frame(f: &Frame) -> Result<Request, Status> {
        let mut c = Cursor(&f.payload);
        let req = match f.code {
            opcode::GET_INFO => Some(Request::GetInfo),
            opcode::READ_LICENCE => Some(Request::ReadLicence),
            opcode::INSTALL_LICENCE => return Ok(Request::InstallLicence(f.payload.clone())),
            opcode::REPLACE_LICENCE => return Ok(Request::ReplaceLicence(f.payload.clone())),
            opcode::READ_MEMORY => c.string().map(|password| Request::ReadMemory { password }),
            opcode::WRITE_MEMORY => (|| {
                Some(Request::WriteMemory {
                    password: c.string()?,
                    value: c.string()?,
                })
            })(),
            opcode::SET_PASSWORDS => (|| {
                Some(Request::SetPasswords {
                    read: c.string()?,
                    write: c.string()?,
                    new_read: c.string()?,
                    new_write: c.string()?,
                })
            })(),
            opcode::RESET_MEMORY => Some(Request::ResetMemory),
            opcode::ATTEST => c.bytes(32).map(|b| {
                let mut nonce = [0u8; 32];
                nonce.copy_from_slice(b);
                Request::Attest { nonce }
            }),
            _ => return Err(Status::UnknownCommand),
        };
        match (req, c.end()) {
            (Some(r), Some(())) => Ok(r),
            _ => Err(Status::BadPayload),
        }
    }
}

impl PasswordChange {
    pub fn to_request(&self) -> Request {
        Request::SetPasswords {
            read: self.read.clone(),
            write: self.write.clone(),
            new_read: self.new_read.clone(),
            new_write: self.new_write.clone(),
        }
    }
}

impl Reply {
    pub fn ok(payload: Vec<u8>) -> Reply {
        Reply {
            status: Status::Ok,
            payload,
        }
    }

    pub fn status(status: Status) -> Reply {
        Reply {
            status,
            payload: Vec::new(),
        }
    }

    pub fn to_frame(&self, tag: u16) -> Frame {
        Frame::new(self.status as u8, tag, self.payload.clone())
    }

    pub fn from_frame(f: &Frame) -> Result<Reply, DeviceError> {
        let status = Status::from_code(f.code)
            .ok_or_else(|| DeviceError::Protocol(format!("unknown status 0x{:02x}", f.code)))?;
        Ok(Reply {
            status,
            payload: f.payload.clone(),
        })
    }

    /// Device side: the reply for a memory error. A lock longer than the u32 field can say
    /// is sent as the longest it can (the key stays locked at least that long); a size limit
    /// that does not fit is refused, as a wrong limit would mislead the host.
    pub fn memory_error(e: &MemoryError) -> Result<Reply, FrameError> {
        let limit = |field: &'static str, max: usize| {
            u32::try_from(max).map_err(|_| FrameError::FieldTooLarge {
                field,
                size: max,
                max: u32::MAX as usize,
            })
        };
        let (status, n) = match e {
            MemoryError::WrongPassword { attempts_left } => (Status::WrongPassword, *attempts_left),
            MemoryError::Locked { retry_after_secs } => (
                Status::Locked,
                u32::try_from(*retry_after_secs).unwrap_or(u32::MAX),
            ),
            MemoryError::TooLarge { max, .. } => {
                (Status::TooLarge, limit("the value limit", *max)?)
            }
            MemoryError::PasswordTooLong { max, .. } => {
                (Status::PasswordTooLong, limit("the password limit", *max)?)
            }
        };
        Ok(Reply {
            status,
            payload: n.to_le_bytes().to_vec(),
        })
    }

    /// Host side: turns a non-OK reply into the matching error.
    pub fn into_result(self) -> Result<Vec<u8>, DeviceError> {
        let n = Cursor(&self.payload).u32().unwrap_or(0);
        Err(match self.status {
            Status::Ok => return Ok(self.payload),
            Status::WrongPassword => {
                DeviceError::Memory(MemoryError::WrongPassword { attempts_left: n })
            }
            Status::Locked => DeviceError::Memory(MemoryError::Locked {
                retry_after_secs: u64::from(n),
            }),
            Status::TooLarge => DeviceError::TooLarge { max: n },
            Status::PasswordTooLong => DeviceError::Memory(MemoryError::PasswordTooLong {
                max: n as usize,
                got: 0,
            }),
            Status::NotBlank => DeviceError::NotBlank,
            Status::NoLicence => DeviceError::NoLicence,
            Status::StorageFailure => DeviceError::Storage,
            Status::BadFrame => DeviceError::Refused("the device received a damaged frame".into()),
            Status::UnknownCommand => DeviceError::Refused("unknown command".into()),
            Status::BadPayload => DeviceError::Refused("malformed command payload".into()),
        })
    }
}

/// ATTEST reply: serial u64, blank u8, then device key (DER), certificate and signature, each
/// `u16 length | bytes`.
pub fn encode_attestation(a: &crate::hal::Attestation) -> Result<Vec<u8>, FrameError> {
    let mut p = Vec::new();
    p.extend_from_slice(&a.serial.to_le_bytes());
    p.push(u8::from(a.blank));
    put_bytes(&mut p, "the device key", &a.device_key)?;
    put_bytes(&mut p, "the certificate", &a.certificate)?;
    put_bytes(&mut p, "the signature", &a.signature)?;
    Ok(p)
}

pub fn decode_attestation(p: &[u8]) -> Result<crate::hal::Attestation, DeviceError> {
    let mut c = Cursor(p);
    (|| {
        let serial = c.u64()?;
        let blank = c.bytes(1)?[0] != 0;
        let mut field = || -> Option<Vec<u8>> {
            let n = c.u16()?;
            Some(c.bytes(usize::from(n))?.to_vec())
        };
        let (device_key, certificate, signature) = (field()?, field()?, field()?);
        c.end()?;
        Some(crate::hal::Attestation {
            serial,
            blank,
            device_key,
            certificate,
            signature,
        })
    })()
    .ok_or_else(|| DeviceError::Protocol("malformed ATTEST reply".into()))
}

/// GET_INFO payload: serial u64, firmware major u8, minor u8, blank u8, memory capacity u16,
/// licence capacity u16.
pub fn encode_info(i: &DeviceInfo, major: u8, minor: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(15);
    p.extend_from_slice(&i.serial.to_le_bytes());
    p.push(major);
    p.push(minor);
    p.push(u8::from(i.blank));
    p.extend_from_slice(&i.memory_capacity.to_le_bytes());
    p.extend_from_slice(&i.licence_capacity.to_le_bytes());
    p
}

pub fn decode_info(p: &[u8]) -> Result<DeviceInfo, DeviceError> {
    let mut c = Cursor(p);
    (|| {
        let serial = c.u64()?;
        let v = c.bytes(3)?;
        let (major, minor, blank) = (v[0], v[1], v[2]);
        let memory_capacity = c.u16()?;
        let licence_capacity = c.u16()?;
        c.end()?;
        Some(DeviceInfo {
            serial,
            firmware: format!("{major}.{minor}"),
            blank: blank != 0,
            memory_capacity,
            licence_capacity,
        })
    })()
    .ok_or_else(|| DeviceError::Protocol("malformed GET_INFO reply".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::GetInfo,
            Request::ReadLicence,
            Request::InstallLicence(b"doc".to_vec()),
            Request::ReplaceLicence(b"doc".to_vec()),
            Request::ReadMemory {
                password: "пароль".into(),
            },
            Request::WriteMemory {
                password: "p".into(),
                value: "v".into(),
            },
            Request::SetPasswords {
                read: "a".into(),
                write: "b".into(),
                new_read: "".into(),
                new_write: "d".into(),
            },
            Request::ResetMemory,
            Request::Attest { nonce: [7; 32] },
        ];
        for r in reqs {
            assert_eq!(Request::from_frame(&r.to_frame(1).expect("encode")), Ok(r));
        }
        let mut f = Request::ReadMemory {
            password: "x".into(),
        }
        .to_frame(1)
        .expect("encode");
        f.payload.push(0);
        assert_eq!(Request::from_frame(&f), Err(Status::BadPayload));
    }

    #[test]
    fn oversized_fields_are_refused_not_cut() {
        let long = "p".repeat(usize::from(u16::MAX) + 1);
        let e = Request::ReadMemory {
            password: long.clone(),
        }
        .to_frame(1)
        .unwrap_err();
        assert_eq!(
            e,
            FrameError::FieldTooLarge {
                field: "the read password",
                size: long.len(),
                max: 65_535
            }
        );
        assert!(e.to_string().contains("read password"), "{e}");
        // Each field fits its u16 length, but together they overflow the frame.
        let big = "v".repeat(usize::from(u16::MAX));
        assert_eq!(
            Request::WriteMemory {
                password: String::new(),
                value: big.clone(),
            }
            .to_frame(1),
            Err(FrameError::TooLarge(big.len() + 4))
        );
        assert!(matches!(
            Request::InstallLicence(vec![0; MAX_PAYLOAD + 1]).to_frame(1),
            Err(FrameError::FieldTooLarge {
                field: "the licence",
                ..
            })
        ));
        assert!(Request::InstallLicence(vec![0; MAX_PAYLOAD])
            .to_frame(1)
            .is_ok());
        let attestation = |signature: Vec<u8>| crate::hal::Attestation {
            serial: 1,
            blank: true,
            device_key: vec![1; 10],
            certificate: vec![2; 10],
            signature,
        };
        assert!(matches!(
            encode_attestation(&attestation(vec![3; 70_000])),
            Err(FrameError::FieldTooLarge {
                field: "the signature",
                size: 70_000,
                ..
            })
        ));
        let ok = encode_attestation(&attestation(vec![3; 256])).expect("fits");
        assert_eq!(
            decode_attestation(&ok).expect("decode").signature.len(),
            256
        );
    }

    #[test]
    fn a_size_limit_that_does_not_fit_is_refused() {
        let r = Reply::memory_error(&MemoryError::TooLarge {
            max: 4096,
            got: 5000,
        })
        .expect("fits");
        assert_eq!(r.into_result(), Err(DeviceError::TooLarge { max: 4096 }));
        if usize::BITS > 32 {
            let huge = u32::MAX as usize + 1;
            assert!(matches!(
                Reply::memory_error(&MemoryError::PasswordTooLong { max: huge, got: 0 }),
                Err(FrameError::FieldTooLarge { size, .. }) if size == huge
            ));
        }
    }
}
