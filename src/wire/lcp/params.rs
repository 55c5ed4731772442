//! Standard params TLVs (LCP v0.2 section 1.2) for `openai.chat_completions.v1` and
//! `openai.responses.v1`: one record, type 1 `model` (utf8, non-empty, required).

use super::v02::PARAMS_TLV_MODEL;
use crate::wire::error::WireError;
use crate::wire::fundamental::read_utf8;
use crate::wire::tlv::{extra_len, record_len, TlvReader, TlvWriter, UnknownTlv, LCP_MAX_RECORD_LEN};

/// Decoded standard params. Unknown records are kept (the codec accepts them; a provider
/// rejects them with `unsupported_params`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Params {
    /// TLV 1 `model`.
    pub model: String,
    /// Unknown records, in type order.
    pub extra: Vec<UnknownTlv>,
}

impl Params {
    /// Params with only a model.
    pub fn with_model(model: impl Into<String>) -> Self {
        Self { model: model.into(), extra: Vec::new() }
    }

    /// Decodes a params TLV stream.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut model = None;
        let mut extra = Vec::new();
        for r in TlvReader::new(bytes, LCP_MAX_RECORD_LEN) {
            let r = r?;
            if r.tlv_type == PARAMS_TLV_MODEL {
                model = Some(read_utf8(r.value, "params.model", true)?);
            } else {
                extra.push(UnknownTlv::from_record(r));
            }
        }
        Ok(Self { model: model.ok_or(WireError::Missing { field: "params.model" })?, extra })
    }

    /// Encodes the canonical params stream.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.model.is_empty() {
            return Err(WireError::Empty { field: "params.model" });
        }
        let mut out = Vec::with_capacity(record_len(PARAMS_TLV_MODEL, self.model.len()) + extra_len(&self.extra));
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        w.record(PARAMS_TLV_MODEL, self.model.as_bytes())?;
        w.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_params_vector() {
        let p = Params::with_model("gpt-5.2");
        let bytes = p.encode().unwrap();
        assert_eq!(hex::encode(&bytes), "01076770742d352e32");
        assert_eq!(Params::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn unknown_params_are_kept_and_empty_model_rejected() {
        let bytes = hex::decode("0101610201ff").unwrap();
        let p = Params::decode(&bytes).unwrap();
        assert_eq!(p.model, "a");
        assert_eq!(p.extra[0].tlv_type, 2);
        assert_eq!(p.encode().unwrap(), bytes);
        assert_eq!(Params::decode(&hex::decode("0100").unwrap()), Err(WireError::Empty { field: "params.model" }));
        assert_eq!(Params::decode(&hex::decode("0201ff").unwrap()), Err(WireError::Missing { field: "params.model" }));
        assert_eq!(Params::decode(&[0x01, 0x01, 0xff]), Err(WireError::InvalidUtf8 { field: "params.model" }));
    }
}
