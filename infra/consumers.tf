# Routing: one rule + queue (+ DLQ) per consumer, and the event source mapping that feeds its Lambda.
# The local runner and the moto tests read these same rules (tests/src/infra.rs).

module "stock_sync_queue" {
  source          = "./modules/consumer_queue"
  name            = "${local.prefix}-stock-sync"
  bus_name        = aws_cloudwatch_event_bus.pos.name
  kms_key_arn     = aws_kms_key.data.arn
  alarm_topic_arn = aws_sns_topic.alarms.arn
  event_pattern = jsonencode({
    source      = ["pos.capture"]
    detail-type = ["SaleCompleted", "ReturnCompleted", "StockAdjusted"]
  })
  visibility_timeout_seconds = 180
  # Transaction conflicts on a hot store + SKU are retried inside the function (about 1 s of jittered
  # backoff); 10 receives x 180 s leave half an hour of backlog before a real sale reaches the DLQ.
  max_receive_count = 10
}

resource "aws_lambda_event_source_mapping" "stock_sync" {
  event_source_arn                   = module.stock_sync_queue.queue_arn
  function_name                      = module.stock_sync.function_arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
}

module "loyalty_accrual_queue" {
  source          = "./modules/consumer_queue"
  name            = "${local.prefix}-loyalty-accrual"
  bus_name        = aws_cloudwatch_event_bus.pos.name
  kms_key_arn     = aws_kms_key.data.arn
  alarm_topic_arn = aws_sns_topic.alarms.arn
  event_pattern = jsonencode({
    source      = ["pos.capture"]
    detail-type = ["SaleCompleted", "ReturnCompleted"]
  })
  visibility_timeout_seconds = 180
  max_receive_count          = 8
}

resource "aws_lambda_event_source_mapping" "loyalty_accrual" {
  event_source_arn                   = module.loyalty_accrual_queue.queue_arn
  function_name                      = module.loyalty_accrual.function_arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
}
