//! `GET` and `PATCH /admin/users/:id`: one user, as an admin sees and changes it.
//!
//! Admins only (403 `admin_required` otherwise); 404 for an unknown id.
//! GET 200 `{user}`: the account, its roles, its active sessions and whether
//! it is locked out of signing in (two database round trips: the account,
//! then its throttle counters, whose keys derive from the email).
//! PATCH `{isActive?, roles?}` 200 `{user}`: `roles` is the whole new list
//! (`user`, `admin`; it must include `user`); disabling revokes every
//! session at once. An admin
//! cannot disable themselves or drop their own admin role (403
//! `self_demotion`). Recorded as `admin_user_updated` with the acting admin's
//! id. One database round trip.

use latch_domain::{AuditKind, FieldError, Role, ThrottleKey};
use latch_store::UserChange;
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, admin, audit, db, response, time};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserPatch {
    is_active: Option<bool>,
    roles: Option<Vec<String>>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(
        req,
        out,
        "/admin/users/:id",
        &[Method::GET, Method::PATCH],
        user,
    )
    .await;
}

async fn user(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    if req.method() == Method::PATCH {
        update(ctx, req).await
    } else {
        show(ctx, req).await
    }
}

async fn show(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let user_id = admin::target_id(&req)?;
    let now = time::now();
    let store = db::open()?;
    let claims = admin::caller(ctx, &store, now).await?;
    let detail = store
        .admin_user(&admin::as_caller(&claims, now), &user_id)
        .await?
        .map_err(admin::refused)?
        .ok_or_else(admin::no_such_user)?;
    let keys = ThrottleKey::of_account(&detail.user.id, &detail.user.email);
    let locked_until = store.admin_locked_until(&keys).await?;
    let mut user = admin::user_summary(&detail.user);
    user["lockedOut"] = serde_json::json!(locked_until > now);
    user["lockedUntil"] =
        serde_json::json!((locked_until > now).then(|| time::rfc3339(locked_until)));
    user["mfa"] = serde_json::json!({
        "enabled": detail.user.mfa_enabled,
        "confirmedAt": detail.user.mfa_confirmed_at.map(time::rfc3339),
    });
    user["sessions"] = detail
        .sessions
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "createdAt": time::rfc3339(s.created_at),
                "lastUsedAt": time::rfc3339(s.last_used_at),
                "expiresAt": time::rfc3339(s.expires_at),
                "clientIp": s.client_ip,
                "userAgent": s.user_agent,
            })
        })
        .collect();
    Ok(response::json(200, &serde_json::json!({ "user": user })))
}

async fn update(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let user_id = admin::target_id(&req)?;
    let patch: UserPatch = json_body(&req)?;
    let roles = match &patch.roles {
        None => None,
        Some(names) => {
            let mut roles = Vec::with_capacity(names.len());
            for name in names {
                let role = Role::parse(name).ok_or(FieldError {
                    field: "roles",
                    code: "unknown_role",
                    message: "roles are `user` and `admin`".into(),
                })?;
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            // Every account keeps `user` (sign-up gives it; nothing works without a role).
            if !roles.contains(&Role::User) {
                return Err(FieldError {
                    field: "roles",
                    code: "user_required",
                    message: "roles must include `user`".into(),
                }
                .into());
            }
            Some(roles)
        }
    };
    if patch.is_active.is_none() && roles.is_none() {
        return Err(ApiError::MalformedBody(
            "give isActive, roles or both".into(),
        ));
    }
    let change = UserChange {
        is_active: patch.is_active,
        roles,
    };

    let now = time::now();
    let store = db::open()?;
    let claims = admin::caller(ctx, &store, now).await?;
    if claims.sub == user_id {
        let disables = change.is_active == Some(false);
        let demotes = change
            .roles
            .as_ref()
            .is_some_and(|roles| !roles.contains(&Role::Admin));
        if disables || demotes {
            return Err(ApiError::Coded {
                status: 403,
                code: "self_demotion",
                detail: "an admin cannot disable themselves or drop their own admin role",
            });
        }
    }
    let record = audit::record(
        ctx,
        admin::action(ctx, AuditKind::AdminUserUpdated, &user_id, &claims)?.with_reason(
            match (change.is_active, change.roles.is_some()) {
                (Some(false), _) => "disabled",
                (Some(true), false) => "enabled",
                (Some(true), true) => "enabled_and_roles",
                (None, _) => "roles",
            },
        ),
        now,
    )?;
    let user = store
        .admin_update_user(&admin::as_caller(&claims, now), &user_id, &change, &record)
        .await?
        .map_err(admin::refused)?
        .ok_or_else(admin::no_such_user)?;
    audit::log(ctx, &record);
    Ok(response::json(
        200,
        &serde_json::json!({ "user": admin::user_summary(&user) }),
    ))
}
