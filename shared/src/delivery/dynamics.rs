//! Microsoft Dynamics 365 Finance & Operations as a destination, over its OData v4 service
//! (`{environment_url}/data/…`).
//!
//! - **Entities.** A sale is a sales order: `SalesOrderHeadersV2` then `SalesOrderLines` (Microsoft
//!   documents this pair for creating orders over OData: header first, then its lines). A return is a
//!   return order: `ReturnOrderHeaders` then `ReturnOrderLines`, quantities negative as D365 stores
//!   them. Not the retail transaction entities: those feed Commerce statement posting and need the
//!   Commerce channel set up (store, register, shift) for a POS that is not Microsoft's own. A
//!   `stock.adjusted` is one journal: a delta goes to the inventory movement journal
//!   (`InventoryMovementJournalHeaders` then `InventoryMovementJournalEntriesV2`, quantity as an exact
//!   decimal), a count to the counting journal (`InventoryCountingJournalHeaders` then
//!   `InventoryCountingJournalLines`, `CountedQuantity`). Journals are created, never posted: posting
//!   stays a D365 decision (its journal name's defaults, its approvals).
//! - **Order numbers** ([`d365_key`]). `SalesOrderNumber` holds at most 20 characters, a return's RMA
//!   number (`ReturnOrderNumber`) 10, and D365 compares keys without regard to case (SQL Server's
//!   case-insensitive collation). Our id is the number as it is when it fits and has no capital letter;
//!   otherwise it is `~` and the first characters of the SHA-256 of the whole id in lower-case Crockford
//!   base32 (19 characters for a sales order, 95 bits; 9 for a return, 45 bits). `~` is never in our
//!   ids, so a hashed number never equals a kept one. Odds of two ids sharing a number among `n` in one
//!   legal entity: about n²/2^96 for sales (10^9 orders: 10^-11), n²/2^46 for returns (10^5 returns:
//!   10^-4). A collision is never a wrong delivery: the header also carries our whole id in the
//!   documented `CustomersOrderReference` (60 characters; a longer id is cut to 34 characters, `~` and a
//!   25-character hash), and a read-back that finds the number with another reference refuses the
//!   record for good (the DLQ, for an operator). A return's `CustomerRequisitionNumber` is the D365
//!   sales order number of the sale it returns.
//! - **Mapping.** `dataAreaId` is the configured legal entity; the customer is the configured default
//!   retail customer; lines by item number = SKU, line `LineCreationSequenceNumber` = our line index + 1,
//!   prices as exact decimal strings from integer minor units (`IEEE754Compatible=true`, never a float);
//!   the warehouse from the store (configured map, default the store id; D365 defaults the site from the
//!   warehouse).
//! - **Idempotency.** D365 has no idempotency key. The read-back is by order number
//!   (`$filter=SalesOrderNumber eq '…' and dataAreaId eq '…'`, `cross-company=true` so the legal entity
//!   filter is not limited to the client's default company), then the lines by number: an order is
//!   delivered only with all its lines. A header without all its lines (a crash or lost answer between)
//!   gets only the missing lines. A refused header create (D365 answers a duplicate key with a 400 whose
//!   code is empty) counts as "already there" only once the order is read back. A journal's number is
//!   D365's (its number sequence), so a journal is found by its `Description`, which is
//!   [`d365_key`] of our adjustment id (60 characters): a journal is delivered once it has its line; a
//!   header found without it gets it.
//! - **Auth:** Entra ID client credentials at
//!   `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, scope `{environment_url}/.default`,
//!   client secret in the form body.
//!
//! Everything here creates and never updates, so no `If-Match` is needed; entities' `@odata.etag` is
//! kept as the ledger's remote version. Events arrive with their lines: the delivery function resolves
//! claim-checked lines before any destination sees the envelope ([`super::sync`]).

use super::client::DestinationClient;
use super::engine::{Destination, Failure, Landed};
use super::oauth::{ClientAuth, ClientCredentials, TokenProvider};
use crate::model::{CanonicalEvent, EventEnvelope, Return, Sale, StockAdjustment, StockChange};
use crate::money::Money;
use crate::ports::Clock;
use async_trait::async_trait;
use http::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Entra ID's token host (overridable for tests with `D365_AUTH_URL`).
pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Connection and mapping settings (env `D365_TENANT_ID`, `D365_CLIENT_ID`, `D365_CLIENT_SECRET`,
/// `D365_ENVIRONMENT_URL`, `D365_LEGAL_ENTITY`, `D365_CUSTOMER_ACCOUNT`; optional `D365_WAREHOUSES`
/// as `store=warehouse,…`, `D365_AUTH_URL`, `D365_MOVEMENT_JOURNAL` and `D365_COUNTING_JOURNAL`). The secret is a [`SecretString`]: `Debug` redacts it.
#[derive(Debug, Clone)]
pub struct DynamicsConfig {
    /// Entra ID tenant (GUID or domain).
    pub tenant_id: String,
    /// App registration's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: SecretString,
    /// The environment, e.g. `https://contoso.operations.dynamics.com` (no trailing slash).
    pub environment_url: String,
    /// The legal entity (`dataAreaId`), e.g. `usmf`.
    pub legal_entity: String,
    /// The default retail customer account orders are booked to.
    pub customer_account: String,
    /// Store id → warehouse id; a store not listed uses its own id.
    pub warehouses: BTreeMap<String, String>,
    /// The token authority (default [`ENTRA_AUTHORITY`]).
    pub auth_url: String,
    /// The journal name (`JournalNameId`) of movement journals (default `IMov`, D365's own).
    pub movement_journal: String,
    /// The journal name of counting journals (default `ICnt`).
    pub counting_journal: String,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynamicsConfigError {
    /// A required key is missing or empty.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A key has a value we cannot use (the value itself is not echoed).
    #[error("{key} is invalid: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: &'static str,
    },
}

fn is_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.split_once("://").is_some_and(|(_, rest)| {
            !rest.is_empty() && !rest.contains(char::is_whitespace) && !rest.contains(['?', '#'])
        })
}

impl DynamicsConfig {
    /// Reads the configuration from `get` (e.g. `|k| std::env::var(k).ok()`), refusing missing and
    /// malformed keys with the key's name.
    pub fn from_env_map(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<DynamicsConfig, DynamicsConfigError> {
        let required = |key: &'static str| {
            get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(DynamicsConfigError::Missing(key))
        };
        let tenant_id = required("D365_TENANT_ID")?;
        if !tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        {
            return Err(DynamicsConfigError::Invalid {
                key: "D365_TENANT_ID",
                reason: "a tenant is a GUID or a domain name",
            });
        }
        let client_id = required("D365_CLIENT_ID")?;
        // Not trimmed: a secret is taken as given.
        let client_secret = get("D365_CLIENT_SECRET")
            .filter(|v| !v.is_empty())
            .map(SecretString::from)
            .ok_or(DynamicsConfigError::Missing("D365_CLIENT_SECRET"))?;
        let environment_url = required("D365_ENVIRONMENT_URL")?
            .trim_end_matches('/')
            .to_owned();
        if !is_url(&environment_url) {
            return Err(DynamicsConfigError::Invalid {
                key: "D365_ENVIRONMENT_URL",
                reason: "not an http(s) URL without query or fragment",
            });
        }
        let legal_entity = required("D365_LEGAL_ENTITY")?;
        if legal_entity.chars().count() > 4 || !legal_entity.chars().all(|c| c.is_alphanumeric()) {
            return Err(DynamicsConfigError::Invalid {
                key: "D365_LEGAL_ENTITY",
                reason: "a dataAreaId is 1 to 4 letters or digits",
            });
        }
        let customer_account = required("D365_CUSTOMER_ACCOUNT")?;
        let mut warehouses = BTreeMap::new();
        if let Some(map) = get("D365_WAREHOUSES").filter(|v| !v.trim().is_empty()) {
            for pair in map.split(',') {
                let (store, warehouse) = pair
                    .split_once('=')
                    .map(|(s, w)| (s.trim(), w.trim()))
                    .filter(|(s, w)| !s.is_empty() && !w.is_empty())
                    .ok_or(DynamicsConfigError::Invalid {
                        key: "D365_WAREHOUSES",
                        reason: "expected store=warehouse pairs separated by commas",
                    })?;
                warehouses.insert(store.to_owned(), warehouse.to_owned());
            }
        }
        let auth_url = match get("D365_AUTH_URL").filter(|v| !v.trim().is_empty()) {
            Some(url) if is_url(url.trim()) => url.trim().trim_end_matches('/').to_owned(),
            Some(_) => {
                return Err(DynamicsConfigError::Invalid {
                    key: "D365_AUTH_URL",
                    reason: "not an http(s) URL without query or fragment",
                });
            }
            None => ENTRA_AUTHORITY.to_owned(),
        };
        let journal = |key: &'static str, default: &str| {
            let name = get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned());
            // `JournalNameId` is a 10-character id.
            if name.chars().count() > 10 || !name.chars().all(|c| c.is_alphanumeric() || c == '-') {
                return Err(DynamicsConfigError::Invalid {
                    key,
                    reason: "a journal name is 1 to 10 letters, digits or -",
                });
            }
            Ok(name)
        };
        let movement_journal = journal("D365_MOVEMENT_JOURNAL", "IMov")?;
        let counting_journal = journal("D365_COUNTING_JOURNAL", "ICnt")?;
        Ok(DynamicsConfig {
            tenant_id,
            client_id,
            client_secret,
            environment_url,
            legal_entity,
            customer_account,
            warehouses,
            auth_url,
            movement_journal,
            counting_journal,
        })
    }

    /// The Entra ID client-credentials grant for this environment.
    pub fn grant(&self) -> ClientCredentials {
        ClientCredentials {
            token_url: format!("{}/{}/oauth2/v2.0/token", self.auth_url, self.tenant_id),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scope: Some(format!("{}/.default", self.environment_url)),
            auth: ClientAuth::Body,
        }
    }

    fn warehouse(&self, store: &str) -> String {
        self.warehouses
            .get(store)
            .cloned()
            .unwrap_or_else(|| store.to_owned())
    }
}

/// Which pair of entities a document goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SalesOrderHeadersV2` / `SalesOrderLines`.
    SalesOrder,
    /// `ReturnOrderHeaders` / `ReturnOrderLines`.
    ReturnOrder,
}

impl Kind {
    fn header_set(self) -> &'static str {
        match self {
            Kind::SalesOrder => "SalesOrderHeadersV2",
            Kind::ReturnOrder => "ReturnOrderHeaders",
        }
    }
    fn lines_set(self) -> &'static str {
        match self {
            Kind::SalesOrder => "SalesOrderLines",
            Kind::ReturnOrder => "ReturnOrderLines",
        }
    }
    fn number_field(self) -> &'static str {
        match self {
            Kind::SalesOrder => "SalesOrderNumber",
            Kind::ReturnOrder => "ReturnOrderNumber",
        }
    }
}

/// One order as D365 entities: the header, then the lines (pure: tested against golden files).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Entity pair.
    pub kind: Kind,
    /// The order number ([`d365_key`] of our id).
    pub number: String,
    /// `CustomersOrderReference`: our whole id ([`reference`]), checked on read-back.
    pub reference: String,
    /// The header entity.
    pub header: Value,
    /// The line entities, each keyed by `LineCreationSequenceNumber` (1, 2, …).
    pub lines: Vec<Value>,
}

impl Document {
    /// Header and lines as one JSON value (the golden files' shape).
    pub fn to_json(&self) -> Value {
        json!({"header": self.header, "lines": self.lines})
    }
}

/// An amount as an exact OData decimal string in major units (`1250` EUR → `"12.50"`, JPY `"1250"`).
pub fn decimal(m: Money) -> String {
    let exp = m.currency.exponent();
    let sign = if m.minor < 0 { "-" } else { "" };
    let abs = m.minor.unsigned_abs();
    if exp == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10_u64.pow(exp);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exp as usize
    )
}

/// At most this many characters in `SalesOrderNumber`.
pub const SALES_ORDER_NUMBER_MAX: usize = 20;
/// At most this many characters in a return order's RMA number (`ReturnOrderNumber`).
pub const RMA_NUMBER_MAX: usize = 10;
/// At most this many characters in `CustomersOrderReference` and a journal's `Description`.
pub const REFERENCE_MAX: usize = 60;

/// Lower-case Crockford base32: no `i`, `l`, `o`, `u`, so nothing reads as another character.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The first `n` base32 characters of the SHA-256 of `id` (at most 51).
fn hash32(id: &str, n: usize) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let mut out = String::with_capacity(n);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in digest {
        if out.len() >= n {
            break;
        }
        // At most 4 bits wait between bytes, so 12 fit easily in `acc`.
        acc = ((acc << 8) | u32::from(byte)) & 0xfff;
        bits += 8;
        while bits >= 5 && out.len() < n {
            bits -= 5;
            out.push(char::from(CROCKFORD[((acc >> bits) & 31) as usize]));
        }
    }
    out
}

/// Our id as a D365 key field of at most `max` characters (`max` ≥ 2), the same every time: the id
/// itself when it fits and has no capital letter (D365 compares keys ignoring case), else `~` and a
/// hash of the whole id, after the id's first characters (lower-cased) when there is room (hash at most 25
/// characters, 125 bits). Applying it to its own result changes nothing.
pub fn d365_key(id: &str, max: usize) -> String {
    let max = max.max(2);
    if id.chars().count() <= max && !id.chars().any(|c| c.is_ascii_uppercase()) {
        return id.to_owned();
    }
    let hash_len = (max - 1).min(25);
    // Lower-cased: the hash tells case apart, and the result stays its own image.
    let prefix = id
        .chars()
        .take(max - 1 - hash_len)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("{prefix}~{}", hash32(id, hash_len))
}

/// Our whole id in a 60-character reference field (not a key, compared exactly by us): as it is when it
/// fits, else cut and hashed by [`d365_key`].
pub fn reference(id: &str) -> String {
    if id.chars().count() <= REFERENCE_MAX {
        id.to_owned()
    } else {
        d365_key(id, REFERENCE_MAX)
    }
}

fn date(at: chrono::DateTime<chrono::Utc>) -> String {
    // D365 date fields are `Edm.DateTimeOffset` at midnight UTC.
    format!("{}T00:00:00Z", at.format("%Y-%m-%d"))
}

fn no_sku(line: &str) -> Failure {
    Failure::Permanent {
        reason: format!("line {line} has no SKU: D365 order lines need an item number"),
    }
}

/// The sales order of a sale.
pub fn sales_order(sale: &Sale, config: &DynamicsConfig) -> Result<Document, Failure> {
    let number = d365_key(sale.sale_id.as_str(), SALES_ORDER_NUMBER_MAX);
    let reference = reference(sale.sale_id.as_str());
    let warehouse = config.warehouse(sale.store_id.as_str());
    let day = date(sale.occurred_at);
    let header = json!({
        "dataAreaId": config.legal_entity,
        "SalesOrderNumber": number,
        "OrderingCustomerAccountNumber": config.customer_account,
        "InvoiceCustomerAccountNumber": config.customer_account,
        "CurrencyCode": sale.currency.code(),
        "CustomersOrderReference": reference,
        "DefaultShippingWarehouseId": warehouse,
        "RequestedShippingDate": day,
    });
    let lines = sale
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let sku = line.sku.as_ref().ok_or_else(|| no_sku(&line.line_id))?;
            Ok(json!({
                "dataAreaId": config.legal_entity,
                "SalesOrderNumber": number,
                "LineCreationSequenceNumber": i + 1,
                "ItemNumber": sku.as_str(),
                "OrderedSalesQuantity": line.quantity.get(),
                "SalesPrice": decimal(line.unit_price),
                "LineDiscountAmount": decimal(line.discount),
                "ShippingWarehouseId": warehouse,
                "RequestedShippingDate": day,
            }))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(Document {
        kind: Kind::SalesOrder,
        number,
        reference,
        header,
        lines,
    })
}

/// The return order of a return (quantities and amounts negative, as D365 return lines are).
pub fn return_order(ret: &Return, config: &DynamicsConfig) -> Result<Document, Failure> {
    let number = d365_key(ret.return_id.as_str(), RMA_NUMBER_MAX);
    let reference = reference(ret.return_id.as_str());
    let warehouse = config.warehouse(ret.store_id.as_str());
    let mut header = json!({
        "dataAreaId": config.legal_entity,
        "ReturnOrderNumber": number,
        "CustomerAccountNumber": config.customer_account,
        "CurrencyCode": ret.currency.code(),
        "DefaultReturnWarehouseId": warehouse,
        "CustomersOrderReference": reference,
    });
    // The sales order it returns, by the number that sale has in D365.
    if let (Some(sale), Some(obj)) = (&ret.sale_id, header.as_object_mut()) {
        obj.insert(
            "CustomerRequisitionNumber".into(),
            json!(d365_key(sale.as_str(), SALES_ORDER_NUMBER_MAX)),
        );
    }
    let lines = ret
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let sku = line.sku.as_ref().ok_or_else(|| no_sku(&line.line_id))?;
            Ok(json!({
                "dataAreaId": config.legal_entity,
                "ReturnOrderNumber": number,
                "LineCreationSequenceNumber": i + 1,
                "ItemNumber": sku.as_str(),
                "OrderedSalesQuantity": -i64::from(line.quantity.get()),
                "LineAmount": decimal(Money::from_minor(-line.refund.minor, line.refund.currency)),
                "ReturnWarehouseId": warehouse,
            }))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(Document {
        kind: Kind::ReturnOrder,
        number,
        reference,
        header,
        lines,
    })
}

/// Which journal a stock adjustment goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalKind {
    /// A delta: `InventoryMovementJournalHeaders` / `InventoryMovementJournalEntriesV2`.
    Movement,
    /// A count: `InventoryCountingJournalHeaders` / `InventoryCountingJournalLines`.
    Counting,
}

impl JournalKind {
    /// The header entity set.
    pub fn header_set(self) -> &'static str {
        match self {
            JournalKind::Movement => "InventoryMovementJournalHeaders",
            JournalKind::Counting => "InventoryCountingJournalHeaders",
        }
    }
    /// The line entity set.
    pub fn lines_set(self) -> &'static str {
        match self {
            JournalKind::Movement => "InventoryMovementJournalEntriesV2",
            JournalKind::Counting => "InventoryCountingJournalLines",
        }
    }
}

/// One stock adjustment as a D365 journal: its header, then its one line (whose `JournalNumber` D365
/// assigns when the header is created).
#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    /// Movement or counting.
    pub kind: JournalKind,
    /// The header's `Description`: [`d365_key`] of our adjustment id, how the journal is found again.
    pub description: String,
    /// The header entity.
    pub header: Value,
    /// The line entity, without its `JournalNumber`.
    pub line: Value,
}

impl Journal {
    /// Header and line as one JSON value (the golden files' shape).
    pub fn to_json(&self) -> Value {
        json!({"header": self.header, "lines": [self.line]})
    }
}

/// The journal of a stock adjustment: a delta as a movement, a count as a counting journal. A negative
/// count is refused for good (D365 counts are on-hand quantities, never below zero).
pub fn stock_journal(adj: &StockAdjustment, config: &DynamicsConfig) -> Result<Journal, Failure> {
    let description = d365_key(adj.adjustment_id.as_str(), REFERENCE_MAX);
    let warehouse = config.warehouse(adj.store_id.as_str());
    let day = date(adj.occurred_at);
    let (kind, journal_name, line) = match adj.change {
        StockChange::Delta { delta } => (
            JournalKind::Movement,
            &config.movement_journal,
            json!({
                "dataAreaId": config.legal_entity,
                "ItemNumber": adj.sku.as_str(),
                "InventoryQuantity": delta.to_string(),
                "InventoryWarehouseId": warehouse,
                "TransactionDate": day,
            }),
        ),
        StockChange::Set { on_hand } if on_hand < 0 => {
            return Err(Failure::Permanent {
                reason: "a negative count cannot be a D365 counted quantity".into(),
            });
        }
        StockChange::Set { on_hand } => (
            JournalKind::Counting,
            &config.counting_journal,
            json!({
                "dataAreaId": config.legal_entity,
                "ItemNumber": adj.sku.as_str(),
                "CountedQuantity": on_hand.to_string(),
                "InventoryWarehouseId": warehouse,
                "CountingDate": day,
            }),
        ),
    };
    let header = json!({
        "dataAreaId": config.legal_entity,
        "JournalNameId": journal_name,
        "Description": description,
        "DefaultWarehouseId": warehouse,
    });
    Ok(Journal {
        kind,
        description,
        header,
        line,
    })
}

/// OData string literal: single quotes doubled (OData v4 ABNF `SQUOTE-in-string`).
pub fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What D365 holds of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// No header.
    Absent,
    /// The header, and the sequence numbers of the lines already there.
    Header {
        landed: Landed,
        lines: BTreeSet<u64>,
    },
}

/// The sales and return order destination.
pub struct DynamicsOrders {
    client: DestinationClient,
    config: DynamicsConfig,
}

/// OData JSON with decimals as strings (exact; OData v4 JSON format §3.2 `IEEE754Compatible`).
const ODATA_JSON: &str = "application/json;odata.metadata=minimal;IEEE754Compatible=true";

impl DynamicsOrders {
    /// The destination over `client` (whose tokens come from [`DynamicsConfig::grant`]).
    pub fn new(client: DestinationClient, config: DynamicsConfig) -> Self {
        Self { client, config }
    }

    /// The destination with its own Entra ID token provider.
    pub fn connect(
        config: DynamicsConfig,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Self {
        let tokens = TokenProvider::new(
            config.grant(),
            http.clone(),
            clock.clone(),
            chrono::Duration::seconds(120),
        );
        Self::new(
            DestinationClient::new(http, Arc::new(tokens), clock, timeout),
            config,
        )
    }

    fn url(&self, set: &str) -> String {
        format!("{}/data/{set}", self.config.environment_url)
    }

    fn filter_url(&self, set: &str, doc: &Document, select: &str) -> String {
        self.query_url(set, doc.kind.number_field(), &doc.number, select)
    }

    /// `set` filtered on `field eq value` in the legal entity, with `select`ed fields.
    fn query_url(&self, set: &str, field: &str, value: &str, select: &str) -> String {
        let filter = format!(
            "{field} eq {} and dataAreaId eq {}",
            odata_string(value),
            odata_string(&self.config.legal_entity)
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("$filter", &filter)
            .append_pair("$select", select)
            .append_pair("cross-company", "true")
            .finish();
        format!("{}?{query}", self.url(set))
    }

    /// Every entity of a query, following `@odata.nextLink` (D365 pages large results).
    async fn query(&self, first: String) -> Result<Vec<Value>, Failure> {
        let mut url = first;
        let mut out = Vec::new();
        for _ in 0..100 {
            let reply = self
                .client
                .send(|http| http.get(&url).header(http::header::ACCEPT, ODATA_JSON))
                .await?;
            if reply.status != StatusCode::OK {
                return Err(Failure::Transient {
                    reason: format!("OData query answered HTTP {}", reply.status.as_u16()),
                    retry_after: None,
                });
            }
            let mut body = reply.json()?;
            if let Some(Value::Array(items)) = body.get_mut("value").map(Value::take) {
                out.extend(items);
            }
            match body["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_owned(),
                None => return Ok(out),
            }
        }
        Err(Failure::Transient {
            reason: "OData query did not end after 100 pages".into(),
            retry_after: None,
        })
    }

    async fn find(&self, doc: &Document) -> Result<Found, Failure> {
        let number_field = doc.kind.number_field();
        let headers = self
            .query(self.filter_url(
                doc.kind.header_set(),
                doc,
                &format!("{number_field},CustomersOrderReference"),
            ))
            .await?;
        let Some(header) = headers.first() else {
            return Ok(Found::Absent);
        };
        if header["CustomersOrderReference"].as_str() != Some(doc.reference.as_str()) {
            // Another order holds our number (a hash collision, or a number D365 or someone else
            // gave): never ours, never overwritten. An operator decides.
            return Err(Failure::Permanent {
                reason: format!(
                    "{} {} holds another order (its CustomersOrderReference differs)",
                    doc.kind.header_set(),
                    doc.number
                ),
            });
        }
        let lines = self
            .query(self.filter_url(doc.kind.lines_set(), doc, "LineCreationSequenceNumber"))
            .await?
            .iter()
            .filter_map(|l| l["LineCreationSequenceNumber"].as_u64())
            .collect();
        Ok(Found::Header {
            landed: landed(header, &doc.number),
            lines,
        })
    }

    /// Creates the lines of `doc` not in `present`, in order.
    async fn complete(&self, doc: &Document, present: &BTreeSet<u64>) -> Result<(), Failure> {
        let url = self.url(doc.kind.lines_set());
        for (i, line) in doc.lines.iter().enumerate() {
            let seq = i as u64 + 1;
            if present.contains(&seq) {
                continue;
            }
            match self.post(&url, line).await? {
                Created::Yes(_) => {}
                // Refused: already there (an earlier create whose answer was lost), or not for us.
                Created::Refused(failure) => {
                    let there = match self.find(doc).await? {
                        Found::Header { lines, .. } => lines.contains(&seq),
                        Found::Absent => false,
                    };
                    if !there {
                        return Err(failure);
                    }
                }
            }
        }
        Ok(())
    }

    async fn post(&self, url: &str, entity: &Value) -> Result<Created, Failure> {
        let body = entity.to_string();
        let result = self
            .client
            .send(|http| {
                http.post(url)
                    .header(http::header::CONTENT_TYPE, ODATA_JSON)
                    .header(http::header::ACCEPT, ODATA_JSON)
                    .body(body.clone())
            })
            .await;
        match result {
            Ok(reply) if reply.status.is_success() => Ok(Created::Yes(reply.json()?)),
            Ok(reply) => Ok(Created::Refused(Failure::Permanent {
                reason: format!("create answered HTTP {}", reply.status.as_u16()),
            })),
            // A 400 is how D365 refuses a duplicate key (with an empty error code): the caller reads
            // back before believing either way.
            Err(Failure::Permanent { reason }) if reason.starts_with("HTTP 400") => {
                Ok(Created::Refused(Failure::Permanent { reason }))
            }
            Err(other) => Err(other),
        }
    }

    async fn deliver(&self, doc: &Document) -> Result<Landed, Failure> {
        let header = match self
            .post(&self.url(doc.kind.header_set()), &doc.header)
            .await?
        {
            Created::Yes(created) => {
                let landed = landed(&created, &doc.number);
                self.complete(doc, &BTreeSet::new()).await?;
                return Ok(landed);
            }
            Created::Refused(failure) => failure,
        };
        match self.find(doc).await? {
            Found::Header { landed, lines } => {
                self.complete(doc, &lines).await?;
                Ok(landed)
            }
            Found::Absent => Err(header),
        }
    }

    /// The journal of `j` already in D365: the lowest-numbered header with its description (two
    /// headers only if two processes created one at the same moment; the other stays empty, for an
    /// operator to delete), and whether its line is there.
    async fn find_journal(&self, j: &Journal) -> Result<Option<FoundJournal>, Failure> {
        let headers = self
            .query(self.query_url(
                j.kind.header_set(),
                "Description",
                &j.description,
                "JournalNumber,Description",
            ))
            .await?;
        let Some((number, header)) = headers
            .iter()
            .filter_map(|h| Some((h["JournalNumber"].as_str()?.to_owned(), h)))
            .min_by(|a, b| a.0.cmp(&b.0))
        else {
            return Ok(None);
        };
        let lines = self
            .query(self.query_url(
                j.kind.lines_set(),
                "JournalNumber",
                &number,
                "JournalNumber,ItemNumber",
            ))
            .await?;
        Ok(Some(FoundJournal {
            landed: landed(header, &number),
            number,
            has_line: !lines.is_empty(),
        }))
    }

    /// Creates the journal of `j` (or completes the one found), once.
    async fn deliver_journal(&self, j: &Journal) -> Result<Landed, Failure> {
        // Journals have no number of ours for D365 to refuse twice: look before creating.
        let (number, landed) = match self.find_journal(j).await? {
            Some(found) if found.has_line => return Ok(found.landed),
            Some(found) => (found.number, found.landed),
            None => match self.post(&self.url(j.kind.header_set()), &j.header).await? {
                Created::Yes(created) => {
                    let number = created["JournalNumber"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| Failure::Permanent {
                            reason: "the created journal has no JournalNumber".into(),
                        })?
                        .to_owned();
                    let landed = landed(&created, &number);
                    (number, landed)
                }
                // Nothing unique was refused: a refusal is about the journal itself.
                Created::Refused(failure) => return Err(failure),
            },
        };
        let mut line = j.line.clone();
        if let Some(obj) = line.as_object_mut() {
            obj.insert("JournalNumber".into(), json!(number));
        }
        match self.post(&self.url(j.kind.lines_set()), &line).await? {
            Created::Yes(_) => Ok(landed),
            Created::Refused(failure) => match self.find_journal(j).await? {
                Some(found) if found.has_line => Ok(found.landed),
                _ => Err(failure),
            },
        }
    }

    fn document(&self, event: &EventEnvelope) -> Result<Doc, Failure> {
        match &event.event {
            CanonicalEvent::SaleCompleted(sale) => sales_order(sale, &self.config).map(Doc::Order),
            CanonicalEvent::ReturnCompleted(ret) => return_order(ret, &self.config).map(Doc::Order),
            CanonicalEvent::StockAdjusted(adj) => {
                stock_journal(adj, &self.config).map(Doc::Journal)
            }
            _ => Err(Failure::Permanent {
                reason: "not an event D365 takes".into(),
            }),
        }
    }
}

/// What an event becomes in D365.
enum Doc {
    Order(Document),
    Journal(Journal),
}

/// A journal found by its description.
struct FoundJournal {
    landed: Landed,
    number: String,
    has_line: bool,
}

enum Created {
    Yes(Value),
    Refused(Failure),
}

fn landed(entity: &Value, number: &str) -> Landed {
    Landed {
        remote_id: Some(number.to_owned()),
        remote_version: entity["@odata.etag"].as_str().map(str::to_owned),
    }
}

#[async_trait]
impl Destination for DynamicsOrders {
    fn name(&self) -> &str {
        "dynamics"
    }

    fn wants(&self, event: &EventEnvelope) -> bool {
        match &event.event {
            CanonicalEvent::SaleCompleted(_) | CanonicalEvent::ReturnCompleted(_) => true,
            // A zero delta moves nothing: no journal.
            CanonicalEvent::StockAdjusted(adj) => adj.change != StockChange::Delta { delta: 0 },
            _ => false,
        }
    }

    async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, Failure> {
        match self.document(event)? {
            Doc::Order(doc) => match self.find(&doc).await? {
                // Delivered only with every line; otherwise `send` completes what is missing.
                Found::Header { landed, lines } if lines.len() >= doc.lines.len() => {
                    Ok(Some(landed))
                }
                _ => Ok(None),
            },
            Doc::Journal(j) => Ok(self
                .find_journal(&j)
                .await?
                .filter(|found| found.has_line)
                .map(|found| found.landed)),
        }
    }

    async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure> {
        match self.document(event)? {
            Doc::Order(doc) => self.deliver(&doc).await,
            Doc::Journal(j) => self.deliver_journal(&j).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const GOOD: &[(&str, &str)] = &[
        ("D365_TENANT_ID", "contoso.onmicrosoft.com"),
        ("D365_CLIENT_ID", "app-1"),
        ("D365_CLIENT_SECRET", "s3cret-value"),
        (
            "D365_ENVIRONMENT_URL",
            "https://contoso.operations.dynamics.com/",
        ),
        ("D365_LEGAL_ENTITY", "usmf"),
        ("D365_CUSTOMER_ACCOUNT", "US-RETAIL"),
        ("D365_WAREHOUSES", "store-001=WH-01, store-002=WH-02"),
    ];

    fn config() -> DynamicsConfig {
        DynamicsConfig::from_env_map(env(GOOD)).expect("config")
    }

    #[test]
    fn the_config_reads_every_key_and_builds_the_entra_grant() {
        let c = config();
        assert_eq!(c.environment_url, "https://contoso.operations.dynamics.com");
        assert_eq!(c.warehouse("store-002"), "WH-02");
        assert_eq!(
            c.warehouse("store-009"),
            "store-009",
            "default: the store id"
        );
        let g = c.grant();
        assert_eq!(
            g.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            g.scope.as_deref(),
            Some("https://contoso.operations.dynamics.com/.default")
        );
        assert_eq!(g.auth, ClientAuth::Body);
        assert!(
            !format!("{c:?}").contains("s3cret-value"),
            "secret redacted"
        );
    }

    #[test]
    fn bad_configs_are_refused_naming_the_key_never_the_secret() {
        for (key, value, want) in [
            (
                "D365_CLIENT_SECRET",
                "",
                DynamicsConfigError::Missing("D365_CLIENT_SECRET"),
            ),
            (
                "D365_TENANT_ID",
                "  ",
                DynamicsConfigError::Missing("D365_TENANT_ID"),
            ),
            (
                "D365_TENANT_ID",
                "a/b",
                DynamicsConfigError::Invalid {
                    key: "D365_TENANT_ID",
                    reason: "a tenant is a GUID or a domain name",
                },
            ),
            (
                "D365_ENVIRONMENT_URL",
                "contoso.operations.dynamics.com",
                DynamicsConfigError::Invalid {
                    key: "D365_ENVIRONMENT_URL",
                    reason: "not an http(s) URL without query or fragment",
                },
            ),
            (
                "D365_LEGAL_ENTITY",
                "usmf1",
                DynamicsConfigError::Invalid {
                    key: "D365_LEGAL_ENTITY",
                    reason: "a dataAreaId is 1 to 4 letters or digits",
                },
            ),
            (
                "D365_WAREHOUSES",
                "store-001",
                DynamicsConfigError::Invalid {
                    key: "D365_WAREHOUSES",
                    reason: "expected store=warehouse pairs separated by commas",
                },
            ),
            (
                "D365_MOVEMENT_JOURNAL",
                "IMov journal",
                DynamicsConfigError::Invalid {
                    key: "D365_MOVEMENT_JOURNAL",
                    reason: "a journal name is 1 to 10 letters, digits or -",
                },
            ),
            (
                "D365_AUTH_URL",
                "login",
                DynamicsConfigError::Invalid {
                    key: "D365_AUTH_URL",
                    reason: "not an http(s) URL without query or fragment",
                },
            ),
        ] {
            let pairs: Vec<(&str, &str)> = GOOD
                .iter()
                .filter(|(k, _)| *k != key)
                .copied()
                .chain([(key, value)])
                .collect();
            let err = DynamicsConfig::from_env_map(env(&pairs)).expect_err(key);
            assert_eq!(err, want, "{key}={value:?}");
            assert!(!err.to_string().contains("s3cret"));
        }
        let missing: Vec<(&str, &str)> = GOOD
            .iter()
            .filter(|(k, _)| *k != "D365_CUSTOMER_ACCOUNT")
            .copied()
            .collect();
        assert_eq!(
            DynamicsConfig::from_env_map(env(&missing))
                .expect_err("missing")
                .to_string(),
            "D365_CUSTOMER_ACCOUNT is missing"
        );
    }

    #[test]
    fn decimals_are_exact_in_the_currency_exponent() {
        let cur = |c| crate::money::Currency::parse(c).expect("currency");
        assert_eq!(decimal(Money::from_minor(1250, cur("EUR"))), "12.50");
        assert_eq!(decimal(Money::from_minor(5, cur("EUR"))), "0.05");
        assert_eq!(decimal(Money::from_minor(-250, cur("EUR"))), "-2.50");
        assert_eq!(decimal(Money::from_minor(1250, cur("JPY"))), "1250");
        assert_eq!(decimal(Money::from_minor(1001, cur("KWD"))), "1.001");
        assert_eq!(
            decimal(Money::from_minor(i64::MIN, cur("EUR"))),
            "-92233720368547758.08"
        );
        assert_eq!(odata_string("O'Brien"), "'O''Brien'");
    }

    /// What a golden file holds.
    trait Golden {
        fn value(&self) -> Value;
    }
    impl Golden for Document {
        fn value(&self) -> Value {
            self.to_json()
        }
    }
    struct JournalGolden<'a>(&'a Journal);
    impl Golden for JournalGolden<'_> {
        fn value(&self) -> Value {
            self.0.to_json()
        }
    }

    fn golden(name: &str, doc: &dyn Golden) {
        let value = doc.value();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            let text = serde_json::to_string_pretty(&value).expect("json") + "\n";
            std::fs::write(&path, text).expect("write golden");
        }
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
                .expect("golden json");
        assert_eq!(value, golden, "{name}");
    }

    /// The sales order of a sale and the return order of a return, compared with the golden files
    /// (`UPDATE_GOLDEN=1` rewrites them; review the diff).
    #[test]
    fn the_documents_match_the_golden_files() {
        let mut body = crate::samples::standard_sale("g-1", "store-001", Some("m-1"), 2);
        body["data"]["lines"][1]["quantity"] = json!(2);
        body["data"]["lines"][1]["discount"] = json!("2.50");
        body["data"]["total"] = json!("35.00");
        let envelope = crate::samples::envelope_of(&crate::samples::standard(
            "g",
            &body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("a sale");
        let CanonicalEvent::SaleCompleted(sale) = &envelope.event else {
            panic!("not a sale");
        };
        let doc = sales_order(sale, &config()).expect("mapped");
        golden("dynamics-sales-order.json", &doc);
        assert_eq!(doc.header["SalesOrderNumber"], "dev-till:g-1");
        assert_eq!(doc.header["CustomersOrderReference"], "dev-till:g-1");
        assert_eq!(doc.header["dataAreaId"], "usmf");
        assert_eq!(doc.header["DefaultShippingWarehouseId"], "WH-01");
        assert_eq!(doc.lines.len(), 2);
        assert_eq!(doc.lines[1]["LineCreationSequenceNumber"], 2);
        assert_eq!(doc.lines[1]["SalesPrice"], "12.50");
        assert_eq!(doc.lines[1]["LineDiscountAmount"], "2.50");
        assert_eq!(doc.lines[1]["OrderedSalesQuantity"], 2);

        let ret = crate::samples::envelope_of(&crate::samples::standard(
            "r",
            &crate::samples::standard_return("r-1", "g-1", "store-002"),
            crate::samples::sample_time(),
            None,
        ))
        .expect("a return");
        let CanonicalEvent::ReturnCompleted(ret) = &ret.event else {
            panic!("not a return");
        };
        let doc = return_order(ret, &config()).expect("mapped");
        golden("dynamics-return-order.json", &doc);
        // `dev-till:r-1` is 12 characters: over the RMA number's 10, so hashed; the whole id is the
        // reference, the sale it returns is its sales order number.
        assert_eq!(doc.number, d365_key("dev-till:r-1", RMA_NUMBER_MAX));
        assert!(doc.number.starts_with('~') && doc.number.len() == 10);
        assert_eq!(doc.header["ReturnOrderNumber"], doc.number.as_str());
        assert_eq!(doc.header["CustomersOrderReference"], "dev-till:r-1");
        assert_eq!(doc.header["CustomerRequisitionNumber"], "dev-till:g-1");
        assert_eq!(doc.lines[0]["OrderedSalesQuantity"], -1);
        assert_eq!(doc.lines[0]["LineAmount"], "-12.50");
        assert_eq!(doc.header["DefaultReturnWarehouseId"], "WH-02");
    }

    #[test]
    fn ids_that_fit_are_the_number_and_others_a_stable_hash() {
        // Fits, no capital: as it is.
        assert_eq!(d365_key("dev-till:g-1", 20), "dev-till:g-1");
        assert_eq!(d365_key("a", 10), "a");
        // Too long (lightspeed:<uuid> is 47), or a capital letter D365 would fold: hashed.
        let long = "lightspeed:0b9d5a3e-6f2c-4c1e-9a47-3f1c2d8e7b10";
        let n = d365_key(long, SALES_ORDER_NUMBER_MAX);
        assert_eq!(n.len(), 20);
        assert!(n.starts_with('~'), "{n}");
        assert_eq!(n, d365_key(long, SALES_ORDER_NUMBER_MAX), "stable");
        assert_ne!(d365_key("sq:AbC", 20), d365_key("sq:abc", 20));
        assert_ne!(
            d365_key("sq:AbC", 20).to_lowercase(),
            d365_key("sq:abc", 20).to_lowercase(),
            "distinct even to a case-insensitive key"
        );
        // A known value, so the mapping can never change under stored orders unnoticed.
        assert_eq!(hash32("abc", 10), "q9w1dfwf07");
        // Room left after the hash keeps the id's start: readable references.
        let r = d365_key(&"x".repeat(128), REFERENCE_MAX);
        assert_eq!(r.chars().count(), 60);
        assert!(r.starts_with(&"x".repeat(34)), "{r}");
        assert_eq!(reference(long), long, "60 characters hold it whole");
        assert_eq!(reference(&"y".repeat(61)).chars().count(), 60);
    }

    /// Over many ids of the shapes our adapters make: every number within its limit, the same for the
    /// same id, its own image (a number mapped again is itself), and distinct for distinct ids even
    /// when D365 ignores case.
    #[test]
    fn many_ids_map_to_distinct_numbers_within_the_limits() {
        for max in [RMA_NUMBER_MAX, SALES_ORDER_NUMBER_MAX, REFERENCE_MAX] {
            let mut seen = std::collections::HashMap::new();
            for i in 0..50_000u64 {
                let id = match i % 5 {
                    0 => format!("lightspeed:{i:08x}-6f2c-4c1e-9a47-{:012x}", i * 7919),
                    1 => format!("shopify:order:{}", 450_789_469 + i),
                    2 => format!("sq:Pay{i}X"),
                    3 => format!("r-{i}"),
                    _ => format!("dev-till:{i}"),
                };
                let n = d365_key(&id, max);
                assert!(n.chars().count() <= max, "{id} -> {n}");
                assert_eq!(d365_key(&id, max), n, "deterministic");
                assert_eq!(d365_key(&n, max), n, "idempotent");
                if let Some(other) = seen.insert(n.to_lowercase(), id.clone()) {
                    panic!("{id} and {other} share {n} (max {max})");
                }
            }
        }
    }

    #[test]
    fn a_stock_adjustment_is_a_movement_or_a_counting_journal() {
        let adjustment = |field: &str, units: i64| {
            let envelope = crate::samples::envelope_of(&crate::samples::standard(
                "a",
                &json!({"type": "stock.adjusted", "timestamp": "2026-01-15T10:00:00Z", "data": {
                    "adjustment_id": "adj-1", "store_id": "store-001", "sku": "SKU-001",
                    "occurred_at": "2026-01-15T09:00:00Z", field: units}}),
                crate::samples::sample_time(),
                None,
            ))
            .expect("an adjustment");
            let CanonicalEvent::StockAdjusted(adj) = envelope.event else {
                panic!("not an adjustment");
            };
            adj
        };
        let j = stock_journal(&adjustment("delta", -3), &config()).expect("mapped");
        golden("dynamics-movement-journal.json", &JournalGolden(&j));
        assert_eq!(j.kind, JournalKind::Movement);
        assert_eq!(j.header["JournalNameId"], "IMov");
        assert_eq!(j.header["Description"], "dev-till:adj-1");
        assert_eq!(j.line["InventoryQuantity"], "-3");
        assert_eq!(j.line["InventoryWarehouseId"], "WH-01");
        let c = stock_journal(&adjustment("on_hand", 12), &config()).expect("mapped");
        assert_eq!(c.kind, JournalKind::Counting);
        assert_eq!(c.header["JournalNameId"], "ICnt");
        assert_eq!(c.line["CountedQuantity"], "12");
        assert!(matches!(
            stock_journal(&adjustment("on_hand", -1), &config()),
            Err(Failure::Permanent { .. })
        ));
    }

    #[test]
    fn a_line_without_a_sku_is_refused_for_good() {
        let mut body = crate::samples::standard_sale("g-2", "store-001", None, 1);
        body["data"]["lines"][0]["sku"] = Value::Null;
        let envelope = crate::samples::envelope_of(&crate::samples::standard(
            "g2",
            &body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("a sale");
        let CanonicalEvent::SaleCompleted(sale) = &envelope.event else {
            panic!("not a sale");
        };
        assert!(matches!(
            sales_order(sale, &config()),
            Err(Failure::Permanent { .. })
        ));
    }
}
