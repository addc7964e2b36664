//! An emulator of the Dynamics 365 Finance & Operations OData service and the Entra ID token endpoint
//! (Microsoft publishes none), built from Microsoft's documented entity shapes, on a free loopback port
//! per test.
//!
//! What it does:
//! - `POST /{tenant}/oauth2/v2.0/token`: client credentials in the form body, scope
//!   `{environment}/.default`; `invalid_client` / `invalid_scope` errors as Entra ID names them.
//! - `GET`/`POST /data/{set}` for `SalesOrderHeadersV2`, `SalesOrderLines`, `ReturnOrderHeaders`,
//!   `ReturnOrderLines`, `InventoryMovementJournalHeaders`, `InventoryMovementJournalEntriesV2`,
//!   `InventoryCountingJournalHeaders`, `InventoryCountingJournalLines`: 401 without a valid bearer
//!   token; order headers keyed by `dataAreaId` + order number (a duplicate is a 400 with D365's empty
//!   error code and "The record already exists."), compared ignoring case as D365's SQL collation
//!   does (so are `$filter` strings); journal headers get their `JournalNumber` from a number sequence
//!   (`000001`, …), so nothing stops a second journal with the same description; a line needs its
//!   header (by number) and, for orders, gets a generated `InventoryLotId`, its real key, so a line
//!   sent twice is stored twice (the client must not); decimals (prices, journal quantities) must be
//!   exact strings
//!   (`IEEE754Compatible=true`); `@odata.etag` on every entity; `$filter` with `eq` clauses joined by
//!   `and` (strings with doubled quotes, integers), `$select`; without `cross-company=true` only the
//!   default company (`dat`) is visible, as in D365.
//! - Scripted faults for the next matching requests: 429 with `Retry-After`, 503, a 400 validation
//!   error, and a lost reply (the write is stored, the answer never comes in time).
//! - Counters: entities created per set, tokens issued, faults served.
//!
//! What it does NOT cover, compared with the real service: `$batch` and change sets, order number
//! sequences and field lengths (order numbers are taken as sent; the client keeps them within D365's 20
//! and 10 characters), journal posting, the journal lines' full key (item dimensions), `$metadata`,
//! validation of customers, items, warehouses, sites, currencies and prices against master data,
//! defaulting and pricing (line amounts are stored as sent), posting/invoicing, paging with
//! `@odata.nextLink`, other `$filter` operators, `PATCH`/`If-Match` (nothing here updates), the
//! resource-based throttling itself (only its 429 answer), and Entra ID token signatures.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pos_shared::delivery::dynamics::DynamicsConfig;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The tenant the emulator serves.
pub const TENANT: &str = "contoso.onmicrosoft.com";
/// The client it accepts.
pub const CLIENT_ID: &str = "pos-platform";
/// Its secret.
pub const CLIENT_SECRET: &str = "emulator-secret";
/// The legal entity the tests use (not the default company, so `cross-company` matters).
pub const LEGAL_ENTITY: &str = "usmf";
/// The company D365 shows without `cross-company=true`.
const DEFAULT_COMPANY: &str = "dat";

/// What a scripted fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 with `Retry-After: {0}` seconds; nothing stored.
    Throttle(u64),
    /// 503; nothing stored.
    Unavailable,
    /// 400 with an OData validation error; nothing stored.
    Invalid,
    /// The write is stored, but the answer comes only after [`D365::LOST_AFTER`] (past the client's
    /// timeout): a reply lost on the way back.
    LoseReply,
}

/// A fault for the next request matching `method` and `set` (`None`: any).
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// `GET` or `POST`.
    pub method: Option<&'static str>,
    /// The entity set.
    pub set: Option<&'static str>,
    /// The answer.
    pub kind: FaultKind,
}

#[derive(Default)]
struct Store {
    entities: BTreeMap<String, Vec<Value>>,
    created: HashMap<String, usize>,
    tokens: HashSet<String>,
    tokens_issued: usize,
    faults: VecDeque<Fault>,
    faults_served: usize,
    etag: u64,
    journals: u64,
}

struct Shared {
    url: String,
    store: Mutex<Store>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running emulator (stopped when dropped).
pub struct D365 {
    /// `http://127.0.0.1:PORT`: the environment URL and the token authority.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for D365 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct SetSpec {
    number: &'static str,
    parent: Option<&'static str>,
    /// Headers: the number comes from a number sequence. Lines: keyed by their journal only.
    journal: bool,
    /// Lines: the quantity field they must carry.
    quantity: &'static str,
}

fn spec(set: &str) -> Option<SetSpec> {
    let order = |number, parent| SetSpec {
        number,
        parent,
        journal: false,
        quantity: "OrderedSalesQuantity",
    };
    let journal = |parent, quantity| SetSpec {
        number: "JournalNumber",
        parent,
        journal: true,
        quantity,
    };
    Some(match set {
        "SalesOrderHeadersV2" => order("SalesOrderNumber", None),
        "SalesOrderLines" => order("SalesOrderNumber", Some("SalesOrderHeadersV2")),
        "ReturnOrderHeaders" => order("ReturnOrderNumber", None),
        "ReturnOrderLines" => order("ReturnOrderNumber", Some("ReturnOrderHeaders")),
        "InventoryMovementJournalHeaders" => journal(None, ""),
        "InventoryMovementJournalEntriesV2" => {
            journal(Some("InventoryMovementJournalHeaders"), "InventoryQuantity")
        }
        "InventoryCountingJournalHeaders" => journal(None, ""),
        "InventoryCountingJournalLines" => {
            journal(Some("InventoryCountingJournalHeaders"), "CountedQuantity")
        }
        _ => return None,
    })
}

/// Decimal fields the entities carry: exact strings only.
const DECIMALS: &[&str] = &[
    "SalesPrice",
    "LineAmount",
    "LineDiscountAmount",
    "InventoryQuantity",
    "CountedQuantity",
];

/// Equal as D365 compares: strings ignoring case (SQL Server's case-insensitive collation).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => a == b,
    }
}

fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json; odata.metadata=minimal")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

fn write_failed(set: &str, what: &str) -> Response {
    // D365's shape: an empty code, the detail in the inner error.
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json; odata.metadata=minimal")],
        json!({"error": {"code": "", "message": "An error has occurred.", "innererror": {
            "message": format!("Write failed for table row of type '{set}'. Infolog: Error: {what}"),
            "type": "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
        }}})
        .to_string(),
    )
        .into_response()
}

fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// `Field eq 'text'` / `Field eq 12` clauses joined by ` and `.
fn parse_filter(filter: &str) -> Option<Vec<(String, Value)>> {
    let mut clauses = Vec::new();
    let mut rest = filter.trim();
    while !rest.is_empty() {
        let (field, after) = rest.split_once(" eq ")?;
        let field = field.trim();
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let after = after.trim_start();
        let (value, tail) = if let Some(s) = after.strip_prefix('\'') {
            // A quote ends the literal unless doubled.
            let mut text = String::new();
            let mut chars = s.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                        text.push('\'');
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    text.push(c);
                }
            }
            (Value::String(text), &s[end?..])
        } else {
            let n: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            (json!(n.parse::<u64>().ok()?), &after[n.len()..])
        };
        clauses.push((field.to_owned(), value));
        rest = tail.trim_start();
        if !rest.is_empty() {
            rest = rest.strip_prefix("and ")?.trim_start();
        }
    }
    Some(clauses)
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let refuse = |status: StatusCode, error: &str| {
        (status, json!({"error": error}).to_string()).into_response()
    };
    if tenant != TENANT {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if field("grant_type") != "client_credentials" {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if field("scope") != format!("{}/.default", shared.url) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let mut store = shared.store();
    store.tokens_issued += 1;
    let token = format!("d365-tok-{}", store.tokens_issued);
    store.tokens.insert(token.clone());
    json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token})
        .to_string()
        .into_response()
}

/// The fault scripted for this request, if any (taken off the queue).
fn take_fault(store: &mut Store, method: &Method, set: &str) -> Option<FaultKind> {
    let at = store.faults.iter().position(|f| {
        f.method.is_none_or(|m| m == method.as_str()) && f.set.is_none_or(|s| s == set)
    })?;
    let fault = store.faults.remove(at)?;
    store.faults_served += 1;
    Some(fault.kind)
}

fn authorized(store: &Store, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| store.tokens.contains(t))
}

async fn data(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(set): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (response, lost) = {
        let mut store = shared.store();
        if !authorized(&store, &headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let Some(spec) = spec(&set) else {
            return odata_error(
                StatusCode::NOT_FOUND,
                "",
                &format!("No HTTP resource was found that matches the request URI for {set}."),
            );
        };
        let fault = take_fault(&mut store, &method, &set);
        match fault {
            Some(FaultKind::Throttle(seconds)) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", seconds.to_string())],
                    String::new(),
                )
                    .into_response();
            }
            Some(FaultKind::Unavailable) => {
                return odata_error(StatusCode::SERVICE_UNAVAILABLE, "", "Service unavailable.");
            }
            Some(FaultKind::Invalid) => {
                return write_failed(&set, "Item number does not exist.");
            }
            _ => {}
        }
        let response = if method == Method::GET {
            read(&shared.url, &store, &set, &query)
        } else {
            create(&mut store, &set, &spec, &headers, &body)
        };
        (response, fault == Some(FaultKind::LoseReply))
    };
    if lost {
        tokio::time::sleep(D365::LOST_AFTER).await;
    }
    response
}

fn read(url: &str, store: &Store, set: &str, query: &HashMap<String, String>) -> Response {
    let Some(clauses) = parse_filter(query.get("$filter").map_or("", String::as_str)) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "",
            "The query specified in the URI is not valid.",
        );
    };
    let cross_company = query.get("cross-company").is_some_and(|v| v == "true");
    let select: Option<Vec<&str>> = query
        .get("$select")
        .map(|s| s.split(',').map(str::trim).collect());
    let value: Vec<Value> = store
        .entities
        .get(set)
        .into_iter()
        .flatten()
        .filter(|e| cross_company || e["dataAreaId"] == DEFAULT_COMPANY)
        .filter(|e| clauses.iter().all(|(f, v)| same(&e[f.as_str()], v)))
        .map(|e| match &select {
            None => e.clone(),
            Some(fields) => {
                let mut out = serde_json::Map::new();
                for f in fields.iter().copied().chain(["@odata.etag"]) {
                    if let Some(v) = e.get(f) {
                        out.insert(f.to_owned(), v.clone());
                    }
                }
                Value::Object(out)
            }
        })
        .collect();
    json!({"@odata.context": format!("{url}/data/$metadata#{set}"), "value": value})
        .to_string()
        .into_response()
}

fn create(
    store: &mut Store,
    set: &str,
    spec: &SetSpec,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let exact = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("IEEE754Compatible=true"));
    let Ok(Value::Object(mut entity)) = serde_json::from_slice::<Value>(body) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "",
            "The request body is not a valid entity.",
        );
    };
    for field in DECIMALS {
        match entity.get(*field) {
            None => {}
            Some(Value::String(s)) if exact && is_decimal(s) => {}
            Some(_) => {
                return odata_error(
                    StatusCode::BAD_REQUEST,
                    "",
                    &format!(
                        "Cannot convert the literal to the expected type 'Edm.Decimal' ({field})."
                    ),
                );
            }
        }
    }
    if spec.journal && spec.parent.is_none() {
        // The journal number comes from D365's number sequence, whatever the client sent.
        store.journals += 1;
        entity.insert(spec.number.into(), json!(format!("{:06}", store.journals)));
    }
    let key_of = |e: &serde_json::Map<String, Value>| -> Option<Vec<Value>> {
        let mut key = vec![e.get("dataAreaId")?.clone(), e.get(spec.number)?.clone()];
        if spec.parent.is_some() && !spec.journal {
            key.push(e.get("LineCreationSequenceNumber")?.clone());
        }
        key.iter()
            .all(|v| v.is_string() || v.is_u64())
            .then_some(key)
    };
    let Some(key) = key_of(&entity) else {
        return odata_error(StatusCode::BAD_REQUEST, "", "A key field is missing.");
    };
    let rows = store
        .entities
        .get(set)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // Only headers have a unique number: a line's real key is its generated `InventoryLotId`, so the
    // service does not stop a client from creating the same line twice.
    let same_key = |other: &[Value]| {
        other.len() == key.len() && other.iter().zip(&key).all(|(a, b)| same(a, b))
    };
    if spec.parent.is_none()
        && !spec.journal
        && rows
            .iter()
            .any(|e| e.as_object().and_then(key_of).is_some_and(|k| same_key(&k)))
    {
        return write_failed(
            set,
            &format!("Cannot create a record in {set}. The record already exists."),
        );
    }
    if let Some(parent) = spec.parent {
        let has_header = store
            .entities
            .get(parent)
            .into_iter()
            .flatten()
            .any(|h| same(&h["dataAreaId"], &key[0]) && same(&h[spec.number], &key[1]));
        if !has_header {
            return write_failed(set, "The order header does not exist.");
        }
        let quantity = entity.get(spec.quantity);
        let quantity_ok = if spec.journal {
            quantity.is_some_and(Value::is_string)
        } else {
            quantity.is_some_and(Value::is_i64)
        };
        if !entity.get("ItemNumber").is_some_and(Value::is_string) || !quantity_ok {
            return write_failed(set, "Item number and quantity must be specified.");
        }
        if !spec.journal {
            let lot = format!("LOT-{:06}", store.etag + 1);
            entity.insert("InventoryLotId".into(), json!(lot));
        }
    }
    store.etag += 1;
    entity.insert(
        "@odata.etag".into(),
        json!(format!("W/\"JzEsNTYzNzE0{}Jw==\"", store.etag)),
    );
    let entity = Value::Object(entity);
    store
        .entities
        .entry(set.to_owned())
        .or_default()
        .push(entity.clone());
    *store.created.entry(set.to_owned()).or_default() += 1;
    (StatusCode::CREATED, entity.to_string()).into_response()
}

impl D365 {
    /// How late a lost reply comes: past any client timeout the tests use.
    pub const LOST_AFTER: Duration = Duration::from_secs(3);

    /// Starts the emulator on a free loopback port.
    pub async fn start() -> D365 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shared = Arc::new(Shared {
            url: url.clone(),
            store: Mutex::new(Store::default()),
        });
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/data/{set}", get(data).post(data))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        D365 {
            url,
            shared,
            server,
        }
    }

    /// The configuration of a client of this emulator, from the same keys production reads.
    pub fn config(&self) -> DynamicsConfig {
        let vars: HashMap<&str, String> = [
            ("D365_TENANT_ID", TENANT.to_owned()),
            ("D365_CLIENT_ID", CLIENT_ID.to_owned()),
            ("D365_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("D365_ENVIRONMENT_URL", self.url.clone()),
            ("D365_LEGAL_ENTITY", LEGAL_ENTITY.to_owned()),
            ("D365_CUSTOMER_ACCOUNT", "US-RETAIL".to_owned()),
            ("D365_WAREHOUSES", "store-001=WH-01".to_owned()),
            ("D365_AUTH_URL", self.url.clone()),
        ]
        .into_iter()
        .collect();
        DynamicsConfig::from_env_map(|k| vars.get(k).cloned()).expect("emulator config")
    }

    /// Scripts `fault` for the next matching request (faults queue in order).
    pub fn fault(&self, fault: Fault) {
        self.shared.store().faults.push_back(fault);
    }

    /// Invalidates every token issued so far (an expiry or revocation the client does not know of).
    pub fn revoke_tokens(&self) {
        self.shared.store().tokens.clear();
    }

    /// Stores `entity` in `set` as if an earlier process had created it (not counted as created).
    pub fn seed(&self, set: &str, mut entity: Value) {
        let mut store = self.shared.store();
        store.etag += 1;
        if let Some(obj) = entity.as_object_mut() {
            obj.insert(
                "@odata.etag".into(),
                json!(format!("W/\"seed{}\"", store.etag)),
            );
        }
        store
            .entities
            .entry(set.to_owned())
            .or_default()
            .push(entity);
    }

    /// Entities created through the API in `set`.
    pub fn created(&self, set: &str) -> usize {
        self.shared.store().created.get(set).copied().unwrap_or(0)
    }

    /// Every entity of `set`.
    pub fn entities(&self, set: &str) -> Vec<Value> {
        self.shared
            .store()
            .entities
            .get(set)
            .cloned()
            .unwrap_or_default()
    }

    /// Tokens issued.
    pub fn tokens_issued(&self) -> usize {
        self.shared.store().tokens_issued
    }

    /// Scripted faults served so far.
    pub fn faults_served(&self) -> usize {
        self.shared.store().faults_served
    }

    /// Scripted faults not served yet.
    pub fn faults_pending(&self) -> usize {
        self.shared.store().faults.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_the_forms_we_send_and_refuse_others() {
        assert_eq!(
            parse_filter("SalesOrderNumber eq 'O''Brien:1' and dataAreaId eq 'usmf'"),
            Some(vec![
                ("SalesOrderNumber".into(), json!("O'Brien:1")),
                ("dataAreaId".into(), json!("usmf")),
            ])
        );
        assert_eq!(
            parse_filter("LineCreationSequenceNumber eq 2"),
            Some(vec![("LineCreationSequenceNumber".into(), json!(2))])
        );
        assert_eq!(parse_filter(""), Some(vec![]));
        assert_eq!(parse_filter("SalesOrderNumber ne 'x'"), None);
        assert_eq!(parse_filter("SalesOrderNumber eq 'x' or a eq 'y'"), None);
        assert_eq!(parse_filter("SalesOrderNumber eq 'x"), None);
    }

    #[test]
    fn decimals_must_be_exact_strings() {
        assert!(is_decimal("12.50"));
        assert!(is_decimal("-2.5"));
        assert!(is_decimal("1250"));
        assert!(!is_decimal("1e3"));
        assert!(!is_decimal("12."));
        assert!(!is_decimal(""));
    }
}
