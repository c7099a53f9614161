//! `POST /auth/password/forgot` must not tell whether an address has an
//! account by how long it takes: the known address's request issues a token
//! and sends a message, the unknown one's does neither, and both must answer
//! in the same time (the message goes out after the answer). Alone in its
//! file so no other test competes for the CPU while it measures.
//!
//! Interleaved requests for unknown addresses and for known ones; their
//! medians must be within 10 % of each other. Every known request uses a
//! fresh account and every request, with `trust_forwarded_for`, a fresh
//! client address, so no throttle counter gets near a lock. After a known
//! request the test waits (untimed) for its message and for the component's
//! log line that ends the delivery, so a delivery never overlaps the next
//! measurement; then, after either kind, it pauses a few milliseconds, so
//! every request starts from the same quiet. As in `enumeration_timing.rs`, a round
//! whose medians differ is measured again, at most three rounds in all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latch_e2e::{Backend, Options, Reply, Service, WebhookReceiver, median_ms, unique_email};
use serde_json::json;

const SAMPLES: usize = 41;
const WARM_UP: usize = 5;
const WAIT: Duration = Duration::from_secs(15);
/// The pause after every request (and after a known request's delivery).
const SETTLE: Duration = Duration::from_millis(5);

fn timed_forgot(svc: &Service, email: &str, client: usize) -> (Duration, Reply) {
    let call = svc
        .post("/auth/password/forgot")
        .header(
            "x-forwarded-for",
            &format!("10.78.{}.{}", client / 250, client % 250 + 1),
        )
        .json(&json!({ "email": email }));
    let started = Instant::now();
    let reply = call.send();
    (started.elapsed(), reply)
}

/// Waits until the component that answered `reply` logged its delivery's
/// outcome: its work is over, so it cannot slow the next request down.
fn wait_for_delivery_end(svc: &Service, reply: &Reply) {
    let request_id = reply.header("x-request-id").unwrap();
    let deadline = Instant::now() + WAIT;
    while !svc
        .guest_json_lines()
        .iter()
        .any(|l| l["event"] == "email_delivery" && l["request_id"] == request_id)
    {
        assert!(
            Instant::now() < deadline,
            "no email_delivery line for request {request_id}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One round: medians (ms) of unknown-address and known-address requests.
fn round(svc: &Service, receiver: &WebhookReceiver, client: &mut usize) -> (f64, f64) {
    let accounts: Vec<_> = (0..SAMPLES + WARM_UP)
        .map(|_| svc.create_account())
        .collect();
    // Sign-up's verification messages are all out before measuring.
    for account in &accounts {
        receiver.wait_for("verification", &account.email, WAIT);
    }
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
            let (took, reply) = timed_forgot(svc, &email, *client);
            reply.expect_status(202);
            if is_known {
                receiver.wait_for("recovery", &email, WAIT);
                wait_for_delivery_end(svc, &reply);
            }
            // Every request starts from the same quiet.
            std::thread::sleep(SETTLE);
            if i >= WARM_UP {
                if is_known { &mut known } else { &mut unknown }.push(took);
            }
        }
    }
    (median_ms(&unknown), median_ms(&known))
}

#[test]
fn unknown_and_known_addresses_take_the_same_time() {
    let receiver = WebhookReceiver::start();
    let svc = Options::new(Backend::Embedded)
        .webhook(&receiver)
        .var("trust_forwarded_for", "true")
        .start();
    let mut client = 0;
    let mut rounds: Vec<(f64, f64, f64)> = Vec::new();
    while rounds.len() < 3 && rounds.last().is_none_or(|(_, _, gap)| *gap > 0.10) {
        let (unknown_ms, known_ms) = round(&svc, &receiver, &mut client);
        let gap = (unknown_ms - known_ms).abs() / unknown_ms.max(known_ms);
        println!(
            "forgot medians over {SAMPLES} each: unknown address {unknown_ms:.2} ms, \
             known address {known_ms:.2} ms, gap {:.1} %",
            gap * 100.0
        );
        rounds.push((unknown_ms, known_ms, gap));
    }
    assert!(
        rounds.iter().any(|(_, _, gap)| *gap <= 0.10),
        "the medians (unknown ms, known ms, gap) differ by more than 10 % in every round: {rounds:?}"
    );
    // Every known request was delivered, no unknown one was, and no lock was involved.
    let recovery = receiver
        .messages()
        .iter()
        .filter(|m| m.kind() == "recovery")
        .count();
    assert_eq!(recovery, rounds.len() * (SAMPLES + WARM_UP));
    assert_eq!(
        latch_e2e::count(
            &svc.db(),
            "SELECT count(*) FROM throttle WHERE locked_until > 0"
        ),
        0
    );
}
