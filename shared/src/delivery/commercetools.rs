//! commercetools (composable commerce) as a destination: every sale becomes an imported order.
//!
//! - **Sale** → `POST /{project_key}/orders/import` (Order Import API): `orderNumber` is our sale id,
//!   line items by SKU with cent-precision money (`centAmount` is the amount in the currency's minor
//!   units, so JPY amounts are whole yen), custom line items for lines without a SKU, the store as each
//!   line's supply channel (by key), the order `Complete` and `Paid` at the till's time.
//! - **Idempotency.** commercetools has no idempotency key on import; `orderNumber` is unique per project
//!   (a second import is 400 `DuplicateField`). The read-back is
//!   `GET /{project_key}/orders?where=orderNumber="…"`, used by the engine after any ambiguous failure, and
//!   here when the import answers `DuplicateField`: an order already there is delivered, never a second one.
//! - **Auth:** OAuth 2.0 client credentials at `{auth_url}/oauth/token` (HTTP Basic), with the scopes
//!   configured (`manage_orders:{project_key}`).
//!
//! - **Return** → `addReturnInfo` on the order found by `orderNumber` (the original sale), with our return
//!   id as `returnTrackingId`: the read-back finds it there, so a return is added once. Each returned SKU
//!   is matched to the order's line item of that SKU (`BackInStock` when restocked, else `Returned`); a
//!   returned SKU the order does not have is refused for good (the DLQ: an operator looks). Lines without
//!   a SKU (custom items) are not sent: commercetools cannot match them to a custom line item of the
//!   order. A return whose order is not imported yet (the sale is still in flight) is retried later; a
//!   return without a linked sale is not this destination's.
//!   The update carries the order's `version`; a 409 (someone changed the order) re-reads and tries again.
//!
//! Not yet delivered here: stock movements (inventory entries per SKU and supply channel).
//!
//! Line prices are the list unit prices; a line's discount is in the order's `totalPrice` (what was paid),
//! not in the line.

use super::client::{DestinationClient, error_code};
use super::engine::{Destination, Failure, Landed};
use crate::model::{CanonicalEvent, EventEnvelope, Return, Sale};
use crate::money::Money;
use async_trait::async_trait;
use serde_json::{Value, json};

/// The destination's name in the ledger, the breaker and the metrics.
pub const NAME: &str = "commercetools";

/// Connection settings, named as commercetools names them (env `CTP_PROJECT_KEY`, `CTP_CLIENT_ID`,
/// `CTP_CLIENT_SECRET`, `CTP_AUTH_URL`, `CTP_API_URL`, `CTP_SCOPES`).
#[derive(Debug, Clone)]
pub struct CommercetoolsConfig {
    /// The project.
    pub project_key: String,
    /// API base URL, e.g. `https://api.europe-west1.gcp.commercetools.com`.
    pub api_url: String,
    /// Auth base URL, e.g. `https://auth.europe-west1.gcp.commercetools.com` (the token endpoint is
    /// `{auth_url}/oauth/token`).
    pub auth_url: String,
}

/// The order-import destination.
pub struct CommercetoolsOrders {
    client: DestinationClient,
    config: CommercetoolsConfig,
}

fn money(m: Money) -> Value {
    json!({"currencyCode": m.currency.code(), "centAmount": m.minor})
}

/// The Order Import draft of a sale (pure: tested against golden files).
pub fn order_import_draft(sale: &Sale) -> Value {
    let channel = json!({"typeId": "channel", "key": sale.store_id.as_str()});
    let mut line_items = Vec::new();
    let mut custom_line_items = Vec::new();
    for line in &sale.lines {
        match &line.sku {
            Some(sku) => line_items.push(json!({
                "name": {"en": sku.as_str()},
                "variant": {"sku": sku.as_str()},
                "price": {"value": money(line.unit_price)},
                "quantity": line.quantity.get(),
                "supplyChannel": channel,
            })),
            None => custom_line_items.push(json!({
                "name": {"en": format!("custom item {}", line.line_id)},
                "slug": format!("custom-{}", line.line_id),
                "quantity": line.quantity.get(),
                "money": money(line.unit_price),
            })),
        }
    }
    json!({
        "orderNumber": sale.sale_id.as_str(),
        "totalPrice": money(sale.total),
        "taxedPrice": {
            "totalNet": money(Money::from_minor(sale.total.minor - sale.tax.minor, sale.currency)),
            "totalGross": money(sale.total),
            "taxPortions": []
        },
        "lineItems": line_items,
        "customLineItems": custom_line_items,
        "orderState": "Complete",
        "paymentState": "Paid",
        "completedAt": sale.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// The `addReturnInfo` update action of `ret` against `order` (pure: tested against golden files).
/// `Err` says why the return cannot be attached (a returned SKU the order does not have).
pub fn return_info_action(ret: &Return, order: &Value) -> Result<Value, String> {
    let line_items = order["lineItems"].as_array().map_or(&[][..], Vec::as_slice);
    let mut items = Vec::new();
    for line in &ret.lines {
        // Custom items have no SKU to match a custom line item by: not sent (module doc).
        let Some(sku) = &line.sku else { continue };
        let Some(id) = line_items
            .iter()
            .find(|item| item["variant"]["sku"].as_str() == Some(sku.as_str()))
            .and_then(|item| item["id"].as_str())
        else {
            return Err(format!(
                "the SKU of return line {} is not in the order",
                line.line_id
            ));
        };
        items.push(json!({
            "quantity": line.quantity.get(),
            "lineItemId": id,
            "shipmentState": if line.restock { "BackInStock" } else { "Returned" },
            "comment": format!("return line {}", line.line_id),
        }));
    }
    if items.is_empty() {
        return Err("no line of the return has a SKU to match".into());
    }
    Ok(json!({
        "action": "addReturnInfo",
        "returnTrackingId": ret.return_id.as_str(),
        "returnDate": ret.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "items": items,
    }))
}

fn landed(order: &Value) -> Landed {
    Landed {
        remote_id: order["id"].as_str().map(str::to_owned),
        remote_version: order["version"].as_u64().map(|v| v.to_string()),
    }
}

fn has_return(order: &Value, ret: &Return) -> bool {
    order["returnInfo"].as_array().is_some_and(|infos| {
        infos
            .iter()
            .any(|i| i["returnTrackingId"].as_str() == Some(ret.return_id.as_str()))
    })
}

/// Tries of a return's update when the order keeps changing under it (409).
const CONFLICT_TRIES: u32 = 3;

impl CommercetoolsOrders {
    /// The destination over `client` (whose tokens come from `{auth_url}/oauth/token`).
    pub fn new(client: DestinationClient, config: CommercetoolsConfig) -> Self {
        Self { client, config }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.config.api_url.trim_end_matches('/'),
            self.config.project_key,
            path
        )
    }

    async fn find_order(&self, order_number: &str) -> Result<Option<Landed>, Failure> {
        Ok(self.fetch_order(order_number).await?.as_ref().map(landed))
    }

    async fn fetch_order(&self, order_number: &str) -> Result<Option<Value>, Failure> {
        // Sale ids never contain a double quote (their alphabet excludes it), so the predicate is safe.
        let predicate = format!("orderNumber=\"{order_number}\"");
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("where", &predicate)
            .finish();
        let url = format!("{}?{query}", self.url("orders"));
        let reply = self.client.send(|http| http.get(&url)).await?;
        if !reply.status.is_success() {
            return Err(Failure::Transient {
                reason: format!("order lookup answered HTTP {}", reply.status.as_u16()),
                retry_after: None,
            });
        }
        let body = reply.json()?;
        Ok(body["results"].as_array().and_then(|r| r.first()).cloned())
    }

    /// The return's info on its order: read back first (added once), then added under the order's
    /// version, re-read on a conflict.
    async fn send_return(&self, ret: &Return) -> Result<Landed, Failure> {
        let Some(sale_id) = &ret.sale_id else {
            return Err(Failure::Permanent {
                reason: "a return without its sale".into(),
            });
        };
        for _ in 0..CONFLICT_TRIES {
            let Some(order) = self.fetch_order(sale_id.as_str()).await? else {
                // The sale's own delivery has not landed yet: it will.
                return Err(Failure::Transient {
                    reason: "the returned sale's order is not imported yet".into(),
                    retry_after: None,
                });
            };
            if has_return(&order, ret) {
                return Ok(landed(&order));
            }
            let action =
                return_info_action(ret, &order).map_err(|reason| Failure::Permanent { reason })?;
            let (Some(id), Some(version)) = (order["id"].as_str(), order["version"].as_u64())
            else {
                return Err(Failure::Transient {
                    reason: "an order without id or version".into(),
                    retry_after: None,
                });
            };
            let url = self.url(&format!("orders/{id}"));
            let body = json!({"version": version, "actions": [action]});
            let reply = self.client.send(|http| http.post(&url).json(&body)).await?;
            if reply.status.is_success() {
                return Ok(landed(&reply.json()?));
            }
            if reply.status != http::StatusCode::CONFLICT {
                return Err(Failure::Transient {
                    reason: format!("return update answered HTTP {}", reply.status.as_u16()),
                    retry_after: None,
                });
            }
        }
        Err(Failure::Transient {
            reason: "the order kept changing (409)".into(),
            retry_after: None,
        })
    }
}

#[async_trait]
impl Destination for CommercetoolsOrders {
    fn name(&self) -> &str {
        NAME
    }

    fn wants(&self, event: &EventEnvelope) -> bool {
        match &event.event {
            CanonicalEvent::SaleCompleted(_) => true,
            CanonicalEvent::ReturnCompleted(r) => r.sale_id.is_some(),
            _ => false,
        }
    }

    async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, Failure> {
        match &event.event {
            CanonicalEvent::SaleCompleted(sale) => self.find_order(sale.sale_id.as_str()).await,
            CanonicalEvent::ReturnCompleted(ret) => {
                let Some(sale_id) = &ret.sale_id else {
                    return Ok(None);
                };
                Ok(self
                    .fetch_order(sale_id.as_str())
                    .await?
                    .filter(|order| has_return(order, ret))
                    .as_ref()
                    .map(landed))
            }
            _ => Ok(None),
        }
    }

    async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure> {
        let sale = match &event.event {
            CanonicalEvent::SaleCompleted(sale) => sale,
            CanonicalEvent::ReturnCompleted(ret) => return self.send_return(ret).await,
            _ => {
                return Err(Failure::Permanent {
                    reason: "not an event commercetools takes".into(),
                });
            }
        };
        let draft = order_import_draft(sale);
        let url = self.url("orders/import");
        let reply = match self.client.send(|http| http.post(&url).json(&draft)).await {
            // The order is there already (the real API refuses a second orderNumber): read it back.
            Err(Failure::Permanent { reason }) if reason.ends_with("DuplicateField") => {
                return self
                    .find_order(sale.sale_id.as_str())
                    .await?
                    .ok_or(Failure::Transient {
                        reason: format!("{reason} but no order with that number"),
                        retry_after: None,
                    });
            }
            other => other?,
        };
        if !reply.status.is_success() {
            return Err(Failure::Transient {
                reason: format!(
                    "order import answered HTTP {}{}",
                    reply.status.as_u16(),
                    error_code(&reply.body).map_or_else(String::new, |c| format!(" {c}"))
                ),
                retry_after: None,
            });
        }
        Ok(landed(&reply.json()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft of a sale with catalogue lines and a custom line, compared with the golden file
    /// (`UPDATE_GOLDEN=1` rewrites it; review the diff).
    #[test]
    fn the_order_import_draft_matches_the_golden_file() {
        let mut body = crate::samples::standard_sale("g-1", "store-001", Some("m-1"), 3);
        body["data"]["lines"][2]["sku"] = Value::Null;
        body["data"]["lines"][1]["quantity"] = json!(2);
        body["data"]["lines"][1]["discount"] = json!("2.50");
        body["data"]["total"] = json!("47.50");
        body["data"]["tax"] = json!("7.58");
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
        let draft = order_import_draft(sale);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/commercetools-order-import.json");
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            let text = serde_json::to_string_pretty(&draft).expect("json") + "\n";
            std::fs::write(&path, text).expect("write golden");
        }
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
                .expect("golden json");
        assert_eq!(draft, golden);
        // What the golden file must say, whatever its layout.
        assert_eq!(draft["orderNumber"], "dev-till:g-1");
        assert_eq!(
            draft["totalPrice"],
            json!({"currencyCode": "EUR", "centAmount": 4750})
        );
        assert_eq!(draft["taxedPrice"]["totalNet"]["centAmount"], 4750 - 758);
        assert_eq!(draft["lineItems"].as_array().map(Vec::len), Some(2));
        assert_eq!(draft["customLineItems"].as_array().map(Vec::len), Some(1));
        assert_eq!(draft["lineItems"][0]["supplyChannel"]["key"], "store-001");
    }

    fn a_return(lines: Value) -> Return {
        let mut body = crate::samples::standard_return("gr-1", "g-1", "store-001");
        body["data"]["lines"] = lines;
        let envelope = crate::samples::envelope_of(&crate::samples::standard(
            "gr",
            &body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("a return");
        let CanonicalEvent::ReturnCompleted(ret) = envelope.event else {
            panic!("not a return");
        };
        ret
    }

    /// The return action against an order as commercetools answers it, compared with the golden file.
    #[test]
    fn the_return_info_action_matches_the_golden_file_and_refuses_unknown_skus() {
        let order = json!({"id": "o-1", "version": 3, "lineItems": [
            {"id": "li-1", "variant": {"sku": "SKU-001"}, "quantity": 1},
            {"id": "li-2", "variant": {"sku": "SKU-002"}, "quantity": 2}
        ]});
        let ret = a_return(json!([
            {"line_id": "1", "sku": "SKU-002", "quantity": 2, "restock": true, "refund": "10.00"},
            {"line_id": "2", "sku": "SKU-001", "quantity": 1, "restock": false, "refund": "12.50"},
            {"line_id": "3", "sku": null, "quantity": 1, "restock": false, "refund": "1.00"}
        ]));
        let action = return_info_action(&ret, &order).expect("maps");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/commercetools-return-info.json");
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            let text = serde_json::to_string_pretty(&action).expect("json") + "\n";
            std::fs::write(&path, text).expect("write golden");
        }
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
                .expect("golden json");
        assert_eq!(action, golden);
        assert_eq!(action["returnTrackingId"], "dev-till:gr-1");
        assert_eq!(
            action["items"].as_array().map(Vec::len),
            Some(2),
            "the custom item is not sent"
        );
        assert_eq!(action["items"][0]["lineItemId"], "li-2");
        assert_eq!(action["items"][0]["shipmentState"], "BackInStock");
        assert_eq!(action["items"][1]["shipmentState"], "Returned");

        let stranger = a_return(json!([
            {"line_id": "1", "sku": "SKU-999", "quantity": 1, "restock": true, "refund": "1.00"}
        ]));
        assert!(return_info_action(&stranger, &order).is_err());
        let only_custom = a_return(json!([
            {"line_id": "1", "sku": null, "quantity": 1, "restock": true, "refund": "1.00"}
        ]));
        assert!(return_info_action(&only_custom, &order).is_err());
    }
}
