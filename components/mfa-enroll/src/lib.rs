//! `POST /auth/mfa/totp/enroll`: starts enrolling a TOTP authenticator.
//!
//! Authenticated; no body. 200 `{secret, otpauthUri, qrSvg}`: the new secret
//! (base32), its `otpauth://` URI and that URI as a QR code (SVG), to scan or
//! type into an authenticator app. The factor stays pending (sign-in does not
//! ask for it) until `POST /auth/mfa/totp/confirm` gets a code from it; a new
//! enrolment replaces a pending one. 409 `mfa_already_enabled` while a
//! confirmed factor exists. The secret is stored sealed. One database round
//! trip.

use latch_domain::TotpSecret;
use latch_store::Enrolment;
use latch_web::{ApiError, Ctx, Method, Request, Response, auth, config, db, mfa, response, time};
use qrcode::QrCode;
use qrcode::render::svg;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/mfa/totp/enroll", &[Method::POST], enroll).await;
}

async fn enroll(ctx: &Ctx, _req: Request) -> Result<Response, ApiError> {
    let now = time::now();
    let store = db::open()?;
    let (claims, keys) = auth::verify(ctx, &store, now).await?;
    let key = mfa::sealing_key(&keys)?;
    let issuer = config::var("mfa_issuer")?;
    let secret = TotpSecret::from_bytes(latch_web::random()?);
    let sealed = key.seal(&secret, &claims.sub, latch_web::random()?);
    let email = match store
        .enroll_factor(&claims.sid, &claims.sub, &sealed, now)
        .await?
    {
        Enrolment::Pending { email } => email,
        Enrolment::AlreadyEnabled => return Err(mfa::ALREADY_ENABLED),
        Enrolment::SessionEnded => return Err(auth::session_ended()),
    };
    let uri = secret.otpauth_uri(issuer.trim(), &email);
    let qr = QrCode::new(uri.as_bytes())
        .map_err(|_| ApiError::Internal("the enrolment URI does not fit a QR code"))?;
    let svg = qr
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(response::json(
        200,
        &serde_json::json!({
            "secret": secret.base32(),
            "otpauthUri": uri,
            "qrSvg": svg,
        }),
    ))
}
