# Alarms, all to one SNS topic (subscribe the on-call address with var.alarm_email). Runbook: README.md.

resource "aws_sns_topic" "alarms" {
  name              = "${local.prefix}-alarms"
  kms_master_key_id = aws_kms_key.data.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  functions = {
    sale_capture       = module.sale_capture.function_name
    stock_sync         = module.stock_sync.function_name
    loyalty_accrual    = module.loyalty_accrual.function_name
    outbox_relay       = module.outbox_relay.function_name
    outbox_publisher   = module.outbox_publisher.function_name
    query_api          = module.query_api.function_name
    commercetools_sync = module.commercetools_sync.function_name
    dynamics_sync      = module.dynamics_sync.function_name
    webhooks_sync      = module.webhooks_sync.function_name
  }
  # age_alarm_seconds (optional): the queue age alarm's threshold when 5 minutes is wrong by design.
  consumer_queues = {
    stock_sync         = { queue = module.stock_sync_queue.queue_name, dlq = module.stock_sync_queue.dlq_name }
    loyalty_accrual    = { queue = module.loyalty_accrual_queue.queue_name, dlq = module.loyalty_accrual_queue.dlq_name }
    commercetools_sync = { queue = module.commercetools_sync_queue.queue_name, dlq = module.commercetools_sync_queue.dlq_name }
    dynamics_sync      = { queue = module.dynamics_sync_queue.queue_name, dlq = module.dynamics_sync_queue.dlq_name }
    # A failing subscription's records wait on the Standard Webhooks schedule (5 s … 10 h, about 27.6 h
    # in all) before they are delivered or dead-lettered: an age alarm at 5 minutes would fire whenever
    # one receiver is down. The failing receiver is reported by the breaker, disabled and DLQ alarms;
    # this one still catches a queue nobody drains (30 h: past the schedule, within the 4-day retention).
    webhooks_sync = { queue = module.webhooks_sync_queue.queue_name, dlq = module.webhooks_sync_queue.dlq_name, age_alarm_seconds = 108000 }
  }
}

# Anything in a DLQ failed maxReceiveCount times: an operator must look (and redrive).
resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each            = local.consumer_queues
  alarm_name          = "${each.value.dlq}-not-empty"
  alarm_description   = "Messages in the ${each.key} DLQ. Runbook: infra/README.md#dlq"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value.dlq }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# A consumer falling behind (or stuck on retries): the oldest message is older than 5 minutes, or the
# queue's own age_alarm_seconds (webhooks-sync: its records wait on the spec's schedule by design).
resource "aws_cloudwatch_metric_alarm" "queue_age" {
  for_each            = local.consumer_queues
  alarm_name          = "${each.value.queue}-oldest-message-age"
  alarm_description   = "The ${each.key} queue's oldest message is over ${try(each.value.age_alarm_seconds, 300)} seconds old. Runbook: infra/README.md#backlog"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = try(each.value.age_alarm_seconds, 300)
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Signed deliveries we could not map: vendors were answered 200 (they must not retry and drop the
# subscription), so this alarm is the only thing that calls a human. The metric is sale-capture's EMF.
resource "aws_cloudwatch_metric_alarm" "quarantined" {
  alarm_name          = "${module.sale_capture.function_name}-quarantined"
  alarm_description   = "sale-capture quarantined a delivery it could not map. Runbook: infra/README.md#quarantine"
  namespace           = "PosPlatform"
  metric_name         = "Quarantined"
  dimensions          = { function = "sale-capture" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = local.functions
  alarm_name          = "${each.value}-errors"
  alarm_description   = "${each.key} invocations failed (not record failures: the function itself). Runbook: infra/README.md#function-errors"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "function_throttles" {
  for_each            = local.functions
  alarm_name          = "${each.value}-throttles"
  alarm_description   = "${each.key} is throttled (concurrency limit). Runbook: infra/README.md#throttles"
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# 5xx on the webhook API means our infrastructure failed (4xx are the callers'); vendors retry, but a
# rate above 1% for 5 minutes needs a human.
resource "aws_cloudwatch_metric_alarm" "api_5xx_rate" {
  alarm_name          = "${local.prefix}-api-5xx-rate"
  alarm_description   = "More than 1% of API requests answered 5xx. Runbook: infra/README.md#api-5xx"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 1
  evaluation_periods  = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * errors / requests, 0)"
    label       = "5xx percent"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "5xx"
      dimensions  = { ApiId = aws_apigatewayv2_api.http.id, Stage = "$default" }
      stat        = "Sum"
      period      = 60
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "Count"
      dimensions  = { ApiId = aws_apigatewayv2_api.http.id, Stage = "$default" }
      stat        = "Sum"
      period      = 60
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "scheduler_dlq_not_empty" {
  alarm_name          = "${aws_sqs_queue.scheduler_dlq.name}-not-empty"
  alarm_description   = "A scheduled batch invocation failed after its retries. Runbook: infra/README.md#function-errors"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.scheduler_dlq.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}
