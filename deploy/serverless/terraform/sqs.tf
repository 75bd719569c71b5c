# The order queue: FIFO, one message group per aggregate (an order's events in order,
# different orders in parallel), de-duplicated by event id. A message is received at most
# five times, then parked in the dead-letter queue.
#
# The visibility timeout is six times the worker's timeout, as AWS advises for an event
# source mapping: a batch that is retried inside one invocation never reappears to another.
resource "aws_sqs_queue" "orders_dlq" {
  name                        = "${var.name}-process-order-dlq.fifo"
  fifo_queue                  = true
  content_based_deduplication = false
  message_retention_seconds   = 1209600
  kms_master_key_id           = aws_kms_key.oxcart.arn
}

resource "aws_sqs_queue" "orders" {
  name                        = "${var.name}-process-order.fifo"
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"
  visibility_timeout_seconds  = 6 * local.functions["process-order"].timeout
  message_retention_seconds   = 345600
  kms_master_key_id           = aws_kms_key.oxcart.arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.orders_dlq.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "orders_dlq" {
  queue_url = aws_sqs_queue.orders_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.orders.arn]
  })
}
