# Vendor webhook secrets. Terraform creates the secret but never its value, so no secret reaches the
# state: set it out of band (shape documented in README.md and shared/src/secrets/mod.rs):
#   aws secretsmanager put-secret-value --secret-id <arn> --secret-string file://secrets.json
# Rotation: put [new, old] for a key, switch the vendor, then remove the old value.
resource "aws_secretsmanager_secret" "vendor_webhooks" {
  #checkov:skip=CKV2_AWS_57:Vendor webhook secrets are issued by the vendors' consoles; automatic rotation by a Lambda cannot change them, rotation is the documented manual [new, old] procedure.
  name                    = "${local.prefix}/vendor-webhooks"
  description             = "POS vendor webhook signing secrets (JSON)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

# Key that signs the query API's pagination cursors. Every instance must share it (a cursor from one
# page is decoded by whichever instance serves the next), so it is a secret, set out of band:
#   aws secretsmanager put-secret-value --secret-id <arn> --secret-string "$(openssl rand -base64 48)"
# Changing it only invalidates cursors in flight (clients restart their listing).
resource "aws_secretsmanager_secret" "query_cursor_key" {
  #checkov:skip=CKV2_AWS_57:Rotating the cursor key only invalidates open pagination cursors; it is rotated by putting a new random value (infra/README.md), no rotation Lambda needed.
  name                    = "${local.prefix}/query-cursor-key"
  description             = "HMAC key of the query API's pagination cursors (32+ bytes)"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 7
}
