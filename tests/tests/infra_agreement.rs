//! Code and `infra/` must agree: the table keys and indexes the DynamoDB adapter writes, and the
//! environment each function reads. And `infra/` must agree with itself where `terraform validate`
//! cannot see it: every AWS service writing to a KMS-encrypted resource may use the key, and every
//! EventBridge rule target keeps what it cannot deliver (retry policy, alarmed DLQ).

use pos_shared::store::dynamodb::{GSI_OUTBOX_PENDING, GSI_STORE, PK, SK};
use pos_tests::infra;

#[test]
fn capture_table_keys_and_indexes_match_the_adapter() {
    let t = infra::table("capture");
    assert_eq!(t.hash_key, PK);
    assert_eq!(t.range_key.as_deref(), Some(SK));
    assert_eq!(
        t.ttl_attribute.as_deref(),
        Some("expires_at"),
        "delivery records carry expires_at"
    );
    let gsi = |name: &str| {
        t.gsis
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("GSI {name} missing in infra/"))
    };
    let store = gsi(GSI_STORE);
    assert_eq!(
        (store.hash_key.as_str(), store.range_key.as_deref()),
        ("gsi1pk", Some("gsi1sk"))
    );
    let pending = gsi(GSI_OUTBOX_PENDING);
    assert_eq!(
        (pending.hash_key.as_str(), pending.range_key.as_deref()),
        ("outbox_pending", Some("pending_since"))
    );
    for key in [
        PK,
        SK,
        "gsi1pk",
        "gsi1sk",
        "outbox_pending",
        "pending_since",
    ] {
        assert!(
            t.attributes.iter().any(|(n, ty)| n == key && ty == "S"),
            "attribute {key} (S) declared"
        );
    }
}

/// Every variable a config source reads, found in its source (so a new variable cannot be forgotten).
fn variables_read_by(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    for call in [
        "var(\"",
        "required(\"",
        "number(\"",
        "positive(\"",
        "flag(\"",
    ] {
        for part in src.split(call).skip(1) {
            if let Some(name) = part.split('"').next()
                && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && !name.is_empty()
            {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn check_environment(module: &str, config_source: &str, must_read: &[&str]) {
    let read = variables_read_by(config_source);
    for name in must_read {
        assert!(
            read.iter().any(|r| r == name),
            "the scan of {module}'s config found {read:?}"
        );
    }
    let set = infra::module_environment_keys(module);
    // Only the embedded (local) backend reads these; the deployed function runs the AWS backend.
    // STANDARD_WEBHOOKS_REPLAY_AT is refused at cold start with the AWS backend: infra must not set it.
    let local_only = [
        "POS_DATA_DIR",
        "POS_SECRETS_FILE",
        "JWKS_FILE",
        "STANDARD_WEBHOOKS_REPLAY_AT",
        "CTP_CLIENT_SECRET",
        "D365_CLIENT_SECRET",
    ];
    for name in read.iter().filter(|n| !local_only.contains(&n.as_str())) {
        assert!(
            set.contains(name),
            "infra/ does not set {name} for {module} (sets {set:?})"
        );
    }
    for name in &set {
        assert!(
            read.contains(name) || name == "RUST_LOG",
            "infra/ sets {name} for {module}, which the code never reads"
        );
    }
}

#[test]
fn sale_capture_environment_covers_what_the_code_reads() {
    check_environment(
        "sale_capture",
        include_str!("../../shared/src/config.rs"),
        &["TABLE_NAME", "SECRET_ID"],
    );
}

#[test]
fn stock_sync_environment_covers_what_the_code_reads() {
    check_environment(
        "stock_sync",
        include_str!("../../shared/src/stock/config.rs"),
        &["STOCK_TABLE_NAME", "TABLE_NAME"],
    );
}

#[test]
fn loyalty_accrual_environment_covers_what_the_code_reads() {
    check_environment(
        "loyalty_accrual",
        include_str!("../../shared/src/loyalty/config.rs"),
        &["LOYALTY_TABLE_NAME", "TABLE_NAME"],
    );
}

#[test]
fn outbox_relay_environment_covers_what_the_code_reads() {
    check_environment(
        "outbox_relay",
        include_str!("../../shared/src/outbox/config.rs"),
        &["RELAY_MIN_AGE_SECONDS"],
    );
}

#[test]
fn query_api_environment_covers_what_the_code_reads() {
    check_environment(
        "query_api",
        include_str!("../../shared/src/api/config.rs"),
        &[
            "TABLE_NAME",
            "STOCK_TABLE_NAME",
            "LOYALTY_TABLE_NAME",
            "DELIVERIES_TABLE",
            "JWT_ISSUER",
            "JWKS_URL",
            "CURSOR_SECRET_ID",
            "GRAPHQL_INTROSPECTION",
        ],
    );
}

#[test]
fn the_outbox_relay_is_scheduled_with_the_input_it_parses() {
    let schedule = infra::resource("aws_scheduler_schedule", "outbox_relay").expect("schedule");
    let target = schedule
        .body()
        .blocks()
        .find(|b| b.identifier() == "target")
        .expect("target")
        .clone();
    let input = infra::attr(&target, "input")
        .and_then(infra::literal_json)
        .expect("literal input");
    let job: pos_shared::outbox::ScheduledJob =
        serde_json::from_value(input).expect("the function parses the input");
    assert_eq!(job.job, "outbox-relay");
    assert!(
        target
            .body()
            .blocks()
            .any(|b| b.identifier() == "dead_letter_config"),
        "failed runs are kept"
    );
}

#[test]
fn loyalty_table_keys_match_the_ledger() {
    let t = infra::table("loyalty");
    assert_eq!(
        (t.hash_key.as_str(), t.range_key.as_deref()),
        ("pk", Some("sk"))
    );
}

#[test]
fn stock_table_keys_match_the_ledger() {
    let t = infra::table("stock");
    assert_eq!(
        (t.hash_key.as_str(), t.range_key.as_deref()),
        ("pk", Some("sk"))
    );
    assert_eq!(
        t.ttl_attribute.as_deref(),
        Some("expires_at"),
        "applied markers expire"
    );
}

#[test]
fn deliveries_table_keys_and_index_match_the_adapter() {
    let t = infra::table("deliveries");
    assert_eq!(
        (t.hash_key.as_str(), t.range_key.as_deref()),
        ("pk", Some("sk"))
    );
    let gsi = t
        .gsis
        .iter()
        .find(|g| g.name == pos_shared::delivery::dynamodb::GSI_SALE)
        .expect("the sale index the ledger queries");
    assert_eq!(
        (gsi.hash_key.as_str(), gsi.range_key.as_deref()),
        ("gsi1pk", Some("gsi1sk"))
    );
    assert_eq!(
        gsi.projection, "ALL",
        "entries are read whole from the index"
    );
}

#[test]
fn every_consumer_queue_has_a_dlq_and_its_mapping_reports_batch_item_failures() {
    let queues = infra::consumer_queues();
    assert!(!queues.is_empty());
    for q in &queues {
        assert!(q.max_receive_count >= 1, "{} redrives to its DLQ", q.module);
        let function = q.module.trim_end_matches("_queue");
        assert!(
            infra::mapping_reports_batch_item_failures(function),
            "{function}'s mapping must report batch item failures"
        );
    }
    let stock = infra::consumer_queue("stock_sync_queue");
    // Every fact stock-sync applies must be routed to it: a StockAdjusted accepted with 202 and never
    // routed would never reach the ledger.
    assert_eq!(
        stock.event_pattern["detail-type"],
        serde_json::json!(["SaleCompleted", "ReturnCompleted", "StockAdjusted"]),
        "stock-sync applies sales, returns and stock adjustments"
    );
    assert_eq!(
        stock.event_pattern["source"],
        serde_json::json!([pos_shared::bus::EVENT_SOURCE])
    );
}

#[test]
fn every_function_crate_has_a_lambda_module_and_vice_versa() {
    let functions_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut crates: Vec<String> = std::fs::read_dir(functions_dir)
        .expect("functions/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().replace('-', "_"))
        .collect();
    crates.sort();
    let mut modules: Vec<String> = infra::blocks("module")
        .iter()
        .filter(|b| {
            infra::string_attr(b, "source").is_some_and(|s| s.ends_with("modules/lambda_function"))
        })
        .filter_map(|b| b.labels().first().map(|l| l.as_str().to_owned()))
        .collect();
    modules.sort();
    assert_eq!(
        crates, modules,
        "functions/ crates and infra/ Lambda modules must match one to one"
    );
}

/// The keys of a `locals { name = { ... } }` map.
fn local_map_keys(name: &str) -> Vec<String> {
    let mut keys: Vec<String> = infra::blocks("locals")
        .iter()
        .filter_map(|b| infra::attr(b, name).cloned())
        .flat_map(|e| match e {
            hcl::Expression::Object(obj) => obj
                .keys()
                .map(|k| k.to_string().trim_matches('"').to_owned())
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn every_function_and_consumer_queue_is_alarmed() {
    let mut functions: Vec<String> = infra::blocks("module")
        .iter()
        .filter(|b| {
            infra::string_attr(b, "source").is_some_and(|s| s.ends_with("modules/lambda_function"))
        })
        .filter_map(|b| b.labels().first().map(|l| l.as_str().to_owned()))
        .collect();
    functions.sort();
    assert_eq!(
        local_map_keys("functions"),
        functions,
        "locals.functions in monitoring.tf drives the error/throttle alarms"
    );
    let mut consumers: Vec<String> = infra::consumer_queues()
        .iter()
        .map(|q| q.module.trim_end_matches("_queue").to_owned())
        .collect();
    consumers.sort();
    assert_eq!(
        local_map_keys("consumer_queues"),
        consumers,
        "locals.consumer_queues drives the DLQ and age alarms"
    );
}

#[test]
fn consumer_queues_are_named_after_their_consumer() {
    for q in infra::blocks("module").iter().filter(|b| {
        infra::string_attr(b, "source").is_some_and(|s| s.ends_with("modules/consumer_queue"))
    }) {
        let module = q
            .labels()
            .first()
            .map(|l| l.as_str().to_owned())
            .unwrap_or_default();
        let consumer = module.trim_end_matches("_queue").replace('_', "-");
        let name = infra::attr(q, "name")
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            name.ends_with(&format!("-{consumer}\"")),
            "module {module} names its queue {name}; expected …-{consumer}"
        );
        let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../functions")
            .join(&consumer);
        assert!(
            crate_dir.join("Cargo.toml").exists(),
            "queue {module} feeds functions/{consumer}, which does not exist"
        );
    }
}

/// The route keys of an `aws_apigatewayv2_route` declared with `for_each = toset([...])`.
fn route_keys(name: &str) -> Vec<String> {
    let block = infra::resource("aws_apigatewayv2_route", name)
        .unwrap_or_else(|| panic!("aws_apigatewayv2_route.{name} in infra/api.tf"));
    let keys = match infra::attr(&block, "for_each") {
        Some(hcl::Expression::FuncCall(call)) if call.name.to_string() == "toset" => call
            .args
            .first()
            .and_then(infra::literal_json)
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok()),
        _ => None,
    };
    keys.unwrap_or_else(|| panic!("{name}: for_each = toset([literal route keys])"))
}

#[test]
fn read_api_routes_are_behind_the_jwt_authorizer_and_cover_the_router() {
    let protected = route_keys("read_api");
    let public = route_keys("read_api_public");
    let auth_of = |name: &str| {
        infra::resource("aws_apigatewayv2_route", name)
            .and_then(|b| infra::string_attr(&b, "authorization_type"))
    };
    assert_eq!(auth_of("read_api").as_deref(), Some("JWT"));
    assert_eq!(auth_of("read_api_public").as_deref(), Some("NONE"));
    assert!(
        protected.contains(&"POST /graphql".to_owned()),
        "{protected:?}"
    );
    let authorizer = infra::resource("aws_apigatewayv2_authorizer", "jwt").expect("authorizer");
    assert_eq!(
        infra::string_attr(&authorizer, "authorizer_type").as_deref(),
        Some("JWT")
    );

    // Every documented path is routed; only paths the document marks unauthenticated are public.
    let doc: serde_json::Value =
        serde_json::from_str(&pos_shared::api::openapi_json()).expect("openapi");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            let key = format!("{} {path}", method.to_uppercase());
            let needs_token = op.get("security").is_some();
            if public.contains(&key) {
                assert!(
                    !needs_token,
                    "{key} needs a token but infra/ makes it public"
                );
                continue;
            }
            let covered = protected.iter().any(|r| {
                r.strip_suffix("{proxy+}")
                    .is_some_and(|prefix| key.starts_with(prefix))
                    || *r == key
            });
            assert!(
                covered,
                "{key} is not routed by infra/ (routes {protected:?} {public:?})"
            );
        }
    }
    // The document does not describe itself; it is public so clients and gateways can fetch it.
    for key in public.iter().filter(|k| *k != "GET /v1/openapi.json") {
        let (method, path) = key.split_once(' ').expect("METHOD /path");
        assert!(
            paths
                .get(path)
                .and_then(|ops| ops.get(method.to_lowercase()))
                .is_some_and(|op| op.get("security").is_none()),
            "{key} is public in infra/ but not an unauthenticated route of the API"
        );
    }
}

// --- Who writes to what, and may it use the key? ----------------------------------------------------
//
// `infra/` is read as a set of Terraform modules (the root and every `modules/*` directory); a
// `var.x` inside a module is resolved through every `module` block that instantiates it, so a rule in
// `modules/consumer_queue` is checked with the key and topic the root passes in.

/// Terraform as modules: directory -> its top-level blocks.
struct Tf {
    root: std::path::PathBuf,
    modules: Vec<(std::path::PathBuf, Vec<hcl::Block>)>,
}

/// A resource or data source inside one module: (`module dir`, `type.name`).
type Addr = (std::path::PathBuf, String);

fn canonical(p: &std::path::Path) -> std::path::PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The raw text of a string or template expression (`"${local.prefix}-x"` -> `${local.prefix}-x`),
/// else the expression as HCL (`aws_sqs_queue.dlq.arn`).
fn raw(expr: &hcl::Expression) -> String {
    match expr {
        hcl::Expression::String(s) => s.clone(),
        hcl::Expression::TemplateExpr(t) => t.to_string(),
        other => other.to_string(),
    }
}

/// The items of a list attribute, or the one expression.
fn items(expr: &hcl::Expression) -> Vec<hcl::Expression> {
    match expr {
        hcl::Expression::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn nested<'a>(block: &'a hcl::Block, kind: &'a str) -> impl Iterator<Item = &'a hcl::Block> + 'a {
    block
        .body()
        .blocks()
        .filter(move |b| b.identifier() == kind)
}

/// `*` matches any run of characters (IAM `StringLike`/`ArnLike` and action wildcards).
fn glob(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            let Some(rest) = value.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// A template with each `${...}` interpolation replaced by `*`.
fn interpolations_as_wildcards(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        out.push('*');
        rest = rest[start..].split_once('}').map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

impl Tf {
    fn load() -> Self {
        let root = canonical(&infra::infra_dir());
        let mut modules: Vec<(std::path::PathBuf, Vec<hcl::Block>)> = Vec::new();
        for (path, body) in infra::parsed() {
            let dir = canonical(path.parent().expect("a .tf file has a directory"));
            let blocks: Vec<hcl::Block> = body.into_blocks().collect();
            match modules.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, existing)) => existing.extend(blocks),
                None => modules.push((dir, blocks)),
            }
        }
        Self { root, modules }
    }

    fn blocks_in(&self, dir: &std::path::Path) -> &[hcl::Block] {
        self.modules
            .iter()
            .find(|(d, _)| d == dir)
            .map_or(&[], |(_, b)| b.as_slice())
    }

    /// Every `resource "ty" "name"` (or `data`, with `kind`) across all modules.
    fn all(&self, kind: &str, ty: &str) -> Vec<(std::path::PathBuf, hcl::Block)> {
        self.modules
            .iter()
            .flat_map(|(dir, blocks)| {
                blocks
                    .iter()
                    .filter(|b| {
                        b.identifier() == kind
                            && b.labels().first().is_some_and(|l| l.as_str() == ty)
                    })
                    .map(|b| (dir.clone(), b.clone()))
            })
            .collect()
    }

    /// The block behind `type.name` (resources) or `data.type.name` in `dir`.
    fn block(&self, dir: &std::path::Path, address: &str) -> Option<hcl::Block> {
        let (kind, rest) = match address.strip_prefix("data.") {
            Some(rest) => ("data", rest),
            None => ("resource", address),
        };
        let (ty, name) = rest.split_once('.')?;
        self.blocks_in(dir)
            .iter()
            .find(|b| {
                let l = b.labels();
                b.identifier() == kind
                    && l.len() == 2
                    && l[0].as_str() == ty
                    && l[1].as_str() == name
            })
            .cloned()
    }

    fn label(block: &hcl::Block) -> String {
        block
            .labels()
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }

    /// What an expression in `dir` stands for: `var.x` is followed through every instantiation of
    /// the module (one result per caller); anything else is itself.
    fn resolve(
        &self,
        dir: &std::path::Path,
        expr: &hcl::Expression,
    ) -> Vec<(std::path::PathBuf, hcl::Expression)> {
        let text = raw(expr);
        let Some(var) = text.strip_prefix("var.") else {
            return vec![(dir.to_path_buf(), expr.clone())];
        };
        if dir == self.root {
            return vec![(dir.to_path_buf(), expr.clone())];
        }
        let mut out = Vec::new();
        for (caller, blocks) in &self.modules {
            for m in blocks.iter().filter(|b| b.identifier() == "module") {
                let Some(source) = infra::string_attr(m, "source") else {
                    continue;
                };
                if std::fs::canonicalize(caller.join(&source)).ok().as_deref() != Some(dir) {
                    continue;
                }
                match infra::attr(m, var) {
                    Some(value) => out.extend(self.resolve(caller, value)),
                    // Not passed: the variable's default, in the module itself.
                    None => out.extend(
                        self.blocks_in(dir)
                            .iter()
                            .filter(|b| {
                                b.identifier() == "variable"
                                    && b.labels().first().is_some_and(|l| l.as_str() == var)
                            })
                            .filter_map(|b| infra::attr(b, "default"))
                            .map(|d| (dir.to_path_buf(), d.clone())),
                    ),
                }
            }
        }
        out
    }

    /// The resource an `x.y.arn` / `.id` / `.name` reference points to, resolved across modules.
    fn referenced(&self, dir: &std::path::Path, expr: &hcl::Expression) -> Vec<Addr> {
        self.resolve(dir, expr)
            .into_iter()
            .filter_map(|(d, e)| {
                let text = raw(&e);
                let parts: Vec<&str> = text.split('.').collect();
                (parts.len() == 3 && !text.contains(['$', ' ', '"', '(']))
                    .then(|| (d, format!("{}.{}", parts[0], parts[1])))
            })
            .collect()
    }

    /// The KMS key (`aws_kms_key.x`) encrypting a resource, if any.
    fn encryption_key(&self, dir: &std::path::Path, block: &hcl::Block) -> Vec<Addr> {
        let ty = block
            .labels()
            .first()
            .map(|l| l.as_str())
            .unwrap_or_default();
        let key_attr = match ty {
            "aws_sqs_queue" | "aws_sns_topic" => infra::attr(block, "kms_master_key_id").cloned(),
            "aws_secretsmanager_secret" | "aws_cloudwatch_log_group" => {
                infra::attr(block, "kms_key_id").cloned()
            }
            "aws_scheduler_schedule" | "aws_lambda_function" => {
                infra::attr(block, "kms_key_arn").cloned()
            }
            "aws_dynamodb_table" => nested(block, "server_side_encryption")
                .find_map(|b| infra::attr(b, "kms_key_arn").cloned()),
            _ => None,
        };
        key_attr
            .map(|e| self.referenced(dir, &e))
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, a)| a.starts_with("aws_kms_key."))
            .collect()
    }

    /// The statements of an `aws_iam_policy_document` a `policy` attribute (`data.x.y.json`) names.
    fn policy_statements(
        &self,
        dir: &std::path::Path,
        policy: &hcl::Expression,
    ) -> Vec<hcl::Block> {
        let text = raw(policy);
        let doc = text
            .strip_suffix(".json")
            .filter(|d| d.starts_with("data.aws_iam_policy_document."))
            .unwrap_or_else(|| {
                panic!("policy {text}: this test reads aws_iam_policy_document policies only (teach it the new form)")
            });
        let block = self
            .block(dir, doc)
            .unwrap_or_else(|| panic!("{doc} not found in {}", dir.display()));
        nested(&block, "statement").cloned().collect()
    }

    /// Every statement of a key's policy (`aws_kms_key.policy` and any `aws_kms_key_policy`).
    fn key_policy(&self, (dir, key): &Addr) -> Vec<hcl::Block> {
        let block = self
            .block(dir, key)
            .unwrap_or_else(|| panic!("{key} not found"));
        let mut statements = Vec::new();
        if let Some(p) = infra::attr(&block, "policy") {
            statements.extend(self.policy_statements(dir, p));
        }
        for (d, kp) in self.all("resource", "aws_kms_key_policy") {
            let targets_key = infra::attr(&kp, "key_id")
                .is_some_and(|k| self.referenced(&d, k).contains(&(dir.clone(), key.clone())));
            if targets_key && let Some(p) = infra::attr(&kp, "policy") {
                statements.extend(self.policy_statements(&d, p));
            }
        }
        assert!(!statements.is_empty(), "{key} has no key policy");
        statements
    }
}

fn strings(block: &hcl::Block, key: &str) -> Vec<String> {
    infra::attr(block, key)
        .map(|e| items(e).iter().map(raw).collect())
        .unwrap_or_default()
}

fn allows_action(statement: &hcl::Block, action: &str) -> bool {
    let effect = infra::string_attr(statement, "effect").unwrap_or_else(|| "Allow".to_owned());
    effect == "Allow"
        && strings(statement, "actions")
            .iter()
            .any(|a| glob(a, action))
}

fn service_principals(statement: &hcl::Block) -> Vec<String> {
    nested(statement, "principals")
        .filter(|p| infra::string_attr(p, "type").as_deref() == Some("Service"))
        .flat_map(|p| strings(p, "identifiers"))
        .collect()
}

/// (test, variable, values) of each condition of a statement.
fn conditions(statement: &hcl::Block) -> Vec<(String, String, Vec<String>)> {
    nested(statement, "condition")
        .map(|c| {
            (
                infra::string_attr(c, "test").unwrap_or_default(),
                infra::string_attr(c, "variable").unwrap_or_default(),
                strings(c, "values"),
            )
        })
        .collect()
}

/// A service writing to an encrypted resource.
struct Writer {
    principal: &'static str,
    why: String,
    target: Addr,
}

fn writers(tf: &Tf) -> Vec<Writer> {
    let mut out = Vec::new();
    for (dir, target) in tf.all("resource", "aws_cloudwatch_event_target") {
        let mut arns: Vec<hcl::Expression> =
            infra::attr(&target, "arn").cloned().into_iter().collect();
        arns.extend(
            nested(&target, "dead_letter_config").filter_map(|d| infra::attr(d, "arn").cloned()),
        );
        for arn in arns {
            for addr in tf.referenced(&dir, &arn) {
                out.push(Writer {
                    principal: "events.amazonaws.com",
                    why: format!("rule target {} sends to {}", Tf::label(&target), addr.1),
                    target: addr,
                });
            }
        }
    }
    for (dir, alarm) in tf.all("resource", "aws_cloudwatch_metric_alarm") {
        for key in ["alarm_actions", "ok_actions", "insufficient_data_actions"] {
            for action in infra::attr(&alarm, key).map(items).unwrap_or_default() {
                for addr in tf.referenced(&dir, &action) {
                    out.push(Writer {
                        principal: "cloudwatch.amazonaws.com",
                        why: format!(
                            "alarm {} ({key}) publishes to {}",
                            Tf::label(&alarm),
                            addr.1
                        ),
                        target: addr,
                    });
                }
            }
        }
    }
    // CloudWatch Logs encrypts each log group's data itself (its regional service principal).
    for (dir, group) in tf.all("resource", "aws_cloudwatch_log_group") {
        out.push(Writer {
            principal: "logs.*.amazonaws.com",
            why: format!("CloudWatch Logs writes {}", Tf::label(&group)),
            target: (dir, Tf::label(&group)),
        });
    }
    out
}

#[test]
fn every_service_writing_to_an_encrypted_resource_may_use_its_key() {
    let tf = Tf::load();
    let writers = writers(&tf);
    assert!(
        writers
            .iter()
            .any(|w| w.principal == "events.amazonaws.com")
            && writers
                .iter()
                .any(|w| w.principal == "cloudwatch.amazonaws.com"),
        "the scan found the rule targets and the alarms"
    );
    let mut checked = 0;
    for w in &writers {
        let (dir, addr) = &w.target;
        let block = tf
            .block(dir, addr)
            .unwrap_or_else(|| panic!("{}: {addr} not found", w.why));
        let name = infra::attr(&block, "name")
            .map(|n| {
                tf.resolve(dir, n)
                    .into_iter()
                    .map(|(_, e)| raw(&e))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for key in tf.encryption_key(dir, &block) {
            checked += 1;
            let statements = tf.key_policy(&key);
            let admitting: Vec<&hcl::Block> = statements
                .iter()
                .filter(|s| {
                    service_principals(s).iter().any(|p| {
                        interpolations_as_wildcards(p) == w.principal || glob(w.principal, p)
                    })
                })
                .filter(|s| {
                    allows_action(s, "kms:GenerateDataKey") && allows_action(s, "kms:Decrypt")
                })
                .collect();
            assert!(
                !admitting.is_empty(),
                "{}, encrypted with {}, but that key's policy does not allow {} kms:GenerateDataKey and kms:Decrypt",
                w.why,
                key.1,
                w.principal
            );
            for s in admitting {
                let conds = conditions(s);
                assert!(
                    !conds.is_empty(),
                    "{}: the key statement admitting {} must be scoped by a condition (account, source or encryption context)",
                    w.why,
                    w.principal
                );
                // A statement scoped to some queues must cover this one, or delivery fails at runtime.
                for (_, variable, values) in conds
                    .iter()
                    .filter(|(_, v, _)| v == "kms:EncryptionContext:aws:sqs:arn")
                {
                    let covered = name.iter().all(|n| {
                        values.iter().any(|v| {
                            let (_, pattern) = v.rsplit_once(':').unwrap_or(("", v));
                            glob(pattern, n)
                        })
                    });
                    assert!(
                        addr.starts_with("aws_sqs_queue.") && !name.is_empty() && covered,
                        "{}: {variable} {values:?} does not cover queue {name:?}",
                        w.why
                    );
                }
            }
        }
    }
    assert!(checked > 0, "no write to an encrypted resource found");
}

/// Whether a queue in `dir` has an `aws_sqs_queue_policy` letting EventBridge send from `rule_arn`.
fn eventbridge_may_send(tf: &Tf, (dir, queue): &Addr, rule_arn: &str) -> bool {
    tf.all("resource", "aws_sqs_queue_policy")
        .iter()
        .filter(|(d, p)| {
            d == dir
                && infra::attr(p, "queue_url")
                    .is_some_and(|u| tf.referenced(d, u).contains(&(dir.clone(), queue.clone())))
        })
        .filter_map(|(d, p)| infra::attr(p, "policy").map(|e| tf.policy_statements(d, e)))
        .flatten()
        .any(|s| {
            service_principals(&s)
                .iter()
                .any(|p| p == "events.amazonaws.com")
                && allows_action(&s, "sqs:SendMessage")
                && strings(&s, "resources").contains(&format!("{queue}.arn"))
                && conditions(&s).iter().any(|(test, variable, values)| {
                    matches!(test.as_str(), "ArnEquals" | "ArnLike")
                        && variable == "aws:SourceArn"
                        && values.iter().any(|v| v == rule_arn)
                })
        })
}

#[test]
fn every_rule_target_has_a_retry_policy_and_an_alarmed_dlq_eventbridge_may_send_to() {
    let tf = Tf::load();
    let topic = (tf.root.clone(), "aws_sns_topic.alarms".to_owned());
    let targets = tf.all("resource", "aws_cloudwatch_event_target");
    assert!(!targets.is_empty(), "the scan found the rule targets");
    for (dir, target) in &targets {
        let name = Tf::label(target);
        let rule = infra::attr(target, "rule")
            .map(raw)
            .and_then(|r| r.strip_suffix(".name").map(|r| format!("{r}.arn")))
            .unwrap_or_else(|| panic!("{name}: rule = aws_cloudwatch_event_rule.x.name"));

        let retry = nested(target, "retry_policy")
            .next()
            .unwrap_or_else(|| panic!("{name} has no retry_policy"));
        // The value every instantiation ends up with (a module variable, its default or a literal).
        let numbers = |key: &str| {
            let values = infra::attr(retry, key)
                .map(|e| tf.resolve(dir, e))
                .unwrap_or_default()
                .into_iter()
                .map(|(_, e)| match e {
                    hcl::Expression::Number(n) => n.as_i64(),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>()
                .filter(|v| !v.is_empty());
            values.unwrap_or_else(|| panic!("{name}: retry_policy.{key} must be a number"))
        };
        for age in numbers("maximum_event_age_in_seconds") {
            assert!(
                (60..=86_400).contains(&age),
                "{name}: event age {age} outside 60..=86400"
            );
        }
        for attempts in numbers("maximum_retry_attempts") {
            assert!(
                (0..=185).contains(&attempts),
                "{name}: {attempts} retries outside 0..=185"
            );
        }

        let dlq_arn = nested(target, "dead_letter_config")
            .find_map(|d| infra::attr(d, "arn").cloned())
            .unwrap_or_else(|| {
                panic!("{name} has no dead_letter_config: undeliverable events vanish")
            });
        let dlq = tf
            .referenced(dir, &dlq_arn)
            .into_iter()
            .find(|(_, a)| a.starts_with("aws_sqs_queue."))
            .unwrap_or_else(|| panic!("{name}: the DLQ must be an aws_sqs_queue"));
        let arn = infra::attr(target, "arn").map(raw).unwrap_or_default();
        assert_ne!(
            arn,
            raw(&dlq_arn),
            "{name}: the DLQ cannot be the target itself"
        );

        // EventBridge writes both the target and its DLQ through their queue policies.
        for queue in [
            tf.referenced(dir, infra::attr(target, "arn").expect("arn")),
            vec![dlq.clone()],
        ]
        .concat()
        .iter()
        .filter(|(_, a)| a.starts_with("aws_sqs_queue."))
        {
            assert!(
                eventbridge_may_send(&tf, queue, &rule),
                "{name}: no queue policy lets events.amazonaws.com sqs:SendMessage to {} from {rule}",
                queue.1
            );
        }

        // Encrypted: SQS-managed SSE, or a key EventBridge may use (checked by the test above).
        let dlq_block = tf.block(&dlq.0, &dlq.1).expect("dlq block");
        let sse = matches!(
            infra::attr(&dlq_block, "sqs_managed_sse_enabled"),
            Some(hcl::Expression::Bool(true))
        );
        assert!(
            sse || !tf.encryption_key(&dlq.0, &dlq_block).is_empty(),
            "{name}: the DLQ {} is not encrypted",
            dlq.1
        );

        // Someone hears about it: an alarm on visible messages > 0, notifying the alarm topic.
        let alarmed = tf
            .all("resource", "aws_cloudwatch_metric_alarm")
            .iter()
            .any(|(d, alarm)| {
                let on_queue = d == &dlq.0
                    && infra::attr(alarm, "dimensions").is_some_and(|dims| match dims {
                        hcl::Expression::Object(o) => o.iter().any(|(k, v)| {
                            k.to_string().trim_matches('"') == "QueueName"
                                && raw(v) == format!("{}.name", dlq.1)
                        }),
                        _ => false,
                    });
                on_queue
                    && infra::string_attr(alarm, "namespace").as_deref() == Some("AWS/SQS")
                    && infra::string_attr(alarm, "metric_name").as_deref()
                        == Some("ApproximateNumberOfMessagesVisible")
                    && infra::string_attr(alarm, "comparison_operator").as_deref()
                        == Some("GreaterThanThreshold")
                    && matches!(infra::attr(alarm, "threshold"), Some(hcl::Expression::Number(n)) if n.as_f64() == Some(0.0))
                    && infra::attr(alarm, "alarm_actions").is_some_and(|actions| {
                        let to: Vec<Addr> = items(actions).iter().flat_map(|a| tf.referenced(d, a)).collect();
                        !to.is_empty() && to.iter().all(|t| *t == topic)
                    })
            });
        assert!(
            alarmed,
            "{name}: no ApproximateNumberOfMessagesVisible > 0 alarm to {} on its DLQ {}",
            topic.1, dlq.1
        );
    }
}

/// The quarantine alarm watches the metric sale-capture really emits: namespace, name and the one
/// dimension of its EMF documents.
#[test]
fn the_quarantine_alarm_watches_the_metric_sale_capture_emits() {
    use pos_shared::capture::Captured;
    use pos_shared::metrics::{Metrics, NAMESPACE, Sink};
    let alarm = infra::resource("aws_cloudwatch_metric_alarm", "quarantined")
        .expect("a quarantine alarm in infra/monitoring.tf");
    let metric = pos_shared::http::outcome_metric(&Ok(Captured::Quarantined));
    assert_eq!(
        infra::string_attr(&alarm, "namespace").as_deref(),
        Some(NAMESPACE)
    );
    assert_eq!(
        infra::string_attr(&alarm, "metric_name").as_deref(),
        Some(metric)
    );
    let metrics = Metrics::new("sale-capture", Sink::Memory(Default::default()));
    let doc = metrics.document(&[(metric, pos_shared::metrics::Unit::Count, 1.0)], 0);
    let dims = infra::attr(&alarm, "dimensions")
        .map(raw)
        .unwrap_or_default();
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["function"]])
    );
    assert!(
        dims.contains("function") && dims.contains(doc["function"].as_str().unwrap_or("?")),
        "{dims}"
    );
    assert!(
        raw(infra::attr(&alarm, "alarm_actions").expect("actions"))
            .contains("aws_sns_topic.alarms"),
        "it notifies"
    );
}

#[test]
fn commercetools_sync_environment_covers_what_the_code_reads() {
    check_environment(
        "commercetools_sync",
        concat!(
            include_str!("../../shared/src/delivery/config.rs"),
            include_str!("../../shared/src/delivery/aws_env.rs")
        ),
        &[
            "DELIVERIES_TABLE",
            "QUEUE_URL",
            "DLQ_URL",
            "MAX_RECEIVES",
            "CTP_PROJECT_KEY",
            "CTP_CLIENT_SECRET_ARN",
        ],
    );
}

/// The function gives a record up on the receive the redrive policy would move it, so both must be
/// the same number; and the event source mapping caps its concurrency (the rate limit across instances).
#[test]
fn delivery_functions_know_their_queues_receive_limit_and_are_capped() {
    let queue = infra::blocks("module")
        .into_iter()
        .find(|b| {
            b.labels()
                .first()
                .is_some_and(|l| l.as_str() == "commercetools_sync_queue")
        })
        .expect("commercetools_sync_queue");
    let function = infra::blocks("module")
        .into_iter()
        .find(|b| {
            b.labels()
                .first()
                .is_some_and(|l| l.as_str() == "commercetools_sync")
        })
        .expect("commercetools_sync");
    let limit = raw(infra::attr(&queue, "max_receive_count").expect("max_receive_count"));
    let env = raw(infra::attr(&function, "environment").expect("environment"));
    assert!(
        env.contains(&format!("tostring({limit})")),
        "MAX_RECEIVES must be the queue's max_receive_count ({limit}): {env}"
    );
    let mapping =
        infra::resource("aws_lambda_event_source_mapping", "commercetools_sync").expect("mapping");
    let scaling = nested(&mapping, "scaling_config")
        .next()
        .expect("scaling_config: the cap across instances");
    assert!(infra::attr(scaling, "maximum_concurrency").is_some());
    assert!(infra::mapping_reports_batch_item_failures(
        "commercetools_sync"
    ));
}

#[test]
fn the_breaker_alarms_watch_the_metric_the_engine_emits_for_each_destination() {
    use pos_shared::metrics::{Metrics, NAMESPACE, Sink, Unit};
    let alarm = infra::resource("aws_cloudwatch_metric_alarm", "commercetools_breaker_open")
        .expect("breaker alarms in infra/deliveries.tf");
    assert_eq!(
        infra::string_attr(&alarm, "namespace").as_deref(),
        Some(NAMESPACE)
    );
    assert_eq!(
        infra::string_attr(&alarm, "metric_name").as_deref(),
        Some(pos_shared::delivery::engine::BREAKER_OPENED)
    );
    let destinations = raw(infra::attr(&alarm, "for_each").expect("one alarm per destination"));
    let dims = raw(infra::attr(&alarm, "dimensions").expect("dimensions"));
    let metrics = Metrics::new(
        pos_shared::delivery::config::FUNCTION,
        Sink::Memory(Default::default()),
    );
    for destination in [
        pos_shared::delivery::commercetools::NAME,
        pos_shared::delivery::inventory::NAME,
    ] {
        assert!(
            destinations.contains(&format!("\"{destination}\"")),
            "no breaker alarm for {destination}: {destinations}"
        );
        let doc = metrics.document_with(
            Some(("destination", destination)),
            &[(
                pos_shared::delivery::engine::BREAKER_OPENED,
                Unit::Count,
                1.0,
            )],
            0,
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["function", "destination"]])
        );
        assert!(
            dims.contains(&format!("\"{}\"", doc["function"].as_str().unwrap_or("?"))),
            "{dims}"
        );
    }
    assert!(
        dims.contains("destination") && dims.contains("each.key"),
        "{dims}"
    );
    assert!(
        raw(infra::attr(&alarm, "alarm_actions").expect("actions"))
            .contains("aws_sns_topic.alarms")
    );
}
