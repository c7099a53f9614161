//! Signing keys and access-token checks.

use latch_domain::{AccessClaims, Environment, KeySet, SigningKey, TokenError};
use latch_store::{Store, StoredKey};

use crate::db::Backend;
use crate::request::Ctx;
use crate::response::ACCESS_COOKIE;
use crate::{ApiError, config};

fn key_error(reason: String) -> ApiError {
    ApiError::Unavailable {
        reason,
        kind: "signing_key",
    }
}

/// The keys tokens are signed and verified with: from the `signing_key` and
/// `verification_keys` variables; in development only, when no key is set,
/// a key generated on first use and kept in the database.
pub async fn keys(store: &Store<Backend>, now: i64) -> Result<KeySet, ApiError> {
    let signing = config::var("signing_key")?;
    let verification = config::var("verification_keys")?;
    if !signing.trim().is_empty() {
        return KeySet::from_variables(&signing, &verification)
            .map_err(|e| key_error(format!("variables `signing_key`/`verification_keys`: {e}")));
    }
    if config::environment()? != Environment::Development {
        return Err(key_error(
            "no signing key is configured (variable `signing_key`)".into(),
        ));
    }
    let stored = match store.development_key().await? {
        Some(stored) => stored,
        None => {
            let kid = format!("dev-{}", crate::new_id()?);
            let candidate = SigningKey::from_seed(&kid, crate::random()?)
                .map_err(|e| key_error(e.to_string()))?;
            let candidate = StoredKey {
                kid,
                private_key: candidate.to_variable_string(),
            };
            let stored = store.store_development_key(&candidate, now).await?;
            if stored == candidate {
                // Announced once, by the instance that created it.
                println!(
                    "{}",
                    serde_json::json!({
                        "level": "warn",
                        "event": "development_signing_key_generated",
                        "kid": stored.kid,
                        "detail": "environment=development and no signing_key: generated one and stored it in the database; set signing_key in production",
                    })
                );
            }
            stored
        }
    };
    let signing = SigningKey::parse(&stored.private_key).map_err(|e| key_error(e.to_string()))?;
    KeySet::new(
        Some(signing),
        latch_domain::parse_verification_keys(&verification)
            .map_err(|e| key_error(e.to_string()))?,
    )
    .map_err(|e| key_error(e.to_string()))
}

/// The access token of the request: the `token` cookie, else an
/// `Authorization: Bearer` header.
pub fn presented_token(ctx: &Ctx) -> Result<&str, ApiError> {
    if let Some(token) = ctx.cookie(ACCESS_COOKIE).filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    match ctx.authorization() {
        Some(header) => latch_domain::bearer_token(header).map_err(|_| unauthorized()),
        None => Err(ApiError::Unauthorized {
            detail: "authentication required",
            clear_cookies: false,
        }),
    }
}

fn unauthorized() -> ApiError {
    ApiError::Unauthorized {
        detail: "invalid or expired access token",
        clear_cookies: false,
    }
}

/// Verifies the presented access token (signature, type, issuer, audience,
/// expiry). The caller still checks that its session is active, in the query
/// it makes anyway.
pub async fn verify(
    ctx: &Ctx,
    store: &Store<Backend>,
    now: i64,
) -> Result<(AccessClaims, KeySet), ApiError> {
    let token = presented_token(ctx)?;
    let policy = config::token_policy()?;
    let keys = keys(store, now).await?;
    let claims =
        latch_domain::verify_access_token(token, &keys, &policy, now).map_err(|e| match e {
            TokenError::Expired => ApiError::Unauthorized {
                detail: "access token expired",
                clear_cookies: false,
            },
            _ => unauthorized(),
        })?;
    Ok((claims, keys))
}

/// The answer when a verified token's session is no longer active.
pub fn session_ended() -> ApiError {
    ApiError::Unauthorized {
        detail: "the session has ended",
        clear_cookies: true,
    }
}

/// A signed access token for `user` in session `session_id`, carrying the
/// user's known roles and how the session's user was authenticated.
pub fn access_token(
    keys: &KeySet,
    policy: &latch_domain::TokenPolicy,
    user: &latch_store::User,
    session_id: &str,
    assurance: latch_domain::Assurance,
    now: i64,
) -> Result<String, ApiError> {
    let signing = signing_key(keys)?;
    let roles: Vec<latch_domain::Role> = user
        .roles
        .iter()
        .filter_map(|r| latch_domain::Role::parse(r))
        .collect();
    let claims = AccessClaims::new(policy, &user.id, session_id, &roles, now)
        .with_email_verified(user.email_verified)
        .with_assurance(assurance);
    latch_domain::issue_access_token(signing, &claims)
        .map_err(|_| ApiError::Internal("token signing failed"))
}

/// The key tokens are signed with; routes that issue tokens check it before
/// doing anything else, so a misconfigured pod fails fast with 503.
pub fn signing_key(keys: &KeySet) -> Result<&SigningKey, ApiError> {
    keys.signing().ok_or(ApiError::Unavailable {
        reason: "no signing key".into(),
        kind: "signing_key",
    })
}

/// A session about to open (sign-in, or the second factor after it): its
/// id, first refresh token and access token.
pub struct Opening {
    pub session_id: String,
    refresh: latch_domain::RefreshToken,
    pub refresh_hash: latch_domain::RefreshTokenHash,
    access: String,
    assurance: latch_domain::Assurance,
}

impl Opening {
    /// New tokens for `user`, authenticated as `assurance`.
    pub fn new(
        keys: &KeySet,
        policy: &latch_domain::TokenPolicy,
        user: &latch_store::User,
        assurance: latch_domain::Assurance,
        now: i64,
    ) -> Result<Opening, ApiError> {
        let session_id = crate::new_id()?;
        let (refresh, refresh_hash) = latch_domain::RefreshToken::from_random(crate::random()?);
        let access = access_token(keys, policy, user, &session_id, assurance, now)?;
        Ok(Opening {
            session_id,
            refresh,
            refresh_hash,
            access,
            assurance,
        })
    }

    /// The session row to store.
    pub fn session<'a>(
        &'a self,
        ctx: &'a Ctx,
        user_id: &'a str,
        client_ip: Option<&'a str>,
        policy: &latch_domain::TokenPolicy,
        now: i64,
    ) -> latch_store::NewSession<'a> {
        latch_store::NewSession {
            id: &self.session_id,
            user_id,
            refresh_hash: &self.refresh_hash,
            now,
            expires_at: policy.refresh_expires_at(now),
            client_ip,
            user_agent: ctx.user_agent(),
            assurance: self.assurance,
        }
    }

    /// The 200 of a sign-in: the user, and the tokens as cookies (and in
    /// the body when `tokens_in_body` is on).
    pub fn respond(
        &self,
        ctx: &Ctx,
        user: &latch_store::User,
        policy: &latch_domain::TokenPolicy,
    ) -> Result<crate::Response, ApiError> {
        Ok(crate::response::with_tokens(
            ctx,
            serde_json::json!({
                "message": "Signed in successfully",
                "user": {"id": user.id, "email": user.email, "fullName": user.full_name},
            }),
            &self.access,
            self.refresh.as_str(),
            policy,
            config::flag("tokens_in_body")?,
        ))
    }
}
