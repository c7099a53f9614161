//! Sign-in must not tell whether an email has an account by how long it
//! takes (the old service answered unknown emails in 2-7 ms and wrong
//! passwords in 75-120 ms). Alone in its file so no other test competes for
//! the CPU while it measures.
//!
//! Interleaved sign-ins with an unknown email and with a known email and a
//! wrong password; their medians must be within 10 % of each other. Every
//! attempt uses a fresh account or email and, with `trust_forwarded_for`, a
//! fresh client address, so no throttle counter gets near a lock.
//!
//! A machine whose load changes in the middle of a round (another build
//! starting or ending) makes both sets bimodal and their medians unstable,
//! so a round whose medians differ is measured again, at most three rounds
//! in all. A real enumeration gap (the old service's was over 90 %) fails
//! every round.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latch_e2e::{Backend, Options, Reply, Service, assert_problem, median_ms, unique_email};
use serde_json::json;

const SAMPLES: usize = 25;
const WARM_UP: usize = 5;

fn timed_signin(svc: &Service, email: &str, client: usize) -> (Duration, Reply) {
    let call = svc
        .post("/auth/signin")
        .header(
            "x-forwarded-for",
            &format!("10.77.{}.{}", client / 250, client % 250 + 1),
        )
        .json(&json!({"email": email, "password": "not-the-password-123"}));
    let started = Instant::now();
    let reply = call.send();
    (started.elapsed(), reply)
}

/// One round: medians (ms) of unknown-email and known-email sign-ins.
fn round(svc: &Service, client: &mut usize) -> (f64, f64) {
    let accounts: Vec<_> = (0..SAMPLES + WARM_UP)
        .map(|_| svc.create_account())
        .collect();
    let mut unknown = Vec::new();
    let mut known = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        // Alternate which kind goes first, so drift hits both alike.
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_known in order {
            *client += 1;
            let email = if is_known {
                account.email.clone()
            } else {
                unique_email("nobody")
            };
            let (took, reply) = timed_signin(svc, &email, *client);
            assert_problem(&reply, 401);
            if i >= WARM_UP {
                if is_known { &mut known } else { &mut unknown }.push(took);
            }
        }
    }
    (median_ms(&unknown), median_ms(&known))
}

#[test]
fn unknown_and_known_emails_take_the_same_time() {
    let svc = Options::new(Backend::Embedded)
        .var("trust_forwarded_for", "true")
        .start();
    let mut client = 0;
    let mut rounds: Vec<(f64, f64, f64)> = Vec::new();
    while rounds.len() < 3 && rounds.last().is_none_or(|(_, _, gap)| *gap > 0.10) {
        let (unknown_ms, known_ms) = round(&svc, &mut client);
        let gap = (unknown_ms - known_ms).abs() / unknown_ms.max(known_ms);
        println!(
            "sign-in medians over {SAMPLES} each: unknown email {unknown_ms:.1} ms, \
             known email + wrong password {known_ms:.1} ms, gap {:.1} %",
            gap * 100.0
        );
        rounds.push((unknown_ms, known_ms, gap));
    }
    assert!(
        rounds.iter().any(|(_, _, gap)| *gap <= 0.10),
        "the medians (unknown ms, known ms, gap) differ by more than 10 % in every round: {rounds:?}"
    );
    // No lock was involved.
    assert_eq!(
        latch_e2e::count(
            &svc.db(),
            "SELECT count(*) FROM throttle WHERE locked_until > 0"
        ),
        0
    );
}
