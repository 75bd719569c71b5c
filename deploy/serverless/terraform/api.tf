# The HTTP API: two routes, each to its function's `live` alias (payload format 2.0, which
# lambda_http reads). Tokens are verified in the functions, as in the server: they are
# EdDSA (Ed25519) JWTs, which API Gateway's JWT authorizers do not accept.
resource "aws_apigatewayv2_api" "orders" {
  name          = "${var.name}-orders"
  protocol_type = "HTTP"
  description   = "oxcart orders: POST /api/orders, GET /api/orders/{id}"
}

resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/apigateway/${var.name}-orders"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.oxcart.arn
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.orders.id
  name        = "$default"
  auto_deploy = true
  default_route_settings {
    throttling_burst_limit = 200
    throttling_rate_limit  = 100
  }
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    format = jsonencode({
      requestId      = "$context.requestId"
      routeKey       = "$context.routeKey"
      status         = "$context.status"
      latency        = "$context.integrationLatency"
      sourceIp       = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      integrationErr = "$context.integrationErrorMessage"
    })
  }
}

locals {
  routes = {
    "create-order" = "POST /api/orders"
    "get-order"    = "GET /api/orders/{id}"
  }
}

resource "aws_apigatewayv2_integration" "function" {
  for_each               = local.routes
  api_id                 = aws_apigatewayv2_api.orders.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_alias.live[each.key].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = (local.functions[each.key].timeout + 1) * 1000
}

resource "aws_apigatewayv2_route" "function" {
  #checkov:skip=CKV_AWS_309:The functions verify the bearer token themselves (EdDSA, which API Gateway's JWT authorizers cannot check) and answer 401 without one.
  for_each  = local.routes
  api_id    = aws_apigatewayv2_api.orders.id
  route_key = each.value
  target    = "integrations/${aws_apigatewayv2_integration.function[each.key].id}"
}

resource "aws_lambda_permission" "api" {
  for_each      = local.routes
  statement_id  = "api-gateway"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  qualifier     = aws_lambda_alias.live[each.key].name
  principal     = "apigateway.amazonaws.com"
  # Any stage, this route's method, its path (with or without the `{id}`).
  source_arn = "${aws_apigatewayv2_api.orders.execution_arn}/*/${split(" ", each.value)[0]}/api/orders*"
}
