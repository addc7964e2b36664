# Microsoft Dynamics 365 Finance & Operations: its own rule + queue (+ DLQ) + function, like every
# destination (infra/deliveries.tf), so D365 being slow or down never holds back another destination.

module "dynamics_sync_queue" {
  source          = "./modules/consumer_queue"
  name            = "${local.prefix}-dynamics-sync"
  bus_name        = aws_cloudwatch_event_bus.pos.name
  kms_key_arn     = aws_kms_key.data.arn
  alarm_topic_arn = aws_sns_topic.alarms.arn
  # Sales (sales orders), returns (return orders) and stock adjustments (movement/counting journals).
  event_pattern = jsonencode({
    source      = ["pos.capture"]
    detail-type = ["SaleCompleted", "ReturnCompleted", "StockAdjusted"]
  })
  # Six times the function's timeout (AWS's advice for SQS-triggered functions).
  visibility_timeout_seconds = 360
  # During an outage the function sets each record's visibility itself (growing, or D365's
  # Retry-After): the last receive gives the record up into the DLQ.
  max_receive_count = var.dynamics_max_receives
}

resource "aws_lambda_event_source_mapping" "dynamics_sync" {
  event_source_arn                   = module.dynamics_sync_queue.queue_arn
  function_name                      = module.dynamics_sync.function_arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
  # The rate limit across instances: D365 throttles per user and environment.
  scaling_config {
    maximum_concurrency = var.dynamics_max_concurrency
  }
}

# The Entra ID app registration's client secret, created empty and set out of band (never in the state):
#   aws secretsmanager put-secret-value --secret-id <arn> --secret-string '<client secret>'
resource "aws_secretsmanager_secret" "dynamics_client" {
  #checkov:skip=CKV2_AWS_57:Entra ID client secrets are issued in the app registration; a rotation Lambda cannot mint them. Rotate by adding a new secret to the app registration, putting it here, then deleting the old one (infra/README.md).
  name                    = "${local.prefix}/dynamics-client"
  description             = "Entra ID client secret of dynamics-sync (Dynamics 365 F&O)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 7
}

module "dynamics_sync" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-dynamics-sync"
  description        = "Delivers sales, returns (orders) and stock adjustments (journals) to Dynamics 365 F&O, exactly once in effect"
  zip_path           = "${var.artifacts_dir}/dynamics-sync/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 60
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn

  environment = {
    POS_BACKEND            = "aws"
    DELIVERIES_TABLE       = aws_dynamodb_table.deliveries.name
    TABLE_NAME             = aws_dynamodb_table.capture.name
    QUEUE_URL              = module.dynamics_sync_queue.queue_url
    DLQ_URL                = module.dynamics_sync_queue.dlq_url
    MAX_RECEIVES           = tostring(var.dynamics_max_receives)
    D365_TENANT_ID         = var.dynamics_tenant_id
    D365_CLIENT_ID         = var.dynamics_client_id
    D365_CLIENT_SECRET_ARN = aws_secretsmanager_secret.dynamics_client.arn
    D365_ENVIRONMENT_URL   = var.dynamics_environment_url
    D365_LEGAL_ENTITY      = var.dynamics_legal_entity
    D365_CUSTOMER_ACCOUNT  = var.dynamics_customer_account
    D365_WAREHOUSES        = var.dynamics_warehouses
    D365_MOVEMENT_JOURNAL  = var.dynamics_movement_journal
    D365_COUNTING_JOURNAL  = var.dynamics_counting_journal
    D365_RATE_LIMIT        = tostring(var.dynamics_rate_limit)
    RUST_LOG               = "info"
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
      resources = [module.dynamics_sync_queue.queue_arn]
    },
    {
      # Records D365 refuses for good, and records given up after the last receive.
      sid       = "DeadLetter"
      actions   = ["sqs:SendMessage"]
      resources = [module.dynamics_sync_queue.dlq_arn]
    },
    {
      sid       = "ReadClientSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.dynamics_client.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

# The breaker of D365 opened: it failed repeatedly (or refused our client) and every instance stopped
# calling it; records wait in the queue. Runbook: infra/README.md#delivery.
resource "aws_cloudwatch_metric_alarm" "dynamics_breaker_open" {
  alarm_name          = "${module.dynamics_sync.function_name}-dynamics-breaker-open"
  alarm_description   = "dynamics-sync opened the circuit breaker of dynamics. Runbook: infra/README.md#delivery"
  namespace           = "PosPlatform"
  metric_name         = "BreakerOpened"
  dimensions          = { function = "dynamics-sync", destination = "dynamics" }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}
