//! `pos-local simulate`: a realistic, seeded store day (issue 12, part 3), sent to a running `pos-local`
//! or written as `events/`-style API Gateway events, and reconciled against what the pipeline did.
//!
//! - **Stores** are assigned to the four vendors in turn (Standard Webhooks, Shopify, Lightspeed, Square),
//!   each with one currency and a SKU catalogue whose prices are log-skewed (many cheap items, a few
//!   dear ones) in the currency's minor units (JPY has none). Baskets have mostly 1–4 lines with a tail
//!   to 30, distinct SKUs per basket, mostly one unit a line; some lines carry a discount, a few SKUs
//!   are gift cards (which the loyalty rules exclude).
//! - **Sales** happen on the first day, within the opening hours; a `--member-share` of them name a
//!   member. **Returns** (`--return-share`) land on the later days: full or partial (a subset of lines
//!   and units), mostly restocked; some are **exchanges** (Standard: a return and a new sale; Lightspeed:
//!   one payload with negative and positive lines). Square's webhook carries a payment without lines
//!   (it awaits enrichment), so Square stores move neither stock nor points, and have no returns.
//! - **Determinism:** one `fastrand` generator (wyrand, the version pinned by `Cargo.lock`) seeded with
//!   `--seed`, and a fixed `--date`: the same flags give the same deliveries, byte for byte (Standard
//!   Webhooks deliveries are signed when sent, because their timestamp must be within 5 minutes).
//! - **Expected model:** kept while generating, independently of the vendor mappers: stock per store + SKU
//!   (a sale takes its units off, a restocked return puts them back), points per member through the
//!   configured [`LoyaltyRules`] (accrual, pro-rata reversal), and the events each delivery destination
//!   should receive (infra/'s rules).
//! - **Reconciliation:** after each day the generator waits until the pipeline is idle (queues empty,
//!   outbox drained), then compares the change since the run started (a snapshot taken first) with the
//!   model: per store + SKU, per member, per destination (delivered, none stuck), every delivery
//!   answered 202, no new dead letter. Any difference fails the run. A second run of the same seed on the
//!   same data is all duplicates, which changes nothing, so it reports differences by design.

use crate::client;
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pos_shared::ids::{MemberId, ReturnId, SaleId, Sku, StoreId};
use pos_shared::loyalty::Reversed;
use pos_shared::loyalty::rules::{Accrual, LoyaltyRules};
use pos_shared::model::{Quantity, Return, ReturnLine, Sale, SaleLine, Source, Vendor};
use pos_shared::money::{Currency, Money};
use pos_shared::samples::{self, SignedDelivery};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of stores.
    pub stores: usize,
    /// Sales per store on the first day.
    pub sales_per_store: usize,
    /// Opening hour (UTC, inclusive).
    pub open_hour: u32,
    /// Closing hour (UTC, exclusive).
    pub close_hour: u32,
    /// Days simulated: sales on the first, returns and exchanges on the later ones.
    pub days: u32,
    /// Seed of the generator.
    pub seed: u64,
    /// Currencies the stores are given (one each).
    pub currencies: Vec<Currency>,
    /// Share of sales that name a loyalty member (0 to 1).
    pub member_share: f64,
    /// Share of sales returned later (0 to 1).
    pub return_share: f64,
    /// The first day.
    pub date: NaiveDate,
}

impl SimConfig {
    /// Checks the ranges (bad flags are refused, not clamped).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.stores == 0 || self.sales_per_store == 0 {
            bail!("--stores and --sales-per-store must be positive");
        }
        if self.open_hour >= self.close_hour || self.close_hour > 24 {
            bail!("--hours must be OPEN-CLOSE with 0 <= OPEN < CLOSE <= 24");
        }
        if self.days == 0 || self.days > 60 {
            bail!("--days must be between 1 and 60");
        }
        if self.currencies.is_empty() {
            bail!("--currencies must name at least one currency");
        }
        for (name, share) in [
            ("--member-share", self.member_share),
            ("--return-share", self.return_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                bail!("{name} must be between 0 and 1");
            }
        }
        Ok(())
    }
}

/// Parses `--hours` (`9-21`).
pub fn parse_hours(text: &str) -> anyhow::Result<(u32, u32)> {
    let (open, close) = text
        .split_once('-')
        .context("--hours must be OPEN-CLOSE, e.g. 9-21")?;
    Ok((
        open.trim().parse().context("opening hour")?,
        close.trim().parse().context("closing hour")?,
    ))
}

/// Parses `--currencies` (`EUR,GBP,USD`).
pub fn parse_currencies(text: &str) -> anyhow::Result<Vec<Currency>> {
    text.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| Currency::parse(c.trim()).map_err(|e| anyhow::anyhow!("--currencies: {e}")))
        .collect()
}

/// How a planned delivery is signed.
#[derive(Debug, Clone)]
enum Wire {
    /// Standard Webhooks: signed when sent (its timestamp must be fresh).
    Standard { msg_id: String, body: Value },
    /// Shopify, Square, Lightspeed: the signature does not depend on time.
    Signed(SignedDelivery),
}

/// One delivery of the simulated days.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Day index (0: the sales day).
    pub day: u32,
    /// When it happens in the simulated day.
    pub at: DateTime<Utc>,
    /// What it is (`sale`, `return`, `exchange`, `payment`), for the file names and the report.
    pub kind: &'static str,
    wire: Wire,
}

impl Planned {
    /// The delivery as the vendor sends it, Standard Webhooks signed at `now`.
    pub fn signed(&self, now: DateTime<Utc>) -> SignedDelivery {
        match &self.wire {
            Wire::Standard { msg_id, body } => samples::standard(msg_id, body, now, None),
            Wire::Signed(d) => d.clone(),
        }
    }

    /// The vendor route.
    pub fn vendor(&self) -> Vendor {
        match &self.wire {
            Wire::Standard { .. } => Vendor::Standard,
            Wire::Signed(d) => d.vendor,
        }
    }
}

/// What the pipeline must end with, as the generator computed it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Expected {
    /// Net units per store and SKU (sales negative, restocked returns positive).
    pub stock: BTreeMap<String, BTreeMap<String, i64>>,
    /// Points per member (every member of the simulation, zero included).
    pub points: BTreeMap<String, i64>,
    /// Events with a sale that capture publishes, per detail-type.
    pub events: BTreeMap<String, usize>,
    /// The simulation's stores.
    pub stores: BTreeSet<String>,
}

/// A generated day: the deliveries in send order (by day, then time) and the expected model.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Deliveries (shared with the senders, not copied: a 100-store day is a few hundred MB).
    pub deliveries: Arc<Vec<Planned>>,
    /// Expected state change.
    pub expected: Expected,
}

#[derive(Debug, Clone)]
struct StoreGen {
    vendor: Vendor,
    id: String,
    /// Shopify location, Lightspeed outlet, Square location, Standard store id.
    wire: String,
    currency: Currency,
    /// Shared: a store is cloned per sale.
    catalogue: Arc<Vec<(String, i64)>>,
}

#[derive(Debug, Clone)]
struct Member {
    /// The id the vendor sends (customer id).
    wire: String,
    /// Our member id.
    id: String,
}

#[derive(Debug, Clone)]
struct Line {
    line_id: String,
    sku: String,
    qty: u32,
    unit: i64,
    discount: i64,
}

#[derive(Debug, Clone)]
struct SaleGen {
    store: usize,
    /// The vendor's id of the sale (order id, sale id).
    wire_id: String,
    member: Option<Member>,
    lines: Vec<Line>,
    accrual: Option<Accrual>,
}

/// Formats minor units with the currency's decimals.
fn decimal(minor: i64, currency: Currency) -> String {
    let exp = currency.exponent();
    if exp == 0 {
        return minor.to_string();
    }
    let scale = 10_i64.pow(exp);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exp as usize
    )
}

/// A skewed price: log-uniform on the square of a uniform draw, 1.50 to 250.00 in cent terms, ending in
/// .99 (most items cheap, a long tail of dear ones), then scaled to the currency's minor units.
fn price(rng: &mut fastrand::Rng, currency: Currency) -> i64 {
    let u = rng.f64();
    let cents = (150.0 * (25_000.0_f64 / 150.0).powf(u * u)) as i64;
    let cents = if cents >= 100 {
        cents / 100 * 100 + 99
    } else {
        cents
    };
    match currency.exponent() {
        // About 1.5 yen a cent, rounded to 10 yen.
        0 => (cents * 3 / 2 / 10).max(1) * 10,
        1 => (cents / 10).max(1),
        2 => cents,
        e => cents * 10_i64.pow(e - 2),
    }
}

/// Lines in a basket: 1 + an exponential draw (mean about 2.7), capped at 30.
fn line_count(rng: &mut fastrand::Rng) -> usize {
    let u = rng.f64();
    let extra = (-(1.0 - u).ln() * 1.7) as usize;
    (1 + extra).min(30)
}

fn units(rng: &mut fastrand::Rng) -> u32 {
    match rng.u32(0..100) {
        0..80 => 1,
        80..95 => 2,
        _ => rng.u32(3..=6),
    }
}

fn money(minor: i64, currency: Currency) -> Money {
    Money::from_minor(minor, currency)
}

fn quantity(n: u32) -> anyhow::Result<Quantity> {
    Quantity::new(i64::from(n)).map_err(|e| anyhow::anyhow!("{e}"))
}

fn source(vendor: Vendor, id: &str) -> Source {
    Source {
        vendor,
        external_id: id.to_owned(),
        channel: None,
    }
}

/// The canonical sale the generator means (for the loyalty rules), independent of the mappers.
fn model_sale(
    store: &StoreGen,
    sale_id: &str,
    member: Option<&Member>,
    lines: &[Line],
    at: DateTime<Utc>,
) -> anyhow::Result<Sale> {
    let c = store.currency;
    let mut out = Vec::with_capacity(lines.len());
    let mut total = 0;
    for l in lines {
        total += l.unit * i64::from(l.qty) - l.discount;
        out.push(SaleLine {
            line_id: l.line_id.clone(),
            sku: Some(Sku::parse(l.sku.clone())?),
            quantity: quantity(l.qty)?,
            unit_price: money(l.unit, c),
            discount: money(l.discount, c),
        });
    }
    Ok(Sale {
        sale_id: SaleId::parse(format!("sim:{sale_id}"))?,
        store_id: StoreId::parse(store.id.clone())?,
        occurred_at: at,
        source: source(store.vendor, sale_id),
        member_id: member.map(|m| MemberId::parse(m.id.clone())).transpose()?,
        currency: c,
        lines: out,
        total: money(total, c),
        tax: money(0, c),
    })
}

/// A returned line: the sale line, units returned, refund, restocked.
struct Returned<'a> {
    line: &'a Line,
    qty: u32,
    refund: i64,
    restock: bool,
}

fn model_return(
    store: &StoreGen,
    return_id: &str,
    lines: &[Returned<'_>],
    at: DateTime<Utc>,
) -> anyhow::Result<Return> {
    let c = store.currency;
    let mut out = Vec::with_capacity(lines.len());
    for r in lines {
        out.push(ReturnLine {
            // The sale line's id: the rules match by id, then by SKU (distinct within a basket).
            line_id: r.line.line_id.clone(),
            sku: Some(Sku::parse(r.line.sku.clone())?),
            quantity: quantity(r.qty)?,
            restock: r.restock,
            refund: money(r.refund, c),
        });
    }
    Ok(Return {
        return_id: ReturnId::parse(format!("sim:{return_id}"))?,
        sale_id: None,
        store_id: StoreId::parse(store.id.clone())?,
        occurred_at: at,
        source: source(store.vendor, return_id),
        member_id: None,
        currency: c,
        lines: out,
        total_refund: money(lines.iter().map(|r| r.refund).sum(), c),
    })
}

struct Gen<'a> {
    cfg: &'a SimConfig,
    rules: &'a LoyaltyRules,
    rng: fastrand::Rng,
    stores: Vec<StoreGen>,
    expected: Expected,
    out: Vec<Planned>,
    seq: u64,
    /// A per-seed number that keeps numeric vendor ids (Shopify) apart between seeds.
    space: u64,
}

impl Gen<'_> {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn time_on(&mut self, day: u32) -> DateTime<Utc> {
        let span = (self.cfg.close_hour - self.cfg.open_hour) * 3600;
        let secs = self.cfg.open_hour * 3600 + self.rng.u32(0..span);
        let date = self.cfg.date + chrono::Days::new(u64::from(day));
        date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
            + chrono::Duration::seconds(i64::from(secs))
    }

    fn stock(&mut self, store: usize, sku: &str, delta: i64) {
        let id = self.stores[store].id.clone();
        *self
            .expected
            .stock
            .entry(id)
            .or_default()
            .entry(sku.to_owned())
            .or_default() += delta;
    }

    fn event(&mut self, kind: &str) {
        *self.expected.events.entry(kind.to_owned()).or_default() += 1;
    }

    fn plan(&mut self, day: u32, at: DateTime<Utc>, kind: &'static str, wire: Wire) {
        self.out.push(Planned {
            day,
            at,
            kind,
            wire,
        });
    }

    fn basket(&mut self, store: usize, n_lines: usize) -> Vec<Line> {
        let catalogue = &self.stores[store].catalogue;
        let n = n_lines.min(catalogue.len());
        let mut picked = BTreeSet::new();
        while picked.len() < n {
            picked.insert(self.rng.usize(0..catalogue.len()));
        }
        let mut order: Vec<usize> = picked.into_iter().collect();
        self.rng.shuffle(&mut order);
        let base = self.space * 1_000_000_000 + self.seq * 100;
        order
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let (sku, unit) = self.stores[store].catalogue[k].clone();
                let qty = units(&mut self.rng);
                // 10 % off one line in ten, a whole amount per unit (so every vendor's unit price after
                // the discount is exact).
                let discount = if self.rng.u32(0..10) == 0 {
                    unit / 10 * i64::from(qty)
                } else {
                    0
                };
                Line {
                    // Shopify line item ids are numbers; the others take any text.
                    line_id: (base + i as u64).to_string(),
                    sku,
                    qty,
                    unit,
                    discount,
                }
            })
            .collect()
    }

    /// Generates, signs (all but Standard) and models one sale; `None` for Square (no lines).
    fn sale(
        &mut self,
        store: usize,
        day: u32,
        at: DateTime<Utc>,
        member: Option<Member>,
        lines: Vec<Line>,
        kind: &'static str,
    ) -> anyhow::Result<Option<SaleGen>> {
        let seq = self.next_seq();
        let seed = self.cfg.seed;
        let s = self.stores[store].clone();
        let c = s.currency;
        let total: i64 = lines
            .iter()
            .map(|l| l.unit * i64::from(l.qty) - l.discount)
            .sum();
        let wire_id = match s.vendor {
            Vendor::Shopify => (self.space * 1_000_000_000 + seq).to_string(),
            _ => format!("sim{seed}-{seq}"),
        };
        let wire = match s.vendor {
            Vendor::Standard => {
                let mut data = json!({
                    "sale_id": wire_id, "store_id": s.wire, "occurred_at": at.to_rfc3339(),
                    "currency": c.code(), "channel": "till-1",
                    "lines": lines.iter().map(|l| json!({
                        "line_id": l.line_id, "sku": l.sku, "quantity": l.qty,
                        "unit_price": decimal(l.unit, c), "discount": decimal(l.discount, c)
                    })).collect::<Vec<_>>(),
                    "total": decimal(total, c), "tax": decimal(0, c)
                });
                if let (Some(m), Some(obj)) = (&member, data.as_object_mut()) {
                    obj.insert("member_id".into(), json!(m.wire));
                }
                Wire::Standard {
                    msg_id: format!("msg_sim{seed}_{seq}"),
                    body: json!({"type": "sale.completed", "timestamp": at.to_rfc3339(), "data": data}),
                }
            }
            Vendor::Shopify => {
                let mut order = json!({
                    "id": wire_id.parse::<u64>().unwrap_or_default(), "name": format!("#{wire_id}"),
                    "created_at": at.to_rfc3339(), "currency": c.code(), "presentment_currency": c.code(),
                    "location_id": s.wire.parse::<u64>().unwrap_or_default(), "source_name": "pos",
                    "test": false, "financial_status": "paid", "taxes_included": true,
                    "line_items": lines.iter().map(|l| json!({
                        "id": l.line_id.parse::<u64>().unwrap_or_default(), "sku": l.sku, "title": l.sku,
                        "quantity": l.qty, "price": decimal(l.unit, c),
                        "total_discount": decimal(l.discount, c), "discount_allocations": [],
                        "taxable": true
                    })).collect::<Vec<_>>(),
                    "shipping_lines": [], "subtotal_price": decimal(total, c),
                    "total_price": decimal(total, c), "total_tax": decimal(0, c)
                });
                if let (Some(m), Some(obj)) = (&member, order.as_object_mut()) {
                    obj.insert(
                        "customer".into(),
                        json!({"id": m.wire.parse::<u64>().unwrap_or_default()}),
                    );
                }
                Wire::Signed(samples::shopify(
                    "orders/create",
                    &format!("sim{seed}-shopify-{seq}"),
                    &order,
                    None,
                ))
            }
            Vendor::Lightspeed => Wire::Signed(samples::lightspeed(
                "sale.update",
                &lightspeed_payload(&s, &wire_id, None, member.as_ref(), at, &lines, &[]),
                None,
            )),
            Vendor::Square => {
                let mut payment = json!({
                    "id": wire_id, "created_at": at.to_rfc3339(), "updated_at": at.to_rfc3339(),
                    "amount_money": {"amount": total, "currency": c.code()},
                    "total_money": {"amount": total, "currency": c.code()},
                    "status": "COMPLETED", "source_type": "CARD", "location_id": s.wire, "version": 1
                });
                if let (Some(m), Some(obj)) = (&member, payment.as_object_mut()) {
                    obj.insert("customer_id".into(), json!(m.wire));
                }
                Wire::Signed(samples::square(
                    &json!({"merchant_id": format!("SIM{seed}"), "type": "payment.updated",
                            "event_id": format!("sim{seed}-sq-{seq}"), "created_at": at.to_rfc3339(),
                            "data": {"type": "payment", "id": wire_id, "object": {"payment": payment}}}),
                    None,
                ))
            }
        };
        self.plan(day, at, kind, wire);
        if s.vendor == Vendor::Square {
            self.event("SaleAwaitingEnrichment");
            return Ok(None);
        }
        self.event("SaleCompleted");
        for l in &lines {
            self.stock(store, &l.sku, -i64::from(l.qty));
        }
        let accrual = match &member {
            Some(m) => {
                let sale = model_sale(&s, &wire_id, Some(m), &lines, at)?;
                let accrual = self.rules.accrue(&sale, None);
                if let Some(a) = &accrual {
                    *self.expected.points.entry(m.id.clone()).or_default() += a.points;
                }
                accrual
            }
            None => None,
        };
        Ok(Some(SaleGen {
            store,
            wire_id,
            member,
            lines,
            accrual,
        }))
    }

    /// A later return of `sale` (full or partial), or an exchange.
    fn give_back(&mut self, sale: &SaleGen) -> anyhow::Result<()> {
        let day = 1 + self.rng.u32(0..self.cfg.days - 1);
        let at = self.time_on(day);
        let s = self.stores[sale.store].clone();
        let c = s.currency;
        let full = self.rng.bool();
        let mut returned: Vec<Returned<'_>> = Vec::new();
        for l in &sale.lines {
            let (take, qty) = if full {
                (true, l.qty)
            } else {
                (self.rng.bool(), self.rng.u32(1..=l.qty))
            };
            if take {
                // The line's refund: its units at the unit price less their share of the discount.
                let refund =
                    l.unit * i64::from(qty) - l.discount * i64::from(qty) / i64::from(l.qty);
                let restock = s.vendor == Vendor::Lightspeed || self.rng.u32(0..10) != 0;
                returned.push(Returned {
                    line: l,
                    qty,
                    refund,
                    restock,
                });
            }
        }
        if returned.is_empty()
            && let Some(l) = sale.lines.first()
        {
            returned.push(Returned {
                line: l,
                qty: 1,
                refund: l.unit - l.discount / i64::from(l.qty),
                restock: true,
            });
        }
        let exchange = s.vendor != Vendor::Shopify && self.rng.u32(0..10) < 3;
        let seq = self.next_seq();
        let seed = self.cfg.seed;
        let return_id = match s.vendor {
            Vendor::Shopify => (self.space * 1_000_000_000 + seq).to_string(),
            _ => format!("sim{seed}-{seq}"),
        };
        let kind = if exchange { "exchange" } else { "return" };
        let new_lines = if exchange {
            let n = 1 + self.rng.usize(0..2);
            self.basket(sale.store, n)
        } else {
            Vec::new()
        };
        let refund_total: i64 = returned.iter().map(|r| r.refund).sum();
        match s.vendor {
            Vendor::Standard => {
                let mut data = json!({
                    "return_id": return_id, "sale_id": sale.wire_id, "store_id": s.wire,
                    "occurred_at": at.to_rfc3339(), "currency": c.code(),
                    "lines": returned.iter().map(|r| json!({
                        "line_id": r.line.line_id, "sku": r.line.sku, "quantity": r.qty,
                        "restock": r.restock, "refund": decimal(r.refund, c)
                    })).collect::<Vec<_>>(),
                    "total_refund": decimal(refund_total, c)
                });
                if let (Some(m), Some(obj)) = (&sale.member, data.as_object_mut()) {
                    obj.insert("member_id".into(), json!(m.wire));
                }
                let wire = Wire::Standard {
                    msg_id: format!("msg_sim{seed}_{seq}"),
                    body: json!({"type": "return.completed", "timestamp": at.to_rfc3339(), "data": data}),
                };
                self.plan(day, at, kind, wire);
            }
            Vendor::Shopify => {
                let items: Vec<Value> = returned
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        json!({
                            "id": self.space * 1_000_000_000 + seq * 100 + i as u64,
                            "line_item_id": r.line.line_id.parse::<u64>().unwrap_or_default(),
                            "quantity": r.qty,
                            "location_id": s.wire.parse::<u64>().unwrap_or_default(),
                            "restock_type": if r.restock { "return" } else { "no_restock" },
                            "subtotal": decimal(r.refund, c),
                            "total_tax": decimal(0, c),
                            "subtotal_set": {"shop_money": {"amount": decimal(r.refund, c), "currency_code": c.code()}},
                            "line_item": {"id": r.line.line_id.parse::<u64>().unwrap_or_default(), "sku": r.line.sku,
                                          "quantity": r.line.qty, "price": decimal(r.line.unit, c)}
                        })
                    })
                    .collect();
                let refund = json!({
                    "id": return_id.parse::<u64>().unwrap_or_default(),
                    "order_id": sale.wire_id.parse::<u64>().unwrap_or_default(),
                    "created_at": at.to_rfc3339(), "note": "simulated", "refund_line_items": items,
                    "transactions": [{"id": seq, "kind": "refund", "amount": decimal(refund_total, c),
                                      "currency": c.code(), "status": "success"}]
                });
                let wire = Wire::Signed(samples::shopify(
                    "refunds/create",
                    &format!("sim{seed}-shopify-{seq}"),
                    &refund,
                    None,
                ));
                self.plan(day, at, kind, wire);
            }
            Vendor::Lightspeed => {
                let wire = Wire::Signed(samples::lightspeed(
                    "sale.update",
                    &lightspeed_payload(
                        &s,
                        &return_id,
                        Some(&sale.wire_id),
                        sale.member.as_ref(),
                        at,
                        &new_lines,
                        &returned,
                    ),
                    None,
                ));
                self.plan(day, at, kind, wire);
            }
            Vendor::Square => return Ok(()),
        }
        self.event("ReturnCompleted");
        for r in &returned {
            if r.restock {
                self.stock(sale.store, &r.line.sku, i64::from(r.qty));
            }
        }
        if let (Some(m), Some(accrual)) = (&sale.member, &sale.accrual) {
            let ret = model_return(&s, &return_id, &returned, at)?;
            let (_, points) = self.rules.reversal(accrual, &Reversed::default(), &ret);
            *self.expected.points.entry(m.id.clone()).or_default() -= points;
        }
        if exchange {
            match s.vendor {
                // One payload: its positive lines are a sale of the return's own id.
                Vendor::Lightspeed => {
                    self.event("SaleCompleted");
                    for l in &new_lines {
                        self.stock(sale.store, &l.sku, -i64::from(l.qty));
                    }
                    if let Some(m) = &sale.member {
                        let model = model_sale(&s, &return_id, Some(m), &new_lines, at)?;
                        if let Some(a) = self.rules.accrue(&model, None) {
                            *self.expected.points.entry(m.id.clone()).or_default() += a.points;
                        }
                    }
                }
                _ => {
                    self.sale(
                        sale.store,
                        day,
                        at,
                        sale.member.clone(),
                        new_lines,
                        "exchange",
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// A Lightspeed `sale.update` payload: `sold` lines positive, `returned` lines negative (with
/// `return_for`), tax-free two-decimal prices, totals that reconcile.
fn lightspeed_payload(
    s: &StoreGen,
    id: &str,
    return_for: Option<&str>,
    member: Option<&Member>,
    at: DateTime<Utc>,
    sold: &[Line],
    returned: &[Returned<'_>],
) -> Value {
    let c = s.currency;
    let mut products = Vec::new();
    let mut total = 0;
    for l in sold {
        // Lightspeed's price is after the line's discount.
        let unit = l.unit - l.discount / i64::from(l.qty);
        total += unit * i64::from(l.qty);
        products.push(
            json!({"id": format!("{id}-{}", l.line_id), "product_id": l.sku, "sku": l.sku,
            "quantity": l.qty, "price": decimal(unit, c), "discount": "0", "tax": "0"}),
        );
    }
    for (i, r) in returned.iter().enumerate() {
        let unit = r.refund / i64::from(r.qty);
        total -= unit * i64::from(r.qty);
        products.push(
            json!({"id": format!("{id}-r{i}"), "product_id": r.line.sku, "sku": r.line.sku,
            "quantity": -i64::from(r.qty), "price": decimal(unit, c), "discount": "0", "tax": "0"}),
        );
    }
    let mut totals = json!({"total_price": decimal(total, c), "total_tax": "0"});
    if returned.is_empty() {
        totals["total_payment"] = json!(decimal(total, c));
    }
    let mut payload = json!({
        "id": id, "outlet_id": s.wire, "register_id": format!("{}-reg", s.wire),
        "sale_date": at.format("%Y-%m-%d %H:%M:%S").to_string(), "status": "CLOSED", "version": 1,
        "currency": c.code(), "register_sale_products": products, "totals": totals
    });
    if let Some(obj) = payload.as_object_mut() {
        if let Some(m) = member {
            obj.insert("customer_id".into(), json!(m.wire));
        }
        if let Some(r) = return_for {
            obj.insert("return_for".into(), json!(r));
        }
    }
    payload
}

/// Generates the days of `cfg` with the loyalty `rules` pos-local runs.
pub fn generate(cfg: &SimConfig, rules: &LoyaltyRules) -> anyhow::Result<Generated> {
    cfg.validate()?;
    let seed = cfg.seed;
    let mut rng = fastrand::Rng::with_seed(seed);
    let space = 1 + seed % 9_000;
    const VENDORS: [Vendor; 4] = [
        Vendor::Standard,
        Vendor::Shopify,
        Vendor::Lightspeed,
        Vendor::Square,
    ];
    let catalogue_size = (cfg.sales_per_store / 4).clamp(20, 400);
    let mut stores = Vec::with_capacity(cfg.stores);
    for i in 0..cfg.stores {
        let vendor = VENDORS[i % 4];
        let currency = cfg.currencies[rng.usize(0..cfg.currencies.len())];
        let catalogue = (0..catalogue_size)
            .map(|k| {
                // About one SKU in fifty is a gift card, which earns no points.
                if rng.u32(0..50) == 0 {
                    (format!("GIFT-{k:04}"), price(&mut rng, currency))
                } else {
                    (format!("SKU-{k:04}"), price(&mut rng, currency))
                }
            })
            .collect::<Vec<_>>();
        let catalogue = Arc::new(catalogue);
        let (id, wire) = match vendor {
            Vendor::Standard => {
                let w = format!("sim{seed}-store-{i:03}");
                (w.clone(), w)
            }
            Vendor::Shopify => {
                let loc = (space * 1_000 + i as u64).to_string();
                (format!("shopify:{loc}"), loc)
            }
            Vendor::Lightspeed => {
                let w = format!("sim{seed}-outlet-{i:03}");
                (format!("lightspeed:{w}"), w)
            }
            Vendor::Square => {
                let w = format!("SIM{seed}L{i:03}");
                (format!("square:{w}"), w)
            }
        };
        stores.push(StoreGen {
            vendor,
            id,
            wire,
            currency,
            catalogue,
        });
    }
    let mut g = Gen {
        cfg,
        rules,
        rng,
        stores,
        expected: Expected::default(),
        out: Vec::new(),
        seq: 0,
        space,
    };
    g.expected.stores = g.stores.iter().map(|s| s.id.clone()).collect();
    // Members per vendor (ids are the vendors' customer ids): about three purchases each.
    let per_vendor = cfg.stores.div_ceil(4) * cfg.sales_per_store;
    let pool = ((per_vendor as f64 * cfg.member_share / 3.0) as usize).max(3);
    let member = |vendor: Vendor, k: usize| -> Member {
        match vendor {
            Vendor::Standard => {
                let w = format!("sim{seed}-member-{k}");
                Member {
                    id: w.clone(),
                    wire: w,
                }
            }
            Vendor::Shopify => {
                let w = (space * 1_000_000_000 + 900_000_000 + k as u64).to_string();
                Member {
                    id: format!("shopify:{w}"),
                    wire: w,
                }
            }
            Vendor::Lightspeed => {
                let w = format!("sim{seed}-customer-{k}");
                Member {
                    id: format!("lightspeed:{w}"),
                    wire: w,
                }
            }
            Vendor::Square => {
                let w = format!("SIM{seed}C{k}");
                Member {
                    id: format!("square:{w}"),
                    wire: w,
                }
            }
        }
    };
    let mut sales = Vec::new();
    for store in 0..cfg.stores {
        for _ in 0..cfg.sales_per_store {
            let at = g.time_on(0);
            let vendor = g.stores[store].vendor;
            let m = (g.rng.f64() < cfg.member_share).then(|| member(vendor, g.rng.usize(0..pool)));
            if let Some(m) = &m
                && vendor != Vendor::Square
            {
                g.expected.points.entry(m.id.clone()).or_default();
            }
            let n = line_count(&mut g.rng);
            let lines = g.basket(store, n);
            if let Some(sale) = g.sale(store, 0, at, m, lines, "sale")? {
                sales.push(sale);
            }
        }
    }
    if cfg.days > 1 {
        for sale in &sales {
            if g.rng.f64() < cfg.return_share {
                g.give_back(sale)?;
            }
        }
    }
    let mut deliveries = g.out;
    // Send order: day by day, in time order within the day (stable: ties keep generation order).
    deliveries.sort_by_key(|p| (p.day, p.at));
    Ok(Generated {
        deliveries: Arc::new(deliveries),
        expected: g.expected,
    })
}

/// Writes the deliveries as API Gateway events under `dir/{vendor}/`, with `manifest.json` (the status
/// each must get, in order) and `expected.json` (the model). Standard Webhooks deliveries are signed at
/// their simulated time (`pos-local send` re-signs them at the current time).
pub fn write_out(generated: &Generated, dir: &Path) -> anyhow::Result<usize> {
    let mut manifest = Vec::with_capacity(generated.deliveries.len());
    for (n, p) in generated.deliveries.iter().enumerate() {
        let d = p.signed(p.at);
        let rel = format!("{}/day{}-{n:06}-{}.json", d.vendor.as_str(), p.day, p.kind);
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let event = d.to_apigw_event(&format!("sim-{n}"));
        std::fs::write(&path, serde_json::to_string_pretty(&event)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        manifest.push(crate::events::ManifestEntry {
            file: rel,
            status: 202,
            case: format!("simulated {} on day {} at {}", p.kind, p.day, p.at),
            quarantined: false,
        });
    }
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&generated.expected)? + "\n",
    )?;
    Ok(manifest.len())
}

/// Per destination, the delivery ledger's counts (`GET /_local/deliveries`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DestinationCounts {
    /// Not attempted yet.
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Waiting for a retry.
    pub retrying: u64,
    /// Given up.
    pub dead: u64,
    /// Delivered, of a sale or return.
    pub delivered_for_sales: u64,
}

/// What pos-local shows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// On hand per store and SKU.
    pub stock: BTreeMap<(String, String), i64>,
    /// Balance per member.
    pub points: BTreeMap<String, i64>,
    /// Per destination.
    pub deliveries: BTreeMap<String, DestinationCounts>,
    /// Dead letters per queue.
    pub dlq: BTreeMap<String, usize>,
}

async fn get_json(client: &reqwest::Client, base: &str, path: &str) -> anyhow::Result<Value> {
    let resp = client
        .get(format!("{}{path}", base.trim_end_matches('/')))
        .send()
        .await
        .with_context(|| format!("GET {path} failed (is pos-local serve running?)"))?;
    if !resp.status().is_success() {
        bail!("GET {path} answered {}", resp.status());
    }
    resp.json()
        .await
        .with_context(|| format!("GET {path} is not JSON"))
}

fn rows(v: &Value) -> &[Value] {
    v.as_array().map_or(&[][..], Vec::as_slice)
}

/// Reads stock, balances, deliveries and dead letters from a running pos-local.
pub async fn snapshot(client: &reqwest::Client, base: &str) -> anyhow::Result<Snapshot> {
    let mut s = Snapshot::default();
    for r in rows(&get_json(client, base, "/_local/stock").await?) {
        if let (Some(store), Some(sku)) = (r["store_id"].as_str(), r["sku"].as_str()) {
            s.stock.insert(
                (store.to_owned(), sku.to_owned()),
                r["on_hand"].as_i64().unwrap_or(0),
            );
        }
    }
    for r in rows(&get_json(client, base, "/_local/loyalty").await?) {
        if let Some(m) = r["member_id"].as_str() {
            s.points
                .insert(m.to_owned(), r["balance"].as_i64().unwrap_or(0));
        }
    }
    for r in rows(&get_json(client, base, "/_local/deliveries").await?) {
        if let Some(d) = r["destination"].as_str() {
            s.deliveries
                .insert(d.to_owned(), serde_json::from_value(r.clone())?);
        }
    }
    for q in rows(&get_json(client, base, "/_local/queues").await?) {
        if let Some(name) = q["name"].as_str() {
            s.dlq.insert(name.to_owned(), rows(&q["dlq"]).len());
        }
    }
    Ok(s)
}

/// Waits until every queue is empty (nothing visible or in flight) and the outbox has nothing pending,
/// twice in a row; false on timeout.
pub async fn wait_idle(
    client: &reqwest::Client,
    base: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut quiet = 0;
    loop {
        let queues = get_json(client, base, "/_local/queues").await?;
        let busy: u64 = rows(&queues)
            .iter()
            .map(|q| q["visible"].as_u64().unwrap_or(0) + q["in_flight"].as_u64().unwrap_or(0))
            .sum();
        let outbox = get_json(client, base, "/_local/outbox").await?;
        quiet = if busy == 0 && rows(&outbox).is_empty() {
            quiet + 1
        } else {
            0
        };
        if quiet >= 2 {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reconciliation: one line per compared figure group, and the differences.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The printed table.
    pub table: String,
    /// Every difference, in order.
    pub differences: Vec<String>,
    /// Deliveries sent.
    pub sent: usize,
    /// Answers per status (0: no answer).
    pub statuses: BTreeMap<u16, usize>,
}

impl Report {
    /// Whether everything matched.
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.table)?;
        if self.ok() {
            writeln!(f, "reconciliation: 0 differences")
        } else {
            writeln!(
                f,
                "reconciliation: {} differences; the first:",
                self.differences.len()
            )?;
            for d in self.differences.iter().take(20) {
                writeln!(f, "  {d}")?;
            }
            Ok(())
        }
    }
}

/// The consumer a destination's records come from (`webhooks:{id}` -> `webhooks-sync`).
fn consumer_of(destination: &str) -> String {
    match destination.split_once(':') {
        Some(("webhooks", _)) => "webhooks-sync".to_owned(),
        _ => format!("{destination}-sync"),
    }
}

/// How many of the expected events infra/ routes to `consumer`'s queue (a webhook subscription is
/// assumed to take every event type: one with `event_types` shows as a difference).
fn routed(expected: &Expected, consumer: &str) -> u64 {
    let Some(q) = crate::infra::embedded_delivery_queues()
        .into_iter()
        .find(|q| q.consumer() == consumer)
    else {
        return 0;
    };
    expected
        .events
        .iter()
        .filter(|(kind, _)| {
            crate::infra::pattern_matches(
                &q.event_pattern,
                &json!({"source": pos_shared::bus::EVENT_SOURCE, "detail-type": kind}),
            )
        })
        .map(|(_, n)| *n as u64)
        .sum()
}

/// Compares the change from `before` to `after` with `expected`; `statuses` are the answers to the
/// deliveries (all must be 202: each is new).
pub fn reconcile(
    expected: &Expected,
    before: &Snapshot,
    after: &Snapshot,
    statuses: &BTreeMap<u16, usize>,
    all_rows: bool,
) -> Report {
    let mut table = String::new();
    let mut diffs = Vec::new();
    let sent: usize = statuses.values().sum();
    for (status, n) in statuses {
        if *status != 202 {
            diffs.push(format!(
                "{n} deliveries answered {status} (expected 202: each is new)"
            ));
        }
    }
    // Stock: every SKU the model moved, and every row of a simulated store that changed.
    let mut keys: BTreeSet<(String, String)> = expected
        .stock
        .iter()
        .flat_map(|(st, skus)| skus.keys().map(move |k| (st.clone(), k.clone())))
        .collect();
    for (k, v) in &after.stock {
        if expected.stores.contains(&k.0) && before.stock.get(k) != Some(v) {
            keys.insert(k.clone());
        }
    }
    let _ = writeln!(
        table,
        "{:<32} {:>6} {:>12} {:>12} {:>6}",
        "store", "skus", "expected", "actual", "diffs"
    );
    let mut per_store: BTreeMap<&str, (usize, i64, i64, usize)> = BTreeMap::new();
    for (store, sku) in &keys {
        let k = (store.clone(), sku.clone());
        let want = expected
            .stock
            .get(store)
            .and_then(|s| s.get(sku))
            .copied()
            .unwrap_or(0);
        let got =
            after.stock.get(&k).copied().unwrap_or(0) - before.stock.get(&k).copied().unwrap_or(0);
        let row = per_store.entry(store.as_str()).or_default();
        row.0 += 1;
        row.1 += want;
        row.2 += got;
        if want != got {
            row.3 += 1;
            diffs.push(format!(
                "stock {store} {sku}: expected {want:+}, actual {got:+}"
            ));
        }
        if all_rows {
            let _ = writeln!(table, "  {store} {sku}: expected {want:+} actual {got:+}");
        }
    }
    for store in &expected.stores {
        let (skus, want, got, bad) = per_store.get(store.as_str()).copied().unwrap_or_default();
        let _ = writeln!(
            table,
            "{store:<32} {skus:>6} {want:>+12} {got:>+12} {bad:>6}"
        );
    }
    // Points: every member of the model (zero included) and any simulated member that changed.
    let (mut members, mut want_total, mut got_total, mut bad) = (0, 0, 0, 0);
    for (m, want) in &expected.points {
        let got =
            after.points.get(m).copied().unwrap_or(0) - before.points.get(m).copied().unwrap_or(0);
        members += 1;
        want_total += want;
        got_total += got;
        if *want != got {
            bad += 1;
            diffs.push(format!("points {m}: expected {want:+}, actual {got:+}"));
        }
        if all_rows {
            let _ = writeln!(table, "  {m}: expected {want:+} actual {got:+}");
        }
    }
    let _ = writeln!(
        table,
        "{:<32} {members:>6} {want_total:>+12} {got_total:>+12} {bad:>6}",
        "loyalty (members, points)"
    );
    // Deliveries: per destination, what the delivery functions delivered of the simulation's events.
    let mut destinations: BTreeSet<&String> = after.deliveries.keys().collect();
    destinations.extend(before.deliveries.keys());
    let enabled: BTreeSet<String> = after
        .dlq
        .keys()
        .filter(|q| routed(expected, q) > 0)
        .cloned()
        .collect();
    for consumer in &enabled {
        if !destinations.iter().any(|d| consumer_of(d) == *consumer) {
            diffs.push(format!(
                "{consumer}: runs but recorded no delivery (expected {})",
                routed(expected, consumer)
            ));
        }
    }
    for d in destinations {
        let a = after.deliveries.get(d).cloned().unwrap_or_default();
        let b = before.deliveries.get(d).cloned().unwrap_or_default();
        let want = routed(expected, &consumer_of(d));
        let got = a.delivered_for_sales.saturating_sub(b.delivered_for_sales);
        let stuck =
            (a.pending + a.retrying + a.dead).saturating_sub(b.pending + b.retrying + b.dead);
        let _ = writeln!(
            table,
            "{:<32} {:>6} {want:>12} {got:>12} {:>6}",
            format!("delivered to {d}"),
            "",
            usize::from(want != got) + usize::from(stuck > 0)
        );
        if want != got {
            diffs.push(format!(
                "destination {d}: expected {want} delivered, actual {got}"
            ));
        }
        if stuck > 0 {
            diffs.push(format!(
                "destination {d}: {stuck} entries not delivered (pending, retrying or dead)"
            ));
        }
    }
    for (q, n) in &after.dlq {
        let was = before.dlq.get(q).copied().unwrap_or(0);
        if *n > was {
            diffs.push(format!("queue {q}: {} new dead letters", n - was));
        }
    }
    Report {
        table,
        differences: diffs,
        sent,
        statuses: statuses.clone(),
    }
}

/// Posts `batch` (indexes into `deliveries`) at `concurrency`, signing each as it goes; returns the
/// statuses (0: no answer) in `batch` order.
async fn send_batch(
    client: &reqwest::Client,
    base: &str,
    deliveries: &Arc<Vec<Planned>>,
    batch: Vec<usize>,
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<u16>> {
    let batch = Arc::new(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Vec<std::sync::atomic::AtomicU16>> =
        Arc::new((0..batch.len()).map(|_| Default::default()).collect());
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (client, base, deliveries) = (client.clone(), base.to_owned(), deliveries.clone());
        let (batch, next, statuses, bar, sent) = (
            batch.clone(),
            next.clone(),
            statuses.clone(),
            bar.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = batch.get(i).and_then(|k| deliveries.get(*k)) else {
                    break;
                };
                let d = p.signed(Utc::now());
                let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_message(format!("sent {n} of this day"));
                let status = client::post(&client, &base, &d)
                    .await
                    .map(|(s, _)| s)
                    .unwrap_or(0);
                if let Some(slot) = statuses.get(i) {
                    slot.store(status, Ordering::Relaxed);
                }
                bar.inc(1);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(statuses.iter().map(|s| s.load(Ordering::Relaxed)).collect())
}

/// What `run` needs besides the generated days.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// pos-local's base URL.
    pub url: String,
    /// Concurrent requests.
    pub concurrency: usize,
    /// How long to wait for the pipeline to go idle after each day.
    pub idle_timeout: Duration,
    /// Print every store + SKU and member row, not only the per-store summary.
    pub all_rows: bool,
    /// Draw the progress bar (on stderr, when it is a terminal).
    pub progress: bool,
}

/// Sends the days to a running pos-local (each day in time order, waiting for the pipeline to go idle
/// before the next, as the days do), then reconciles.
pub async fn run(generated: &Generated, opts: &RunOptions) -> anyhow::Result<Report> {
    if opts.concurrency == 0 {
        bail!("--concurrency must be positive");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;
    let base = opts.url.as_str();
    if !wait_idle(&client, base, opts.idle_timeout).await? {
        bail!("pos-local was not idle before the run");
    }
    let before = snapshot(&client, base).await?;
    let deliveries = generated.deliveries.clone();
    let bar = if opts.progress {
        ProgressBar::with_draw_target(Some(deliveries.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} answered, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let days: BTreeSet<u32> = deliveries.iter().map(|p| p.day).collect();
    for day in days {
        let batch: Vec<usize> = (0..deliveries.len())
            .filter(|i| deliveries[*i].day == day)
            .collect();
        for s in send_batch(&client, base, &deliveries, batch, opts.concurrency, &bar).await? {
            *statuses.entry(s).or_default() += 1;
        }
        bar.set_message(format!("day {day} sent, waiting for the pipeline"));
        if !wait_idle(&client, base, opts.idle_timeout).await? {
            bar.abandon();
            bail!(
                "the pipeline was not idle {}s after day {day}",
                opts.idle_timeout.as_secs()
            );
        }
    }
    bar.finish_with_message("pipeline idle");
    let after = snapshot(&client, base).await?;
    Ok(reconcile(
        &generated.expected,
        &before,
        &after,
        &statuses,
        opts.all_rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimConfig {
        SimConfig {
            stores: 4,
            sales_per_store: 50,
            open_hour: 9,
            close_hour: 21,
            days: 3,
            seed: 1,
            currencies: parse_currencies("EUR,JPY").expect("currencies"),
            member_share: 0.4,
            return_share: 0.2,
            date: NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
        }
    }

    #[test]
    fn amounts_are_written_with_the_currency_s_decimals() {
        let c = |code| Currency::parse(code).expect("currency");
        assert_eq!(decimal(1999, c("EUR")), "19.99");
        assert_eq!(decimal(-5, c("EUR")), "-0.05");
        assert_eq!(decimal(1500, c("JPY")), "1500");
        assert_eq!(decimal(1234, c("KWD")), "1.234");
    }

    #[test]
    fn bad_flags_are_refused() {
        assert_eq!(parse_hours("9-21").expect("hours"), (9, 21));
        assert!(parse_hours("9").is_err());
        assert!(parse_hours("nine-21").is_err());
        assert!(parse_currencies("EUR,ZZZ").is_err());
        let bad = |f: fn(&mut SimConfig)| {
            let mut c = cfg();
            f(&mut c);
            c.validate().is_err()
        };
        assert!(bad(|c| (c.open_hour, c.close_hour) = (21, 9)));
        assert!(bad(|c| c.close_hour = 25));
        assert!(bad(|c| c.stores = 0));
        assert!(bad(|c| c.days = 0));
        assert!(bad(|c| c.member_share = 1.5));
        assert!(bad(|c| c.return_share = -0.1));
        assert!(bad(|c| c.currencies.clear()));
        assert!(cfg().validate().is_ok());
    }

    #[test]
    fn baskets_are_mostly_small_with_a_tail_and_prices_fit_the_currency() {
        let mut rng = fastrand::Rng::with_seed(9);
        let counts: Vec<usize> = (0..20_000).map(|_| line_count(&mut rng)).collect();
        let small = counts.iter().filter(|n| (1..=4).contains(*n)).count();
        assert!(small * 100 / counts.len() >= 70, "{small}");
        assert!(counts.iter().any(|n| *n > 10));
        assert!(counts.iter().all(|n| (1..=30).contains(n)));
        let jpy = Currency::parse("JPY").expect("JPY");
        let eur = Currency::parse("EUR").expect("EUR");
        for _ in 0..1000 {
            let yen = price(&mut rng, jpy);
            assert!(yen >= 10 && yen % 10 == 0, "{yen}");
            let cents = price(&mut rng, eur);
            assert!((150..=25_000).contains(&cents), "{cents}");
        }
    }

    #[test]
    fn one_day_has_no_returns_and_no_members_earn_nothing() {
        let rules = LoyaltyRules::default_rules();
        let mut c = cfg();
        c.days = 1;
        c.member_share = 0.0;
        let g = generate(&c, &rules).expect("generate");
        assert_eq!(g.deliveries.len(), 200);
        assert!(
            g.deliveries
                .iter()
                .all(|p| p.day == 0 && p.kind != "return")
        );
        assert!(g.expected.points.is_empty());
        assert_eq!(g.expected.events.get("ReturnCompleted"), None);
        // Square stores (every fourth) publish pending sales and move no stock.
        assert_eq!(g.expected.events.get("SaleAwaitingEnrichment"), Some(&50));
        assert_eq!(g.expected.stock.len(), 3);
        // Every sale takes units off: no SKU ends above zero without returns.
        assert!(
            g.expected
                .stock
                .values()
                .flat_map(|s| s.values())
                .all(|n| *n < 0)
        );
    }
}
