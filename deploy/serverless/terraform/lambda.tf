# The four functions, one binary each from crates/lambda (cargo lambda, arm64), on the
# OS-only runtime. Timeouts: an API function answers inside API Gateway's 30 s and its own
# request budget (OXCART_HTTP__REQUEST_TIMEOUT, a second less); the worker's bounds the queue's
# visibility timeout (six times it).
locals {
  functions = {
    "create-order"  = { memory = 256, timeout = 10, description = "POST /api/orders" }
    "get-order"     = { memory = 256, timeout = 10, description = "GET /api/orders/{id}" }
    "relay"         = { memory = 256, timeout = 60, description = "The events table's stream to the order queue" }
    "process-order" = { memory = 512, timeout = 30, description = "The order queue: projection, payment, saga" }
  }
  api_functions = toset(["create-order", "get-order"])

  tables = {
    EVENTS_TABLE = aws_dynamodb_table.events.name
    STATE_TABLE  = aws_dynamodb_table.state.name
    ORDERS_TABLE = aws_dynamodb_table.orders.name
  }
  environment = {
    "create-order" = merge(local.tables, {
      OXCART_ORDERS__CATALOG_URL = var.catalog_url
      OXCART_JWT_PUBLIC_KEY      = var.jwt_public_key
      }, var.catalog_ca_file == null ? {} : {
      CATALOG_CA_FILE = var.catalog_ca_file
    })
    "get-order" = merge(local.tables, {
      OXCART_JWT_PUBLIC_KEY = var.jwt_public_key
    })
    "relay" = merge(local.tables, {
      ORDER_QUEUE_URL = aws_sqs_queue.orders.url
    })
    "process-order" = merge(local.tables, {
      OXCART_PAYMENTS__SLOW_DELAY = "${var.payment_slow_delay_ms}ms"
    })
  }
}

resource "aws_cloudwatch_log_group" "function" {
  for_each          = local.functions
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.oxcart.arn
}

resource "aws_lambda_function" "function" {
  #checkov:skip=CKV_AWS_117:The functions reach only DynamoDB, SQS and the public catalog endpoint; a VPC would add NAT gateways and endpoints for no isolation gained.
  #checkov:skip=CKV_AWS_272:cargo-lambda builds the zip in CI and Terraform uploads it; signing needs an AWS Signer job in that path, which the release pipeline does not have yet.
  #checkov:skip=CKV_AWS_116:None of these functions is invoked asynchronously: API Gateway and the event source mappings invoke synchronously, and the queue has its own dead-letter queue.
  for_each      = local.functions
  function_name = "${var.name}-${each.key}"
  description   = each.value.description
  role          = aws_iam_role.function[each.key].arn

  filename         = "${var.artifacts_dir}/${each.key}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.artifacts_dir}/${each.key}/bootstrap.zip")
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = each.value.memory
  timeout          = each.value.timeout
  publish          = true

  # The relay must run alone: two at once would race for the checkpoint (harmless, as
  # the queue de-duplicates, but wasted).
  reserved_concurrent_executions = each.key == "relay" ? 1 : var.reserved_concurrency

  kms_key_arn = aws_kms_key.oxcart.arn
  environment {
    variables = merge(local.environment[each.key], {
      OXCART_HTTP__REQUEST_TIMEOUT = "${each.value.timeout - 1}s"
      RUST_LOG                     = "info"
    })
  }
  tracing_config {
    mode = "Active"
  }
  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }
}

# API functions are invoked through an alias, so provisioned concurrency (when asked for)
# keeps the published version warm.
resource "aws_lambda_alias" "live" {
  for_each         = local.api_functions
  name             = "live"
  function_name    = aws_lambda_function.function[each.key].function_name
  function_version = aws_lambda_function.function[each.key].version
}

resource "aws_lambda_provisioned_concurrency_config" "api" {
  for_each                          = var.provisioned_concurrency > 0 ? local.api_functions : toset([])
  function_name                     = aws_lambda_function.function[each.key].function_name
  qualifier                         = aws_lambda_alias.live[each.key].name
  provisioned_concurrent_executions = var.provisioned_concurrency
}

# The relay wakes on any write to the events table. Records are only a doorbell, so a
# batch of up to 100 (or whatever arrived in a second) is one catch-up of the log.
resource "aws_lambda_event_source_mapping" "relay" {
  event_source_arn                   = aws_dynamodb_table.events.stream_arn
  function_name                      = aws_lambda_function.function["relay"].arn
  starting_position                  = "LATEST"
  batch_size                         = 100
  maximum_batching_window_in_seconds = 1
  maximum_retry_attempts             = -1
  filter_criteria {
    filter {
      pattern = jsonencode({ dynamodb = { Keys = { pk = { S = ["log"] } } } })
    }
  }
}

# The worker: batches of up to ten, answering with the messages that failed.
resource "aws_lambda_event_source_mapping" "process_order" {
  event_source_arn        = aws_sqs_queue.orders.arn
  function_name           = aws_lambda_function.function["process-order"].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]
}
