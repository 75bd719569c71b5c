output "api_url" {
  description = "The order API's base URL."
  value       = aws_apigatewayv2_api.orders.api_endpoint
}

output "queue_url" {
  value = aws_sqs_queue.orders.url
}

output "dead_letter_queue_url" {
  value = aws_sqs_queue.orders_dlq.url
}

output "tables" {
  value = local.tables
}
