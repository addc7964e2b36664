//! The claim check (issue 9): a fact whose event would be too big for the bus travels without its lines.
//!
//! Limits it keeps every accepted sale within:
//! - an EventBridge `PutEvents` entry is at most 256 KiB ([`crate::bus::MAX_ENTRY_BYTES`]), and the
//!   SQS message EventBridge makes of it adds a few hundred bytes to an SQS limit of the same size;
//! - a DynamoDB item is at most 400 KB, and the record and outbox items each hold the whole event;
//! - one `TransactWriteItems` is at most 100 items and 4 MB in total.
//!
//! So when an envelope's entry size (as EventBridge counts it, [`crate::bus::entry_of`]) is over
//! [`CLAIM_CHECK_THRESHOLD`] (192 KiB: a quarter below the bus limit, room for EventBridge's and SQS's
//! wrappers and for the item attributes), the capture moves the lines out: the envelope and the record
//! keep `lines: []` and a [`LinesRef`], and the lines' JSON is written in chunks of [`CHUNK_BYTES`] in
//! the SAME atomic write as the record and the outbox entry. At most [`MAX_CLAIMED_BYTES`] of lines per
//! capture write (2.5 MiB: with the delivery, records and outbox entries, under 4 MB); the largest body
//! the capture may be configured to accept (`MAX_BODY_BYTES` up to 1 MiB) stays within it, and a write
//! beyond it is refused (413) rather than stored unpublishable.
//!
//! Readers (the consumers, the sales read model) [`resolve`] the reference through a
//! [`LinesSource`] before using the lines; a reference that cannot be resolved is an error (retried),
//! never a fact applied without its lines.

use super::StoreError;
use crate::bus::entry_of;
use crate::model::{CanonicalEvent, EventEnvelope, LINES_REF_VERSION, LinesRef};
use crate::ports::LinesSource;
use crate::vendors::signing::sha256_hex;

/// Envelopes whose `PutEvents` entry is larger than this travel with a claim check instead of lines.
pub const CLAIM_CHECK_THRESHOLD: usize = 192 * 1024;
/// Largest stored chunk of lines (a DynamoDB item of about 256 KiB, well under 400 KB).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Most bytes of claim-checked lines in one capture write (all its facts together): 10 chunks.
pub const MAX_CLAIMED_BYTES: usize = 10 * CHUNK_BYTES;

/// The largest `MAX_BODY_BYTES` the capture may be configured with (it used to be 6 MiB, Lambda's
/// payload limit). Canonical lines take at most about 2.5 times their bytes in a webhook body (a
/// Standard line: 65 bytes in the body, 129 in the lines' JSON), so a 1 MiB body stays within
/// [`MAX_CLAIMED_BYTES`]; a write beyond it is refused with 413 anyway (`CaptureError::LinesTooLarge`).
pub const MAX_BODY_BYTES_CEILING: usize = 1024 * 1024;

/// The lines of one fact, stored aside: its reference and the chunks to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedLines {
    /// What the envelope and the record carry.
    pub reference: LinesRef,
    /// The lines' JSON cut in pieces of at most [`CHUNK_BYTES`], in order.
    pub chunks: Vec<Vec<u8>>,
}

/// Why lines could not be resolved (or claimed).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The store could not be read: retry.
    #[error("claim check: store unavailable: {0}")]
    Unavailable(String),
    /// The referenced lines are not stored (a reader without access, or a store that lost them).
    #[error("claim check: lines of {0} not found")]
    Missing(String),
    /// What was read is not what was stored, or the reference is of an unknown version.
    #[error("claim check: {0}")]
    Corrupt(String),
}

impl From<StoreError> for ClaimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ClaimError::Unavailable(m),
            StoreError::Corrupt(m) => ClaimError::Corrupt(m),
        }
    }
}

/// The lines' JSON of a fact that has lines (sales and returns), and how many there are.
fn lines_json(event: &CanonicalEvent) -> Option<Result<(Vec<u8>, usize), serde_json::Error>> {
    match event {
        CanonicalEvent::SaleCompleted(s) => {
            Some(serde_json::to_vec(&s.lines).map(|j| (j, s.lines.len())))
        }
        CanonicalEvent::ReturnCompleted(r) => {
            Some(serde_json::to_vec(&r.lines).map(|j| (j, r.lines.len())))
        }
        _ => None,
    }
}

fn clear_lines(event: &mut CanonicalEvent) {
    match event {
        CanonicalEvent::SaleCompleted(s) => s.lines = Vec::new(),
        CanonicalEvent::ReturnCompleted(r) => r.lines = Vec::new(),
        _ => {}
    }
}

/// Applies the claim check to an envelope about to be stored: when its entry is over
/// [`CLAIM_CHECK_THRESHOLD`] and it has lines, they move out (the envelope gets `lines: []` and the
/// reference, keyed by `record_key`) and are returned to be written with the record.
pub fn claim_check(
    envelope: &mut EventEnvelope,
    record_key: &str,
) -> Result<Option<ClaimedLines>, StoreError> {
    let (_, size) = entry_of(envelope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if size <= CLAIM_CHECK_THRESHOLD {
        return Ok(None);
    }
    let Some(json) = lines_json(&envelope.event) else {
        return Ok(None);
    };
    let (json, count) = json.map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let reference = LinesRef {
        v: LINES_REF_VERSION,
        key: record_key.to_owned(),
        chunks: u32::try_from(json.len().div_ceil(CHUNK_BYTES))
            .map_err(|_| StoreError::Corrupt("too many chunks".into()))?,
        bytes: json.len() as u64,
        sha256: sha256_hex(&json),
        count: u32::try_from(count).map_err(|_| StoreError::Corrupt("too many lines".into()))?,
    };
    let chunks = json.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
    clear_lines(&mut envelope.event);
    envelope.lines_ref = Some(reference.clone());
    Ok(Some(ClaimedLines { reference, chunks }))
}

/// Puts the lines of `reference`, read back as `chunks`, into `event`, after checking they are exactly
/// what was stored (version, size, SHA-256, line count).
pub fn restore(
    event: &mut CanonicalEvent,
    reference: &LinesRef,
    chunks: Vec<Vec<u8>>,
) -> Result<(), ClaimError> {
    if reference.v != LINES_REF_VERSION {
        return Err(ClaimError::Corrupt(format!(
            "lines_ref version {} is not supported (this release reads {LINES_REF_VERSION})",
            reference.v
        )));
    }
    if chunks.len() != reference.chunks as usize {
        return Err(ClaimError::Missing(reference.key.clone()));
    }
    let json = chunks.concat();
    if json.len() as u64 != reference.bytes || sha256_hex(&json) != reference.sha256 {
        return Err(ClaimError::Corrupt(format!(
            "lines of {} do not match their reference",
            reference.key
        )));
    }
    let bad =
        |e: serde_json::Error| ClaimError::Corrupt(format!("lines of {}: {e}", reference.key));
    let count = match event {
        CanonicalEvent::SaleCompleted(s) => {
            s.lines = serde_json::from_slice(&json).map_err(bad)?;
            s.lines.len()
        }
        CanonicalEvent::ReturnCompleted(r) => {
            r.lines = serde_json::from_slice(&json).map_err(bad)?;
            r.lines.len()
        }
        other => {
            return Err(ClaimError::Corrupt(format!(
                "a {} carries no lines",
                other.detail_type()
            )));
        }
    };
    if count != reference.count as usize {
        return Err(ClaimError::Corrupt(format!(
            "lines of {}: {count} read, {} referenced",
            reference.key, reference.count
        )));
    }
    Ok(())
}

/// Resolves the lines of `event` when `reference` is set (a no-op otherwise).
pub async fn resolve_event(
    source: &dyn LinesSource,
    event: &mut CanonicalEvent,
    reference: Option<&LinesRef>,
) -> Result<(), ClaimError> {
    let Some(reference) = reference else {
        return Ok(());
    };
    let chunks = source
        .line_chunks(reference)
        .await?
        .ok_or_else(|| ClaimError::Missing(reference.key.clone()))?;
    restore(event, reference, chunks)
}

/// The envelope with its lines: resolved through `source` when it carries a reference (which is then
/// dropped), as it is otherwise.
pub async fn resolve(
    source: &dyn LinesSource,
    mut envelope: EventEnvelope,
) -> Result<EventEnvelope, ClaimError> {
    let reference = envelope.lines_ref.take();
    resolve_event(source, &mut envelope.event, reference.as_ref()).await?;
    Ok(envelope)
}

/// The SQS record outcome of a failed resolution: retried (the store may answer next time), except lines
/// that do not match their reference, which no retry can fix (the DLQ keeps them for an operator).
pub fn record_error(e: ClaimError) -> crate::sqs_batch::RecordError {
    match e {
        ClaimError::Corrupt(_) => crate::sqs_batch::RecordError::Poison(e.to_string()),
        ClaimError::Unavailable(_) | ClaimError::Missing(_) => {
            crate::sqs_batch::RecordError::Retryable(e.to_string())
        }
    }
}

/// A source for readers not wired to the capture store: every reference fails (retryable), so a fact
/// whose lines were claim-checked is never applied without them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLinesSource;

#[async_trait::async_trait]
impl LinesSource for NoLinesSource {
    async fn line_chunks(&self, reference: &LinesRef) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Err(StoreError::Unavailable(format!(
            "no claim-check source configured to read the lines of {}",
            reference.key
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::EventEnvelope;

    /// A Standard sale of `lines` one-unit lines of distinct SKUs, as the capture would publish it.
    pub(crate) fn sale_envelope(lines: usize) -> EventEnvelope {
        use crate::ids::{SaleId, Sku, StoreId};
        use crate::model::{Quantity, Sale, SaleLine, Source, Vendor};
        use crate::money::{Currency, Money};
        let eur = Currency::parse("EUR").expect("eur");
        let sale = Sale {
            sale_id: SaleId::parse("till:s-1").expect("id"),
            store_id: StoreId::parse("store-1").expect("id"),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            source: Source {
                vendor: Vendor::Standard,
                external_id: "s-1".into(),
                channel: None,
            },
            member_id: None,
            currency: eur,
            lines: (0..lines)
                .map(|i| SaleLine {
                    line_id: (i + 1).to_string(),
                    sku: Some(Sku::parse(format!("SKU-{i:04}")).expect("sku")),
                    quantity: Quantity::new(1).expect("qty"),
                    unit_price: Money::from_minor(1250, eur),
                    discount: Money::zero(eur),
                })
                .collect(),
            total: Money::from_minor(1250 * i64::try_from(lines).expect("n"), eur),
            tax: Money::zero(eur),
        };
        EventEnvelope::new(
            CanonicalEvent::SaleCompleted(sale),
            "c".into(),
            chrono::DateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn small_facts_keep_their_lines_big_ones_are_claimed_and_restored_exactly() {
        let mut small = sale_envelope(10);
        assert_eq!(claim_check(&mut small, "sale#s").expect("ok"), None);
        assert!(small.lines_ref.is_none());

        let original = sale_envelope(3_000);
        let mut env = original.clone();
        let claimed = claim_check(&mut env, "sale#till:s-1")
            .expect("ok")
            .expect("claimed");
        let (_, size) = entry_of(&env).expect("entry");
        assert!(
            size < 2_000,
            "the envelope without its lines is small: {size}"
        );
        assert_eq!(claimed.reference.count, 3_000);
        assert!(claimed.chunks.len() >= 2);
        assert!(claimed.chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(env.lines_ref.as_ref(), Some(&claimed.reference));

        let mut restored = env.event.clone();
        restore(&mut restored, &claimed.reference, claimed.chunks.clone()).expect("restored");
        assert_eq!(restored, original.event);

        // A missing chunk, a changed byte, an unknown version: refused, never a sale without lines.
        let mut e = env.event.clone();
        let mut fewer = claimed.chunks.clone();
        fewer.pop();
        assert!(matches!(
            restore(&mut e, &claimed.reference, fewer),
            Err(ClaimError::Missing(_))
        ));
        let mut tampered = claimed.chunks.clone();
        tampered[0][5] ^= 1;
        assert!(matches!(
            restore(&mut e, &claimed.reference, tampered),
            Err(ClaimError::Corrupt(_))
        ));
        let mut v2 = claimed.reference.clone();
        v2.v = 2;
        assert!(matches!(
            restore(&mut e, &v2, claimed.chunks.clone()),
            Err(ClaimError::Corrupt(_))
        ));
    }

    #[test]
    fn old_envelopes_without_a_reference_still_read() {
        let env = sale_envelope(2);
        let mut json = serde_json::to_value(&env).expect("json");
        assert!(json.get("lines_ref").is_none(), "absent when not claimed");
        json.as_object_mut().map(|o| o.remove("lines_ref"));
        let back: EventEnvelope = serde_json::from_value(json).expect("old shape");
        assert_eq!(back, env);
    }
}
