# HTTP API. Webhook routes have no authorizer on purpose: vendors cannot send our tokens; every
# delivery is authenticated by its vendor signature inside sale-capture (401 otherwise). The read API
# (/v1, /graphql) sits behind a JWT authorizer, and query-api validates the token again (scopes too).
resource "aws_apigatewayv2_api" "http" {
  name          = "${local.prefix}-api"
  protocol_type = "HTTP"
  description   = "POS platform: vendor webhooks and the read APIs behind a JWT authorizer"
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

# --- Read API: query-api behind the JWT authorizer -------------------------------------------------

resource "aws_apigatewayv2_authorizer" "jwt" {
  api_id           = aws_apigatewayv2_api.http.id
  name             = "${local.prefix}-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = [var.jwt_audience]
  }
}

resource "aws_apigatewayv2_integration" "query_api" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_uri        = module.query_api.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 10000
}

# Scopes differ per path and per GraphQL field, so the authorizer checks the token and query-api the
# scopes (403 with the scope it lacks).
resource "aws_apigatewayv2_route" "read_api" {
  for_each           = toset(["GET /v1/{proxy+}", "POST /graphql"])
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.query_api.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

# Liveness and the OpenAPI document are public (more specific routes win over /v1/{proxy+}).
resource "aws_apigatewayv2_route" "read_api_public" {
  #checkov:skip=CKV_AWS_309:Liveness and the public OpenAPI document carry no data; every data route is behind the JWT authorizer.
  for_each           = toset(["GET /v1/health", "GET /v1/openapi.json"])
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.query_api.id}"
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "api_invokes_query_api" {
  for_each      = { v1 = "/*/*/v1/*", graphql = "/*/*/graphql" }
  statement_id  = "AllowApiGatewayInvoke-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = module.query_api.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}${each.value}"
}
