//! Microsoft Dynamics 365 Finance & Operations as a destination, over its OData v4 service
//! (`{environment_url}/data/…`).
//!
//! - **Entities.** A sale is a sales order: `SalesOrderHeadersV2` then `SalesOrderLines` (Microsoft
//!   documents this pair for creating orders over OData: header first, then its lines). A return is a
//!   return order: `ReturnOrderHeaders` then `ReturnOrderLines`, quantities negative as D365 stores
//!   them. Not the retail transaction entities: those feed Commerce statement posting and need the
//!   Commerce channel set up (store, register, shift) for a POS that is not Microsoft's own.
//! - **Mapping.** Our sale (return) id is the order number; `dataAreaId` is the configured legal entity;
//!   the customer is the configured default retail customer; lines by item number = SKU, line
//!   `LineCreationSequenceNumber` = our line index + 1, prices as exact decimal strings from integer
//!   minor units (`IEEE754Compatible=true`, never a float); the warehouse from the store (configured map,
//!   default the store id; D365 defaults the site from the warehouse).
//! - **Idempotency.** D365 has no idempotency key. The read-back is by order number
//!   (`$filter=SalesOrderNumber eq '…' and dataAreaId eq '…'`, `cross-company=true` so the legal entity
//!   filter is not limited to the client's default company), then the lines by number: an order is
//!   delivered only with all its lines. A header without all its lines (a crash or lost answer between)
//!   gets only the missing lines. A refused header create (D365 answers a duplicate key with a 400 whose
//!   code is empty) counts as "already there" only once the order is read back.
//! - **Auth:** Entra ID client credentials at
//!   `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, scope `{environment_url}/.default`,
//!   client secret in the form body.
//!
//! Everything here creates and never updates, so no `If-Match` is needed; entities' `@odata.etag` is
//! kept as the ledger's remote version. Not delivered yet: `stock.adjusted` (the inventory movement
//! journal), skipped by [`Destination::wants`].

use super::client::DestinationClient;
use super::engine::{Destination, Failure, Landed};
use super::oauth::{ClientAuth, ClientCredentials, TokenProvider};
use crate::model::{CanonicalEvent, EventEnvelope, Return, Sale};
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
/// as `store=warehouse,…` and `D365_AUTH_URL`). The secret is a [`SecretString`]: `Debug` redacts it.
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
        Ok(DynamicsConfig {
            tenant_id,
            client_id,
            client_secret,
            environment_url,
            legal_entity,
            customer_account,
            warehouses,
            auth_url,
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
    /// The order number (our id).
    pub number: String,
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
    let number = sale.sale_id.as_str().to_owned();
    let warehouse = config.warehouse(sale.store_id.as_str());
    let day = date(sale.occurred_at);
    let header = json!({
        "dataAreaId": config.legal_entity,
        "SalesOrderNumber": number,
        "OrderingCustomerAccountNumber": config.customer_account,
        "InvoiceCustomerAccountNumber": config.customer_account,
        "CurrencyCode": sale.currency.code(),
        "CustomersOrderReference": sale.store_id.as_str(),
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
        header,
        lines,
    })
}

/// The return order of a return (quantities and amounts negative, as D365 return lines are).
pub fn return_order(ret: &Return, config: &DynamicsConfig) -> Result<Document, Failure> {
    let number = ret.return_id.as_str().to_owned();
    let warehouse = config.warehouse(ret.store_id.as_str());
    let mut header = json!({
        "dataAreaId": config.legal_entity,
        "ReturnOrderNumber": number,
        "CustomerAccountNumber": config.customer_account,
        "CurrencyCode": ret.currency.code(),
        "DefaultReturnWarehouseId": warehouse,
    });
    if let (Some(sale), Some(obj)) = (&ret.sale_id, header.as_object_mut()) {
        obj.insert("CustomersOrderReference".into(), json!(sale.as_str()));
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
        header,
        lines,
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
        let filter = format!(
            "{} eq {} and dataAreaId eq {}",
            doc.kind.number_field(),
            odata_string(&doc.number),
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
            .query(self.filter_url(doc.kind.header_set(), doc, number_field))
            .await?;
        let Some(header) = headers.first() else {
            return Ok(Found::Absent);
        };
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

    fn document(&self, event: &EventEnvelope) -> Result<Document, Failure> {
        if event.lines_ref.is_some() {
            // The lines were stored aside and this destination does not resolve them yet: a header
            // without its lines would be a wrong order.
            return Err(Failure::Permanent {
                reason: "lines stored aside (lines_ref) are not resolved for D365".into(),
            });
        }
        match &event.event {
            CanonicalEvent::SaleCompleted(sale) => sales_order(sale, &self.config),
            CanonicalEvent::ReturnCompleted(ret) => return_order(ret, &self.config),
            _ => Err(Failure::Permanent {
                reason: "not an event D365 takes".into(),
            }),
        }
    }
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
        matches!(
            event.event,
            CanonicalEvent::SaleCompleted(_) | CanonicalEvent::ReturnCompleted(_)
        )
    }

    async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, Failure> {
        let doc = self.document(event)?;
        match self.find(&doc).await? {
            // Delivered only with every line; otherwise `send` completes what is missing.
            Found::Header { landed, lines } if lines.len() >= doc.lines.len() => Ok(Some(landed)),
            _ => Ok(None),
        }
    }

    async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure> {
        let doc = self.document(event)?;
        self.deliver(&doc).await
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

    fn golden(name: &str, doc: &Document) {
        let value = doc.to_json();
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
        assert_eq!(doc.lines[0]["OrderedSalesQuantity"], -1);
        assert_eq!(doc.lines[0]["LineAmount"], "-12.50");
        assert_eq!(doc.header["DefaultReturnWarehouseId"], "WH-02");
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
