//! A frame: `"KB" | version | code | tag u16 | length u16 | payload | crc32`, little-endian.

use super::{crc::crc32, PROTOCOL_VERSION};
use thiserror::Error;

pub const MAGIC: [u8; 2] = *b"KB";
pub const HEADER_LEN: usize = 8;
pub const CRC_LEN: usize = 4;
/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Largest encoded frame.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + CRC_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Opcode in a request, status in a reply.
    pub code: u8,
    /// Chosen by the host, echoed by the device, so a stale reply is never taken for a new one.
    pub tag: u16,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame too short ({0} bytes)")]
    Short(usize),
    #[error("bad magic")]
    Magic,
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("length field {declared} does not match {actual} bytes")]
    Length { declared: usize, actual: usize },
    #[error("payload of {0} bytes exceeds the maximum")]
    TooLarge(usize),
    /// Encoding refuses a field its length (or value) field cannot carry, rather than
    /// cutting it: a truncated password or licence would be a different one.
    #[error("{field} is {size}; the protocol carries at most {max}")]
    FieldTooLarge {
        field: &'static str,
        size: usize,
        max: usize,
    },
    #[error("CRC mismatch")]
    Crc,
}

impl Frame {
    pub fn new(code: u8, tag: u16, payload: Vec<u8>) -> Self {
        Frame { code, tag, payload }
    }

    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let n = self.payload.len();
        if n > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(n));
        }
        let len = u16::try_from(n).map_err(|_| FrameError::TooLarge(n))?;
        let mut out = Vec::with_capacity(HEADER_LEN + n + CRC_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(PROTOCOL_VERSION);
        out.push(self.code);
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.payload);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(FrameError::Short(bytes.len()));
        }
        if bytes[0..2] != MAGIC {
            return Err(FrameError::Magic);
        }
        if bytes[2] != PROTOCOL_VERSION {
            return Err(FrameError::Version(bytes[2]));
        }
        let declared = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
        let actual = bytes.len() - HEADER_LEN - CRC_LEN;
        if declared != actual {
            return Err(FrameError::Length { declared, actual });
        }
        if declared > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(declared));
        }
        let body = &bytes[..HEADER_LEN + declared];
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[HEADER_LEN + declared..]);
        if crc32(body) != u32::from_le_bytes(crc) {
            return Err(FrameError::Crc);
        }
        Ok(Frame {
            code: bytes[3],
            tag: u16::from_le_bytes([bytes[4], bytes[5]]),
            payload: body[HEADER_LEN..].to_vec(),
        })
    }

    /// The declared total length of a frame whose first bytes are `head`, once known.
    pub fn total_len(head: &[u8]) -> Option<usize> {
        (head.len() >= HEADER_LEN)
            .then(|| HEADER_LEN + usize::from(u16::from_le_bytes([head[6], head[7]])) + CRC_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let f = Frame::new(4, 0xBEEF, b"hello".to_vec());
        let mut b = f.encode().expect("encode");
        assert_eq!(Frame::decode(&b).expect("decode"), f);
        b[9] ^= 1;
        assert_eq!(Frame::decode(&b), Err(FrameError::Crc));
        assert_eq!(Frame::decode(&b[..5]), Err(FrameError::Short(5)));
    }

    #[test]
    fn an_oversized_payload_is_refused() {
        let at_max = Frame::new(4, 1, vec![0; MAX_PAYLOAD])
            .encode()
            .expect("max");
        assert_eq!(at_max.len(), MAX_FRAME);
        assert_eq!(
            Frame::new(4, 1, vec![0; MAX_PAYLOAD + 1]).encode(),
            Err(FrameError::TooLarge(MAX_PAYLOAD + 1))
        );
        // Past the u16 length field too: refused, never sent with a wrapped length.
        assert_eq!(
            Frame::new(4, 1, vec![0; 65_536 + 3]).encode(),
            Err(FrameError::TooLarge(65_539))
        );
    }
}
