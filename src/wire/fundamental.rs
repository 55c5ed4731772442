//! Fundamental encodings (LCP v0.2 section 2, BOLT #1 "Fundamental Types"): BigSize, the
//! truncated integers tu32/tu64, fixed u16, 32-byte arrays and UTF-8 text.
//!
//! Every reader takes the field name it decodes so that errors say which field failed.

use super::error::WireError;

/// Number of bytes the minimal BigSize encoding of `v` takes.
pub fn bigsize_len(v: u64) -> usize {
    match v {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Appends the minimal BigSize encoding of `v`.
pub fn write_bigsize(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xfc => out.push(v as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Splits `n` bytes off the front of `buf`, or fails with `Truncated` naming `field`.
pub fn take<'a>(buf: &mut &'a [u8], n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError::Truncated { field, needed: (n - buf.len()) as u64, available: buf.len() });
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

/// Reads a big-endian u16 from the front of `buf`.
pub fn read_u16_be(buf: &mut &[u8], field: &'static str) -> Result<u16, WireError> {
    let b = take(buf, 2, field)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads a BigSize from the front of `buf`, rejecting non-minimal encodings.
pub fn read_bigsize(buf: &mut &[u8], field: &'static str) -> Result<u64, WireError> {
    let first = take(buf, 1, field)?[0];
    let (v, min) = match first {
        0xfd => {
            let b = take(buf, 2, field)?;
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 0xfd)
        }
        0xfe => {
            let b = take(buf, 4, field)?;
            (u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])), 0x1_0000)
        }
        0xff => {
            let b = take(buf, 8, field)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            (u64::from_be_bytes(a), 0x1_0000_0000)
        }
        small => return Ok(u64::from(small)),
    };
    if v < min {
        return Err(WireError::NonMinimalBigSize { field });
    }
    Ok(v)
}

/// The minimal truncated big-endian encoding of `v` (0 is empty), as a stack buffer and the
/// number of significant bytes at its end.
pub fn tu64_bytes(v: u64) -> ([u8; 8], usize) {
    let len = 8 - (v.leading_zeros() / 8) as usize;
    (v.to_be_bytes(), len)
}

/// Length of the truncated encoding of `v`.
pub fn tu64_len(v: u64) -> usize {
    tu64_bytes(v).1
}

/// Decodes a truncated unsigned integer of at most `max_len` bytes (4 for tu32, 8 for tu64).
fn read_truncated(value: &[u8], max_len: usize, field: &'static str) -> Result<u64, WireError> {
    if value.len() > max_len {
        return Err(WireError::BadTruncatedInt {
            field,
            reason: if max_len == 4 { "tu32 longer than 4 bytes" } else { "tu64 longer than 8 bytes" },
        });
    }
    if value.first() == Some(&0) {
        return Err(WireError::BadTruncatedInt {
            field,
            reason: "truncated integer has a leading zero byte (not minimal)",
        });
    }
    Ok(value.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Decodes a tu64 TLV value.
pub fn read_tu64(value: &[u8], field: &'static str) -> Result<u64, WireError> {
    read_truncated(value, 8, field)
}

/// Decodes a tu32 TLV value.
pub fn read_tu32(value: &[u8], field: &'static str) -> Result<u32, WireError> {
    // At most 4 bytes were accepted, so the value fits.
    read_truncated(value, 4, field).map(|v| v as u32)
}

/// Decodes a u16 TLV value, which must be exactly 2 bytes.
pub fn read_u16_value(value: &[u8], field: &'static str) -> Result<u16, WireError> {
    match value {
        [a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(WireError::BadLength { field, len: value.len(), expected: 2 }),
    }
}

/// Decodes a 32-byte TLV value.
pub fn read_array32(value: &[u8], field: &'static str) -> Result<[u8; 32], WireError> {
    <[u8; 32]>::try_from(value).map_err(|_| WireError::BadLength { field, len: value.len(), expected: 32 })
}

/// Decodes a UTF-8 TLV value; with `non_empty`, the empty string is rejected.
pub fn read_utf8(value: &[u8], field: &'static str, non_empty: bool) -> Result<String, WireError> {
    if non_empty && value.is_empty() {
        return Err(WireError::Empty { field });
    }
    std::str::from_utf8(value).map(str::to_owned).map_err(|_| WireError::InvalidUtf8 { field })
}
