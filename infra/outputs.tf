output "api_url" {
  description = "Base URL of the HTTP API."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "webhook_url_pattern" {
  description = "Point each vendor's webhook here (vendor = shopify | square | lightspeed | standard)."
  value       = "${trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")}/webhooks/{vendor}"
}

output "capture_table_name" {
  description = "DynamoDB capture table."
  value       = aws_dynamodb_table.capture.name
}

output "event_bus_name" {
  description = "EventBridge bus of the domain events."
  value       = aws_cloudwatch_event_bus.pos.name
}

output "vendor_secret_arn" {
  description = "Secrets Manager secret to fill with the vendor secrets JSON."
  value       = aws_secretsmanager_secret.vendor_webhooks.arn
}

output "sale_capture_function_name" {
  description = "sale-capture Lambda name."
  value       = module.sale_capture.function_name
}

output "stock_sync_queue" {
  description = "stock-sync queue and its DLQ."
  value       = { queue = module.stock_sync_queue.queue_name, dlq = module.stock_sync_queue.dlq_name }
}

output "loyalty_accrual_queue" {
  description = "loyalty-accrual queue and its DLQ."
  value       = { queue = module.loyalty_accrual_queue.queue_name, dlq = module.loyalty_accrual_queue.dlq_name }
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "read_api_base_url" {
  description = "REST read API (GET {base}/v1/..., OpenAPI at {base}/v1/openapi.json) and GraphQL ({base}/graphql)."
  value       = trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")
}

output "query_cursor_secret_arn" {
  description = "Secrets Manager secret to fill with the cursor signing key (32+ random bytes)."
  value       = aws_secretsmanager_secret.query_cursor_key.arn
}

output "query_api_function_name" {
  description = "query-api Lambda name."
  value       = module.query_api.function_name
}

output "commercetools_client_secret_arn" {
  description = "Secret holding commercetools-sync's API client secret (set out of band)."
  value       = aws_secretsmanager_secret.commercetools_client.arn
}

output "commercetools_sync_queue" {
  description = "commercetools-sync queue and its DLQ."
  value       = { queue = module.commercetools_sync_queue.queue_name, dlq = module.commercetools_sync_queue.dlq_name }
}
