# Publication, off the capture's request path (ARCHITECTURE.md "Publication"): the capture table's
# stream hands each new outbox entry to outbox-publisher, which puts it on the bus and marks it published.
# The scheduled outbox-relay (schedules.tf) is the safety net for whatever this path misses.

module "outbox_publisher" {
  source             = "./modules/lambda_function"
  name               = "${local.prefix}-outbox-publisher"
  description        = "Publishes each new outbox entry from the capture table's stream to the bus"
  zip_path           = "${var.artifacts_dir}/outbox-publisher/bootstrap.zip"
  memory_mb          = 256
  timeout_seconds    = 30
  log_retention_days = var.log_retention_days
  kms_key_arn        = aws_kms_key.data.arn

  environment = {
    POS_BACKEND    = "aws"
    TABLE_NAME     = aws_dynamodb_table.capture.name
    EVENT_BUS_NAME = aws_cloudwatch_event_bus.pos.name
    RUST_LOG       = "info"
  }

  policy_statements = [
    {
      sid       = "ReadCaptureStream"
      actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
      resources = [aws_dynamodb_table.capture.stream_arn]
    },
    {
      # One conditional UpdateItem per published entry (status attributes, out of the pending index).
      sid          = "MarkPublished"
      actions      = ["dynamodb:UpdateItem"]
      resources    = [aws_dynamodb_table.capture.arn]
      leading_keys = ["OUTBOX#*"]
    },
    {
      sid       = "PublishEvents"
      actions   = ["events:PutEvents"]
      resources = [aws_cloudwatch_event_bus.pos.arn]
    },
    {
      sid       = "ReportStreamFailures"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.outbox_stream_failures.arn]
    },
    {
      sid       = "UseDataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.data.arn]
    },
  ]
}

# Batches the stream gave up on (their shard and sequence range, not the records): the entries are still
# pending in the table and the sweep publishes them; this queue and its alarm tell an operator why.
resource "aws_sqs_queue" "outbox_stream_failures" {
  name                              = "${local.prefix}-outbox-stream-failures"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300
}

resource "aws_lambda_event_source_mapping" "outbox_stream" {
  event_source_arn  = aws_dynamodb_table.capture.stream_arn
  function_name     = module.outbox_publisher.function_arn
  starting_position = "TRIM_HORIZON"
  # Latency over batching: a batch goes as soon as the shard has records (Lambda polls 4 times a second).
  batch_size                         = 100
  maximum_batching_window_in_seconds = 0
  parallelization_factor             = 2
  function_response_types            = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error     = true
  maximum_retry_attempts             = 10
  # Past an hour the sweep (every minute, entries over 60 s old) has long published them.
  maximum_record_age_in_seconds = 3600

  # Only new outbox entries: records, deliveries, marks (MODIFY) and TTL deletes are not invocations.
  filter_criteria {
    filter {
      pattern = jsonencode({
        eventName = ["INSERT"]
        dynamodb  = { Keys = { sk = { S = ["OUTBOX"] } } }
      })
    }
  }

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.outbox_stream_failures.arn
    }
  }
}

# The stream path falling behind: its oldest unprocessed record is over a minute old (the sweep takes
# over past that, at the cost of a minute's latency).
resource "aws_cloudwatch_metric_alarm" "outbox_stream_lag" {
  alarm_name          = "${module.outbox_publisher.function_name}-iterator-age"
  alarm_description   = "outbox-publisher is more than 60 s behind the capture table's stream. Runbook: infra/README.md#outbox"
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = module.outbox_publisher.function_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 60000
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "outbox_stream_failures" {
  alarm_name          = "${aws_sqs_queue.outbox_stream_failures.name}-not-empty"
  alarm_description   = "The stream gave up on outbox batches; the sweep publishes them. Runbook: infra/README.md#outbox"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.outbox_stream_failures.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
