# The event store: `$head` (the log's last position), `stream#<id>` items (one per event
# version) and `log` items (one per append, keyed by its last position). Its stream is the
# relay's doorbell (NEW_IMAGE: the relay reads the log itself, from its checkpoint).
resource "aws_dynamodb_table" "events" {
  name             = "${var.name}-events"
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = "pk"
  range_key        = "sk"
  stream_enabled   = true
  stream_view_type = "NEW_IMAGE"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "N"
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.oxcart.arn
  }
  deletion_protection_enabled = true
}

# Checkpoints, dead letters and the simulated provider's books.
resource "aws_dynamodb_table" "state" {
  name         = "${var.name}-state"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.oxcart.arn
  }
  deletion_protection_enabled = true
}

# The order read model, written only by its projection; a customer's orders newest first
# through `by-customer`.
resource "aws_dynamodb_table" "orders" {
  name         = "${var.name}-orders"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "orderId"

  attribute {
    name = "orderId"
    type = "S"
  }
  attribute {
    name = "customerId"
    type = "S"
  }
  attribute {
    name = "createdAt"
    type = "S"
  }
  global_secondary_index {
    name            = "by-customer"
    hash_key        = "customerId"
    range_key       = "createdAt"
    projection_type = "ALL"
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.oxcart.arn
  }
  # A projection: it can be rebuilt from the events table.
  deletion_protection_enabled = false
}
