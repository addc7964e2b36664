# Outbound delivery: one rule + queue (+ DLQ) + function per destination, so a slow or broken destination
# never holds back another (shared/src/delivery/). pos-local does not route these yet (infra/consumers.tf
# holds the consumers it runs).

module "commercetools_sync_queue" {
  source          = "./modules/consumer_queue"
  name            = "${local.prefix}-commercetools-sync"
  bus_name        = aws_cloudwatch_event_bus.pos.name
  kms_key_arn     = aws_kms_key.data.arn
  alarm_topic_arn = aws_sns_topic.alarms.arn
  # Sales (imported orders, stock removed), returns (return info, restocked units) and stock
  # adjustments (inventory).
  event_pattern = jsonencode({
    source      = ["pos.capture"]
    detail-type = ["SaleCompleted", "ReturnCompleted", "StockAdjusted"]
  })
  # Six times the function's timeout (AWS's advice for SQS-triggered functions).
  visibility_timeout_seconds = 360
  # During an outage the function sets each record's visibility itself (30 s doubling to 1 h, or the
  # destination's Retry-After): 30 receives last about a day before a record is given up into the DLQ.
  max_receive_count = var.commercetools_max_receives
}

resource "aws_lambda_event_source_mapping" "commercetools_sync" {
  event_source_arn                   = module.commercetools_sync_queue.queue_arn
  function_name                      = module.commercetools_sync.function_arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
  # The rate limit across instances: at most this many concurrent invocations call commercetools.
  scaling_config {
    maximum_concurrency = var.commercetools_max_concurrency
  }
}

# The commercetools API client's secret, created empty and set out of band (never in the state):
#   aws secretsmanager put-secret-value --secret-id <arn> --secret-string '<client secret>'
resource "aws_secretsmanager_secret" "commercetools_client" {
  #checkov:skip=CKV2_AWS_57:commercetools API client secrets are issued by the Merchant Center; a rotation Lambda cannot mint them. Rotate by creating a new API client, putting its secret, then deleting the old client (infra/README.md).
  name                    = "${local.prefix}/commercetools-client"
  description             = "commercetools API client secret of commercetools-sync"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 7
}

module "commercetools_sync" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-commercetools-sync"
  description        = "Delivers sales, returns and stock movements to commercetools (orders, inventory), exactly once in effect"
  zip_path           = "${var.artifacts_dir}/commercetools-sync/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 60
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn

  environment = {
    POS_BACKEND           = "aws"
    DELIVERIES_TABLE      = aws_dynamodb_table.deliveries.name
    TABLE_NAME            = aws_dynamodb_table.capture.name
    QUEUE_URL             = module.commercetools_sync_queue.queue_url
    DLQ_URL               = module.commercetools_sync_queue.dlq_url
    MAX_RECEIVES          = tostring(var.commercetools_max_receives)
    CTP_PROJECT_KEY       = var.commercetools_project_key
    CTP_CLIENT_ID         = var.commercetools_client_id
    CTP_CLIENT_SECRET_ARN = aws_secretsmanager_secret.commercetools_client.arn
    CTP_AUTH_URL          = var.commercetools_auth_url
    CTP_API_URL           = var.commercetools_api_url
    CTP_SCOPES            = var.commercetools_scopes
    CTP_RATE_LIMIT        = tostring(var.commercetools_rate_limit)
    RUST_LOG              = "info"
  }

  policy_statements = [
    {
      # The ledger (EVENT#…) and the destination's breaker (BREAKER#…).
      sid          = "DeliveryLedgerAndBreaker"
      actions      = ["dynamodb:GetItem", "dynamodb:PutItem"]
      resources    = [aws_dynamodb_table.deliveries.arn]
      leading_keys = ["EVENT#*", "BREAKER#*"]
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
      resources = [module.commercetools_sync_queue.queue_arn]
    },
    {
      # Records commercetools refuses for good, and records given up after the last receive.
      sid       = "DeadLetter"
      actions   = ["sqs:SendMessage"]
      resources = [module.commercetools_sync_queue.dlq_arn]
    },
    {
      sid       = "ReadClientSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.commercetools_client.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

# A breaker opened: the destination failed repeatedly and every instance stopped calling it; records
# wait in the queue. One alarm per destination of the function. Runbook: infra/README.md#delivery.
resource "aws_cloudwatch_metric_alarm" "commercetools_breaker_open" {
  for_each            = toset(["commercetools", "commercetools-inventory"])
  alarm_name          = "${module.commercetools_sync.function_name}-${each.key}-breaker-open"
  alarm_description   = "commercetools-sync opened the circuit breaker of ${each.key}. Runbook: infra/README.md#delivery"
  namespace           = "PosPlatform"
  metric_name         = "BreakerOpened"
  dimensions          = { function = "commercetools-sync", destination = each.key }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}
