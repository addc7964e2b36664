//! The loyalty rules engine: pure functions from a sale (or return) and validated rules to points.
//!
//! Rules come from a JSON document validated at cold start ([`LoyaltyRules::parse`]); the built-in
//! [`default_rules_json`] is what `pos-local` and the samples use.
//!
//! - **Earn rate** per currency: `points` per `per` (a decimal amount in that currency, e.g. 1 point per
//!   1.00 EUR, 1 point per 100 JPY). Sales in a currency without a rate earn nothing (counted).
//! - **Eligible amount** of a line: unit price x quantity - line discount, never below zero; SKUs listed
//!   in `excluded_skus` or starting with an `excluded_sku_prefixes` entry (gift cards) earn nothing.
//! - **Promotions**: dated windows `[starts_at, ends_at)` on the sale time, for all SKUs or a list; a line
//!   gets the best matching promotion's multiplier (they do not stack).
//! - **Tier multiplier**: the member's tier (from the loyalty store, default tier otherwise).
//! - **Rounding**: exact integer arithmetic on the whole sale, floored once at the end: the same sale
//!   always earns the same points, and splitting lines cannot earn more.
//! - **Returns** reverse points pro rata: `floor(earned x returned eligible / sale eligible)`, where the
//!   returned eligible amount of a line is its refund capped at what is left of the line's eligible
//!   amount after the sale's earlier returns (running totals in [`Reversed`]): several partial returns
//!   together never reverse more than a line earned.

use super::Reversed;
use crate::model::{Return, Sale};
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a reversal that would take a balance below zero does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeBalancePolicy {
    /// Reverse only down to zero; the rest is recorded as `unrecovered` on the ledger entry (the member
    /// already spent those points; finance decides).
    Clamp,
    /// Let the balance go negative; future earnings pay it back.
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EarnRateDoc {
    points: u32,
    per: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromotionDoc {
    id: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    multiplier_percent: u32,
    #[serde(default)]
    skus: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesDoc {
    earn: BTreeMap<String, EarnRateDoc>,
    tiers: BTreeMap<String, u32>,
    default_tier: String,
    #[serde(default)]
    excluded_skus: Vec<String>,
    #[serde(default)]
    excluded_sku_prefixes: Vec<String>,
    #[serde(default)]
    promotions: Vec<PromotionDoc>,
    negative_balance: NegativeBalancePolicy,
}

/// A promotion window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// Promotion id.
    pub id: String,
    /// Start (inclusive).
    pub starts_at: DateTime<Utc>,
    /// End (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Multiplier in percent (200 = double points).
    pub multiplier_percent: u32,
    /// SKUs it applies to; `None` = all.
    pub skus: Option<Vec<String>>,
}

/// Validated loyalty rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoyaltyRules {
    /// Keyed by ISO code: (points, per amount in minor units).
    earn: BTreeMap<&'static str, (u32, i64)>,
    tiers: BTreeMap<String, u32>,
    default_tier: String,
    excluded_skus: Vec<String>,
    excluded_sku_prefixes: Vec<String>,
    promotions: Vec<Promotion>,
    /// The negative balance policy.
    pub negative_balance: NegativeBalancePolicy,
}

/// Why a rules document was refused (at cold start: the function does not start with bad rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid loyalty rules: {0}")]
pub struct RulesError(pub String);

/// Points earned by one sale line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineEarning {
    /// Line id within the sale.
    pub line_id: String,
    /// SKU, when known.
    pub sku: Option<String>,
    /// Eligible amount in minor units (0 for excluded SKUs).
    pub eligible_minor: i64,
}

/// What a sale earns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accrual {
    /// Points earned (floored once).
    pub points: i64,
    /// Total eligible amount in minor units.
    pub eligible_minor: i64,
    /// Per line.
    pub lines: Vec<LineEarning>,
    /// Tier applied.
    pub tier: String,
    /// Promotions that applied to at least one line.
    pub promotions: Vec<String>,
}

/// The built-in rules used by `pos-local` and the samples.
pub fn default_rules_json() -> &'static str {
    r#"{
  "earn": {
    "EUR": {"points": 1, "per": "1.00"},
    "USD": {"points": 1, "per": "1.00"},
    "GBP": {"points": 1, "per": "1.00"},
    "NZD": {"points": 1, "per": "1.00"},
    "JPY": {"points": 1, "per": "100"}
  },
  "tiers": {"base": 100, "silver": 125, "gold": 150},
  "default_tier": "base",
  "excluded_skus": [],
  "excluded_sku_prefixes": ["GIFT-", "GC-"],
  "promotions": [],
  "negative_balance": "clamp"
}"#
}

impl LoyaltyRules {
    /// Parses and validates a rules document.
    pub fn parse(json: &str) -> Result<Self, RulesError> {
        let doc: RulesDoc = serde_json::from_str(json).map_err(|e| RulesError(e.to_string()))?;
        let mut earn = BTreeMap::new();
        for (code, rate) in doc.earn {
            let currency =
                Currency::parse(&code).map_err(|e| RulesError(format!("earn.{code}: {e}")))?;
            let per = Money::parse_decimal(&rate.per, currency)
                .map_err(|e| RulesError(format!("earn.{code}.per: {e}")))?;
            if per.minor <= 0 {
                return Err(RulesError(format!("earn.{code}.per must be positive")));
            }
            earn.insert(currency.code(), (rate.points, per.minor));
        }
        if !doc.tiers.contains_key(&doc.default_tier) {
            return Err(RulesError(format!(
                "default_tier {:?} is not among tiers",
                doc.default_tier
            )));
        }
        if let Some((name, m)) = doc.tiers.iter().find(|(_, m)| **m == 0 || **m > 1000) {
            return Err(RulesError(format!(
                "tier {name} multiplier {m}% must be 1..=1000"
            )));
        }
        let mut promotions = Vec::new();
        for p in doc.promotions {
            if p.ends_at <= p.starts_at {
                return Err(RulesError(format!(
                    "promotion {} ends before it starts",
                    p.id
                )));
            }
            if p.multiplier_percent == 0 || p.multiplier_percent > 1000 {
                return Err(RulesError(format!(
                    "promotion {} multiplier must be 1..=1000",
                    p.id
                )));
            }
            promotions.push(Promotion {
                id: p.id,
                starts_at: p.starts_at,
                ends_at: p.ends_at,
                multiplier_percent: p.multiplier_percent,
                skus: p.skus,
            });
        }
        Ok(Self {
            earn,
            tiers: doc.tiers,
            default_tier: doc.default_tier,
            excluded_skus: doc.excluded_skus,
            excluded_sku_prefixes: doc.excluded_sku_prefixes,
            promotions,
            negative_balance: doc.negative_balance,
        })
    }

    /// The built-in rules.
    pub fn default_rules() -> Self {
        // Covered by a unit test; an invalid built-in document is a programming error caught there.
        Self::parse(default_rules_json()).unwrap_or_else(|e| panic!("built-in loyalty rules: {e}"))
    }

    /// The tier used when the member has none (or an unknown one).
    pub fn tier_or_default<'a>(&'a self, tier: Option<&'a str>) -> &'a str {
        tier.filter(|t| self.tiers.contains_key(*t))
            .unwrap_or(&self.default_tier)
    }

    fn excluded(&self, sku: Option<&str>) -> bool {
        sku.is_some_and(|s| {
            self.excluded_skus.iter().any(|e| e == s)
                || self
                    .excluded_sku_prefixes
                    .iter()
                    .any(|p| s.starts_with(p.as_str()))
        })
    }

    fn promotion_for(&self, sku: Option<&str>, at: DateTime<Utc>) -> Option<&Promotion> {
        self.promotions
            .iter()
            .filter(|p| p.starts_at <= at && at < p.ends_at)
            .filter(|p| match (&p.skus, sku) {
                (None, _) => true,
                (Some(list), Some(s)) => list.iter().any(|x| x == s),
                (Some(_), None) => false,
            })
            .max_by_key(|p| p.multiplier_percent)
    }

    /// What `sale` earns for a member of `tier`. `None` when the sale's currency earns nothing.
    pub fn accrue(&self, sale: &Sale, tier: Option<&str>) -> Option<Accrual> {
        let (points, per_minor) = *self.earn.get(sale.currency.code())?;
        let tier = self.tier_or_default(tier).to_owned();
        let tier_pct = i128::from(*self.tiers.get(&tier).unwrap_or(&100));
        let mut numerator: i128 = 0;
        let mut eligible_total: i64 = 0;
        let mut lines = Vec::with_capacity(sale.lines.len());
        let mut promotions: Vec<String> = Vec::new();
        for line in &sale.lines {
            let sku = line.sku.as_ref().map(|s| s.as_str());
            let gross = i128::from(line.unit_price.minor) * i128::from(line.quantity.get());
            let eligible = if self.excluded(sku) {
                0
            } else {
                (gross - i128::from(line.discount.minor)).max(0)
            };
            let promo = self.promotion_for(sku, sale.occurred_at);
            if let Some(p) = promo.filter(|_| eligible > 0)
                && !promotions.contains(&p.id)
            {
                promotions.push(p.id.clone());
            }
            let promo_pct = i128::from(promo.map_or(100, |p| p.multiplier_percent));
            numerator += eligible * i128::from(points) * promo_pct;
            let eligible = i64::try_from(eligible).unwrap_or(i64::MAX);
            eligible_total = eligible_total.saturating_add(eligible);
            lines.push(LineEarning {
                line_id: line.line_id.clone(),
                sku: sku.map(str::to_owned),
                eligible_minor: eligible,
            });
        }
        let denominator = i128::from(per_minor) * 100 * 100;
        let earned = (numerator * tier_pct).div_euclid(denominator);
        Some(Accrual {
            points: i64::try_from(earned).unwrap_or(i64::MAX),
            eligible_minor: eligible_total,
            lines,
            tier,
            promotions,
        })
    }

    /// Plans the reversal of `ret` against the sale's `accrual`, given what its earlier returns reversed
    /// (`so_far`): the new running totals and the points to reverse now.
    ///
    /// Each returned line is matched to a sale line by id, else to the first line of the same SKU that
    /// still has something to give back; its refund counts up to what remains of that line's eligible
    /// amount. The sale's points are reversed pro rata to the eligible amount returned so far, floored:
    /// `floor(earned x returned so far / sale eligible)` minus what was reversed before. So any sequence
    /// of partial returns reverses exactly what one full return would, never more.
    pub fn reversal(&self, accrual: &Accrual, so_far: &Reversed, ret: &Return) -> (Reversed, i64) {
        if accrual.eligible_minor <= 0 || accrual.points <= 0 {
            return (so_far.clone(), 0);
        }
        let mut next = so_far.clone();
        for line in &ret.lines {
            let remaining = |next: &Reversed, l: &LineEarning| {
                (l.eligible_minor - next.lines.get(&l.line_id).copied().unwrap_or(0)).max(0)
            };
            let sku = line.sku.as_ref().map(|s| s.as_str());
            let original = accrual
                .lines
                .iter()
                .find(|l| l.line_id == line.line_id)
                .or_else(|| {
                    accrual.lines.iter().find(|l| {
                        sku.is_some() && l.sku.as_deref() == sku && remaining(&next, l) > 0
                    })
                });
            let Some(original) = original else { continue };
            let take = line.refund.minor.clamp(0, remaining(&next, original));
            if take > 0 {
                *next.lines.entry(original.line_id.clone()).or_default() += take;
            }
        }
        let returned: i128 = next.lines.values().map(|v| i128::from(*v)).sum();
        let returned = returned.min(i128::from(accrual.eligible_minor));
        let target = i128::from(accrual.points) * returned / i128::from(accrual.eligible_minor);
        let target = i64::try_from(target)
            .unwrap_or(accrual.points)
            .min(accrual.points);
        let requested = (target - so_far.points).max(0);
        next.points = so_far.points + requested;
        (next, requested)
    }
}
