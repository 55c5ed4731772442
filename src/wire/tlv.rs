//! TLV streams (BOLT #1 "Type-Length-Value Format", LCP v0.2 section 2).
//!
//! A stream is a concatenation of `bigsize(type) || bigsize(length) || value` records with
//! strictly ascending types. [`TlvReader`] iterates a stream without copying; [`TlvWriter`]
//! emits the records a message defines merged with the unknown records it carried, and refuses
//! to emit anything that is not canonical.

use super::error::WireError;
use super::fundamental::{bigsize_len, read_bigsize, take, write_bigsize};

/// Largest TLV record value LCP accepts (the lnd TLV library rejects longer records).
pub const LCP_MAX_RECORD_LEN: usize = 65_535;

/// One record borrowed from a stream being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvRecord<'a> {
    /// Record type.
    pub tlv_type: u64,
    /// Record value.
    pub value: &'a [u8],
}

/// A record this implementation does not interpret, kept so that re-encoding is exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownTlv {
    /// Record type.
    pub tlv_type: u64,
    /// Record value, as received.
    pub value: Vec<u8>,
}

impl UnknownTlv {
    /// Copies a borrowed record.
    pub fn from_record(r: TlvRecord<'_>) -> Self {
        Self { tlv_type: r.tlv_type, value: r.value.to_vec() }
    }
}

/// Iterator over the records of a TLV stream.
///
/// Yields an error (and then stops) on a truncated record, a non-minimal BigSize, a type that
/// is not strictly greater than the previous one, or a record longer than the limit.
#[derive(Debug, Clone)]
pub struct TlvReader<'a> {
    buf: &'a [u8],
    previous: Option<u64>,
    max_record_len: usize,
    failed: bool,
}

impl<'a> TlvReader<'a> {
    /// A reader over `buf` that accepts records of at most `max_record_len` bytes.
    pub fn new(buf: &'a [u8], max_record_len: usize) -> Self {
        Self { buf, previous: None, max_record_len, failed: false }
    }

    fn read_one(&mut self) -> Result<TlvRecord<'a>, WireError> {
        let tlv_type = read_bigsize(&mut self.buf, "tlv type")?;
        if let Some(previous) = self.previous {
            if tlv_type <= previous {
                return Err(WireError::TlvNotAscending { tlv_type, previous });
            }
        }
        let len = read_bigsize(&mut self.buf, "tlv length")?;
        if len > self.max_record_len as u64 {
            return Err(WireError::RecordTooLarge { tlv_type, len, max: self.max_record_len });
        }
        // len <= max_record_len, a usize.
        let value = take(&mut self.buf, len as usize, "tlv value")?;
        self.previous = Some(tlv_type);
        Ok(TlvRecord { tlv_type, value })
    }
}

impl<'a> Iterator for TlvReader<'a> {
    type Item = Result<TlvRecord<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let r = self.read_one();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// Checks that `buf` is a valid canonical TLV stream (any types allowed).
pub fn validate_stream(buf: &[u8], max_record_len: usize) -> Result<(), WireError> {
    TlvReader::new(buf, max_record_len).try_for_each(|r| r.map(|_| ()))
}

/// Encoded size of one record with a value of `len` bytes.
pub fn record_len(tlv_type: u64, len: usize) -> usize {
    bigsize_len(tlv_type) + bigsize_len(len as u64) + len
}

/// Writes records in ascending order, merging in unknown records carried by a message.
///
/// Contract: call [`TlvWriter::record`] in strictly ascending type order, then
/// [`TlvWriter::finish`]. Unknown records are emitted at their place in the order; an unknown
/// record whose type equals a defined record, or unknown records that are not strictly
/// ascending, make the writer fail rather than produce a non-canonical stream.
pub struct TlvWriter<'o, 'x> {
    out: &'o mut Vec<u8>,
    extra: &'x [UnknownTlv],
    next_extra: usize,
    last: Option<u64>,
    max_record_len: usize,
    reject_even_extra: bool,
}

impl<'o, 'x> TlvWriter<'o, 'x> {
    /// A writer appending to `out`, merging `extra` (which must be sorted by type).
    pub fn new(out: &'o mut Vec<u8>, extra: &'x [UnknownTlv], max_record_len: usize) -> Self {
        Self { out, extra, next_extra: 0, last: None, max_record_len, reject_even_extra: false }
    }

    /// Makes unknown even records an error (the BOLT #1 rule: nobody could decode them).
    pub fn reject_even_extra(mut self) -> Self {
        self.reject_even_extra = true;
        self
    }

    fn raw(&mut self, tlv_type: u64, value: &[u8]) -> Result<(), WireError> {
        if let Some(previous) = self.last {
            if tlv_type <= previous {
                return Err(if tlv_type == previous {
                    WireError::DuplicateRecord { tlv_type }
                } else {
                    WireError::TlvNotAscending { tlv_type, previous }
                });
            }
        }
        if value.len() > self.max_record_len {
            return Err(WireError::RecordTooLarge { tlv_type, len: value.len() as u64, max: self.max_record_len });
        }
        write_bigsize(self.out, tlv_type);
        write_bigsize(self.out, value.len() as u64);
        self.out.extend_from_slice(value);
        self.last = Some(tlv_type);
        Ok(())
    }

    fn flush_extra_below(&mut self, bound: Option<u64>) -> Result<(), WireError> {
        while let Some(x) = self.extra.get(self.next_extra) {
            if bound.is_some_and(|b| x.tlv_type > b) {
                break;
            }
            if bound == Some(x.tlv_type) {
                return Err(WireError::DuplicateRecord { tlv_type: x.tlv_type });
            }
            if self.reject_even_extra && x.tlv_type % 2 == 0 {
                return Err(WireError::UnknownEvenTlv { tlv_type: x.tlv_type });
            }
            self.next_extra += 1;
            self.raw(x.tlv_type, &x.value)?;
        }
        Ok(())
    }

    /// Emits one defined record (after any unknown records of lower type).
    pub fn record(&mut self, tlv_type: u64, value: &[u8]) -> Result<(), WireError> {
        self.flush_extra_below(Some(tlv_type))?;
        self.raw(tlv_type, value)
    }

    /// Emits a u16 record (2 bytes, big-endian).
    pub fn u16_record(&mut self, tlv_type: u64, v: u16) -> Result<(), WireError> {
        self.record(tlv_type, &v.to_be_bytes())
    }

    /// Emits a truncated-integer record (tu32/tu64: minimal big-endian, 0 is empty).
    pub fn tu64_record(&mut self, tlv_type: u64, v: u64) -> Result<(), WireError> {
        let (bytes, len) = super::fundamental::tu64_bytes(v);
        self.record(tlv_type, &bytes[8 - len..])
    }

    /// Emits the remaining unknown records.
    pub fn finish(mut self) -> Result<(), WireError> {
        self.flush_extra_below(None)
    }
}

/// Total encoded size of a list of unknown records.
pub fn extra_len(extra: &[UnknownTlv]) -> usize {
    extra.iter().map(|x| record_len(x.tlv_type, x.value.len())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, WireError> {
        TlvReader::new(buf, LCP_MAX_RECORD_LEN).map(|r| r.map(|r| (r.tlv_type, r.value.to_vec()))).collect()
    }

    #[test]
    fn reads_records_in_order() {
        let recs = collect(&[0x01, 0x02, 0x00, 0x02, 0x0b, 0x00]).unwrap();
        assert_eq!(recs, vec![(1, vec![0, 2]), (11, vec![])]);
    }

    #[test]
    fn rejects_out_of_order_and_duplicates() {
        assert_eq!(
            collect(&[0x0b, 0x00, 0x01, 0x02, 0x00, 0x02]),
            Err(WireError::TlvNotAscending { tlv_type: 1, previous: 11 })
        );
        assert_eq!(collect(&[0x01, 0x00, 0x01, 0x00]), Err(WireError::TlvNotAscending { tlv_type: 1, previous: 1 }));
    }

    #[test]
    fn rejects_non_minimal_length_and_truncation() {
        assert_eq!(
            collect(&[0x01, 0xfd, 0x00, 0x02, 0x00, 0x02]),
            Err(WireError::NonMinimalBigSize { field: "tlv length" })
        );
        assert!(matches!(collect(&[0x01, 0x03, 0x00]), Err(WireError::Truncated { .. })));
        assert!(matches!(collect(&[0xfd, 0x01]), Err(WireError::Truncated { .. })));
    }

    #[test]
    fn record_length_limit_is_inclusive() {
        let mut ok = vec![0x61, 0xfd, 0xff, 0xff];
        ok.resize(4 + 65_535, 0xab);
        assert_eq!(collect(&ok).unwrap()[0].1.len(), 65_535);
        let mut big = vec![0x61, 0xfe, 0x00, 0x01, 0x00, 0x00];
        big.resize(6 + 65_536, 0xab);
        assert_eq!(collect(&big), Err(WireError::RecordTooLarge { tlv_type: 0x61, len: 65_536, max: 65_535 }));
    }

    #[test]
    fn writer_merges_unknown_records_and_refuses_collisions() {
        let extra = vec![UnknownTlv { tlv_type: 2, value: vec![9] }, UnknownTlv { tlv_type: 99, value: vec![] }];
        let mut out = Vec::new();
        let mut w = TlvWriter::new(&mut out, &extra, LCP_MAX_RECORD_LEN);
        w.record(1, &[0, 2]).unwrap();
        w.record(11, &[0x40]).unwrap();
        w.finish().unwrap();
        assert_eq!(out, vec![1, 2, 0, 2, 2, 1, 9, 11, 1, 0x40, 99, 0]);

        let mut out = Vec::new();
        let mut w = TlvWriter::new(&mut out, &extra, LCP_MAX_RECORD_LEN);
        assert_eq!(w.record(2, &[]), Err(WireError::DuplicateRecord { tlv_type: 2 }));

        let unsorted = vec![extra[1].clone(), extra[0].clone()];
        let mut out = Vec::new();
        let w = TlvWriter::new(&mut out, &unsorted, LCP_MAX_RECORD_LEN);
        assert!(matches!(w.finish(), Err(WireError::TlvNotAscending { .. })));

        let mut out = Vec::new();
        let w = TlvWriter::new(&mut out, &extra, LCP_MAX_RECORD_LEN).reject_even_extra();
        assert_eq!(w.finish(), Err(WireError::UnknownEvenTlv { tlv_type: 2 }));
    }
}
