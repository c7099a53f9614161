//! The second factor (issue 14) as a user's phone sees it: an authenticator
//! that computes RFC 6238 codes with `totp-rs` (independent of Latch's own
//! code), and the API's common MFA steps.

use std::time::Duration;

use serde_json::json;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::client::Reply;
use crate::process::{Service, tokens_of};
use crate::{Account, Tokens};

/// Seconds per TOTP step (the `period` of the otpauth URI).
pub const STEP_SECS: u64 = 30;
/// How long a request may take to reach the service's clock, for choosing
/// codes that are inside the service's window (one step either side) when
/// they arrive, on a loaded machine.
const ARRIVAL_MARGIN_SECS: f64 = 5.0;

/// A TOTP authenticator holding one enrolment's secret. It remembers which
/// steps it has handed out, so [`Authenticator::fresh_code`] never repeats
/// one (the service refuses a step at or before the last it accepted).
#[derive(Clone)]
pub struct Authenticator {
    totp: Totp,
    /// The secret as the enrolment gave it (unpadded base32).
    pub secret: String,
    last_step: Option<u64>,
    last_code: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// Unix time in seconds, with the fraction.
fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Authenticator {
    /// From the `secret` of an enrolment (unpadded base32, SHA-1, 6 digits, 30 s).
    pub fn from_base32(secret: &str) -> Authenticator {
        let bytes = match Secret::try_from_base32(secret) {
            Ok(secret) => secret,
            Err(e) => panic!("the enrolment's secret {secret:?} is not base32: {e:?}"),
        };
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_step_duration(STEP_SECS)
            .with_secret(bytes)
            .build();
        match totp {
            Ok(totp) => Authenticator::from_totp(totp, secret),
            Err(e) => panic!("a TOTP of secret {secret:?}: {e:?}"),
        }
    }

    /// From a parsed otpauth URI (e.g. the one read from the QR code).
    pub fn from_totp(totp: Totp, secret: &str) -> Authenticator {
        assert_eq!(totp.algorithm(), Algorithm::SHA1, "algorithm");
        assert_eq!(totp.digits(), 6, "digits");
        assert_eq!(totp.step(), STEP_SECS, "period");
        Authenticator {
            totp,
            secret: secret.to_string(),
            last_step: None,
            last_code: None,
        }
    }

    /// The secret's bytes.
    pub fn secret_bytes(&self) -> Vec<u8> {
        self.totp.secret().as_bytes().to_vec()
    }

    /// The step of now.
    pub fn current_step() -> u64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let secs = now_f64() as u64;
        secs / STEP_SECS
    }

    /// The code of a step.
    pub fn code_at_step(&self, step: u64) -> String {
        self.totp.generate(step * STEP_SECS).to_string()
    }

    /// A code the service accepts when it arrives (inside its window of one
    /// step either side, with a margin for the request's travel) and that
    /// this authenticator never gave before: the earliest such step. Waits
    /// for the next step when every usable one was given.
    pub fn fresh_code(&mut self) -> String {
        loop {
            let now = now_f64();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let current = (now / STEP_SECS as f64) as u64;
            let into_step = now - (current * STEP_SECS) as f64;
            // Near the end of a step the service may already be in the next:
            // the step before this one would then be two behind.
            let lowest = if into_step < STEP_SECS as f64 - ARRIVAL_MARGIN_SECS {
                current - 1
            } else {
                current
            };
            let highest = current + 1;
            let step = self.last_step.map_or(lowest, |last| lowest.max(last + 1));
            if step <= highest {
                let code = self.code_at_step(step);
                self.last_step = Some(step);
                self.last_code = Some(code.clone());
                return code;
            }
            // Every usable step was given: wait until `step` is within reach.
            let usable_at = ((step - 1) * STEP_SECS) as f64 + 0.05;
            let wait = (usable_at - now).clamp(0.05, STEP_SECS as f64 + 1.0);
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }

    /// The code [`Authenticator::fresh_code`] would give now, without
    /// counting it as given (for requests the service must refuse before
    /// looking at the code).
    pub fn peek_code(&self) -> String {
        self.clone().fresh_code()
    }

    /// The code [`Authenticator::fresh_code`] gave last (to replay it).
    pub fn last_code(&self) -> String {
        match &self.last_code {
            Some(code) => code.clone(),
            None => panic!("no code was given yet"),
        }
    }

    /// Six digits that are no step's code anywhere near now (two steps
    /// either side, beyond the service's window and a step boundary).
    pub fn wrong_code(&self) -> String {
        let current = Authenticator::current_step();
        let near: Vec<String> = (current - 2..=current + 3)
            .map(|s| self.code_at_step(s))
            .collect();
        let seed: u32 = near[2].parse().unwrap_or(0);
        (0..100u32)
            .map(|i| format!("{:06}", (seed + 500_000 + i * 7919) % 1_000_000))
            .find(|candidate| !near.contains(candidate))
            .unwrap_or_else(|| "000000".to_string())
    }

    /// A genuine code of this secret from `back` steps ago, that is no
    /// step's code inside the window (when it happens to be, an earlier step
    /// is taken).
    pub fn code_steps_back(&self, back: u64) -> String {
        let current = Authenticator::current_step();
        let window: Vec<String> = (current - 1..=current + 2)
            .map(|s| self.code_at_step(s))
            .collect();
        (back..back + 10)
            .map(|b| self.code_at_step(current - b))
            .find(|code| !window.contains(code))
            .unwrap_or_else(|| panic!("no code outside the window"))
    }
}

/// Whether `code` looks like a recovery code: `XXXX-XXXX-XXXX`, upper-case
/// letters and digits.
pub fn is_recovery_code(code: &str) -> bool {
    let groups: Vec<&str> = code.split('-').collect();
    groups.len() == 3
        && groups.iter().all(|g| {
            g.len() == 4
                && g.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        })
}

impl Service {
    /// `POST /auth/mfa/totp/enroll` in the session of `access` (no body).
    pub fn mfa_enroll(&self, access: &str) -> Reply {
        self.post("/auth/mfa/totp/enroll")
            .access_cookie(access)
            .send()
    }

    /// `POST /auth/mfa/totp/confirm {code}`.
    pub fn mfa_confirm(&self, access: &str, code: &str) -> Reply {
        self.post("/auth/mfa/totp/confirm")
            .access_cookie(access)
            .json(&json!({ "code": code }))
            .send()
    }

    /// `POST /auth/mfa/verify {challenge, code}`.
    pub fn mfa_verify(&self, challenge: &str, code: &str) -> Reply {
        self.post("/auth/mfa/verify")
            .json(&json!({ "challenge": challenge, "code": code }))
            .send()
    }

    /// `POST /auth/mfa/verify {challenge, recoveryCode}`.
    pub fn mfa_verify_recovery(&self, challenge: &str, recovery_code: &str) -> Reply {
        self.post("/auth/mfa/verify")
            .json(&json!({ "challenge": challenge, "recoveryCode": recovery_code }))
            .send()
    }

    /// Enrols (panics unless 200) and returns the authenticator of the
    /// new secret, and the whole answer.
    pub fn start_mfa(&self, access: &str) -> (Authenticator, serde_json::Value) {
        let reply = self.mfa_enroll(access);
        reply.expect_status(200);
        let body = reply.json();
        let secret = body["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no secret: {reply}"));
        (Authenticator::from_base32(secret), body)
    }

    /// Enrols and confirms a TOTP factor in the session of `access` (which
    /// stays `aal1`); returns the authenticator and the ten recovery codes.
    pub fn enable_mfa(&self, access: &str) -> (Authenticator, Vec<String>) {
        let (mut authenticator, _) = self.start_mfa(access);
        let reply = self.mfa_confirm(access, &authenticator.fresh_code());
        reply.expect_status(200);
        let codes = reply.json()["recoveryCodes"]
            .as_array()
            .unwrap_or_else(|| panic!("no recoveryCodes: {reply}"))
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect();
        (authenticator, codes)
    }

    /// Signs in a user with a factor: the challenge of the password step
    /// (panics unless 200 `{mfaRequired: true, challenge}`).
    pub fn mfa_challenge(&self, account: &Account) -> String {
        let reply = self.signin(&account.email, &account.password);
        reply.expect_status(200);
        let body = reply.json();
        assert_eq!(body["mfaRequired"], true, "{reply}");
        body["challenge"]
            .as_str()
            .unwrap_or_else(|| panic!("no challenge: {reply}"))
            .to_string()
    }

    /// Signs in with the password and a fresh code: an `aal2` session.
    pub fn sign_in_mfa(&self, account: &Account, authenticator: &mut Authenticator) -> Tokens {
        let challenge = self.mfa_challenge(account);
        let reply = self.mfa_verify(&challenge, &authenticator.fresh_code());
        reply.expect_status(200);
        tokens_of(&reply)
    }
}
