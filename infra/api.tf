# HTTP API. Webhook routes have no authorizer on purpose: vendors cannot send our tokens; every
# delivery is authenticated by its vendor signature inside sale-capture (401 otherwise).
resource "aws_apigatewayv2_api" "http" {
  name          = "${local.prefix}-api"
  protocol_type = "HTTP"
  description   = "POS platform: vendor webhooks (and, later, read APIs behind a JWT authorizer)"
}

resource "aws_apigatewayv2_integration" "sale_capture" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_uri        = module.sale_capture.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 10000
}

resource "aws_apigatewayv2_route" "webhooks" {
  #checkov:skip=CKV_AWS_309:Vendor webhooks cannot carry our credentials; each delivery is verified by its vendor HMAC signature in the function.
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = "POST /webhooks/{vendor}"
  target             = "integrations/${aws_apigatewayv2_integration.sale_capture.id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${local.prefix}-api"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.webhook_throttle_rate
    throttling_burst_limit = var.webhook_throttle_burst
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      latencyMs          = "$context.responseLatency"
      integrationStatus  = "$context.integrationStatus"
      integrationError   = "$context.integrationErrorMessage"
      sourceIp           = "$context.identity.sourceIp"
      requestTimeEpochMs = "$context.requestTimeEpoch"
    })
  }
}

resource "aws_lambda_permission" "api_invokes_sale_capture" {
  statement_id  = "AllowApiGatewayInvoke"
  action        = "lambda:InvokeFunction"
  function_name = module.sale_capture.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*/webhooks/*"
}
