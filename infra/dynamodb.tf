# The capture table (single-table design; layout in shared/src/store/dynamodb.rs):
#   DELIVERY#…  idempotency records, expire via `expires_at` (checked on read; TTL only cleans up)
#   RECORD#…    canonical records; gsi1 = by store and time (read APIs)
#   OUTBOX#…    domain events; `outbox-pending` is a sparse index of the unpublished ones (relay's sweep);
#               the stream (new images) feeds outbox-publisher, which publishes each new entry (outbox.tf)
#   QUARANTINE#… signed deliveries that could not be mapped
resource "aws_dynamodb_table" "capture" {
  name                        = "${local.prefix}-capture"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true
  # Publication off the capture's request path: the stream hands new outbox entries to outbox-publisher.
  stream_enabled   = true
  stream_view_type = "NEW_IMAGE"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  attribute {
    name = "gsi1pk"
    type = "S"
  }
  attribute {
    name = "gsi1sk"
    type = "S"
  }
  attribute {
    name = "outbox_pending"
    type = "S"
  }
  attribute {
    name = "pending_since"
    type = "S"
  }

  global_secondary_index {
    name            = "gsi1"
    hash_key        = "gsi1pk"
    range_key       = "gsi1sk"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "outbox-pending"
    hash_key        = "outbox_pending"
    range_key       = "pending_since"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }
}

# Stock levels per store + SKU (STOCK#{store} / SKU#{sku}, on_hand changed by ADD only) and the markers
# that make each event apply once (APPLIED#{event_id} / CHUNK#{n}, expiring after 35 days).
resource "aws_dynamodb_table" "stock" {
  name                        = "${local.prefix}-stock"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }
}

# Loyalty: member profile (balance, tier set by the CRM), ledger entries per member, and what each sale
# earned (kept for its returns). Layout in shared/src/loyalty/dynamodb.rs.
resource "aws_dynamodb_table" "loyalty" {
  name                        = "${local.prefix}-loyalty"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }
}

# Outbound delivery: the delivery ledger (per event and destination: what reached whom) and each
# destination's circuit breaker. Layout in shared/src/delivery/dynamodb.rs; gsi1 lists a sale's deliveries.
resource "aws_dynamodb_table" "deliveries" {
  name                        = "${local.prefix}-deliveries"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  attribute {
    name = "gsi1pk"
    type = "S"
  }
  attribute {
    name = "gsi1sk"
    type = "S"
  }

  global_secondary_index {
    name            = "gsi1"
    hash_key        = "gsi1pk"
    range_key       = "gsi1sk"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }
}
