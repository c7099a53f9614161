//! `GET /ready`: readiness. 200 when the database answers and its schema is
//! at the latest migration, and (in production) a signing key is configured
//! whose carried public key, if any, is the one its seed derives;
//! 503 `application/problem+json` saying which check failed otherwise.
//! Never throttled. One database round trip.

use latch_domain::{Environment, SigningKey};
use latch_web::{ApiError, Ctx, Method, Request, Response, config, db, response};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/ready", &[Method::GET], ready).await;
}

async fn ready(ctx: &Ctx, _req: Request) -> Result<Response, ApiError> {
    let mut failures: Vec<String> = Vec::new();
    let environment = config::environment()?;
    let signing_key = config::var("signing_key")?;
    let key = if signing_key.trim().is_empty() {
        if environment == Environment::Production {
            failures.push("signing_key: not configured".into());
            "missing"
        } else {
            "development"
        }
    } else {
        match SigningKey::parse(&signing_key) {
            // Request-serving components trust the carried public key; a
            // wrong one would sign tokens nobody can verify.
            Ok(key) if !key.public_key_matches_seed() => {
                failures.push(
                    "signing_key: the public key after the seed is not the seed's public key"
                        .into(),
                );
                "invalid"
            }
            Ok(_) => "configured",
            Err(e) => {
                failures.push(format!("signing_key: {e}"));
                "invalid"
            }
        }
    };

    let (database, schema) = match db::open() {
        Ok(store) => match store.schema_version().await {
            Ok(version) if version == latch_store::SCHEMA_VERSION => {
                (store.backend(), Some(version))
            }
            Ok(version) => {
                failures.push(format!(
                    "schema: at version {version}, expected {} (run `latch migrate`)",
                    latch_store::SCHEMA_VERSION
                ));
                (store.backend(), Some(version))
            }
            Err(e) => {
                failures.push(format!("database: {}", e.kind()));
                ctx.log_error("readiness_database", &e.to_string());
                (store.backend(), None)
            }
        },
        Err(e) => {
            failures.push("database: cannot open".into());
            return Err(e);
        }
    };

    let checks = serde_json::json!({
        "database": {"backend": database, "schemaVersion": schema, "expectedSchemaVersion": latch_store::SCHEMA_VERSION},
        "signingKey": key,
    });
    if failures.is_empty() {
        return Ok(response::json(
            200,
            &serde_json::json!({"status": "ready", "checks": checks}),
        ));
    }
    let detail = failures.join("; ");
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": detail,
        "checks": checks,
        "instance": ctx.path,
        "requestId": ctx.request_id,
        "statusCode": 503,
        "error": "Service Unavailable",
        "message": detail,
    });
    let mut reply = response::problem(503, &body);
    response::set_header(&mut reply, "retry-after", "5");
    Ok(reply)
}
