variable "environment" {
  description = "Environment name (dev, staging, prod); prefixes every resource name."
  type        = string
  default     = "dev"
  validation {
    condition     = can(regex("^[a-z0-9-]{2,16}$", var.environment))
    error_message = "environment must be 2-16 lower-case letters, digits or dashes."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "artifacts_dir" {
  description = "Where `cargo lambda build --release --arm64 --output-format zip` wrote <function>/bootstrap.zip."
  type        = string
  default     = "../target/lambda"
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention for functions and API access logs."
  type        = number
  default     = 365
}

variable "lightspeed_currency" {
  description = "ISO 4217 currency of the Lightspeed retailer (its payloads carry none); empty = unset."
  type        = string
  default     = ""
}

variable "lightspeed_registers" {
  description = "Lightspeed register id -> outlet id (the store a sale is booked to); unmapped registers are stores of their own, lightspeed-register:{id}."
  type        = map(string)
  default     = {}
}

variable "max_body_bytes" {
  description = "Largest webhook body sale-capture accepts (413 above); at most 1 MiB, what one capture write holds with the claim check."
  type        = number
  default     = 262144

  validation {
    condition     = var.max_body_bytes >= 1024 && var.max_body_bytes <= 1048576
    error_message = "max_body_bytes must be between 1024 and 1048576 (shared/src/store/claim.rs)."
  }
}

variable "delivery_ttl_hours" {
  description = "How long a vendor delivery id deduplicates (>= 72, Square's retry window)."
  type        = number
  default     = 168
}

variable "secrets_ttl_seconds" {
  description = "How long sale-capture trusts a fetched copy of the vendor secrets."
  type        = number
  default     = 300
}

variable "webhook_throttle_rate" {
  description = "Steady-state requests per second allowed on the HTTP API."
  type        = number
  default     = 200
}

variable "webhook_throttle_burst" {
  description = "Burst allowed on the HTTP API."
  type        = number
  default     = 400
}

variable "low_stock_threshold" {
  description = "stock-sync publishes StockLow when a SKU's on-hand falls to or below this."
  type        = number
  default     = 5
}

variable "loyalty_rules_json" {
  description = "Loyalty rules document (shared/src/loyalty/rules.rs); empty = the built-in rules. Validated at cold start."
  type        = string
  default     = ""
}

variable "alarm_email" {
  description = "Address subscribed to the alarm topic (confirm the subscription email); empty = none."
  type        = string
  default     = ""
}

variable "jwt_issuer" {
  description = "OAuth2 / OIDC issuer of the read APIs' access tokens (the `iss` claim), e.g. https://cognito-idp.<region>.amazonaws.com/<pool-id>."
  type        = string

  validation {
    condition     = startswith(var.jwt_issuer, "https://")
    error_message = "jwt_issuer must be an https:// URL."
  }
}

variable "jwt_audience" {
  description = "Audience (`aud`) the read APIs' tokens must carry."
  type        = string
  default     = "pos-platform"
}

variable "jwks_url" {
  description = "The issuer's JWKS; empty = {jwt_issuer}/.well-known/jwks.json (Cognito, Auth0, Keycloak)."
  type        = string
  default     = ""
}

variable "jwks_max_stale_hours" {
  description = "How long after its last successful JWKS fetch the query API still trusts cached keys while the issuer is unreachable (1 to 168)."
  type        = number
  default     = 24
  validation {
    condition     = var.jwks_max_stale_hours >= 1 && var.jwks_max_stale_hours <= 168
    error_message = "jwks_max_stale_hours must be between 1 and 168."
  }
}

variable "graphql_max_depth" {
  description = "Deepest GraphQL selection the query API accepts."
  type        = number
  default     = 8
}

variable "graphql_max_complexity" {
  description = "Costliest GraphQL query the query API accepts (a page costs its size times its items)."
  type        = number
  default     = 2000
}

variable "graphql_introspection" {
  description = "Serve GraphQL introspection (off in production)."
  type        = bool
  default     = false
}

variable "query_api_reserved_concurrency" {
  description = "Concurrency reserved for (and capping) query-api, so reads cannot starve capture of account concurrency nor flood the tables."
  type        = number
  default     = 50
}

variable "commercetools_project_key" {
  description = "commercetools project key (CTP_PROJECT_KEY)."
  type        = string
  default     = "pos-platform"
}

variable "commercetools_client_id" {
  description = "commercetools API client id (CTP_CLIENT_ID); its secret is set in the commercetools-client secret."
  type        = string
  default     = "set-me"
}

variable "commercetools_auth_url" {
  description = "commercetools auth URL of the project's region (CTP_AUTH_URL)."
  type        = string
  default     = "https://auth.europe-west1.gcp.commercetools.com"
}

variable "commercetools_api_url" {
  description = "commercetools API URL of the project's region (CTP_API_URL)."
  type        = string
  default     = "https://api.europe-west1.gcp.commercetools.com"
}

variable "commercetools_scopes" {
  description = "Scopes the API client asks for (CTP_SCOPES), space-separated: orders, inventory (products), types (the marker type, created once) and channels when the function creates the stores' supply channels (https://docs.commercetools.com/api/scopes)."
  type        = string
  default     = "manage_orders:pos-platform manage_products:pos-platform manage_types:pos-platform"
}

variable "commercetools_max_concurrency" {
  description = "Most concurrent commercetools-sync invocations (the event source mapping's maximum concurrency, 2-1000)."
  type        = number
  default     = 5
  validation {
    condition     = var.commercetools_max_concurrency >= 2 && var.commercetools_max_concurrency <= 1000
    error_message = "commercetools_max_concurrency must be between 2 and 1000."
  }
}

variable "commercetools_rate_limit" {
  description = "Calls per second to commercetools from one commercetools-sync instance."
  type        = number
  default     = 20
}

variable "commercetools_max_receives" {
  description = "Receives of a commercetools-sync record before it is given up into the DLQ."
  type        = number
  default     = 30
}

# Dynamics 365

variable "dynamics_tenant_id" {
  description = "Entra ID tenant of the Dynamics 365 environment (D365_TENANT_ID): a GUID or domain."
  type        = string
  default     = "contoso.onmicrosoft.com"
}

variable "dynamics_client_id" {
  description = "Entra ID app registration (client) id of dynamics-sync (D365_CLIENT_ID)."
  type        = string
  default     = "pos-platform"
}

variable "dynamics_environment_url" {
  description = "Dynamics 365 F&O environment URL (D365_ENVIRONMENT_URL), no trailing slash."
  type        = string
  default     = "https://contoso.operations.dynamics.com"
}

variable "dynamics_legal_entity" {
  description = "Legal entity (dataAreaId) orders and journals are created in (D365_LEGAL_ENTITY)."
  type        = string
  default     = "usmf"
}

variable "dynamics_customer_account" {
  description = "Default retail customer account orders are booked to (D365_CUSTOMER_ACCOUNT)."
  type        = string
  default     = "US-RETAIL"
}

variable "dynamics_warehouses" {
  description = "Store to warehouse map as store=warehouse pairs separated by commas (D365_WAREHOUSES); a store not listed uses its own id."
  type        = string
  default     = ""
}

variable "dynamics_movement_journal" {
  description = "Journal name of the inventory movement journals (D365_MOVEMENT_JOURNAL)."
  type        = string
  default     = "IMov"
}

variable "dynamics_counting_journal" {
  description = "Journal name of the counting journals (D365_COUNTING_JOURNAL)."
  type        = string
  default     = "ICnt"
}

variable "dynamics_max_concurrency" {
  description = "Most concurrent dynamics-sync invocations (the event source mapping's maximum concurrency, 2-1000)."
  type        = number
  default     = 2
  validation {
    condition     = var.dynamics_max_concurrency >= 2 && var.dynamics_max_concurrency <= 1000
    error_message = "dynamics_max_concurrency must be between 2 and 1000."
  }
}

variable "dynamics_rate_limit" {
  description = "Calls per second to Dynamics 365 from one dynamics-sync instance (D365_RATE_LIMIT)."
  type        = number
  default     = 10
}

variable "dynamics_max_receives" {
  description = "Receives of a dynamics-sync record before it is given up into the DLQ."
  type        = number
  default     = 30
}

# Webhooks

variable "webhooks_max_concurrency" {
  description = "Most concurrent webhooks-sync invocations (the event source mapping's maximum concurrency, 2-1000)."
  type        = number
  default     = 5
  validation {
    condition     = var.webhooks_max_concurrency >= 2 && var.webhooks_max_concurrency <= 1000
    error_message = "webhooks_max_concurrency must be between 2 and 1000."
  }
}

variable "webhooks_rate_limit" {
  description = "Calls per second to webhook receivers from one webhooks-sync instance (WEBHOOKS_RATE_LIMIT)."
  type        = number
  default     = 20
}

variable "webhooks_max_receives" {
  description = "Receives of a webhooks-sync record before it is given up into the DLQ (above the schedule's 8 attempts: receives while a breaker is open count too)."
  type        = number
  default     = 100
}

variable "webhooks_disable_after_hours" {
  description = "Hours an endpoint may fail without a success before it is disabled (WEBHOOKS_DISABLE_AFTER_HOURS; the spec suggests 5 days)."
  type        = number
  default     = 120
  validation {
    condition     = var.webhooks_disable_after_hours >= 1
    error_message = "webhooks_disable_after_hours must be at least 1."
  }
}
