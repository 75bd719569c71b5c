# One role per function, allowed exactly what its code calls, on exactly its resources.
#
# | function | events table | orders table | state table | queue |
# | --- | --- | --- | --- | --- |
# | create-order | read, append | — | — | — |
# | get-order | read | read | — | — |
# | relay | read, stream | — | checkpoints | send |
# | process-order | read, append | write, read | checkpoints, ledger | receive, delete |
#
# An append is one TransactWriteItems of Puts and a ConditionCheck on the events table.
data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each           = local.functions
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

locals {
  read_events   = ["dynamodb:GetItem", "dynamodb:Query"]
  append_events = ["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]
  statements = {
    "create-order" = [
      { actions = concat(local.read_events, local.append_events), resources = [aws_dynamodb_table.events.arn] },
    ]
    "get-order" = [
      { actions = local.read_events, resources = [aws_dynamodb_table.events.arn] },
      { actions = ["dynamodb:GetItem"], resources = [aws_dynamodb_table.orders.arn] },
    ]
    "relay" = [
      { actions = local.read_events, resources = [aws_dynamodb_table.events.arn] },
      {
        actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
        resources = [aws_dynamodb_table.events.stream_arn]
      },
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem"], resources = [aws_dynamodb_table.state.arn] },
      { actions = ["sqs:SendMessage", "sqs:GetQueueAttributes"], resources = [aws_sqs_queue.orders.arn] },
    ]
    "process-order" = [
      { actions = concat(local.read_events, local.append_events), resources = [aws_dynamodb_table.events.arn] },
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem"], resources = [aws_dynamodb_table.orders.arn] },
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], resources = [aws_dynamodb_table.state.arn] },
      {
        actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        resources = [aws_sqs_queue.orders.arn]
      },
    ]
  }
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  dynamic "statement" {
    for_each = local.statements[each.key]
    content {
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
  # The tables, the queue and the environment are encrypted with the one key.
  statement {
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.oxcart.arn]
  }
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }
  # X-Ray's write actions take no resource ARN.
  statement {
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.function[each.key].json
}
