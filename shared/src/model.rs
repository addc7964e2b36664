//! The canonical model: what a sale, a return and a stock adjustment mean to us, whatever POS sent them.
//!
//! Vendor adapters map into these types; everything downstream (store, bus, consumers) only knows them.
//! Amounts are [`Money`] (integer minor units), quantities are positive integers, times are UTC.

use crate::ids::{AdjustmentId, EventId, MemberId, ReturnId, SaleId, Sku, StoreId};
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A POS vendor (or the Standard Webhooks path for in-house tills) that sends us webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// Shopify POS / Shopify orders.
    Shopify,
    /// Square.
    Square,
    /// Lightspeed Retail X-Series.
    Lightspeed,
    /// Standard Webhooks signed canonical events (in-house tills, middleware).
    Standard,
}

impl Vendor {
    /// All vendors, in route order.
    pub const ALL: [Vendor; 4] = [
        Vendor::Shopify,
        Vendor::Square,
        Vendor::Lightspeed,
        Vendor::Standard,
    ];

    /// The path segment of `POST /webhooks/{vendor}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Shopify => "shopify",
            Vendor::Square => "square",
            Vendor::Lightspeed => "lightspeed",
            Vendor::Standard => "standard",
        }
    }

    /// Parses the `{vendor}` path segment.
    pub fn from_path(segment: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.as_str() == segment)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strictly positive item count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u32);

/// A quantity that is zero, negative, fractional or absurdly large.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity must be a whole number between 1 and 1000000, got {0}")]
pub struct QuantityError(pub String);

impl Quantity {
    /// Upper bound that no till line reaches; protects the ledgers from typos and overflow.
    pub const MAX: u32 = 1_000_000;

    /// Parses a positive whole quantity.
    pub fn new(n: i64) -> Result<Self, QuantityError> {
        match u32::try_from(n) {
            Ok(q) if (1..=Self::MAX).contains(&q) => Ok(Self(q)),
            _ => Err(QuantityError(n.to_string())),
        }
    }

    /// Parses a JSON number that must be whole (`2` or `2.0`, not `1.5`).
    pub fn from_json(v: &serde_json::Value) -> Result<Self, QuantityError> {
        if let Some(i) = v.as_i64() {
            return Self::new(i);
        }
        match v.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e12 =>
            {
                #[allow(clippy::cast_possible_truncation)]
                Self::new(f as i64)
            }
            _ => Err(QuantityError(v.to_string().chars().take(24).collect())),
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = QuantityError;
    fn try_from(n: i64) -> Result<Self, QuantityError> {
        Self::new(n)
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        i64::from(q.0)
    }
}

/// Where a canonical record came from, for audit and support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The vendor that sent it.
    pub vendor: Vendor,
    /// The vendor's own id of the entity (order id, payment id, sale id).
    pub external_id: String,
    /// Sales channel as the vendor names it (Shopify `source_name`: `pos`, `web`…), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// One line of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleLine {
    /// The line's id within the sale (vendor line item id, or its position).
    pub line_id: String,
    /// The SKU sold; `None` for custom items without a catalogue entry (no stock effect).
    pub sku: Option<Sku>,
    /// Units sold.
    pub quantity: Quantity,
    /// Price of one unit before discounts.
    pub unit_price: Money,
    /// Discount on the whole line (positive amount taken off).
    pub discount: Money,
}

/// A completed sale: one receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    /// Our id of the sale (vendor-prefixed).
    pub sale_id: SaleId,
    /// The store it was sold in.
    pub store_id: StoreId,
    /// When it was completed at the till, UTC.
    pub occurred_at: DateTime<Utc>,
    /// Where it came from.
    pub source: Source,
    /// The loyalty member, when the customer identified.
    pub member_id: Option<MemberId>,
    /// Currency of every amount of the sale.
    pub currency: Currency,
    /// Lines sold.
    pub lines: Vec<SaleLine>,
    /// Amount paid, taxes included.
    pub total: Money,
    /// Tax included in `total`.
    pub tax: Money,
}

/// One line of a return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// The line's id within the return.
    pub line_id: String,
    /// The SKU returned; `None` for custom items.
    pub sku: Option<Sku>,
    /// Units returned.
    pub quantity: Quantity,
    /// Whether the units go back to sellable stock.
    pub restock: bool,
    /// Amount refunded for this line.
    pub refund: Money,
}

/// A return (refund) of some lines of an earlier sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    /// Our id of the return.
    pub return_id: ReturnId,
    /// The original sale, when the vendor links it.
    pub sale_id: Option<SaleId>,
    /// The store that took the return.
    pub store_id: StoreId,
    /// When it happened, UTC.
    pub occurred_at: DateTime<Utc>,
    /// Where it came from.
    pub source: Source,
    /// The loyalty member, when known.
    pub member_id: Option<MemberId>,
    /// Currency of every amount.
    pub currency: Currency,
    /// Lines returned.
    pub lines: Vec<ReturnLine>,
    /// Total refunded.
    pub total_refund: Money,
}

/// How a stock adjustment changes the on-hand quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StockChange {
    /// The POS counted and reports the absolute on-hand quantity.
    Set {
        /// Counted units (may be negative when the POS allows it).
        on_hand: i64,
    },
    /// A relative change (received goods, shrinkage).
    Delta {
        /// Units added (negative: removed).
        delta: i64,
    },
}

/// A stock adjustment reported by the POS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockAdjustment {
    /// Our id of the adjustment.
    pub adjustment_id: AdjustmentId,
    /// The store whose stock changes.
    pub store_id: StoreId,
    /// The SKU.
    pub sku: Sku,
    /// When it happened, UTC.
    pub occurred_at: DateTime<Utc>,
    /// Where it came from.
    pub source: Source,
    /// The change.
    pub change: StockChange,
}

/// A payment the POS completed whose order lines must still be fetched (Square sends payments, not orders).
///
/// Recorded durably so the enrichment step (a later function calling the vendor's Orders API) can turn it
/// into a [`Sale`]; it has no stock or loyalty effect by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSale {
    /// The id the sale will have once enriched.
    pub sale_id: SaleId,
    /// The vendor's payment id.
    pub payment_id: String,
    /// The vendor's order id, to fetch the lines from.
    pub order_id: Option<String>,
    /// The store (vendor location).
    pub store_id: StoreId,
    /// The customer, when known.
    pub member_id: Option<MemberId>,
    /// Amount paid.
    pub amount: Money,
    /// When it was paid, UTC.
    pub occurred_at: DateTime<Utc>,
    /// Where it came from.
    pub source: Source,
}

/// A canonical business fact, as stored and as published on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CanonicalEvent {
    /// A sale was completed.
    SaleCompleted(Sale),
    /// A return was completed.
    ReturnCompleted(Return),
    /// Stock was adjusted outside a sale.
    StockAdjusted(StockAdjustment),
    /// A payment awaits its order lines.
    SaleAwaitingEnrichment(PendingSale),
    /// Stock of a SKU in a store fell to or below its threshold (published by stock-sync).
    StockLow(StockLevel),
    /// Stock of a SKU in a store went negative: sold more than the platform knew of (flagged, not refused:
    /// the sale happened).
    StockNegative(StockLevel),
}

/// A stock level notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The store.
    pub store_id: StoreId,
    /// The SKU.
    pub sku: Sku,
    /// On-hand units after the change.
    pub on_hand: i64,
    /// The configured low-stock threshold.
    pub threshold: i64,
    /// The event whose effect caused the crossing.
    pub caused_by: EventId,
    /// When the causing fact happened.
    pub occurred_at: DateTime<Utc>,
}

impl CanonicalEvent {
    /// The EventBridge `detail-type` this event is published with.
    pub fn detail_type(&self) -> &'static str {
        match self {
            CanonicalEvent::SaleCompleted(_) => "SaleCompleted",
            CanonicalEvent::ReturnCompleted(_) => "ReturnCompleted",
            CanonicalEvent::StockAdjusted(_) => "StockAdjusted",
            CanonicalEvent::SaleAwaitingEnrichment(_) => "SaleAwaitingEnrichment",
            CanonicalEvent::StockLow(_) => "StockLow",
            CanonicalEvent::StockNegative(_) => "StockNegative",
        }
    }

    /// The store the fact belongs to.
    pub fn store_id(&self) -> &StoreId {
        match self {
            CanonicalEvent::SaleCompleted(s) => &s.store_id,
            CanonicalEvent::ReturnCompleted(r) => &r.store_id,
            CanonicalEvent::StockAdjusted(a) => &a.store_id,
            CanonicalEvent::SaleAwaitingEnrichment(p) => &p.store_id,
            CanonicalEvent::StockLow(l) | CanonicalEvent::StockNegative(l) => &l.store_id,
        }
    }

    /// When the fact happened.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            CanonicalEvent::SaleCompleted(s) => s.occurred_at,
            CanonicalEvent::ReturnCompleted(r) => r.occurred_at,
            CanonicalEvent::StockAdjusted(a) => a.occurred_at,
            CanonicalEvent::SaleAwaitingEnrichment(p) => p.occurred_at,
            CanonicalEvent::StockLow(l) | CanonicalEvent::StockNegative(l) => l.occurred_at,
        }
    }

    /// The stable key of the business fact: two deliveries that describe the same fact share it, so the
    /// fact is stored and published once even when the vendor's delivery ids differ.
    pub fn record_key(&self) -> String {
        match self {
            CanonicalEvent::SaleCompleted(s) => format!("sale#{}", s.sale_id),
            CanonicalEvent::ReturnCompleted(r) => format!("return#{}", r.return_id),
            CanonicalEvent::StockAdjusted(a) => format!("adjustment#{}", a.adjustment_id),
            CanonicalEvent::SaleAwaitingEnrichment(p) => format!("pending#{}", p.sale_id),
            // Store, SKU and cause together can exceed an id's length: a digest keeps the key short and stable.
            CanonicalEvent::StockLow(l) => format!("stocklow#{}", level_digest(l)),
            CanonicalEvent::StockNegative(l) => format!("stocknegative#{}", level_digest(l)),
        }
    }

    /// The id of the domain event that announces this fact: derived from the record key, so every
    /// re-publication of the same fact carries the same id and consumers can dedupe on it.
    pub fn event_id(&self) -> EventId {
        // Record keys are validated ids (<= 128 chars) behind a short prefix and '#', which ids do not allow:
        // mapped to ':' the result stays within EventId's alphabet and 200-character limit.
        EventId::from_valid_parts(format!("evt:{}", self.record_key().replace('#', ":")))
    }
}

fn level_digest(l: &StockLevel) -> String {
    let text = format!("{}\n{}\n{}", l.store_id, l.sku, l.caused_by);
    crate::vendors::signing::sha256_hex(text.as_bytes())[..40].to_owned()
}

/// The version of the [`LinesRef`] format this release writes and reads.
pub const LINES_REF_VERSION: u32 = 1;

/// A claim check: the lines of a big sale or return, stored aside by the capture (in the same atomic
/// write as its record) instead of travelling in the event. An envelope or record that carries one has
/// `lines: []` in its `data`; readers resolve it ([`crate::store::claim::resolve`]) before using the
/// lines, and fail (retry) when they cannot, never treating the fact as one without lines.
///
/// The stored form is the JSON array of the lines (`SaleLine`s or `ReturnLine`s, as in `data.lines`),
/// cut into `chunks` pieces of at most [`crate::store::claim::CHUNK_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinesRef {
    /// Format version ([`LINES_REF_VERSION`]); a reader refuses a version it does not know.
    pub v: u32,
    /// Where the lines are: the fact's record key (DynamoDB `pk = LINES#{key}`, `sk = CHUNK#{n}`).
    pub key: String,
    /// Number of chunks (`0..chunks`).
    pub chunks: u32,
    /// Total bytes of the lines' JSON.
    pub bytes: u64,
    /// Hex SHA-256 of the lines' JSON: what is read back must be exactly what was stored.
    pub sha256: String,
    /// Number of lines.
    pub count: u32,
}

/// The envelope published on the bus (the EventBridge `detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Stable id of the event (consumers dedupe on it).
    pub event_id: EventId,
    /// Carried from the webhook through the bus and queues into every log line.
    pub correlation_id: String,
    /// When the platform captured the fact.
    pub captured_at: DateTime<Utc>,
    /// The fact.
    #[serde(flatten)]
    pub event: CanonicalEvent,
    /// Set when the fact's lines were too big to travel in the event: they are stored aside and
    /// `data.lines` is empty. Absent in envelopes of small facts and in every envelope written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines_ref: Option<LinesRef>,
}

impl EventEnvelope {
    /// Wraps a canonical event for publication.
    pub fn new(event: CanonicalEvent, correlation_id: String, captured_at: DateTime<Utc>) -> Self {
        Self {
            event_id: event.event_id(),
            correlation_id,
            captured_at,
            event,
            lines_ref: None,
        }
    }

    /// The EventBridge `detail-type`.
    pub fn detail_type(&self) -> &'static str {
        self.event.detail_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_refuses_zero_negative_fractional_and_huge() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-1).is_err());
        assert!(Quantity::new(1_000_001).is_err());
        assert_eq!(Quantity::new(3).map(Quantity::get), Ok(3));
        assert_eq!(
            Quantity::from_json(&serde_json::json!(2.0)).map(Quantity::get),
            Ok(2)
        );
        assert!(Quantity::from_json(&serde_json::json!(1.5)).is_err());
        assert!(Quantity::from_json(&serde_json::json!("2")).is_err());
    }

    #[test]
    fn event_id_is_stable_and_valid() {
        let sale = CanonicalEvent::SaleAwaitingEnrichment(PendingSale {
            sale_id: SaleId::parse("square:payment:abc").expect("id"),
            payment_id: "abc".into(),
            order_id: None,
            store_id: StoreId::parse("square:L1").expect("id"),
            member_id: None,
            amount: Money::from_minor(100, Currency::parse("USD").expect("usd")),
            occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            source: Source {
                vendor: Vendor::Square,
                external_id: "abc".into(),
                channel: None,
            },
        });
        assert_eq!(sale.event_id().as_str(), "evt:pending:square:payment:abc");
        assert_eq!(sale.event_id(), sale.clone().event_id());
    }

    #[test]
    fn vendor_path_round_trip() {
        for v in Vendor::ALL {
            assert_eq!(Vendor::from_path(v.as_str()), Some(v));
        }
        assert_eq!(Vendor::from_path("Shopify"), None);
    }
}
