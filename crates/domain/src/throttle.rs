//! Sign-in throttling rules. The counters live in the database; the rules
//! live here so the store's atomic upsert can be tested against them.
//!
//! Rule, per key (an account or a client address):
//! - failures are counted in a window of `window_secs`;
//! - once `failures >= max_failures`, each further failure locks the key for
//!   `base_lockout_secs * 2^(failures - max_failures)`, capped at
//!   `max_lockout_secs` (60 s, 120 s, 240 s, ... 1 h with the defaults);
//! - the count starts over when a failure comes `window_secs` or more after
//!   the later of the window start and the end of the last lock. Measuring
//!   from the lock end matters: otherwise the lock could never grow past
//!   the window, and a patient attacker would get a fresh allowance every
//!   15 minutes.
//!
//! A successful sign-in should delete the account's row (not the client
//! address's: one valid account must not reset an address's count).

use std::fmt;
use std::net::IpAddr;

use thiserror::Error;

use crate::email::Email;

/// Throttling parameters for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed in a window before locking.
    pub max_failures: u32,
    /// Length of the counting window in seconds.
    pub window_secs: i64,
    /// First lock length in seconds (doubles per further failure).
    pub base_lockout_secs: i64,
    /// Longest lock in seconds.
    pub max_lockout_secs: i64,
}

/// Counter row of one key, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    /// Failures counted in the current window.
    pub failures: u32,
    /// Unix time of the first failure of the current window.
    pub window_started_at: i64,
    /// Unix time until which attempts are refused (0 or past: not locked).
    pub locked_until: i64,
}

/// Attempts are refused until the lock ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("too many failed attempts, retry after {retry_after_secs} s")]
pub struct Throttled {
    /// Seconds until the lock ends (at least 1).
    pub retry_after_secs: u64,
}

impl ThrottlePolicy {
    /// Per account: 5 failures in 15 minutes, then 60 s doubling, at most 1 h.
    pub const ACCOUNT: ThrottlePolicy = ThrottlePolicy {
        max_failures: 5,
        window_secs: 15 * 60,
        base_lockout_secs: 60,
        max_lockout_secs: 60 * 60,
    };

    /// Per client address: 20 failures in 15 minutes, then 60 s doubling,
    /// at most 1 h. Looser than per account because many users may share an
    /// address (offices, carrier NAT); for the same reason the store counts
    /// an address's failures after the password check, never its attempts.
    pub const CLIENT: ThrottlePolicy = ThrottlePolicy {
        max_failures: 20,
        window_secs: 15 * 60,
        base_lockout_secs: 60,
        max_lockout_secs: 60 * 60,
    };

    /// Recovery requests per account: 5 an hour, then 15 minutes doubling,
    /// at most 24 h. Every request counts (each one sends a message).
    pub const RECOVERY_ACCOUNT: ThrottlePolicy = ThrottlePolicy {
        max_failures: 5,
        window_secs: 60 * 60,
        base_lockout_secs: 15 * 60,
        max_lockout_secs: 24 * 60 * 60,
    };

    /// Recovery requests per client address: 20 an hour (shared addresses),
    /// then 15 minutes doubling, at most 24 h.
    pub const RECOVERY_CLIENT: ThrottlePolicy = ThrottlePolicy {
        max_failures: 20,
        window_secs: 60 * 60,
        base_lockout_secs: 15 * 60,
        max_lockout_secs: 24 * 60 * 60,
    };

    /// Verification messages asked for by a signed-in user: 5 an hour, then
    /// 15 minutes doubling, at most 24 h.
    pub const VERIFICATION_RESEND: ThrottlePolicy = ThrottlePolicy {
        max_failures: 5,
        window_secs: 60 * 60,
        base_lockout_secs: 15 * 60,
        max_lockout_secs: 24 * 60 * 60,
    };

    /// Sign-ups per client address: `max` in `window_secs`, then locked
    /// until a whole window has passed (the variables `signup_max_per_window`
    /// and `signup_window_seconds`; default 10 an hour).
    pub const fn signup(max: u32, window_secs: i64) -> ThrottlePolicy {
        ThrottlePolicy {
            max_failures: max,
            window_secs,
            base_lockout_secs: window_secs,
            max_lockout_secs: window_secs,
        }
    }

    /// Whether an attempt may proceed now.
    ///
    /// # Errors
    /// [`Throttled`] while `state.locked_until > now`.
    pub fn check(&self, state: &ThrottleState, now: i64) -> Result<(), Throttled> {
        if state.locked_until > now {
            let remaining = state.locked_until.saturating_sub(now).unsigned_abs();
            Err(Throttled {
                retry_after_secs: remaining,
            })
        } else {
            Ok(())
        }
    }

    /// Whether the next failure at `now` starts a new count (see the module
    /// docs: measured from the later of window start and lock end).
    pub fn window_expired(&self, state: &ThrottleState, now: i64) -> bool {
        let reference = state.window_started_at.max(state.locked_until);
        now.saturating_sub(reference) >= self.window_secs
    }

    /// The state after a failed attempt at `now`.
    pub fn after_failure(&self, previous: Option<ThrottleState>, now: i64) -> ThrottleState {
        let (failures, window_started_at) = match previous {
            Some(state) if !self.window_expired(&state, now) => {
                (state.failures.saturating_add(1), state.window_started_at)
            }
            _ => (1, now),
        };
        let locked_until = match self.lockout_for(failures) {
            Some(lockout) => now.saturating_add(lockout),
            // Never shorten a lock that is still running (only reachable by
            // callers that skip `check`); otherwise not locked.
            None => previous
                .map(|state| state.locked_until)
                .filter(|&until| until > now)
                .unwrap_or(0),
        };
        ThrottleState {
            failures,
            window_started_at,
            locked_until,
        }
    }

    /// Lock length in seconds after the `failures`-th failure of a window,
    /// or `None` below the threshold.
    pub fn lockout_for(&self, failures: u32) -> Option<i64> {
        let excess = failures.checked_sub(self.max_failures)?;
        let lockout = 1i64
            .checked_shl(excess)
            .filter(|factor| *factor > 0)
            .and_then(|factor| self.base_lockout_secs.checked_mul(factor))
            .map_or(self.max_lockout_secs, |secs| {
                secs.min(self.max_lockout_secs)
            });
        Some(lockout)
    }
}

/// Database key of one throttle counter.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

impl ThrottleKey {
    /// The per-account key: `acct:` and a hash of the normalised email.
    pub fn account(email: &Email) -> Self {
        Self(email.throttle_key())
    }

    /// The per-address key: `ip:<addr>` for IPv4, `ip:<prefix>/64` for IPv6
    /// (one host usually controls a whole /64, so counting single IPv6
    /// addresses would be trivial to evade).
    pub fn client(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(format!("ip:{v4}")),
            IpAddr::V6(v6) => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                let prefix = std::net::Ipv6Addr::from(segments);
                Self(format!("ip:{prefix}/64"))
            }
        }
    }

    /// The key counting a signed-in user's attempts to confirm their current
    /// password (a stolen access token must not allow guessing it freely).
    pub fn password_check(user_id: &str) -> Self {
        Self(format!("pwd:{user_id}"))
    }

    /// The key counting recovery requests for an address (`rcv:` and the
    /// same hash as the sign-in key: asking for recovery never locks sign-in).
    pub fn recovery(email: &Email) -> Self {
        let account = email.throttle_key();
        let hash = account.strip_prefix("acct:").unwrap_or(&account);
        Self(format!("rcv:{hash}"))
    }

    /// The key counting recovery requests from a client address
    /// (`rcv-` and the address key of [`ThrottleKey::client`]).
    pub fn recovery_client(ip: IpAddr) -> Self {
        Self(format!("rcv-{}", Self::client(ip).0))
    }

    /// The key counting sign-ups from a client address (`sgn-` and the
    /// address key of [`ThrottleKey::client`]).
    pub fn signup_client(ip: IpAddr) -> Self {
        Self(format!("sgn-{}", Self::client(ip).0))
    }

    /// The key counting a user's second-factor codes (sign-in verification,
    /// confirmation, removal and new recovery codes alike).
    pub fn second_factor(user_id: &str) -> Self {
        Self(format!("mfa:{user_id}"))
    }

    /// The key counting a signed-in user's requests for a new verification message.
    pub fn verification_resend(user_id: &str) -> Self {
        Self(format!("vfy:{user_id}"))
    }

    /// Every key that can lock the account `user_id` out (what an admin's
    /// unlock clears): sign-in, password check, recovery and second factor.
    /// `email` is the account's stored address; one that does not parse
    /// leaves out only the keys derived from it.
    pub fn of_account(user_id: &str, email: &str) -> Vec<ThrottleKey> {
        let mut keys = vec![Self::password_check(user_id), Self::second_factor(user_id)];
        if let Ok(email) = Email::parse(email) {
            keys.push(Self::account(&email));
            keys.push(Self::recovery(&email));
        }
        keys
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ThrottleKey").field(&self.0).finish()
    }
}

impl fmt::Display for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const ACCOUNT: ThrottlePolicy = ThrottlePolicy::ACCOUNT;
    const T0: i64 = 1_700_000_000;

    /// Applies failures at the given times, checking first like a caller.
    fn fail_at(policy: &ThrottlePolicy, times: &[i64]) -> ThrottleState {
        let mut state = None;
        for &now in times {
            if let Some(current) = &state {
                assert!(policy.check(current, now).is_ok(), "locked at {now}");
            }
            state = Some(policy.after_failure(state, now));
        }
        state.unwrap()
    }

    #[test]
    fn defaults() {
        assert_eq!(
            (
                ACCOUNT.max_failures,
                ACCOUNT.window_secs,
                ACCOUNT.base_lockout_secs,
                ACCOUNT.max_lockout_secs
            ),
            (5, 900, 60, 3600)
        );
        assert_eq!(
            (
                ThrottlePolicy::CLIENT.max_failures,
                ThrottlePolicy::CLIENT.window_secs
            ),
            (20, 900)
        );
    }

    #[test]
    fn locks_after_the_fifth_failure_for_60_seconds() {
        let four = fail_at(&ACCOUNT, &[T0, T0 + 1, T0 + 2, T0 + 3]);
        assert_eq!(four.failures, 4);
        assert_eq!(four.locked_until, 0);
        assert!(ACCOUNT.check(&four, T0 + 4).is_ok());

        let five = ACCOUNT.after_failure(Some(four), T0 + 4);
        assert_eq!(five.failures, 5);
        assert_eq!(five.window_started_at, T0);
        assert_eq!(five.locked_until, T0 + 64);
        assert_eq!(
            ACCOUNT.check(&five, T0 + 4),
            Err(Throttled {
                retry_after_secs: 60
            })
        );
        assert_eq!(
            ACCOUNT.check(&five, T0 + 63),
            Err(Throttled {
                retry_after_secs: 1
            })
        );
        assert!(ACCOUNT.check(&five, T0 + 64).is_ok());
    }

    #[test]
    fn lock_doubles_per_further_failure_up_to_the_cap() {
        let mut state = fail_at(&ACCOUNT, &[T0; 5]);
        let mut observed = vec![];
        for _ in 0..8 {
            let now = state.locked_until; // first moment it is allowed again
            assert!(ACCOUNT.check(&state, now).is_ok());
            state = ACCOUNT.after_failure(Some(state), now);
            observed.push(state.locked_until - now);
        }
        assert_eq!(observed, [120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(state.failures, 13);
        assert_eq!(state.window_started_at, T0, "window kept while locks run");
    }

    #[test]
    fn lockout_for_matches_the_progression() {
        assert_eq!(ACCOUNT.lockout_for(0), None);
        assert_eq!(ACCOUNT.lockout_for(4), None);
        assert_eq!(ACCOUNT.lockout_for(5), Some(60));
        assert_eq!(ACCOUNT.lockout_for(6), Some(120));
        assert_eq!(ACCOUNT.lockout_for(7), Some(240));
        assert_eq!(ACCOUNT.lockout_for(10), Some(1920));
        assert_eq!(ACCOUNT.lockout_for(11), Some(3600));
        assert_eq!(
            ACCOUNT.lockout_for(68),
            Some(3600),
            "shift overflow is capped"
        );
        assert_eq!(ACCOUNT.lockout_for(u32::MAX), Some(3600));
        assert_eq!(ThrottlePolicy::CLIENT.lockout_for(19), None);
        assert_eq!(ThrottlePolicy::CLIENT.lockout_for(20), Some(60));
    }

    #[test]
    fn window_expiry_resets_the_count() {
        let four = fail_at(&ACCOUNT, &[T0, T0 + 10, T0 + 20, T0 + 30]);
        let late = ACCOUNT.after_failure(Some(four), T0 + 900);
        assert_eq!(late.failures, 1);
        assert_eq!(late.window_started_at, T0 + 900);
        assert_eq!(late.locked_until, 0);
        let just_inside = ACCOUNT.after_failure(Some(four), T0 + 899);
        assert_eq!(just_inside.failures, 5);
        assert!(just_inside.locked_until > T0 + 899);
    }

    #[test]
    fn window_is_measured_from_the_end_of_the_last_lock() {
        let locked = fail_at(&ACCOUNT, &[T0; 5]);
        assert_eq!(locked.locked_until, T0 + 60);
        // 900 s after the window start but only 840 s after the lock ended.
        let next = ACCOUNT.after_failure(Some(locked), T0 + 900);
        assert_eq!(next.failures, 6);
        assert_eq!(next.locked_until, T0 + 900 + 120);
        // A full quiet window after the lock end starts over.
        let fresh = ACCOUNT.after_failure(Some(locked), T0 + 60 + 900);
        assert_eq!(fresh.failures, 1);
        assert_eq!(fresh.locked_until, 0);
    }

    #[test]
    fn throttle_keys() {
        let email = Email::parse("Jane@Example.com").unwrap();
        assert_eq!(ThrottleKey::account(&email).as_str(), email.throttle_key());
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(ThrottleKey::client(v4).as_str(), "ip:203.0.113.9");
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(ThrottleKey::client(mapped).as_str(), "ip:203.0.113.9");
        let v6: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        assert_eq!(ThrottleKey::client(v6).as_str(), "ip:2001:db8:1:2::/64");
        let same_64: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        assert_eq!(ThrottleKey::client(v6), ThrottleKey::client(same_64));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod recovery_key_tests {
    use super::*;

    #[test]
    fn recovery_keys_never_share_a_row_with_sign_in() {
        let email = Email::parse("Jo@Example.com").unwrap();
        let account = ThrottleKey::account(&email);
        let recovery = ThrottleKey::recovery(&email);
        assert_ne!(account, recovery);
        assert_eq!(&recovery.as_str()[4..], &account.as_str()[5..]);
        assert!(recovery.as_str().starts_with("rcv:"));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            ThrottleKey::recovery_client(ip).as_str(),
            "rcv-ip:192.0.2.7"
        );
        assert_eq!(ThrottleKey::verification_resend("u1").as_str(), "vfy:u1");
        assert_eq!(ThrottleKey::signup_client(ip).as_str(), "sgn-ip:192.0.2.7");
        let policy = ThrottlePolicy::signup(10, 3600);
        assert_eq!(policy.lockout_for(9), None);
        assert_eq!(policy.lockout_for(10), Some(3600));
        assert_eq!(policy.lockout_for(40), Some(3600));
    }
}
