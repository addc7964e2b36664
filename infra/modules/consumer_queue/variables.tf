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

variable "alarm_topic_arn" {
  description = "SNS topic the target DLQ alarm notifies."
  type        = string
}

# EventBridge's maxima (and defaults), made explicit: failures sending to our own queue are transient
# (throttling) and worth every retry; permission and KMS errors skip the retries and go to the DLQ.
variable "target_max_event_age_seconds" {
  description = "How long EventBridge retries delivering an event to the queue before its DLQ (60-86400)."
  type        = number
  default     = 86400
}

variable "target_max_retry_attempts" {
  description = "Delivery retries before the DLQ (0-185)."
  type        = number
  default     = 185
}
