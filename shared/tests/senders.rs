//! Standard Webhooks sender identity: each in-house sender has its own key, and the sender whose key
//! verifies a delivery namespaces its ids, so senders never collide and none can claim a vendor's sales.

use pos_shared::capture::{CaptureError, CaptureService, CaptureSettings, Captured};
use pos_shared::model::CanonicalEvent;
use pos_shared::outbox::feed::Announced;
use pos_shared::ports::ManualClock;
use pos_shared::samples;
use pos_shared::secrets::{StaticSecrets, VendorSecrets};
use pos_shared::store::StoreInspect;
use pos_shared::store::embedded::EmbeddedStore;
use pos_shared::vendors::AuthError;
use std::sync::Arc;

const TILL_A: &str = "whsec_dGlsbC1hLWtleS0wMQ==";
const TILL_B: &str = "whsec_dGlsbC1iLWtleS0wMQ==";

fn service() -> (CaptureService, EmbeddedStore, Arc<Announced>) {
    let secrets = VendorSecrets::from_json(&format!(
        r#"{{"standard": {{"senders": {{"till-a": {{"secrets": "{TILL_A}"}}, "till-b": {{"secrets": ["{TILL_B}"]}}}}}}}}"#
    ))
    .expect("secrets");
    let store = EmbeddedStore::in_memory().expect("store");
    let bus = Arc::new(Announced::new(&store));
    let svc = CaptureService::new(
        Arc::new(store.clone()),
        Arc::new(StaticSecrets(Arc::new(secrets))),
        Arc::new(ManualClock::new(samples::sample_time())),
        CaptureSettings::default(),
    );
    (svc, store, bus)
}

#[tokio::test]
async fn two_senders_numbering_alike_are_two_sales() {
    let (svc, store, bus) = service();
    let body = samples::standard_sale("1001", "store-001", Some("m-1"), 2);
    for key in [TILL_A, TILL_B] {
        // Same webhook-id, same sale id, same body: only the key (the sender) differs.
        let d = samples::standard("msg_1", &body, samples::sample_time(), Some(key));
        let got = svc.handle(&d.to_request("c")).await;
        assert!(matches!(got, Ok(Captured::Accepted { .. })), "{got:?}");
    }
    let sales: Vec<String> = store
        .records()
        .await
        .expect("records")
        .into_iter()
        .filter_map(|r| match r.event {
            CanonicalEvent::SaleCompleted(s) => Some(s.sale_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(sales.len(), 2);
    assert!(sales.contains(&"till-a:1001".to_owned()), "{sales:?}");
    assert!(sales.contains(&"till-b:1001".to_owned()), "{sales:?}");
    assert_eq!(bus.events().len(), 2);
    // Each sender's redelivery is still its own duplicate.
    let again = samples::standard("msg_1", &body, samples::sample_time(), Some(TILL_B));
    assert!(matches!(
        svc.handle(&again.to_request("c")).await,
        Ok(Captured::Duplicate { .. })
    ));
    assert_eq!(bus.events().len(), 2);
}

#[tokio::test]
async fn a_sender_cannot_claim_a_vendors_ids() {
    let (svc, store, bus) = service();
    for (msg, body) in [
        (
            "m1",
            samples::standard_sale("shopify:450789469", "store-001", None, 1),
        ),
        ("m2", samples::standard_sale("1", "shopify:online", None, 1)),
        (
            "m3",
            samples::standard_return("r-1", "square:pay-1", "store-001"),
        ),
    ] {
        let d = samples::standard(msg, &body, samples::sample_time(), Some(TILL_A));
        match svc.handle(&d.to_request("c")).await {
            Err(CaptureError::Unmappable { reason }) => {
                assert!(reason.contains("namespace"), "{reason}");
            }
            other => panic!("{msg} accepted: {other:?}"),
        }
    }
    assert!(bus.events().is_empty());
    assert_eq!(store.quarantined().await.expect("q").len(), 3);
}

#[tokio::test]
async fn a_key_of_no_configured_sender_is_refused() {
    let (svc, _, _) = service();
    let body = samples::standard_sale("1", "store-001", None, 1);
    let d = samples::standard(
        "m",
        &body,
        samples::sample_time(),
        Some("whsec_b3RoZXIta2V5LTAx"),
    );
    assert!(matches!(
        svc.handle(&d.to_request("c")).await,
        Err(CaptureError::Unauthorized(AuthError::BadSignature))
    ));
}
