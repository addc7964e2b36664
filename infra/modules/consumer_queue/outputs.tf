output "queue_arn" {
  description = "Queue ARN (event source mapping)."
  value       = aws_sqs_queue.this.arn
}

output "queue_name" {
  description = "Queue name."
  value       = aws_sqs_queue.this.name
}

output "dlq_arn" {
  description = "Dead-letter queue ARN."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_name" {
  description = "Dead-letter queue name."
  value       = aws_sqs_queue.dlq.name
}

output "target_dlq_name" {
  description = "Queue of the events EventBridge could not deliver to the queue."
  value       = aws_sqs_queue.target_dlq.name
}

output "target_dlq_arn" {
  description = "Target DLQ ARN."
  value       = aws_sqs_queue.target_dlq.arn
}

output "queue_url" {
  description = "Queue URL (a delivery function changes its records' visibility)."
  value       = aws_sqs_queue.this.url
}

output "dlq_url" {
  description = "Dead-letter queue URL (a delivery function sends what it gives up on)."
  value       = aws_sqs_queue.dlq.url
}
