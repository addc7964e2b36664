variable "name" {
  description = "Function name."
  type        = string
}

variable "description" {
  description = "Function description."
  type        = string
}

variable "zip_path" {
  description = "bootstrap.zip built by `cargo lambda build --release --arm64 --output-format zip`."
  type        = string
}

variable "memory_mb" {
  description = "Memory (MB); CPU scales with it."
  type        = number
  default     = 256
}

variable "timeout_seconds" {
  description = "Timeout."
  type        = number
  default     = 10
}

variable "reserved_concurrency" {
  description = "Reserved concurrency protecting a downstream; -1 = unreserved."
  type        = number
  default     = -1
}

variable "environment" {
  description = "Environment variables (the names the code reads; see shared/src/config.rs)."
  type        = map(string)
}

variable "policy_statements" {
  description = "Least-privilege IAM statements for this function only."
  type = list(object({
    sid       = string
    actions   = list(string)
    resources = list(string)
    # DynamoDB: only items whose partition key matches one of these patterns (dynamodb:LeadingKeys).
    leading_keys = optional(list(string))
  }))
}

variable "log_retention_days" {
  description = "Log retention."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key for the log group and the environment variables."
  type        = string
}
