//! The hash chain: the canonical bytes of an event and how each hash is made.
//!
//! `hash(n) = SHA-256(hash(n-1) || canonical(event n))`, where `hash(0)` is a genesis
//! value derived from the tenant and lane. The canonical form is length-prefixed and
//! versioned, so no two different events encode to the same bytes. Changing this
//! module invalidates every existing chain: add a new version instead.

use kernel::{PatientId, RequestId, TenantId};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

pub type Hash = [u8; 32];

/// The fields of an event that the chain covers (everything but the hashes).
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedEvent {
    pub tenant_id: TenantId,
    pub lane: i16,
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub patient_id: Option<PatientId>,
    pub purpose: Option<String>,
    pub request_id: Option<RequestId>,
    pub break_glass: bool,
    pub details: serde_json::Value,
}

/// The hash a lane starts from.
pub fn genesis(tenant_id: TenantId, lane: i16) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(b"tenet-audit-genesis-v1");
    hasher.update(tenant_id.as_uuid().as_bytes());
    hasher.update(lane.to_be_bytes());
    hasher.finalize().into()
}

/// The timestamp as PostgreSQL stores it: whole microseconds since the epoch.
pub fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).expect("BUG: timestamp out of range")
}

/// Truncates a timestamp to what PostgreSQL keeps, so the hashed value is the stored one.
pub fn to_stored_precision(at: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros(at)) * 1_000)
        .expect("BUG: timestamp out of range")
}

/// The JSON value as jsonb stores it, so the hashed value is the stored one: jsonb
/// numbers are `numeric`, which has no negative zero (`-0.0` comes back `0.0`).
pub fn to_stored_json(mut value: serde_json::Value) -> serde_json::Value {
    fn visit(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(number)
                if number
                    .as_f64()
                    .is_some_and(|x| x == 0.0 && x.is_sign_negative()) =>
            {
                *number = serde_json::Number::from_f64(0.0).expect("BUG: 0.0 is finite");
            }
            serde_json::Value::Array(values) => values.iter_mut().for_each(visit),
            serde_json::Value::Object(map) => map.values_mut().for_each(visit),
            _ => {}
        }
    }
    visit(&mut value);
    value
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("BUG: audit field over 4 GiB");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn put_optional(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => buf.push(0),
        Some(bytes) => {
            buf.push(1);
            put_bytes(buf, bytes);
        }
    }
}

/// An event's fields as raw bytes, borrowed from wherever they were read (a row of
/// the verifier's binary `COPY`, or a [`ChainedEvent`]). The canonical encoding is
/// defined here once.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    pub tenant_id: &'a [u8; 16],
    pub lane: i16,
    pub seq: i64,
    pub id: &'a [u8],
    /// Microseconds since the Unix epoch.
    pub occurred_at_micros: i64,
    pub actor: &'a [u8],
    pub action: &'a [u8],
    pub patient_id: Option<&'a [u8]>,
    pub purpose: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    pub break_glass: bool,
    /// The details as serde_json writes them (keys sorted, no spaces).
    pub details: &'a [u8],
}

impl RawEvent<'_> {
    /// The canonical encoding, appended to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        self.encode_before_place(buf);
        buf.extend_from_slice(&self.lane.to_be_bytes());
        buf.extend_from_slice(&self.seq.to_be_bytes());
        self.encode_after_place(buf);
    }

    /// What precedes the event's place (lane, seq) in its encoding.
    fn encode_before_place(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"tenet-audit-v1");
        buf.extend_from_slice(self.tenant_id);
    }

    /// What follows the event's place (lane, seq) in its encoding.
    fn encode_after_place(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.id);
        buf.extend_from_slice(&self.occurred_at_micros.to_be_bytes());
        put_bytes(buf, self.actor);
        put_bytes(buf, self.action);
        put_optional(buf, self.patient_id);
        put_optional(buf, self.purpose);
        put_optional(buf, self.request_id);
        buf.push(u8::from(self.break_glass));
        put_bytes(buf, self.details);
    }

    /// This event's hash, following `prev`.
    pub fn hash(&self, prev: &[u8], scratch: &mut Vec<u8>) -> Hash {
        scratch.clear();
        self.encode(scratch);
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(&scratch[..]);
        hasher.finalize().into()
    }
}

impl ChainedEvent {
    /// The canonical encoding, appended to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        // serde_json's map keeps keys sorted, and jsonb hands back the same values, so
        // re-serialising what we read yields the bytes we hashed.
        let details =
            serde_json::to_string(&self.details).expect("BUG: JSON value always serialises");
        self.raw(details.as_bytes()).encode(buf);
    }

    fn raw<'a>(&'a self, details: &'a [u8]) -> RawEvent<'a> {
        RawEvent {
            tenant_id: self.tenant_id.as_uuid().as_bytes(),
            lane: self.lane,
            seq: self.seq,
            id: self.id.as_bytes(),
            occurred_at_micros: micros(self.occurred_at),
            actor: self.actor.as_bytes(),
            action: self.action.as_bytes(),
            patient_id: self
                .patient_id
                .as_ref()
                .map(|id| &id.as_uuid().as_bytes()[..]),
            purpose: self.purpose.as_deref().map(str::as_bytes),
            request_id: self
                .request_id
                .as_ref()
                .map(|id| &id.as_uuid().as_bytes()[..]),
            break_glass: self.break_glass,
            details,
        }
    }

    /// This event's hash, following `prev`.
    pub fn hash(&self, prev: &Hash, scratch: &mut Vec<u8>) -> Hash {
        let details =
            serde_json::to_string(&self.details).expect("BUG: JSON value always serialises");
        self.raw(details.as_bytes()).hash(prev, scratch)
    }

    /// The canonical encoding without the event's place, for an append that takes its
    /// lane and seq in the database: `(before, after)` such that `before || lane ||
    /// seq || after` (lane as 2 and seq as 8 big-endian bytes, which PostgreSQL's
    /// `int2send` and `int8send` produce) is [`ChainedEvent::encode`]'s output. This
    /// event's own `lane` and `seq` are ignored.
    pub fn encode_around_place(&self) -> (Vec<u8>, Vec<u8>) {
        let details =
            serde_json::to_string(&self.details).expect("BUG: JSON value always serialises");
        let raw = self.raw(details.as_bytes());
        let mut before = Vec::with_capacity(32);
        raw.encode_before_place(&mut before);
        let mut after = Vec::with_capacity(160 + details.len());
        raw.encode_after_place(&mut after);
        (before, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ChainedEvent {
        ChainedEvent {
            tenant_id: TenantId::generate(),
            lane: 3,
            seq: 7,
            id: Uuid::now_v7(),
            occurred_at: to_stored_precision(OffsetDateTime::now_utc()),
            actor: "user:x".into(),
            action: "patient.read".into(),
            patient_id: Some(PatientId::generate()),
            purpose: Some("treatment".into()),
            request_id: None,
            break_glass: false,
            details: serde_json::json!({"b": 1, "a": "x"}),
        }
    }

    #[test]
    fn the_encoding_around_a_place_joins_into_the_whole_encoding() {
        let event = event();
        let (before, after) = event.encode_around_place();
        let joined = [
            &before[..],
            &event.lane.to_be_bytes(),
            &event.seq.to_be_bytes(),
            &after[..],
        ]
        .concat();
        let mut whole = Vec::new();
        event.encode(&mut whole);
        assert_eq!(joined, whole);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = event();
        let prev = genesis(base.tenant_id, base.lane);
        let mut scratch = Vec::new();
        let h = base.hash(&prev, &mut scratch);
        let variants: [fn(&mut ChainedEvent); 10] = [
            |e| e.lane += 1,
            |e| e.seq += 1,
            |e| e.actor.push('!'),
            |e| e.action.push('x'),
            |e| e.patient_id = None,
            |e| e.purpose = Some("marketing".into()),
            |e| e.request_id = Some(RequestId::generate()),
            |e| e.break_glass = true,
            |e| e.details = serde_json::json!({}),
            |e| e.occurred_at += time::Duration::microseconds(1),
        ];
        for change in variants {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(changed.hash(&prev, &mut scratch), h);
        }
        assert_ne!(
            base.hash(&[0; 32], &mut scratch),
            h,
            "the previous hash is covered"
        );
    }

    #[test]
    fn moving_text_between_fields_changes_the_hash() {
        let mut a = event();
        a.actor = "ab".into();
        a.action = "c".into();
        let mut b = a.clone();
        b.actor = "a".into();
        b.action = "bc".into();
        let prev = [0; 32];
        let mut scratch = Vec::new();
        assert_ne!(a.hash(&prev, &mut scratch), b.hash(&prev, &mut scratch));
    }
}
