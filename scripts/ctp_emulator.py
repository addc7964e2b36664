"""Serves commercetools' own API emulator (commercetools.testing, from the commercetools Python SDK) on a
loopback port, for the tests and local replays: `python3 scripts/ctp_emulator.py [PORT] [--products
PROJECT:SKU,SKU,...]` (the products, created before it serves, are what an order import needs: the
emulator resolves line items to existing products).

The emulator matches requests by host name, so clients must address it as `localhost`.

Additions of ours, on top of the emulator's own storage, versioning and queries, for update actions the
emulator does not implement (it ignores update actions it does not know and answers 200, so a test
against it alone would pass without anything happening):
- orders: `addReturnInfo`. Ours follows the documented behaviour we rely on: a return info with its
  `returnTrackingId`, `returnDate` and one `LineItemReturnItem` per item, each referring to a line item
  of the order (else a 400 `InvalidOperation`), under the order's version check (409 on a stale
  version). It does not model return payment states beyond `NonRefundable`, custom line item returns,
  or the quantity checks the real API may apply.
- inventory entries: `setCustomType` (the type by key or id, with its fields, replacing the entry's
  custom fields as the real API does) and `setCustomField`, applied atomically with the other actions of
  the same update under the entry's version check. They do not validate the fields against the type's
  field definitions (the real API does: our type declares the one field we write).
"""

import copy
import datetime
import sys
import uuid

from commercetools.platform import models
from commercetools.platform.models._schemas.order import ReturnInfoSchema
from commercetools.testing import inventory, orders
from commercetools.testing.server import Server
from commercetools.testing.utils import InternalUpdateError, set_custom_field
from werkzeug.serving import make_server


def add_return_info(backend, obj, action):
    line_items = {item["id"] for item in obj.get("lineItems") or []}
    now = datetime.datetime.now(datetime.timezone.utc)
    items = []
    for draft in action.items or []:
        if draft.line_item_id not in line_items:
            raise InternalUpdateError("line item %r is not in the order" % draft.line_item_id)
        items.append(
            models.LineItemReturnItem(
                id=str(uuid.uuid4()),
                quantity=draft.quantity,
                comment=draft.comment,
                shipment_state=draft.shipment_state,
                payment_state=models.ReturnPaymentState.NON_REFUNDABLE,
                created_at=now,
                last_modified_at=now,
                line_item_id=draft.line_item_id,
            )
        )
    info = models.ReturnInfo(
        items=items,
        return_tracking_id=action.return_tracking_id,
        return_date=action.return_date,
    )
    new = copy.deepcopy(obj)
    new["returnInfo"] = list(new.get("returnInfo") or []) + [ReturnInfoSchema().dump(info)]
    return new


def set_custom_type(backend, obj, action):
    ref = action.type
    type_id = getattr(ref, "id", None) if ref is not None else None
    key = getattr(ref, "key", None) if ref is not None else None
    if ref is not None and not type_id:
        for document in backend.model._storage._stores.get("type", {}).values():
            if document.get("key") == key:
                type_id = document["id"]
        if not type_id:
            raise InternalUpdateError("no type with key %r" % key)
    new = copy.deepcopy(obj)
    new["custom"] = (
        None if ref is None else {"type": {"typeId": "type", "id": type_id}, "fields": dict(action.fields or {})}
    )
    return new


def seed_products(app, spec: str) -> None:
    import json

    from werkzeug.test import Client

    project, _, skus = spec.partition(":")
    client = Client(app)
    token = json.loads(
        client.post(
            "http://localhost/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic cG9zOnBvcw=="},
        ).get_data()
    )["access_token"]
    for sku in filter(None, skus.split(",")):
        draft = {
            "productType": {"typeId": "product-type", "id": "seeded"},
            "name": {"en": sku},
            "slug": {"en": sku.lower()},
            "masterVariant": {"sku": sku},
            "publish": True,
        }
        reply = client.post(
            f"http://localhost/{project}/products",
            json=draft,
            headers={"Authorization": f"Bearer {token}"},
        )
        if reply.status_code >= 300:
            raise SystemExit(f"seeding {sku}: HTTP {reply.status_code}")


def main() -> None:
    orders.OrdersBackend._actions["addReturnInfo"] = add_return_info
    inventory.InventoryEntryBackend._actions["setCustomType"] = set_custom_type
    inventory.InventoryEntryBackend._actions["setCustomField"] = set_custom_field()
    args = sys.argv[1:]
    products = None
    if "--products" in args:
        i = args.index("--products")
        products = args[i + 1] if i + 1 < len(args) else ""
        del args[i : i + 2]
    port = int(args[0]) if args else 0
    app = Server()
    if products:
        seed_products(app, products)
    server = make_server("localhost", port, app, threaded=True)
    print(f"http://localhost:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
