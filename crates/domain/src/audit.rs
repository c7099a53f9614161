//! Audit events: what happened to which account, and whether it worked.
//!
//! Emails only ever enter an event masked (`j***@example.com`): the builder
//! takes an [`Email`] and masks it, and there is no way to set the field
//! from a plain string.

use std::net::IpAddr;

use serde::Serialize;

use crate::email::Email;

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// Account creation.
    Signup,
    /// Password sign-in.
    Signin,
    /// Refresh-token rotation.
    Refresh,
    /// An already rotated refresh token was presented again.
    RefreshReuseDetected,
    /// Sign-out of a session.
    Signout,
    /// Password change.
    PasswordChange,
    /// A throttle lock started.
    Lockout,
    /// A session was revoked (by the user, an admin or reuse detection).
    SessionRevoked,
    /// A recovery link was asked for (and issued, unless refused).
    RecoveryRequested,
    /// A password was set with a recovery token.
    PasswordReset,
    /// A verification link was issued (at sign-up or on request).
    VerificationRequested,
    /// An address was verified with a verification token.
    EmailVerified,
    /// An admin changed an account (active flag, roles).
    AdminUserUpdated,
    /// An admin cleared an account's throttle counters.
    AdminUnlock,
    /// An admin revoked every session of an account.
    AdminSessionsRevoked,
    /// A TOTP factor was confirmed and is now required at sign-in.
    MfaEnrolled,
    /// A second factor completed a sign-in.
    MfaVerified,
    /// A wrong, replayed or used code was presented.
    MfaFailed,
    /// The TOTP factor was removed.
    MfaRemoved,
    /// A recovery code was spent.
    RecoveryCodeUsed,
    /// New recovery codes replaced the old ones.
    RecoveryCodesRegenerated,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It was attempted and failed (bad password, invalid token...).
    Failure,
    /// It was refused before being attempted (throttled, forbidden).
    Denied,
}

impl AuditKind {
    /// The stable snake_case name (as serialised).
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditKind::Signup => "signup",
            AuditKind::Signin => "signin",
            AuditKind::Refresh => "refresh",
            AuditKind::RefreshReuseDetected => "refresh_reuse_detected",
            AuditKind::Signout => "signout",
            AuditKind::PasswordChange => "password_change",
            AuditKind::Lockout => "lockout",
            AuditKind::SessionRevoked => "session_revoked",
            AuditKind::RecoveryRequested => "recovery_requested",
            AuditKind::PasswordReset => "password_reset",
            AuditKind::VerificationRequested => "verification_requested",
            AuditKind::EmailVerified => "email_verified",
            AuditKind::AdminUserUpdated => "admin_user_updated",
            AuditKind::AdminUnlock => "admin_unlock",
            AuditKind::AdminSessionsRevoked => "admin_sessions_revoked",
            AuditKind::MfaEnrolled => "mfa_enrolled",
            AuditKind::MfaVerified => "mfa_verified",
            AuditKind::MfaFailed => "mfa_failed",
            AuditKind::MfaRemoved => "mfa_removed",
            AuditKind::RecoveryCodeUsed => "recovery_code_used",
            AuditKind::RecoveryCodesRegenerated => "recovery_codes_regenerated",
        }
    }
}

impl AuditKind {
    /// Every kind, for parsing filters.
    pub const ALL: [AuditKind; 21] = [
        AuditKind::Signup,
        AuditKind::Signin,
        AuditKind::Refresh,
        AuditKind::RefreshReuseDetected,
        AuditKind::Signout,
        AuditKind::PasswordChange,
        AuditKind::Lockout,
        AuditKind::SessionRevoked,
        AuditKind::RecoveryRequested,
        AuditKind::PasswordReset,
        AuditKind::VerificationRequested,
        AuditKind::EmailVerified,
        AuditKind::AdminUserUpdated,
        AuditKind::AdminUnlock,
        AuditKind::AdminSessionsRevoked,
        AuditKind::MfaEnrolled,
        AuditKind::MfaVerified,
        AuditKind::MfaFailed,
        AuditKind::MfaRemoved,
        AuditKind::RecoveryCodeUsed,
        AuditKind::RecoveryCodesRegenerated,
    ];

    /// The kind named `name` (its [`AuditKind::as_str`]).
    pub fn parse(name: &str) -> Option<AuditKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl Outcome {
    /// The stable snake_case name (as serialised).
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One audit record. Build with [`AuditEvent::new`] and the `with_*`
/// methods; serialises to a flat JSON object with snake_case names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    kind: AuditKind,
    outcome: Outcome,
    user_id: Option<String>,
    session_id: Option<String>,
    email: Option<String>,
    client_ip: Option<String>,
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_id: Option<String>,
}

impl AuditEvent {
    /// An event with no details yet.
    pub fn new(kind: AuditKind, outcome: Outcome) -> Self {
        Self {
            kind,
            outcome,
            user_id: None,
            session_id: None,
            email: None,
            client_ip: None,
            reason: None,
            actor_id: None,
        }
    }

    /// Sets the user id.
    #[must_use]
    pub fn with_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the session id.
    #[must_use]
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Records the email, masked.
    #[must_use]
    pub fn with_email(mut self, email: &Email) -> Self {
        self.email = Some(email.masked());
        self
    }

    /// Records the client address.
    #[must_use]
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip.to_string());
        self
    }

    /// The same event as another kind (the rest kept: user, session,
    /// client address), for the related events of one request.
    pub fn with_kind(mut self, kind: AuditKind) -> Self {
        self.kind = kind;
        self
    }

    /// The same event with another outcome.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Records a short fixed reason, e.g. `"bad_password"` or `"throttled"`.
    #[must_use]
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The admin who acted on the user's account.
    #[must_use]
    pub fn with_actor(mut self, actor_id: impl Into<String>) -> Self {
        self.actor_id = Some(actor_id.into());
        self
    }

    /// The acting admin's user id, for admin actions.
    pub fn actor_id(&self) -> Option<&str> {
        self.actor_id.as_deref()
    }

    /// What was attempted.
    pub fn kind(&self) -> AuditKind {
        self.kind
    }

    /// How it ended.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The user id, if known.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The session id, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The masked email, if recorded.
    pub fn masked_email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The client address, if known.
    pub fn client_ip(&self) -> Option<&str> {
        self.client_ip.as_deref()
    }

    /// The reason, if given.
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_name() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AuditKind::parse("Signin"), None);
        let names: std::collections::HashSet<_> =
            AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), AuditKind::ALL.len());
    }

    #[test]
    fn serialises_snake_case_with_masked_email() {
        let email = Email::parse("jane.doe@example.com").unwrap();
        let event = AuditEvent::new(AuditKind::RefreshReuseDetected, Outcome::Denied)
            .with_user("u1")
            .with_session("s1")
            .with_email(&email)
            .with_client_ip("2001:db8::1".parse().unwrap())
            .with_reason("token_reused");
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "refresh_reuse_detected",
                "outcome": "denied",
                "user_id": "u1",
                "session_id": "s1",
                "email": "j***@example.com",
                "client_ip": "2001:db8::1",
                "reason": "token_reused",
            })
        );
        assert!(!json.to_string().contains("jane.doe"));
        assert_eq!(event.masked_email(), Some("j***@example.com"));
    }

    #[test]
    fn names_match_serialisation() {
        for kind in [
            AuditKind::Signup,
            AuditKind::Signin,
            AuditKind::Refresh,
            AuditKind::RefreshReuseDetected,
            AuditKind::Signout,
            AuditKind::PasswordChange,
            AuditKind::Lockout,
            AuditKind::SessionRevoked,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for outcome in [Outcome::Success, Outcome::Failure, Outcome::Denied] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
        let bare =
            serde_json::to_value(AuditEvent::new(AuditKind::Signin, Outcome::Failure)).unwrap();
        assert_eq!(bare["user_id"], serde_json::Value::Null);
    }
}
