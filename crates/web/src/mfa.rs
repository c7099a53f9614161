//! What the second-factor routes share: the sealing key, the body that
//! carries a code, checking a code against what the store read, the
//! throttled attempt around it, and the step-up rule.

use latch_domain::totp::{self, RECOVERY_CODES};
use latch_domain::{
    AccessClaims, AuditEvent, AuditKind, Environment, KeySet, Outcome, SealingKey, ThrottleKey,
    ThrottlePolicy, TotpError,
};
use latch_store::{AuditRecord, Expected, FactorAttempt, FactorContext, Proof, Store};
use serde::Deserialize;

use crate::db::Backend;
use crate::{ApiError, Ctx, audit, config};

/// Codes are locked out like sign-in's per-account counter: 5 wrong in 15
/// minutes, then 60 s doubling, at most 1 h.
pub const POLICY: ThrottlePolicy = ThrottlePolicy::ACCOUNT;

/// 400 `invalid_mfa_code`: wrong, replayed, outside the window, malformed,
/// or a used recovery code (one answer, so none can be told apart).
pub const INVALID_CODE: ApiError = ApiError::Coded {
    status: 400,
    code: "invalid_mfa_code",
    detail: "the code is not valid",
};

/// 400 `invalid_challenge`: unknown, used or expired.
pub const INVALID_CHALLENGE: ApiError = ApiError::Coded {
    status: 400,
    code: "invalid_challenge",
    detail: "the sign-in challenge is invalid or has expired; sign in again",
};

/// 403 `aal2_required`: the route needs a session that presented the second factor.
pub const AAL2_REQUIRED: ApiError = ApiError::Coded {
    status: 403,
    code: "aal2_required",
    detail: "this action needs a session signed in with your second factor",
};

/// 409 `mfa_already_enabled`.
pub const ALREADY_ENABLED: ApiError = ApiError::Coded {
    status: 409,
    code: "mfa_already_enabled",
    detail: "a second factor is already active; remove it first",
};

/// 409 `mfa_not_pending`: nothing to confirm.
pub const NOT_PENDING: ApiError = ApiError::Coded {
    status: 409,
    code: "mfa_not_pending",
    detail: "no second factor is waiting for confirmation; enrol first",
};

/// 404 `mfa_not_enabled`.
pub const NOT_ENABLED: ApiError = ApiError::Coded {
    status: 404,
    code: "mfa_not_enabled",
    detail: "no second factor is active",
};

/// The key TOTP secrets are sealed with: the `mfa_encryption_key` variable;
/// in development only, when it is empty, one derived from the signing key.
pub fn sealing_key(keys: &KeySet) -> Result<SealingKey, ApiError> {
    let configured = config::var("mfa_encryption_key")?;
    if !configured.trim().is_empty() {
        return SealingKey::parse("mfa_encryption_key", &configured)
            .map_err(|e| ApiError::from(latch_domain::DomainError::Config(e)));
    }
    if config::environment()? != Environment::Development {
        return Err(ApiError::Unavailable {
            reason: "no second-factor key is configured (variable `mfa_encryption_key`)".into(),
            kind: "misconfigured",
        });
    }
    let signing = crate::auth::signing_key(keys)?;
    Ok(SealingKey::derive_for_development(
        &signing.to_variable_string(),
    ))
}

/// A body that carries a second factor: `{code}` (a TOTP code) or
/// `{recoveryCode}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeBody {
    pub code: Option<String>,
    pub recovery_code: Option<String>,
    /// Only `POST /auth/mfa/verify` reads it.
    pub challenge: Option<String>,
}

/// What the caller presented.
pub enum Presented<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
}

impl CodeBody {
    /// Exactly one of `code` and `recoveryCode` (`recoveryCode` only where
    /// `recovery_allowed`).
    pub fn presented(&self, recovery_allowed: bool) -> Result<Presented<'_>, ApiError> {
        use latch_domain::error::codes::{INVALID, REQUIRED};
        let field = |code: &'static str, message: &'static str| {
            ApiError::Validation(vec![latch_domain::FieldError::new("code", code, message)])
        };
        match (self.code.as_deref(), self.recovery_code.as_deref()) {
            (Some(code), None) if !code.is_empty() => Ok(Presented::Totp(code)),
            (None, Some(code)) if recovery_allowed && !code.is_empty() => {
                Ok(Presented::RecoveryCode(code))
            }
            (Some(_), Some(_)) => Err(field(INVALID, "give either code or recoveryCode, not both")),
            _ if recovery_allowed => Err(field(REQUIRED, "code or recoveryCode is required")),
            _ => Err(field(REQUIRED, "code is required")),
        }
    }
}

/// A code that passed the check.
pub enum Verified {
    Totp { step: i64 },
    RecoveryCode { hash: String },
}

impl Verified {
    /// As the store's writes take it.
    pub fn proof(&self) -> Proof<'_> {
        match self {
            Verified::Totp { step } => Proof::Totp { step: *step },
            Verified::RecoveryCode { hash } => Proof::RecoveryCode { hash },
        }
    }

    /// Whether a recovery code (not a TOTP code) was presented.
    pub fn is_recovery_code(&self) -> bool {
        matches!(self, Verified::RecoveryCode { .. })
    }
}

/// Checks `presented` against the factor the store read (pending or
/// confirmed, as the route asked the store for). `Err(reason)` names a
/// refusal for the audit trail; a secret that will not open is a
/// configuration error (503), never a wrong code.
pub fn check(
    context: &FactorContext,
    key: &SealingKey,
    presented: &Presented<'_>,
    now: i64,
) -> Result<Result<Verified, &'static str>, ApiError> {
    let Some(factor) = &context.factor else {
        return Ok(Err("no_factor"));
    };
    match presented {
        Presented::Totp(code) => {
            let secret = key
                .open(&factor.secret_sealed, &context.user.id)
                .map_err(|e| ApiError::Unavailable {
                    reason: e.to_string(),
                    kind: "mfa_key",
                })?;
            Ok(match secret.verify(code, now, factor.last_used_step) {
                Ok(step) => Ok(Verified::Totp { step }),
                Err(TotpError::Malformed) => Err("malformed_code"),
                Err(TotpError::Wrong) => Err("wrong_code"),
                Err(TotpError::Replayed) => Err("replayed_code"),
            })
        }
        Presented::RecoveryCode(code) => {
            // Every stored hash is compared, in constant time each, so the
            // time taken does not tell which (or whether one) matched.
            let mut found = None;
            for hash in &context.recovery_code_hashes {
                if key.recovery_code_matches(&context.user.id, code, hash) && found.is_none() {
                    found = Some(hash.clone());
                }
            }
            Ok(found
                .map(|hash| Verified::RecoveryCode { hash })
                .ok_or("wrong_recovery_code"))
        }
    }
}

/// Ten new recovery codes of `user_id`, to show once, and their keyed
/// hashes, to store.
pub fn new_recovery_codes(
    key: &SealingKey,
    user_id: &str,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        codes.push(totp::recovery_code(crate::random()?));
    }
    let hashes = codes
        .iter()
        .map(|c| key.recovery_code_hash(user_id, c))
        .collect();
    Ok((codes, hashes))
}

/// Refuses `claims` on this route when `step_up_routes` lists it, the user
/// has a factor and the session did not present it.
pub fn require_step_up(ctx: &Ctx, claims: &AccessClaims, has_factor: bool) -> Result<(), ApiError> {
    if step_up_refuses(ctx, claims, has_factor)? {
        return Err(AAL2_REQUIRED);
    }
    Ok(())
}

fn step_up_refuses(ctx: &Ctx, claims: &AccessClaims, has_factor: bool) -> Result<bool, ApiError> {
    let routes = config::var("step_up_routes")?;
    Ok(latch_domain::mfa::step_up_required(
        &routes,
        ctx.route,
        has_factor,
        claims.is_aal2(),
    ))
}

/// What a route that manages the factor checks a code against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// The pending factor (confirmation).
    PendingFactor,
    /// The confirmed factor, from a session that passes the step-up rule.
    ConfirmedFactor,
}

/// One code's attempt on the user's second-factor counter: what to record
/// if a lock refuses it, and how to record it failing.
pub struct Attempt {
    pub key: ThrottleKey,
    pub id: String,
    refusal: AuditRecord,
    event: AuditEvent,
    now: i64,
}

impl Attempt {
    /// An attempt by `user_id` (in `session_id`, when signed in).
    pub fn new(
        ctx: &Ctx,
        user_id: &str,
        session_id: Option<&str>,
        now: i64,
    ) -> Result<Attempt, ApiError> {
        let mut event = AuditEvent::new(AuditKind::MfaFailed, Outcome::Failure).with_user(user_id);
        if let Some(session_id) = session_id {
            event = event.with_session(session_id);
        }
        if let Some(ip) = ctx.client_ip(config::flag("trust_forwarded_for")?) {
            event = event.with_client_ip(ip);
        }
        let refusal = audit::record(
            ctx,
            event
                .clone()
                .with_outcome(Outcome::Denied)
                .with_reason("locked_out"),
            now,
        )?;
        Ok(Attempt {
            key: ThrottleKey::second_factor(user_id),
            id: crate::new_id()?,
            refusal,
            event,
            now,
        })
    }

    /// As the store counts it.
    pub fn counted(&self) -> FactorAttempt<'_> {
        FactorAttempt {
            key: &self.key,
            policy: &POLICY,
            attempt_id: &self.id,
            refusal: &self.refusal,
        }
    }

    /// The event of this attempt, of another kind and outcome (success).
    pub fn event(&self, kind: AuditKind) -> AuditEvent {
        self.event
            .clone()
            .with_kind(kind)
            .with_outcome(Outcome::Success)
    }

    /// 429 when the store refused the attempt (after logging the refusal).
    pub fn refused(&self, ctx: &Ctx, context: &FactorContext) -> Result<(), ApiError> {
        if !context.refused {
            return Ok(());
        }
        audit::log(ctx, &self.refusal);
        let retry_after_secs = POLICY
            .check(&context.counter, self.now)
            .err()
            // The lock ended between the attempt and the read.
            .map_or(1, |t| t.retry_after_secs);
        Err(ApiError::TooManyRequests { retry_after_secs })
    }

    /// Records a wrong code (and the lock-out, if this attempt earned it)
    /// and gives the one answer for all of them.
    pub async fn failed(
        &self,
        ctx: &Ctx,
        store: &Store<Backend>,
        reason: &'static str,
    ) -> Result<ApiError, ApiError> {
        let failure = audit::record(ctx, self.event.clone().with_reason(reason), self.now)?;
        let lockout = audit::record(
            ctx,
            self.event
                .clone()
                .with_kind(AuditKind::Lockout)
                .with_outcome(Outcome::Denied)
                .with_reason("too_many_failures"),
            self.now,
        )?;
        let locked_out = store
            .record_failed_check(&self.key, &self.id, &failure, &lockout, self.now)
            .await?;
        audit::log(ctx, &failure);
        if locked_out {
            audit::log(ctx, &lockout);
        }
        Ok(INVALID_CODE)
    }
}

/// A signed-in caller's code, counted and read: what the routes that manage
/// the factor (confirm, remove, new recovery codes) start from.
pub struct SignedInCheck {
    pub store: Store<Backend>,
    pub claims: AccessClaims,
    pub key: SealingKey,
    pub attempt: Attempt,
    pub context: FactorContext,
    pub now: i64,
}

impl SignedInCheck {
    /// Verifies the caller's access token, counts the attempt on their
    /// second-factor counter and reads their factor: 401 when the session
    /// has ended, 429 while the counter is locked, then (for a confirmed
    /// factor) 403 `aal2_required` or 404 `mfa_not_enabled`. Only a code that
    /// will be checked counts: those refusals count nothing. One database
    /// round trip (and the development key's, in development).
    pub async fn begin(ctx: &Ctx, needs: Needs) -> Result<SignedInCheck, ApiError> {
        let now = crate::time::now();
        let store = crate::db::open()?;
        let (claims, keys) = crate::auth::verify(ctx, &store, now).await?;
        let key = sealing_key(&keys)?;
        // Whether the step-up rule refuses this session, should the user have a factor.
        let refused_without_aal2 = match needs {
            Needs::PendingFactor => false,
            Needs::ConfirmedFactor => step_up_refuses(ctx, &claims, true)?,
        };
        let expected = match needs {
            Needs::PendingFactor => Expected::Pending,
            Needs::ConfirmedFactor => Expected::Confirmed {
                allowed: !refused_without_aal2,
            },
        };
        let attempt = Attempt::new(ctx, &claims.sub, Some(&claims.sid), now)?;
        let context = store
            .begin_factor_check(&claims.sid, &claims.sub, expected, attempt.counted(), now)
            .await?
            .ok_or_else(crate::auth::session_ended)?;
        attempt.refused(ctx, &context)?;
        if needs == Needs::ConfirmedFactor {
            if context.user.mfa_enabled && refused_without_aal2 {
                return Err(AAL2_REQUIRED);
            }
            if !context.user.mfa_enabled {
                return Err(NOT_ENABLED);
            }
        }
        Ok(SignedInCheck {
            store,
            claims,
            key,
            attempt,
            context,
            now,
        })
    }

    /// Checks `presented`; a wrong code is recorded (with the lock-out it
    /// may earn) and answered 400 `invalid_mfa_code`.
    pub async fn verify(&self, ctx: &Ctx, presented: &Presented<'_>) -> Result<Verified, ApiError> {
        match check(&self.context, &self.key, presented, self.now)? {
            Ok(verified) => Ok(verified),
            Err(reason) => Err(self.attempt.failed(ctx, &self.store, reason).await?),
        }
    }

    /// The audit record of this request's outcome, of `kind`.
    pub fn record(&self, ctx: &Ctx, kind: AuditKind) -> Result<AuditRecord, ApiError> {
        audit::record(ctx, self.attempt.event(kind), self.now)
    }
}
