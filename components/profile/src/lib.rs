//! `GET /user/profile` and `PUT /user/profile`: the caller's profile.
//!
//! GET 200 `{user: {id, email, fullName, avatarUrl, isActive, emailVerified, mfaEnabled, createdAt}}`.
//! PUT `{fullName}` (the old service's `name` is accepted too) answers
//! 200 `{message, user}`. 401 without a valid access token or when the
//! session has ended. One database round trip each.

use latch_domain::FullName;
use latch_store::User;
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, auth, db, response, time};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    full_name: Option<String>,
    /// The old service's field name.
    name: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(
        req,
        out,
        "/user/profile",
        &[Method::GET, Method::PUT],
        profile,
    )
    .await;
}

async fn profile(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let update = if req.method() == Method::PUT {
        let body: UpdateBody = json_body(&req)?;
        let raw = match (body.full_name, body.name) {
            (Some(full_name), _) => full_name,
            (None, Some(name)) => name,
            (None, None) => {
                return Err(latch_domain::FieldError::new(
                    "fullName",
                    latch_domain::error::codes::REQUIRED,
                    "fullName is required",
                )
                .into());
            }
        };
        Some(FullName::parse(&raw).map_err(|mut e| {
            e.field = "fullName";
            e
        })?)
    } else {
        None
    };

    let now = time::now();
    let store = db::open()?;
    let (claims, _) = auth::verify(ctx, &store, now).await?;
    match update {
        None => {
            let user = store
                .profile(&claims.sid, &claims.sub, now)
                .await?
                .ok_or_else(auth::session_ended)?;
            Ok(response::json(
                200,
                &serde_json::json!({"user": view(&user)}),
            ))
        }
        Some(full_name) => {
            let user = store
                .update_profile(&claims.sid, &claims.sub, full_name.as_str(), now)
                .await?
                .ok_or_else(auth::session_ended)?;
            Ok(response::json(
                200,
                &serde_json::json!({"message": "Profile updated successfully", "user": view(&user)}),
            ))
        }
    }
}

fn view(user: &User) -> serde_json::Value {
    serde_json::json!({
        "id": user.id,
        "email": user.email,
        "fullName": user.full_name,
        "avatarUrl": user.avatar_url,
        "isActive": user.is_active,
        "emailVerified": user.email_verified,
        "mfaEnabled": user.mfa_enabled,
        "createdAt": time::rfc3339(user.created_at),
    })
}
