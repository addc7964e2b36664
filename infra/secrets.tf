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
