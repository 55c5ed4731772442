//! Provider choice, pure: the model map, the providers whose manifests offer a model, the order
//! in which quotes are tried, and the model list of `GET /v1/models`.
//!
//! Order of choice: a model mapped to a provider goes to that provider only (and fails with 503
//! when it is not connected); otherwise every connected provider whose manifest offers the task
//! kind with this model is quoted, and the quotes are tried cheapest first. When no provider
//! advertises the task kind at all (a manifest without templates), every LCP-ready provider is a
//! candidate, as the reference does.

use crate::bus::api::lcpd::{LcpPeerRow, QuoteRow};
use std::collections::{BTreeMap, BTreeSet};

/// Models sent to a fixed provider: `MODEL=NODEID` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelMap(BTreeMap<String, String>);

/// Checks a node id: 66 hex digits of a compressed public key. Returns it lower-cased.
pub fn parse_node_id(s: &str) -> Result<String, String> {
    let b = hex::decode(s).map_err(|_| format!("{s:?} is not a hex node id"))?;
    if b.len() != 33 || !matches!(b[0], 2 | 3) {
        return Err(format!("{s:?} is not a 33-byte compressed public key"));
    }
    Ok(s.to_ascii_lowercase())
}

impl ModelMap {
    /// Parses `MODEL=NODEID` entries; a model listed twice is an error.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let (model, peer) = e.split_once('=').ok_or_else(|| format!("{e:?}: expected MODEL=NODEID"))?;
            let (model, peer) = (model.trim(), peer.trim());
            if model.is_empty() {
                return Err(format!("{e:?}: empty model"));
            }
            let peer = parse_node_id(peer).map_err(|m| format!("{e:?}: {m}"))?;
            if map.insert(model.to_string(), peer).is_some() {
                return Err(format!("model {model:?} is mapped twice"));
            }
        }
        Ok(Self(map))
    }

    /// The provider a model is mapped to.
    pub fn peer_for(&self, model: &str) -> Option<&str> {
        self.0.get(model).map(String::as_str)
    }

    /// Whether no model is mapped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why no provider can be asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    /// No provider has sent its LCP manifest.
    #[error("no LCP provider is connected")]
    NoProviders,
    /// The mapped provider is not connected (or has not sent its manifest).
    #[error("model {model:?} is mapped to provider {peer}, which is not connected")]
    MappedPeerNotReady {
        /// The model.
        model: String,
        /// Its provider.
        peer: String,
    },
    /// Providers advertise the task kind, but none with this model.
    #[error("model {model:?} is not offered by any connected provider")]
    ModelNotOffered {
        /// The model.
        model: String,
    },
}

/// Whether a peer's manifest offers `task_kind` with `model`.
fn offers(p: &LcpPeerRow, task_kind: &str, model: &str) -> bool {
    p.manifest.tasks.iter().any(|t| t.task_kind == task_kind && t.model.as_deref() == Some(model))
}

/// The providers to quote for a request, in node id order.
pub fn candidates(
    peers: &[LcpPeerRow],
    map: &ModelMap,
    task_kind: &str,
    model: &str,
) -> Result<Vec<String>, ChoiceError> {
    if let Some(peer) = map.peer_for(model) {
        return if peers.iter().any(|p| p.node_id.eq_ignore_ascii_case(peer)) {
            Ok(vec![peer.to_string()])
        } else {
            Err(ChoiceError::MappedPeerNotReady { model: model.to_string(), peer: peer.to_string() })
        };
    }
    if peers.is_empty() {
        return Err(ChoiceError::NoProviders);
    }
    let mut out: Vec<String> =
        peers.iter().filter(|p| offers(p, task_kind, model)).map(|p| p.node_id.to_ascii_lowercase()).collect();
    if out.is_empty() {
        let anyone_advertises = peers.iter().any(|p| p.manifest.tasks.iter().any(|t| t.task_kind == task_kind));
        if anyone_advertises {
            return Err(ChoiceError::ModelNotOffered { model: model.to_string() });
        }
        out = peers.iter().map(|p| p.node_id.to_ascii_lowercase()).collect();
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The quotes in the order they are tried: cheapest first, ties by node id.
pub fn rank(mut quotes: Vec<QuoteRow>) -> Vec<QuoteRow> {
    quotes.sort_by(|a, b| a.price_msat.cmp(&b.price_msat).then_with(|| a.peer.cmp(&b.peer)));
    quotes
}

/// Model ids the connected providers offer (any task kind), sorted, without duplicates.
pub fn models(peers: &[LcpPeerRow]) -> Vec<String> {
    let set: BTreeSet<&str> =
        peers.iter().flat_map(|p| p.manifest.tasks.iter().filter_map(|t| t.model.as_deref())).collect();
    set.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::api::lcpd::{ManifestRow, TaskRow};

    const CHAT: &str = "openai.chat_completions.v1";
    const RESP: &str = "openai.responses.v1";

    fn id(b: u8) -> String {
        format!("02{}", hex::encode([b; 32]))
    }

    fn peer(b: u8, tasks: &[(&str, Option<&str>)]) -> LcpPeerRow {
        LcpPeerRow {
            node_id: id(b),
            manifest: ManifestRow {
                protocol_version: 2,
                max_payload_bytes: 16384,
                max_stream_bytes: 1 << 22,
                max_job_bytes: 1 << 23,
                max_inflight_jobs: None,
                tasks: tasks
                    .iter()
                    .map(|(k, m)| TaskRow { task_kind: k.to_string(), model: m.map(str::to_string) })
                    .collect(),
            },
        }
    }

    fn quote(b: u8, price: u64) -> QuoteRow {
        QuoteRow {
            peer: id(b),
            job_id: [b; 32],
            price_msat: price,
            quote_expiry: 0,
            terms_hash: [0; 32],
            payment_request: String::new(),
            payment_hash: [0; 32],
        }
    }

    #[test]
    fn model_map_parses_and_refuses_bad_entries() {
        let m = ModelMap::parse(&[format!(" a = {}", id(1).to_uppercase()), String::new()]).unwrap();
        assert_eq!(m.peer_for("a"), Some(id(1).as_str()));
        assert_eq!(m.peer_for("b"), None);
        assert!(ModelMap::parse(&["a".into()]).unwrap_err().contains("MODEL=NODEID"));
        assert!(ModelMap::parse(&[format!("={}", id(1))]).unwrap_err().contains("empty model"));
        assert!(ModelMap::parse(&["a=0202".into()]).unwrap_err().contains("compressed"));
        assert!(ModelMap::parse(&["a=zz".into()]).unwrap_err().contains("not a hex"));
        let twice = ModelMap::parse(&[format!("a={}", id(1)), format!("a={}", id(2))]).unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
    }

    #[test]
    fn offered_model_picks_only_providers_that_offer_it() {
        let peers = vec![
            peer(3, &[(CHAT, Some("m")), (RESP, Some("m"))]),
            peer(1, &[(CHAT, Some("other"))]),
            peer(2, &[(CHAT, Some("m"))]),
        ];
        let none = ModelMap::default();
        assert_eq!(candidates(&peers, &none, CHAT, "m").unwrap(), vec![id(2), id(3)]);
        assert_eq!(candidates(&peers, &none, RESP, "m").unwrap(), vec![id(3)]);
        assert_eq!(
            candidates(&peers, &none, CHAT, "nope").unwrap_err(),
            ChoiceError::ModelNotOffered { model: "nope".into() }
        );
        // Nobody advertises the responses kind with any model but peer 3's: a model it lacks is refused.
        assert!(matches!(candidates(&peers, &none, RESP, "other"), Err(ChoiceError::ModelNotOffered { .. })));
    }

    #[test]
    fn without_templates_every_provider_is_a_candidate() {
        let peers = vec![peer(2, &[]), peer(1, &[])];
        assert_eq!(candidates(&peers, &ModelMap::default(), CHAT, "x").unwrap(), vec![id(1), id(2)]);
        assert_eq!(candidates(&[], &ModelMap::default(), CHAT, "x").unwrap_err(), ChoiceError::NoProviders);
    }

    #[test]
    fn mapped_model_goes_to_its_provider_only() {
        let peers = vec![peer(1, &[(CHAT, Some("m"))]), peer(2, &[(CHAT, Some("m"))])];
        let map = ModelMap::parse(&[format!("m={}", id(2))]).unwrap();
        assert_eq!(candidates(&peers, &map, CHAT, "m").unwrap(), vec![id(2)]);
        let map = ModelMap::parse(&[format!("m={}", id(9))]).unwrap();
        assert!(matches!(candidates(&peers, &map, CHAT, "m"), Err(ChoiceError::MappedPeerNotReady { .. })));
        // Unmapped models still use the manifests.
        assert_eq!(
            candidates(&peers, &map, CHAT, "n").unwrap_err(),
            ChoiceError::ModelNotOffered { model: "n".into() }
        );
    }

    #[test]
    fn cheapest_quote_first_then_node_id() {
        let ranked = rank(vec![quote(3, 50), quote(2, 10), quote(1, 50)]);
        let order: Vec<(u64, String)> = ranked.into_iter().map(|q| (q.price_msat, q.peer)).collect();
        assert_eq!(order, vec![(10, id(2)), (50, id(1)), (50, id(3))]);
    }

    #[test]
    fn model_list_is_sorted_and_unique() {
        let peers = vec![peer(1, &[(CHAT, Some("b")), (RESP, Some("b"))]), peer(2, &[(CHAT, Some("a")), (CHAT, None)])];
        assert_eq!(models(&peers), vec!["a".to_string(), "b".to_string()]);
        assert!(models(&[]).is_empty());
    }
}
