//! terms_hash (LCP v0.2 section 3): the hash a quote's BOLT11 invoice commits to as its
//! `description_hash`.

use sha2::{Digest, Sha256};

use super::v02::*;
use crate::wire::error::WireError;
use crate::wire::tlv::{validate_stream, TlvWriter, LCP_MAX_RECORD_LEN};

/// SHA-256 of the empty string: the params_hash of absent or empty params.
pub const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The ten records hashed into terms_hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Terms {
    /// From the quote_response envelope.
    pub protocol_version: u16,
    /// From the envelope.
    pub job_id: [u8; 32],
    /// From the quote_response.
    pub price_msat: u64,
    /// From the quote_response.
    pub quote_expiry: u64,
    /// From the quote_request (non-empty).
    pub task_kind: String,
    /// SHA-256 of the decoded input stream bytes.
    pub input_hash: [u8; 32],
    /// SHA-256 of the canonical params TLV stream (see [`params_hash`]).
    pub params_hash: [u8; 32],
    /// Length of the decoded input.
    pub input_len: u64,
    /// The input stream_begin `content_type` (non-empty).
    pub input_content_type: String,
    /// The input stream_begin `content_encoding` (non-empty).
    pub input_content_encoding: String,
}

/// `params_hash`: SHA-256 of the params TLV stream after checking it is canonical; absent or
/// empty params hash to `SHA256("")`. A params blob that is not a canonical TLV stream is an
/// error (the reference parser rejects it rather than re-sorting it).
pub fn params_hash(params: Option<&[u8]>) -> Result<[u8; 32], WireError> {
    match params {
        None => Ok(EMPTY_SHA256),
        Some(p) => {
            validate_stream(p, LCP_MAX_RECORD_LEN)?;
            Ok(Sha256::digest(p).into())
        }
    }
}

impl Terms {
    /// Builds the terms from the job's parts, hashing the input and the params.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        protocol_version: u16,
        job_id: [u8; 32],
        price_msat: u64,
        quote_expiry: u64,
        task_kind: &str,
        params: Option<&[u8]>,
        input: &[u8],
        input_content_type: &str,
        input_content_encoding: &str,
    ) -> Result<Self, WireError> {
        Ok(Self {
            protocol_version,
            job_id,
            price_msat,
            quote_expiry,
            task_kind: task_kind.to_owned(),
            input_hash: Sha256::digest(input).into(),
            params_hash: params_hash(params)?,
            input_len: input.len() as u64,
            input_content_type: input_content_type.to_owned(),
            input_content_encoding: input_content_encoding.to_owned(),
        })
    }

    /// The terms TLV stream (records in ascending type order: 51 sits between 50 and 52).
    pub fn tlv(&self) -> Result<Vec<u8>, WireError> {
        for (s, field) in [
            (&self.task_kind, "task_kind"),
            (&self.input_content_type, "input_content_type"),
            (&self.input_content_encoding, "input_content_encoding"),
        ] {
            if s.is_empty() {
                return Err(WireError::Empty { field });
            }
        }
        let mut out = Vec::with_capacity(
            160 + self.task_kind.len() + self.input_content_type.len() + self.input_content_encoding.len(),
        );
        let mut w = TlvWriter::new(&mut out, &[], LCP_MAX_RECORD_LEN);
        w.u16_record(TERMS_TLV_PROTOCOL_VERSION, self.protocol_version)?;
        w.record(TERMS_TLV_JOB_ID, &self.job_id)?;
        w.tu64_record(TERMS_TLV_PRICE_MSAT, self.price_msat)?;
        w.tu64_record(TERMS_TLV_QUOTE_EXPIRY, self.quote_expiry)?;
        w.record(TERMS_TLV_TASK_KIND, self.task_kind.as_bytes())?;
        w.record(TERMS_TLV_INPUT_HASH, &self.input_hash)?;
        w.record(TERMS_TLV_PARAMS_HASH, &self.params_hash)?;
        w.tu64_record(TERMS_TLV_INPUT_LEN, self.input_len)?;
        w.record(TERMS_TLV_INPUT_CONTENT_TYPE, self.input_content_type.as_bytes())?;
        w.record(TERMS_TLV_INPUT_CONTENT_ENCODING, self.input_content_encoding.as_bytes())?;
        w.finish()?;
        Ok(out)
    }

    /// `terms_hash = SHA256(terms TLV stream)`.
    pub fn hash(&self) -> Result<[u8; 32], WireError> {
        Ok(Sha256::digest(self.tlv()?).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#;

    fn vt() -> Terms {
        Terms::new(
            2,
            [0x11; 32],
            1000,
            500,
            TASK_OPENAI_CHAT,
            Some(&[0x01, 0x01, 0x61]),
            INPUT.as_bytes(),
            "application/json; charset=utf-8",
            "identity",
        )
        .unwrap()
    }

    #[test]
    fn section8_vt_terms_hash() {
        let t = vt();
        assert_eq!(INPUT.len(), 57);
        assert_eq!(hex::encode(t.input_hash), "226ad78f80b3462e5dc88121ba50abf7346a1997eb69eff8c8470666611dfd56");
        assert_eq!(hex::encode(t.params_hash), "daac01eaa51e59dd2eddc86e30cbeb1777a1f77cd193249a0959f8096a798788");
        let tlv = t.tlv().unwrap();
        assert_eq!(tlv.len(), 188);
        assert_eq!(hex::encode(&tlv), "0102000202201111111111111111111111111111111111111111111111111111111111111111030203e8040201f4141a6f70656e61692e636861745f636f6d706c6574696f6e732e76313220226ad78f80b3462e5dc88121ba50abf7346a1997eb69eff8c8470666611dfd563320daac01eaa51e59dd2eddc86e30cbeb1777a1f77cd193249a0959f8096a798788340139351f6170706c69636174696f6e2f6a736f6e3b20636861727365743d7574662d3836086964656e74697479");
        assert_eq!(hex::encode(t.hash().unwrap()), "3ddf768b69e99198c377f718d88a4bf45b04ce9abcb0a63b167cea8fb5dce313");
    }

    #[test]
    fn params_hash_rules() {
        assert_eq!(params_hash(None).unwrap(), EMPTY_SHA256);
        assert_eq!(params_hash(Some(&[])).unwrap(), EMPTY_SHA256);
        assert_eq!(EMPTY_SHA256, <[u8; 32]>::from(Sha256::digest(b"")));
        // Not canonical: out of order.
        assert!(params_hash(Some(&[0x02, 0x00, 0x01, 0x00])).is_err());
        // Unknown records are hashed as they are.
        let p = [0x01, 0x01, 0x61, 0x03, 0x01, 0x00];
        assert_eq!(params_hash(Some(&p)).unwrap(), <[u8; 32]>::from(Sha256::digest(p)));
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = vt().hash().unwrap();
        let mut variants = Vec::new();
        let mut t = vt();
        t.protocol_version = 3;
        variants.push(t);
        let mut t = vt();
        t.job_id[31] ^= 1;
        variants.push(t);
        let mut t = vt();
        t.price_msat += 1;
        variants.push(t);
        let mut t = vt();
        t.quote_expiry += 1;
        variants.push(t);
        let mut t = vt();
        t.task_kind = TASK_OPENAI_RESPONSES.into();
        variants.push(t);
        let mut t = vt();
        t.input_hash[0] ^= 1;
        variants.push(t);
        let mut t = vt();
        t.params_hash = EMPTY_SHA256;
        variants.push(t);
        let mut t = vt();
        t.input_len += 1;
        variants.push(t);
        let mut t = vt();
        t.input_content_type = "text/plain".into();
        variants.push(t);
        let mut t = vt();
        t.input_content_encoding = "gzip".into();
        variants.push(t);
        for v in variants {
            assert_ne!(v.hash().unwrap(), base, "{v:?}");
        }
    }

    #[test]
    fn empty_text_fields_are_rejected() {
        let mut t = vt();
        t.input_content_encoding.clear();
        assert_eq!(t.hash(), Err(WireError::Empty { field: "input_content_encoding" }));
    }
}
