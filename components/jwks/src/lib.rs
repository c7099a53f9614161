//! `GET /.well-known/jwks.json`: the public keys access tokens are verified
//! with (RFC 7517; Ed25519 keys per RFC 8037), current key first. No
//! database round trip in production (keys come from variables); one in
//! development when the key is generated and stored.

use latch_web::{ApiError, Ctx, Method, Request, Response, auth, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/.well-known/jwks.json", &[Method::GET], jwks).await;
}

async fn jwks(_ctx: &Ctx, _req: Request) -> Result<Response, ApiError> {
    let store = db::open()?;
    let keys = auth::keys(&store, time::now()).await?;
    let mut reply = response::json(200, &keys.jwks());
    // Public and slow-changing; rotation keeps old keys listed longer than this.
    response::set_header(&mut reply, "cache-control", "public, max-age=300");
    Ok(reply)
}
