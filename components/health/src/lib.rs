//! `GET /health`: liveness. Never touches the database and is never
//! throttled, so orchestrator probes cannot take the service down.
//! 200 `{status: "ok", environment, timestamp}` (the old service's body).

use latch_web::{ApiError, Ctx, Method, Request, Response, config, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/health", &[Method::GET], health).await;
}

async fn health(_ctx: &Ctx, _req: Request) -> Result<Response, ApiError> {
    let environment = config::environment()?;
    Ok(response::json(
        200,
        &serde_json::json!({
            "status": "ok",
            "environment": environment.as_str(),
            "timestamp": time::rfc3339(time::now()),
        }),
    ))
}
