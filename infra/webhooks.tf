# Signed webhooks out (shared/src/delivery/webhooks.rs): every domain event we publish, POSTed to the
# subscriptions that take it. Subscriptions are items of the deliveries table (pk SUBSCRIPTIONS, sk the
# id), their secret rings in one secret; the function re-reads both every minute. Runbook:
# infra/README.md#webhooks.

module "webhooks_sync_queue" {
  source          = "./modules/consumer_queue"
  name            = "${local.prefix}-webhooks-sync"
  bus_name        = aws_cloudwatch_event_bus.pos.name
  kms_key_arn     = aws_kms_key.data.arn
  alarm_topic_arn = aws_sns_topic.alarms.arn
  # Every domain event we publish: capture's facts and stock-sync's notifications (all from pos.capture;
  # the list is webhooks::EVENT_TYPES, checked by tests/tests/infra_webhooks.rs).
  event_pattern = jsonencode({
    source = ["pos.capture"]
    detail-type = [
      "SaleCompleted",
      "ReturnCompleted",
      "StockAdjusted",
      "SaleAwaitingEnrichment",
      "StockLow",
      "StockNegative",
    ]
  })
  # Six times the function's timeout (AWS's advice for SQS-triggered functions).
  visibility_timeout_seconds = 360
  # The function sets each record's visibility to the spec's schedule (5 s … 10 h, 8 attempts in about
  # 28 hours) and dead-letters an exhausted one itself; the receive limit only bounds receives spent
  # while a subscription's breaker is open.
  max_receive_count = var.webhooks_max_receives
}

resource "aws_lambda_event_source_mapping" "webhooks_sync" {
  event_source_arn                   = module.webhooks_sync_queue.queue_arn
  function_name                      = module.webhooks_sync.function_arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
  # The rate limit across instances: at most this many concurrent invocations call the receivers.
  scaling_config {
    maximum_concurrency = var.webhooks_max_concurrency
  }
}

# Every subscription's secret ring, keyed by subscription id, newest first; created empty and set out
# of band (never in the state, never in the table):
#   aws secretsmanager put-secret-value --secret-id <arn> --secret-string '{"erp": ["whsec_…"]}'
resource "aws_secretsmanager_secret" "webhooks" {
  #checkov:skip=CKV2_AWS_57:A subscription's secret is shared with its receiver, who must install the new one first; rotation is the documented [new, old] overlap (infra/README.md#webhooks), not a Lambda.
  name                    = "${local.prefix}/webhooks-subscriptions"
  description             = "Signing secret rings of the webhook subscriptions (JSON, keyed by subscription id)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 7
}

module "webhooks_sync" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-webhooks-sync"
  description        = "POSTs every domain event to its webhook subscriptions, signed per Standard Webhooks"
  zip_path           = "${var.artifacts_dir}/webhooks-sync/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 60
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn

  environment = {
    POS_BACKEND                  = "aws"
    DELIVERIES_TABLE             = aws_dynamodb_table.deliveries.name
    TABLE_NAME                   = aws_dynamodb_table.capture.name
    QUEUE_URL                    = module.webhooks_sync_queue.queue_url
    DLQ_URL                      = module.webhooks_sync_queue.dlq_url
    MAX_RECEIVES                 = tostring(var.webhooks_max_receives)
    WEBHOOKS_SECRET_ID           = aws_secretsmanager_secret.webhooks.arn
    WEBHOOKS_DISABLE_AFTER_HOURS = tostring(var.webhooks_disable_after_hours)
    WEBHOOKS_RATE_LIMIT          = tostring(var.webhooks_rate_limit)
    RUST_LOG                     = "info"
  }

  policy_statements = [
    {
      # The ledger (EVENT#…), each subscription's breaker (BREAKER#…) and endpoint health (ENDPOINT#…).
      sid          = "DeliveryLedgerBreakerHealth"
      actions      = ["dynamodb:GetItem", "dynamodb:PutItem"]
      resources    = [aws_dynamodb_table.deliveries.arn]
      leading_keys = ["EVENT#*", "BREAKER#*", "ENDPOINT#*"]
    },
    {
      # The subscriptions: one partition, read, never written by the function.
      sid          = "ReadSubscriptions"
      actions      = ["dynamodb:Query"]
      resources    = [aws_dynamodb_table.deliveries.arn]
      leading_keys = ["SUBSCRIPTIONS"]
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
      resources = [module.webhooks_sync_queue.queue_arn]
    },
    {
      # Records whose schedule is exhausted, and records given up after the last receive.
      sid       = "DeadLetter"
      actions   = ["sqs:SendMessage"]
      resources = [module.webhooks_sync_queue.dlq_arn]
    },
    {
      sid       = "ReadSubscriptionSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.webhooks.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

# An endpoint failed without a success for longer than webhooks_disable_after_hours and was disabled:
# its events are kept as dead in the ledger until an operator enables it and replays them. The metric
# carries the subscription as a dimension and subscriptions live in a table, so one alarm watches
# every subscription through a Metrics Insights query. Runbook: infra/README.md#webhooks.
resource "aws_cloudwatch_metric_alarm" "webhook_endpoint_disabled" {
  alarm_name          = "${module.webhooks_sync.function_name}-endpoint-disabled"
  alarm_description   = "webhooks-sync disabled a webhook endpoint (see the subscription in its logs). Runbook: infra/README.md#webhooks"
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "disabled"
    expression  = "SELECT SUM(WebhookEndpointDisabled) FROM SCHEMA(PosPlatform, function, subscription) WHERE function = 'webhooks-sync'"
    period      = 60
    return_data = true
  }
}

# A subscription's breaker opened: its receiver failed repeatedly and every instance stopped calling it
# (its records wait on the schedule). Breakers are per subscription (`destination` = webhooks:{id}) and
# subscriptions live in a table, so one Metrics Insights query watches all of them, as above.
# Runbook: infra/README.md#webhooks.
resource "aws_cloudwatch_metric_alarm" "webhooks_breaker_open" {
  alarm_name          = "${module.webhooks_sync.function_name}-breaker-open"
  alarm_description   = "webhooks-sync opened the circuit breaker of a subscription (the destination dimension names it). Runbook: infra/README.md#webhooks"
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "opened"
    expression  = "SELECT SUM(BreakerOpened) FROM SCHEMA(PosPlatform, function, destination) WHERE function = 'webhooks-sync'"
    period      = 60
    return_data = true
  }
}
