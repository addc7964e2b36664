variable "name" {
  description = "Queue name (the DLQ is <name>-dlq)."
  type        = string
}

variable "bus_name" {
  description = "EventBridge bus the rule listens on."
  type        = string
}

variable "event_pattern" {
  description = "Event pattern (JSON) routing events from the bus to the queue."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting both queues."
  type        = string
}

variable "visibility_timeout_seconds" {
  description = "At least 6x the consumer's timeout (AWS guidance for event source mappings)."
  type        = number
  default     = 60
}

variable "max_receive_count" {
  description = "Receives before a message moves to the DLQ."
  type        = number
  default     = 5
}
