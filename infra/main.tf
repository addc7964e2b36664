# Root module: the sale-capture slice of the platform (table, bus, secret, function, HTTP API).
# Names the code reads come from here only; tests/ parses these files so code and infra cannot drift.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  prefix     = "pos-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

# One customer-managed key for data at rest: the tables, the secrets, the log groups, the queues and
# the alarm topic. Every AWS service that writes to one of them must be allowed here (tests/ checks it).
resource "aws_kms_key" "data" {
  description             = "${local.prefix} data at rest (DynamoDB, Secrets Manager, CloudWatch Logs, SQS, SNS)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:A key policy's "*" resource means this key only; account administration of the key is required by KMS.
  #checkov:skip=CKV_AWS_356:A key policy's "*" resource means this key only.
  #checkov:skip=CKV_AWS_109:Key administration by the account root is the KMS-recommended default; IAM policies scope it further.
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:*"]
    }
  }
  # EventBridge delivering to the encrypted consumer queues: SQS encrypts with the sender's key rights,
  # so without this every event is dropped after its retries. Scoped by the queue ARN SQS puts in the
  # encryption context of every call, not by aws:SourceArn/SourceAccount: AWS documents those as
  # unsupported in key policies for EventBridge deliveries (to SNS), and a condition the request
  # never carries would drop every event again.
  statement {
    sid       = "EventBridgeDeliversToQueues"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:sqs:arn"
      values   = ["arn:${local.partition}:sqs:${var.region}:${local.account_id}:${local.prefix}-*"]
    }
  }
  # CloudWatch alarm actions publishing to the encrypted alarm topic (monitoring.tf); only alarms of
  # this account.
  statement {
    sid       = "CloudWatchAlarmsNotify"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}:alarm:*"]
    }
  }
}
