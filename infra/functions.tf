# One module instance per crate under functions/ (tests/ checks the one-to-one match).

module "sale_capture" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-sale-capture"
  description        = "Verifies, normalises and stores POS vendor webhooks (one DynamoDB transaction each)"
  zip_path           = "${var.artifacts_dir}/sale-capture/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 10
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn

  environment = merge(
    {
      POS_BACKEND         = "aws"
      TABLE_NAME          = aws_dynamodb_table.capture.name
      SECRET_ID           = aws_secretsmanager_secret.vendor_webhooks.arn
      MAX_BODY_BYTES      = tostring(var.max_body_bytes)
      SECRETS_TTL_SECONDS = tostring(var.secrets_ttl_seconds)
      DELIVERY_TTL_HOURS  = tostring(var.delivery_ttl_hours)
      RUST_LOG            = "info"
    },
    var.lightspeed_currency == "" ? {} : { LIGHTSPEED_CURRENCY = var.lightspeed_currency },
    # Lightspeed sales name their register; this maps registers to outlets (stores).
    length(var.lightspeed_registers) == 0 ? {} : { LIGHTSPEED_REGISTERS = jsonencode(var.lightspeed_registers) },
    # Shopify test orders never count in a deployed environment.
    { SHOPIFY_ACCEPT_TEST_ORDERS = "false" },
  )

  # TransactWriteItems is authorised per underlying action (Put/Update/ConditionCheck). No PutEvents:
  # publication is outbox-publisher's, fed by the table's stream (outbox.tf).
  policy_statements = [
    {
      sid       = "CaptureTable"
      actions   = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
      resources = [aws_dynamodb_table.capture.arn]
    },
    {
      sid       = "ReadVendorSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.vendor_webhooks.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

module "stock_sync" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-stock-sync"
  description        = "Applies sales and returns to per store + SKU stock, exactly once"
  zip_path           = "${var.artifacts_dir}/stock-sync/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 30
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn

  environment = {
    POS_BACKEND         = "aws"
    STOCK_TABLE_NAME    = aws_dynamodb_table.stock.name
    TABLE_NAME          = aws_dynamodb_table.capture.name
    EVENT_BUS_NAME      = aws_cloudwatch_event_bus.pos.name
    LOW_STOCK_THRESHOLD = tostring(var.low_stock_threshold)
    RUST_LOG            = "info"
  }

  policy_statements = [
    {
      sid       = "StockTable"
      actions   = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
      resources = [aws_dynamodb_table.stock.arn]
    },
    {
      # Claim-checked lines of big sales (shared/src/store/claim.rs): only the LINES# items.
      sid          = "ReadClaimCheckedLines"
      actions      = ["dynamodb:GetItem"]
      resources    = [aws_dynamodb_table.capture.arn]
      leading_keys = ["LINES#*"]
    },
    {
      sid       = "ConsumeQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
      resources = [module.stock_sync_queue.queue_arn]
    },
    {
      sid       = "PublishStockNotifications"
      actions   = ["events:PutEvents"]
      resources = [aws_cloudwatch_event_bus.pos.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

module "loyalty_accrual" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-loyalty-accrual"
  description        = "Loyalty points per member: one ledger entry per sale, reversals on returns"
  zip_path           = "${var.artifacts_dir}/loyalty-accrual/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 30
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn

  environment = merge(
    {
      POS_BACKEND        = "aws"
      LOYALTY_TABLE_NAME = aws_dynamodb_table.loyalty.name
      TABLE_NAME         = aws_dynamodb_table.capture.name
      RUST_LOG           = "info"
    },
    var.loyalty_rules_json == "" ? {} : { LOYALTY_RULES = var.loyalty_rules_json },
  )

  policy_statements = [
    {
      sid       = "LoyaltyTable"
      actions   = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.loyalty.arn]
    },
    {
      # Claim-checked lines of big sales (shared/src/store/claim.rs): only the LINES# items.
      sid          = "ReadClaimCheckedLines"
      actions      = ["dynamodb:GetItem"]
      resources    = [aws_dynamodb_table.capture.arn]
      leading_keys = ["LINES#*"]
    },
    {
      sid       = "ConsumeQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
      resources = [module.loyalty_accrual_queue.queue_arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

module "outbox_relay" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-outbox-relay"
  description        = "The safety net: publishes outbox entries still pending a minute after capture"
  zip_path           = "${var.artifacts_dir}/outbox-relay/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 60
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn
  # One run at a time is enough and keeps the bus from seeing the same entries twice in parallel.
  reserved_concurrency = 1

  environment = {
    POS_BACKEND           = "aws"
    TABLE_NAME            = aws_dynamodb_table.capture.name
    EVENT_BUS_NAME        = aws_cloudwatch_event_bus.pos.name
    RELAY_MIN_AGE_SECONDS = "60"
    RELAY_BATCH_LIMIT     = "500"
    RUST_LOG              = "info"
  }

  policy_statements = [
    {
      sid       = "ReadPendingOutbox"
      actions   = ["dynamodb:Query"]
      resources = ["${aws_dynamodb_table.capture.arn}/index/outbox-pending"]
    },
    {
      sid       = "MarkPublished"
      actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.capture.arn]
    },
    {
      sid       = "PublishEvents"
      actions   = ["events:PutEvents"]
      resources = [aws_cloudwatch_event_bus.pos.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

module "query_api" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-query-api"
  description        = "REST (/v1) and GraphQL reads over sales, stock and loyalty behind bearer JWTs"
  zip_path           = "${var.artifacts_dir}/query-api/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 10
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn
  # Caps the read traffic the tables see and keeps account concurrency for capture and the consumers.
  reserved_concurrency = var.query_api_reserved_concurrency

  environment = merge(
    {
      POS_BACKEND            = "aws"
      TABLE_NAME             = aws_dynamodb_table.capture.name
      STOCK_TABLE_NAME       = aws_dynamodb_table.stock.name
      LOYALTY_TABLE_NAME     = aws_dynamodb_table.loyalty.name
      DELIVERIES_TABLE       = aws_dynamodb_table.deliveries.name
      JWT_ISSUER             = var.jwt_issuer
      JWT_AUDIENCE           = var.jwt_audience
      CURSOR_SECRET_ID       = aws_secretsmanager_secret.query_cursor_key.arn
      GRAPHQL_MAX_DEPTH      = tostring(var.graphql_max_depth)
      GRAPHQL_MAX_COMPLEXITY = tostring(var.graphql_max_complexity)
      GRAPHQL_INTROSPECTION  = tostring(var.graphql_introspection)
      JWKS_MAX_STALE_HOURS   = tostring(var.jwks_max_stale_hours)
      RUST_LOG               = "info"
    },
    var.jwks_url == "" ? {} : { JWKS_URL = var.jwks_url },
  )

  # Read-only: GetItem/Query on the three read-model tables (the sales listing queries the capture
  # table's gsi1); on the deliveries table only Query on gsi1 (a sale's deliveries), never its breakers.
  policy_statements = [
    {
      sid       = "ReadSales"
      actions   = ["dynamodb:GetItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.capture.arn, "${aws_dynamodb_table.capture.arn}/index/gsi1"]
    },
    {
      sid       = "ReadStock"
      actions   = ["dynamodb:GetItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.stock.arn]
    },
    {
      sid       = "ReadLoyalty"
      actions   = ["dynamodb:GetItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.loyalty.arn]
    },
    {
      sid       = "ReadDeliveries"
      actions   = ["dynamodb:Query"]
      resources = ["${aws_dynamodb_table.deliveries.arn}/index/gsi1"]
    },
    {
      sid       = "ReadCursorKey"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.query_cursor_key.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}
