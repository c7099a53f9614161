//! One kept-alive connection, one request at a time: no answer may wait on
//! Nagle's algorithm.
//!
//! Spin 3.6.3 serves without `TCP_NODELAY`, and `latch up` does the same by
//! default. A component that hands the host its response head before the body
//! makes the two leave in separate writes, and the second waits for the
//! client's delayed acknowledgement of the first, about 40 ms each time. An
//! ingress controller keeps its upstream connections alive, so that is what
//! users would see. The same holds for the database request of the profile on
//! SQLite Cloud, which goes out on Spin's pooled (kept-alive) connections.
//!
//! The four cases run one after another (a mutex), so that no other test of
//! this file competes for the two cores while one is timing.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use latch_e2e::{Backend, KeptAlive, Service, both_backends};

/// Requests per case.
const REQUESTS: usize = 100;
/// Slowest answer allowed: a Nagle stall takes about 40 ms, a served request
/// well under 5 ms on these machines.
const LIMIT: Duration = Duration::from_millis(20);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Times `REQUESTS` sequential GETs of `path` on one connection (after two
/// untimed ones that warm the connection and the instance pool up), and
/// panics with every duration if any exceeds [`LIMIT`] or any answer is not 200.
fn sequential(svc: &Service, path: &str, headers: &[&str]) {
    let mut connection = KeptAlive::connect(svc.address());
    for _ in 0..2 {
        let reply = connection.get(path, headers);
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let mut durations = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let reply = connection.get(path, headers);
        durations.push(started.elapsed());
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let slow: Vec<_> = durations.iter().filter(|d| **d > LIMIT).collect();
    let mut sorted = durations.clone();
    sorted.sort();
    assert!(
        slow.is_empty(),
        "{} of {REQUESTS} sequential {path} on one kept-alive connection took over {LIMIT:?} \
         ({:?} under {:?}): median {:?}, max {:?}; all: {durations:?}",
        slow.len(),
        svc.backend(),
        svc.runtime(),
        sorted[REQUESTS / 2],
        sorted[REQUESTS - 1],
    );
}

fn health_answers_without_stalls(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let svc = Service::start_default(backend);
    sequential(&svc, "/health", &[]);
}

fn profile_answers_without_stalls(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let cookie = format!("cookie: token={}", tokens.access);
    sequential(&svc, "/user/profile", &[&cookie]);
}

both_backends!(
    health_answers_without_stalls,
    profile_answers_without_stalls
);
