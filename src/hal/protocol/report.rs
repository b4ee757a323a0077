//! Fragmentation of frames into 64-byte reports:
//! `flags | seq | len | data[61]`, flags bit 7 = first report of a frame, bit 6 = last.

use super::frame::{Frame, FrameError, MAX_FRAME, MAX_PAYLOAD};
use thiserror::Error;

pub const REPORT_SIZE: usize = 64;
pub const REPORT_DATA: usize = REPORT_SIZE - 3;
pub const FIRST: u8 = 0x80;
pub const LAST: u8 = 0x40;

pub type Report = [u8; REPORT_SIZE];

/// Splits encoded frame bytes into reports. Refuses more bytes than one frame can hold,
/// which the receiving side would refuse anyway.
pub fn split(bytes: &[u8]) -> Result<Vec<Report>, FrameError> {
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::FieldTooLarge {
            field: "an encoded frame",
            size: bytes.len(),
            max: MAX_FRAME,
        });
    }
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[]]
    } else {
        bytes.chunks(REPORT_DATA).collect()
    };
    let n = chunks.len();
    let mut out = Vec::with_capacity(n);
    // The sequence number counts modulo 256 by design (a full frame takes ~270 reports and
    // the reassembler wraps the same way); only the chunk length must fit exactly.
    let mut seq = 0u8;
    for (i, c) in chunks.into_iter().enumerate() {
        let len = u8::try_from(c.len()).map_err(|_| FrameError::FieldTooLarge {
            field: "a report chunk",
            size: c.len(),
            max: REPORT_DATA,
        })?;
        let mut r = [0u8; REPORT_SIZE];
        let mut flags = 0;
        if i == 0 {
            flags |= FIRST;
        }
        if i + 1 == n {
            flags |= LAST;
        }
        r[0] = flags;
        r[1] = seq;
        r[2] = len;
        r[3..3 + c.len()].copy_from_slice(c);
        out.push(r);
        seq = seq.wrapping_add(1);
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReportError {
    #[error("report out of sequence (expected {expected}, got {got})")]
    Sequence { expected: u8, got: u8 },
    #[error("continuation report without a first report")]
    NoStart,
    #[error("report length field {0} exceeds {REPORT_DATA}")]
    Length(u8),
    #[error("reassembled message too large")]
    TooLarge,
}

/// Collects reports until a whole frame has arrived.
#[derive(Debug, Default)]
pub struct Reassembler {
    buf: Vec<u8>,
    next_seq: u8,
    active: bool,
}

impl Reassembler {
    /// Feeds one report; returns the frame bytes when the last report of a frame arrives.
    /// A first report always starts afresh, so a half-received frame (a device reset, an
    /// aborted transfer) never merges with the next one.
    pub fn push(&mut self, r: &Report) -> Result<Option<Vec<u8>>, ReportError> {
        let (flags, seq, len) = (r[0], r[1], r[2]);
        if usize::from(len) > REPORT_DATA {
            self.reset();
            return Err(ReportError::Length(len));
        }
        if flags & FIRST != 0 {
            self.buf.clear();
            self.active = true;
            self.next_seq = 0;
        } else if !self.active {
            return Err(ReportError::NoStart);
        }
        if seq != self.next_seq {
            let expected = self.next_seq;
            self.reset();
            return Err(ReportError::Sequence { expected, got: seq });
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        self.buf.extend_from_slice(&r[3..3 + usize::from(len)]);
        if self.buf.len() > MAX_PAYLOAD + 64 {
            self.reset();
            return Err(ReportError::TooLarge);
        }
        if flags & LAST != 0 {
            self.active = false;
            return Ok(Some(std::mem::take(&mut self.buf)));
        }
        // Stop early when the header says the frame is complete but LAST is missing.
        if Frame::total_len(&self.buf).is_some_and(|t| self.buf.len() > t) {
            self.reset();
            return Err(ReportError::TooLarge);
        }
        Ok(None)
    }

    pub fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
        self.next_seq = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reassemble_large() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let data = Frame::new(3, 9, payload).encode().expect("encode");
        let reports = split(&data).expect("split");
        assert_eq!(reports.len(), data.len().div_ceil(REPORT_DATA));
        let mut r = Reassembler::default();
        let mut out = None;
        for rep in &reports {
            out = r.push(rep).expect("push");
        }
        assert_eq!(out.expect("complete"), data);
    }

    #[test]
    fn out_of_order_is_refused() {
        let reports = split(&[7u8; 200]).expect("split");
        let mut r = Reassembler::default();
        r.push(&reports[0]).expect("first");
        assert!(r.push(&reports[2]).is_err());
        assert!(matches!(r.push(&reports[1]), Err(ReportError::NoStart)));
    }

    #[test]
    fn more_than_one_frame_is_refused() {
        let largest = split(&vec![1u8; MAX_FRAME]).expect("a whole frame");
        assert_eq!(largest.len(), MAX_FRAME.div_ceil(REPORT_DATA));
        assert_eq!(largest[256][1], 0, "the sequence wraps");
        assert!(matches!(
            split(&vec![1u8; MAX_FRAME + 1]),
            Err(FrameError::FieldTooLarge { size, .. }) if size == MAX_FRAME + 1
        ));
    }
}
