//! The REST router in process: every route, its scope and its errors, over the embedded read models
//! filled by the real capture, stock and loyalty code.

use super::*;
use crate::auth::{AuthConfig, DEV_ISSUER, StaticJwks, dev_token};
use crate::capture::{CaptureService, CaptureSettings};
use crate::delivery::embedded::EmbeddedDeliveries;
use crate::delivery::ledger::{DeliveryEntry, DeliveryLedger, DeliveryStatus};
use crate::ids::EventId;
use crate::ids::{SaleId, Sku, StoreId};
use crate::loyalty::LoyaltyAccrual;
use crate::loyalty::embedded::EmbeddedLoyaltyLedger;
use crate::loyalty::rules::LoyaltyRules;
use crate::metrics::{Metrics, Sink};
use crate::ports::ManualClock;
use crate::read::{Position, ReadError, SalesPage};
use crate::samples;
use crate::secrets::{StaticSecrets, dev_secrets};
use crate::stock::embedded::EmbeddedStockLedger;
use crate::stock::{ApplyOutcome, LedgerError, StockDelta};
use crate::store::embedded::EmbeddedStore;
use async_trait::async_trait;
use axum::body::Body;
use chrono::{DateTime, Utc};
use http::Request;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A read model that is down (503, never a 4xx or a panic).
pub(crate) struct Broken;

#[async_trait]
impl SalesReader for Broken {
    async fn sale(&self, _: &SaleId) -> Result<Option<Sale>, ReadError> {
        Err(ReadError(
            "table unreachable: secret-internal-detail".into(),
        ))
    }
    async fn store_sales(
        &self,
        _: &StoreId,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: Option<&Position>,
        _: usize,
    ) -> Result<SalesPage, ReadError> {
        Err(ReadError(
            "table unreachable: secret-internal-detail".into(),
        ))
    }
}

#[async_trait]
impl StockLedger for Broken {
    async fn apply(
        &self,
        _: &crate::ids::EventId,
        _: chrono::DateTime<chrono::Utc>,
        _: &[StockDelta],
    ) -> Result<ApplyOutcome, LedgerError> {
        Err(LedgerError("down".into()))
    }
    async fn apply_count(
        &self,
        _: &crate::ids::EventId,
        _: &crate::stock::StockCount,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<ApplyOutcome, LedgerError> {
        Err(LedgerError("down".into()))
    }
    async fn on_hand(&self, _: &StoreId, _: &Sku) -> Result<i64, LedgerError> {
        Err(LedgerError(
            "table unreachable: secret-internal-detail".into(),
        ))
    }
    async fn store_levels(
        &self,
        _: &StoreId,
        _: Option<&Sku>,
        _: usize,
    ) -> Result<(Vec<(Sku, i64)>, Option<Sku>), LedgerError> {
        Err(LedgerError(
            "table unreachable: secret-internal-detail".into(),
        ))
    }
}

#[async_trait]
impl DeliveryLedger for Broken {
    async fn get(
        &self,
        _: &EventId,
        _: &str,
    ) -> Result<Option<DeliveryEntry>, crate::delivery::ledger::LedgerError> {
        Err(crate::delivery::ledger::LedgerError(
            "table unreachable: secret-internal-detail".into(),
        ))
    }
    async fn put(
        &self,
        _: &DeliveryEntry,
        _: Option<u64>,
    ) -> Result<bool, crate::delivery::ledger::LedgerError> {
        Err(crate::delivery::ledger::LedgerError("down".into()))
    }
    async fn for_sale(
        &self,
        _: &SaleId,
    ) -> Result<Vec<DeliveryEntry>, crate::delivery::ledger::LedgerError> {
        Err(crate::delivery::ledger::LedgerError(
            "table unreachable: secret-internal-detail".into(),
        ))
    }
}

/// A delivery-ledger entry of the fixture's sales, as a delivery function would have written it.
fn delivery(sale: &str, destination: &str, status: DeliveryStatus) -> DeliveryEntry {
    let mut e = DeliveryEntry::pending(
        EventId::parse(format!("evt:sale:{sale}")).expect("event"),
        Some(SaleId::parse(sale).expect("sale")),
        destination,
        samples::sample_time(),
    );
    e.status = status;
    e.version = 3;
    e
}

/// The read models after three sales of `store-a` (member `m-1`, 2 lines each) and one of `store-b`;
/// `dev-till:s-1` was delivered to commercetools and is retrying to dynamics, `dev-till:s-2` is dead at
/// a webhook, `dev-till:s-3` was not delivered anywhere yet.
pub(crate) struct Fixture {
    pub state: Arc<ApiState>,
    pub capture: CaptureService,
}

pub(crate) fn auth() -> Arc<Authenticator> {
    Arc::new(Authenticator::new(
        Arc::new(StaticJwks::parse(crate::auth::DEV_JWKS_JSON).expect("dev jwks")),
        Arc::new(ManualClock::new(samples::sample_time())),
        AuthConfig::standard(DEV_ISSUER, crate::auth::API_AUDIENCE),
    ))
}

pub(crate) fn cursors() -> Arc<CursorCodec> {
    Arc::new(CursorCodec::new(b"0123456789abcdef0123456789abcdef".to_vec()).expect("key"))
}

/// A token of the dev issuer with `scopes`, valid at the fixture's time.
pub(crate) fn token(scopes: &str) -> String {
    dev_token(
        DEV_ISSUER,
        crate::auth::API_AUDIENCE,
        "test-client",
        scopes,
        samples::sample_time(),
        chrono::Duration::minutes(5),
    )
    .expect("token")
}

pub(crate) const ALL: &str = "sales:read stock:read loyalty:read deliveries:read";

impl Fixture {
    pub(crate) async fn new(graphql: graphql::GraphqlConfig) -> Self {
        let store = EmbeddedStore::in_memory().expect("store");
        let feed = crate::outbox::feed::Announced::new(&store);
        let capture = CaptureService::new(
            Arc::new(store.clone()),
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            Arc::new(ManualClock::new(samples::sample_time())),
            CaptureSettings::default(),
        );
        for (id, store_id, at) in [
            ("s-1", "store-a", "2026-01-15T09:00:00Z"),
            ("s-2", "store-a", "2026-01-15T09:10:00Z"),
            ("s-3", "store-a", "2026-01-15T09:20:00Z"),
            ("s-4", "store-b", "2026-01-15T09:30:00Z"),
        ] {
            capture_sale(&capture, id, store_id, at).await;
        }
        let stock = Arc::new(EmbeddedStockLedger::in_memory().expect("stock"));
        let loyalty = Arc::new(EmbeddedLoyaltyLedger::in_memory().expect("loyalty"));
        let accrual = LoyaltyAccrual::new(
            loyalty.clone(),
            LoyaltyRules::default_rules(),
            Arc::new(Metrics::new("test", Sink::Off)),
        );
        for envelope in feed.events() {
            stock
                .apply(
                    &envelope.event_id,
                    envelope.event.occurred_at(),
                    &crate::stock::deltas_of(&envelope.event),
                )
                .await
                .expect("stock");
            accrual.handle_envelope(&envelope).await.expect("loyalty");
        }
        let deliveries = Arc::new(EmbeddedDeliveries::in_memory().expect("deliveries"));
        let mut delivered = delivery("dev-till:s-1", "commercetools", DeliveryStatus::Delivered);
        delivered.attempts = 1;
        delivered.remote_id = Some("order-1".into());
        delivered.remote_version = Some("1".into());
        let mut retrying = delivery("dev-till:s-1", "dynamics", DeliveryStatus::Retrying);
        retrying.attempts = 3;
        retrying.last_error = Some("http 503 (retryable)".into());
        let dead = delivery("dev-till:s-2", "webhooks:erp", DeliveryStatus::Dead);
        for e in [retrying, delivered, dead] {
            assert_eq!(deliveries.put(&e, None).await, Ok(true));
        }
        Self {
            state: Arc::new(ApiState {
                sales: Arc::new(store),
                stock,
                loyalty,
                deliveries,
                auth: auth(),
                cursors: cursors(),
                graphql,
            }),
            capture,
        }
    }

    /// The same routes over read models that are down.
    pub(crate) fn broken() -> Arc<ApiState> {
        Arc::new(ApiState {
            sales: Arc::new(Broken),
            stock: Arc::new(Broken),
            loyalty: Arc::new(EmbeddedLoyaltyLedger::in_memory().expect("loyalty")),
            deliveries: Arc::new(Broken),
            auth: auth(),
            cursors: cursors(),
            graphql: graphql::GraphqlConfig::default(),
        })
    }
}

pub(crate) async fn capture_sale(capture: &CaptureService, id: &str, store_id: &str, at: &str) {
    let mut body = samples::standard_sale(id, store_id, Some("m-1"), 2);
    body["data"]["occurred_at"] = json!(at);
    let d = samples::standard(&format!("msg_{id}"), &body, samples::sample_time(), None);
    capture
        .handle(&d.to_request("api-test"))
        .await
        .expect("captured");
}

pub(crate) struct Reply {
    pub status: u16,
    pub content_type: String,
    pub www_authenticate: Option<String>,
    pub body: Value,
}

pub(crate) async fn call(state: &Arc<ApiState>, req: Request<Body>) -> Reply {
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status().as_u16();
    let header = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(header::CONTENT_TYPE).unwrap_or_default();
    let www_authenticate = header(header::WWW_AUTHENTICATE);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        www_authenticate,
        body,
    }
}

async fn get(state: &Arc<ApiState>, path: &str, token: Option<&str>) -> Reply {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    call(state, req.body(Body::empty()).expect("request")).await
}

fn assert_problem(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.body["status"], status);
    assert!(
        r.body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:"))
    );
    assert!(r.body["detail"].is_string());
}

#[tokio::test]
async fn every_route_answers_with_the_right_scope() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    let s = &f.state;

    let r = get(s, "/v1/health", None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
    let r = get(s, "/v1/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");

    let r = get(s, "/v1/sales/dev-till:s-2", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["sale_id"], "dev-till:s-2");
    assert_eq!(r.body["store_id"], "store-a");

    let r = get(s, "/v1/stores/store-a/sales", Some(&t)).await;
    assert_eq!(r.status, 200);
    let ids: Vec<&str> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["sale_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["dev-till:s-1", "dev-till:s-2", "dev-till:s-3"],
        "time order, one store only"
    );
    assert!(r.body["next_cursor"].is_null());

    let r = get(s, "/v1/stores/store-a/stock/SKU-001", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["on_hand"], -3, "three sales of one unit, no receipt");
    let r = get(s, "/v1/stores/store-a/stock/NEVER-SOLD", Some(&t)).await;
    assert_eq!((r.status, r.body["on_hand"].as_i64()), (200, Some(0)));

    let r = get(s, "/v1/stores/store-a/stock", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.body["items"][0]["sku"], "SKU-001");

    let r = get(s, "/v1/members/m-1/loyalty", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert!(r.body["balance"].as_i64().is_some_and(|b| b > 0));
    let r = get(s, "/v1/members/m-1/loyalty/ledger", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["entries"].as_array().map(Vec::len), Some(4));
    assert!(r.body["next_cursor"].is_null());
}

#[tokio::test]
async fn the_loyalty_ledger_pages_with_signed_cursors() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    let s = &f.state;
    // Four entries, read two by two in event-id order.
    let mut seen = Vec::new();
    let mut path = "/v1/members/m-1/loyalty/ledger?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let r = get(s, &path, Some(&t)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        pages += 1;
        let entries = r.body["entries"].as_array().expect("entries");
        assert!(entries.len() <= 2);
        seen.extend(
            entries
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned)),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/members/m-1/loyalty/ledger?limit=2&cursor={c}"),
            None => break,
        }
        assert!(pages < 5, "no end");
    }
    assert_eq!((pages, seen.len()), (2, 4));
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "event-id order, no repeat");
    let r = get(s, "/v1/members/m-1/loyalty/ledger?limit=3", Some(&t)).await;
    let c = r.body["next_cursor"].as_str().expect("more").to_owned();
    // A ledger cursor is bound to its member and its listing.
    for path in [
        format!("/v1/members/m-2/loyalty/ledger?cursor={c}"),
        format!("/v1/stores/store-a/stock?cursor={c}"),
        format!("/v1/members/m-1/loyalty/ledger?cursor={c}x"),
        "/v1/members/m-1/loyalty/ledger?limit=0".to_owned(),
        "/v1/members/m-1/loyalty/ledger?limit=101".to_owned(),
        "/v1/members/m-1/loyalty/ledger?limit=ten".to_owned(),
        "/v1/members/m-1/loyalty/ledger?cursor=AAAA".to_owned(),
    ] {
        let r = get(s, &path, Some(&t)).await;
        assert_problem(&r, 400);
    }
}

#[tokio::test]
async fn a_big_ledger_is_served_in_bounded_pages() {
    // 120 entries of one member, all at one instant: default page 50, largest 100, each entry once.
    let loyalty = Arc::new(EmbeddedLoyaltyLedger::in_memory().expect("loyalty"));
    let member = crate::ids::MemberId::parse("m-big").expect("member");
    let at = samples::sample_time();
    for i in 0..120 {
        let sale = SaleId::parse(format!("big-{i}")).expect("sale");
        let entry = LedgerEntry {
            event_id: crate::ids::EventId::parse(format!("evt:sale:big-{i}")).expect("event"),
            member_id: member.clone(),
            kind: crate::loyalty::EntryKind::Earn,
            points: 1,
            unrecovered: 0,
            sale_id: Some(sale.clone()),
            occurred_at: at,
        };
        let record = crate::loyalty::AccrualRecord {
            sale_id: sale,
            member_id: Some(member.clone()),
            accrual: None,
            reversed: Default::default(),
        };
        loyalty
            .record_sale(&record, Some(&entry))
            .await
            .expect("recorded");
    }
    let s = Arc::new(ApiState {
        loyalty,
        ..Arc::into_inner(Fixture::broken()).expect("unshared")
    });
    let t = token(ALL);
    let mut sizes = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut path = "/v1/members/m-big/loyalty/ledger".to_owned();
    loop {
        let r = get(&s, &path, Some(&t)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let entries = r.body["entries"].as_array().expect("entries");
        sizes.push(entries.len());
        for e in entries {
            assert!(seen.insert(e["event_id"].as_str().unwrap_or_default().to_owned()));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/members/m-big/loyalty/ledger?limit=100&cursor={c}"),
            None => break,
        }
        assert!(sizes.len() < 5, "no end");
    }
    assert_eq!(sizes, [50, 70]);
    assert_eq!(seen.len(), 120);
}

#[tokio::test]
async fn pages_follow_signed_cursors_to_the_end() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    let s = &f.state;
    let mut seen = Vec::new();
    let mut path = "/v1/stores/store-a/sales?limit=2".to_owned();
    for _ in 0..5 {
        let r = get(s, &path, Some(&t)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        for sale in r.body["items"].as_array().expect("items") {
            seen.push(sale["sale_id"].as_str().unwrap_or_default().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/stores/store-a/sales?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["dev-till:s-1", "dev-till:s-2", "dev-till:s-3"]);

    let r = get(s, "/v1/stores/store-a/stock?limit=1", Some(&t)).await;
    let c = r.body["next_cursor"].as_str().expect("more").to_owned();
    let r = get(
        s,
        &format!("/v1/stores/store-a/stock?limit=1&cursor={c}"),
        Some(&t),
    )
    .await;
    assert_eq!(r.body["items"][0]["sku"], "SKU-002");
    assert!(r.body["next_cursor"].is_null());
    // A cursor of one store is refused for another, and one of a listing for another listing.
    let r = get(s, &format!("/v1/stores/store-b/stock?cursor={c}"), Some(&t)).await;
    assert_problem(&r, 400);
    let r = get(s, &format!("/v1/stores/store-a/sales?cursor={c}"), Some(&t)).await;
    assert_problem(&r, 400);
}

#[tokio::test]
async fn paging_through_the_api_while_sales_arrive_repeats_and_skips_nothing() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    let page = |cursor: Option<String>| {
        let state = f.state.clone();
        let t = t.clone();
        async move {
            let path = match cursor {
                None => "/v1/stores/store-a/sales?limit=2".to_owned(),
                Some(c) => format!("/v1/stores/store-a/sales?limit=2&cursor={c}"),
            };
            let r = get(&state, &path, Some(&t)).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let ids: Vec<String> = r.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|s| s["sale_id"].as_str().map(str::to_owned))
                .collect();
            (ids, r.body["next_cursor"].as_str().map(str::to_owned))
        }
    };
    let (first, cursor) = page(None).await;
    assert_eq!(first, ["dev-till:s-1", "dev-till:s-2"]);
    // Meanwhile: one sale before the cursor, one between pages, one after the end; a redelivery.
    capture_sale(&f.capture, "late-early", "store-a", "2026-01-15T08:00:00Z").await;
    capture_sale(&f.capture, "late-middle", "store-a", "2026-01-15T09:15:00Z").await;
    capture_sale(&f.capture, "late-last", "store-a", "2026-01-15T10:00:00Z").await;
    capture_sale(&f.capture, "s-2", "store-a", "2026-01-15T09:10:00Z").await;
    let mut seen = first;
    let mut cursor = cursor;
    while let Some(c) = cursor {
        let (ids, next) = page(Some(c)).await;
        seen.extend(ids);
        cursor = next;
    }
    // Keyset order: what lands before the cursor is not shown (no repeat, no shift); what lands after it
    // is; every sale present at the start is seen exactly once.
    assert_eq!(
        seen,
        [
            "dev-till:s-1",
            "dev-till:s-2",
            "dev-till:late-middle",
            "dev-till:s-3",
            "dev-till:late-last"
        ]
    );
}

#[tokio::test]
async fn authentication_and_scopes_are_enforced_per_route() {
    let f = Fixture::new(Default::default()).await;
    let s = &f.state;
    let routes = [
        ("/v1/sales/dev-till:s-1", "sales:read"),
        ("/v1/stores/store-a/sales", "sales:read"),
        ("/v1/stores/store-a/stock/SKU-001", "stock:read"),
        ("/v1/stores/store-a/stock", "stock:read"),
        ("/v1/members/m-1/loyalty", "loyalty:read"),
        ("/v1/members/m-1/loyalty/ledger", "loyalty:read"),
        ("/v1/sales/dev-till:s-1/deliveries", "deliveries:read"),
    ];
    for (path, scope) in routes {
        let r = get(s, path, None).await;
        assert_problem(&r, 401);
        assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"), "{path}");

        let r = get(s, path, Some("not.a.jwt")).await;
        assert_problem(&r, 401);
        assert!(
            r.www_authenticate
                .as_deref()
                .is_some_and(|h| h.contains("invalid_token")),
            "{path}"
        );

        let others: Vec<&str> = ALL.split(' ').filter(|s| *s != scope).collect();
        let r = get(s, path, Some(&token(&others.join(" ")))).await;
        assert_problem(&r, 403);
        assert!(
            r.www_authenticate
                .as_deref()
                .is_some_and(|h| h.contains("insufficient_scope") && h.contains(scope)),
            "{path}"
        );

        let r = get(s, path, Some(&token(scope))).await;
        assert_eq!(r.status, 200, "{path} with {scope}");
    }
}

#[tokio::test]
async fn a_sale_s_deliveries_are_listed_by_destination_behind_their_own_scope() {
    let f = Fixture::new(Default::default()).await;
    let s = &f.state;
    let r = get(
        s,
        "/v1/sales/dev-till:s-1/deliveries",
        Some(&token("deliveries:read")),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(
        r.body,
        json!({
            "sale_id": "dev-till:s-1",
            "deliveries": [
                {"event_id": "evt:sale:dev-till:s-1", "destination": "commercetools", "status": "delivered",
                 "attempts": 1, "remote_id": "order-1", "remote_version": "1", "last_error": null,
                 "updated_at": "2026-01-15T10:00:00Z"},
                {"event_id": "evt:sale:dev-till:s-1", "destination": "dynamics", "status": "retrying",
                 "attempts": 3, "remote_id": null, "remote_version": null,
                 "last_error": "http 503 (retryable)", "updated_at": "2026-01-15T10:00:00Z"}
            ]
        }),
        "the sale's entries only, without the ledger's compare-and-set version"
    );
    // A known sale not delivered anywhere yet: an empty list, not a 404.
    let r = get(
        s,
        "/v1/sales/dev-till:s-3/deliveries",
        Some(&token("deliveries:read")),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["deliveries"], json!([]));
    // Reading sales, stock or loyalty does not let a client read deliveries.
    let r = get(
        s,
        "/v1/sales/dev-till:s-1/deliveries",
        Some(&token("stock:read")),
    )
    .await;
    assert_problem(&r, 403);
    assert!(
        r.www_authenticate
            .as_deref()
            .is_some_and(|h| h.contains("deliveries:read")),
        "{:?}",
        r.www_authenticate
    );
}

#[tokio::test]
async fn bad_parameters_are_400_unknown_ids_and_routes_404() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    let s = &f.state;
    for path in [
        "/v1/sales/bad%20id",
        "/v1/stores/store%20a/sales",
        "/v1/stores/store-a/sales?from=yesterday",
        "/v1/stores/store-a/sales?from=2026-01-16T00:00:00Z&to=2026-01-15T00:00:00Z",
        "/v1/stores/store-a/sales?limit=0",
        "/v1/stores/store-a/sales?limit=101",
        "/v1/stores/store-a/sales?cursor=forged.cursor",
        "/v1/stores/store-a/stock/SKU%09001",
        "/v1/stores/store-a/stock/%20SKU-001",
        "/v1/stores/store-a/stock?limit=1000",
        "/v1/stores/store-a/stock?cursor=AAAA",
        "/v1/members/m%201/loyalty",
        "/v1/members/m%201/loyalty/ledger",
        "/v1/sales/bad%20id/deliveries",
        "/v1/sales/%FF/deliveries",
        // Not even extractable: invalid UTF-8 in the path, a repeated query field.
        "/v1/sales/%FF",
        "/v1/stores/store-a/sales?to=null&to=null",
    ] {
        let r = get(s, path, Some(&t)).await;
        assert_problem(&r, 400);
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("invalid parameter")),
            "{path}: {:?}",
            r.body
        );
    }
    for path in [
        "/v1/sales/no-such-sale",
        "/v1/sales/no-such-sale/deliveries",
    ] {
        let r = get(s, path, Some(&t)).await;
        assert_problem(&r, 404);
    }
    let r = get(s, "/v1/nothing/here", Some(&t)).await;
    assert_problem(&r, 404);
    // A time window restricts the listing.
    let r = get(
        s,
        "/v1/stores/store-a/sales?from=2026-01-15T09:05:00Z&to=2026-01-15T09:15:00Z",
        Some(&t),
    )
    .await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["items"][0]["sale_id"], "dev-till:s-2");
}

#[tokio::test]
async fn a_store_that_is_down_is_503_without_internals() {
    let s = Fixture::broken();
    let t = token(ALL);
    for path in [
        "/v1/sales/dev-till:s-1",
        "/v1/stores/store-a/sales",
        "/v1/stores/store-a/stock/SKU-001",
        "/v1/stores/store-a/stock",
        "/v1/sales/dev-till:s-1/deliveries",
    ] {
        let r = get(&s, path, Some(&t)).await;
        assert_problem(&r, 503);
        assert!(
            !r.body.to_string().contains("secret-internal-detail"),
            "{path} leaks"
        );
    }
}

/// One sample of `events/query-api/`: what the Lambda receives, and what it must answer.
struct Sample {
    file: &'static str,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    scopes: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    case: &'static str,
}

fn query_api_samples() -> Vec<Sample> {
    let s = |file, method, path, query, scopes, status, case| Sample {
        file,
        method,
        path,
        query,
        scopes,
        body: None,
        status,
        case,
    };
    let mut all = vec![
        s(
            "health.json",
            "GET",
            "/v1/health",
            "",
            None,
            200,
            "liveness, no token",
        ),
        s(
            "openapi.json",
            "GET",
            "/v1/openapi.json",
            "",
            None,
            200,
            "the OpenAPI document, no token",
        ),
        s(
            "get-sale.json",
            "GET",
            "/v1/sales/dev-till:s-1",
            "",
            Some(ALL),
            200,
            "a sale by id",
        ),
        s(
            "store-sales.json",
            "GET",
            "/v1/stores/store-a/sales",
            "limit=2",
            Some(ALL),
            200,
            "first page of a store's sales",
        ),
        s(
            "stock-level.json",
            "GET",
            "/v1/stores/store-a/stock/SKU-001",
            "",
            Some(ALL),
            200,
            "a SKU's stock",
        ),
        s(
            "store-stock.json",
            "GET",
            "/v1/stores/store-a/stock",
            "",
            Some(ALL),
            200,
            "a store's stock levels",
        ),
        s(
            "loyalty.json",
            "GET",
            "/v1/members/m-1/loyalty",
            "",
            Some(ALL),
            200,
            "a member's balance",
        ),
        s(
            "loyalty-ledger.json",
            "GET",
            "/v1/members/m-1/loyalty/ledger",
            "",
            Some(ALL),
            200,
            "a member's ledger",
        ),
        s(
            "sale-deliveries.json",
            "GET",
            "/v1/sales/dev-till:s-1/deliveries",
            "",
            Some(ALL),
            200,
            "a sale's deliveries",
        ),
        s(
            "missing-deliveries-scope.json",
            "GET",
            "/v1/sales/dev-till:s-1/deliveries",
            "",
            Some("sales:read stock:read loyalty:read"),
            403,
            "token without deliveries:read",
        ),
        s(
            "no-token.json",
            "GET",
            "/v1/sales/dev-till:s-1",
            "",
            None,
            401,
            "no bearer token",
        ),
        s(
            "missing-scope.json",
            "GET",
            "/v1/members/m-1/loyalty",
            "",
            Some("sales:read"),
            403,
            "token without loyalty:read",
        ),
        s(
            "bad-limit.json",
            "GET",
            "/v1/stores/store-a/sales",
            "limit=abc",
            Some(ALL),
            400,
            "limit not a number",
        ),
        s(
            "unknown-sale.json",
            "GET",
            "/v1/sales/no-such-sale",
            "",
            Some(ALL),
            404,
            "unknown sale id",
        ),
        s(
            "unknown-route.json",
            "GET",
            "/v1/nowhere",
            "",
            Some(ALL),
            404,
            "unknown route",
        ),
    ];
    let mut g = |file, body: Value, status, case| {
        all.push(Sample {
            file,
            method: "POST",
            path: "/graphql",
            query: "",
            scopes: Some(ALL),
            body: Some(body),
            status,
            case,
        });
    };
    g(
        "graphql.json",
        json!({"query": "{ sale(saleId: \"dev-till:s-1\") { saleId total { amount currency } } stockLevel(storeId: \"store-a\", sku: \"SKU-001\") { onHand } member(memberId: \"m-1\") { balance } deliveries(saleId: \"dev-till:s-1\") { destination status } }"}),
        200,
        "GraphQL over sales, stock, loyalty and deliveries",
    );
    g(
        "graphql-syntax-error.json",
        json!({"query": "{ sale(saleId: "}),
        400,
        "GraphQL refused as a whole",
    );
    all
}

/// A long-lived dev token for the samples (dev issuer only: `pos-local` and `cargo lambda watch`).
fn sample_token(scopes: &str) -> String {
    dev_token(
        DEV_ISSUER,
        crate::auth::API_AUDIENCE,
        "sample-client",
        scopes,
        samples::sample_time(),
        chrono::Duration::days(365 * 70),
    )
    .expect("token")
}

fn apigw_event(s: &Sample) -> Value {
    let mut headers = serde_json::Map::new();
    headers.insert("accept".into(), json!("application/json"));
    if let Some(scopes) = s.scopes {
        headers.insert(
            "authorization".into(),
            json!(format!("Bearer {}", sample_token(scopes))),
        );
    }
    if s.body.is_some() {
        headers.insert("content-type".into(), json!("application/json"));
    }
    let route = if s.path == "/graphql" {
        "POST /graphql".to_owned()
    } else {
        format!("{} /v1/{{proxy+}}", s.method)
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": route,
        "rawPath": s.path,
        "rawQueryString": s.query,
        "headers": headers,
        "isBase64Encoded": false,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": s.method, "path": s.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "pos-samples"},
            "requestId": format!("query-{}", s.file.trim_end_matches(".json")),
            "routeKey": route,
            "stage": "$default",
            "time": "15/Jan/2026:10:00:00 +0000",
            "timeEpoch": 1_768_471_200_000_i64
        }
    });
    if let Some(b) = &s.body {
        event["body"] = json!(b.to_string());
    }
    if !s.query.is_empty() {
        let params: serde_json::Map<String, Value> = s
            .query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
    }
    event
}

/// `events/query-api/` replayed through the Lambda handler: each answers what the manifest says.
/// `UPDATE_EVENTS=1` rewrites the files (tokens are long-lived dev tokens, re-signed on each write).
#[tokio::test]
async fn query_api_events_get_the_answer_the_manifest_states() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/query-api");
    let samples = query_api_samples();
    if std::env::var("UPDATE_EVENTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).expect("dir");
        for s in &samples {
            let text = serde_json::to_string_pretty(&apigw_event(s)).expect("json") + "\n";
            std::fs::write(dir.join(s.file), text).expect("write");
        }
        let manifest: Vec<Value> = samples
            .iter()
            .map(|s| json!({"file": s.file, "status": s.status, "case": s.case}))
            .collect();
        let text = serde_json::to_string_pretty(&manifest).expect("json") + "\n";
        std::fs::write(dir.join("manifest.json"), text).expect("write");
    }
    let manifest: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json"))
            .expect("events/query-api/manifest.json"),
    )
    .expect("manifest");
    assert_eq!(manifest.len(), samples.len(), "manifest and samples agree");
    let f = Fixture::new(Default::default()).await;
    let router = router(f.state.clone());
    for entry in &manifest {
        let file = entry["file"].as_str().expect("file");
        let text = std::fs::read_to_string(dir.join(file)).expect("sample");
        let req = crate::http::request_from_event_json(&text).expect("API Gateway v2 event");
        let resp = lambda::handle(&router, req).await;
        assert_eq!(
            u64::from(resp.status().as_u16()),
            entry["status"].as_u64().expect("status"),
            "{file}: {:?}",
            resp.body()
        );
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(ct.starts_with("application/"), "{file}: {ct}");
    }
}

#[tokio::test]
async fn free_text_skus_read_back_whole_over_rest_and_graphql() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    let store = StoreId::parse("store-z").expect("store");
    let skus = [
        "TEE RED M",
        "Größe 42",
        "CAP#NAVY+1",
        "CAP#NAVY",
        "50%/2",
        "a?b=c&d",
    ];
    for (n, sku) in skus.iter().enumerate() {
        let delta = StockDelta {
            store_id: store.clone(),
            sku: Sku::parse(*sku).expect("sku"),
            delta: i64::try_from(n).expect("n") + 1,
        };
        f.state
            .stock
            .apply(
                &crate::ids::EventId::parse(format!("evt:adj:{n}")).expect("id"),
                samples::sample_time(),
                &[delta],
            )
            .await
            .expect("applied");
    }
    // One SKU per path segment, percent-encoded as any HTTP client does.
    for (n, sku) in skus.iter().enumerate() {
        let encoded: String = sku
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let r = get(
            &f.state,
            &format!("/v1/stores/store-z/stock/{encoded}"),
            Some(&t),
        )
        .await;
        assert_eq!(r.status, 200, "{sku}: {:?}", r.body);
        assert_eq!(r.body["sku"], *sku);
        assert_eq!(r.body["on_hand"], n + 1, "{sku}");
    }
    // Paging a page at a time visits every SKU once, in byte order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/stores/store-z/stock?limit=1".to_owned(),
            Some(c) => format!("/v1/stores/store-z/stock?limit=1&cursor={c}"),
        };
        let r = get(&f.state, &path, Some(&t)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        for level in r.body["items"].as_array().expect("items") {
            seen.push(level["sku"].as_str().expect("sku").to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> = skus.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    let r = graphql::tests::query(
        &f.state,
        &t,
        r#"{ stockLevel(storeId: "store-z", sku: "CAP#NAVY+1") { sku onHand } }"#,
    )
    .await;
    assert_eq!(r.body["data"]["stockLevel"]["onHand"], 3, "{}", r.body);
}
