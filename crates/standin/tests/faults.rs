//! Fault injection, counters, concurrency and shutdown of the stand-in, as
//! seen by the real client code of `latch-weblite`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{API_KEY, StandIn, agent_with_timeout, send_with};
use latch_weblite::{Statement, Value, WebliteError, single_request_body};
use serde_json::json;

fn setup() -> StandIn {
    let standin = StandIn::start();
    standin.create_database("db");
    standin
        .exec("db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    standin
}

fn insert(standin: &StandIn, v: &str) -> Result<latch_weblite::QueryResult, WebliteError> {
    standin.run(
        "db",
        &Statement::new("INSERT INTO t (v) VALUES (?)").bind(v),
    )
}

fn count(standin: &StandIn) -> i64 {
    let result = standin.exec("db", "SELECT count(*) AS n FROM t").unwrap();
    result.get(0, "n").and_then(Value::as_i64).unwrap()
}

#[test]
fn status_faults() {
    let standin = setup();
    for errors in ["old", "new"] {
        standin.set_config(json!({"errors": errors}));
        for status in [401_u16, 403, 429, 500, 502, 503, 504] {
            let before = count(&standin);
            standin.add_faults(json!([{"kind": "status", "status": status}]));
            let err = insert(&standin, "x").unwrap_err();
            let label = format!("{errors}/{status}");
            match status {
                401 | 403 => assert_eq!(err, WebliteError::Unauthorized { status }, "{label}"),
                429 => assert!(
                    matches!(err, WebliteError::RateLimited { .. }),
                    "{label}: {err:?}"
                ),
                _ => assert!(
                    matches!(err, WebliteError::Server { status: s, .. } if s == status),
                    "{label}: {err:?}"
                ),
            }
            assert!(err.is_unavailable(), "{label}");
            // `before` by default: the SQL did not run.
            assert_eq!(count(&standin), before, "{label}");
        }
    }
    // `after`: the SQL ran and committed, only the reply was lost.
    let before = count(&standin);
    standin.add_faults(json!({"kind": "status", "status": 503, "when": "after"}));
    assert!(insert(&standin, "lost reply").unwrap_err().is_unavailable());
    assert_eq!(count(&standin), before + 1);
}

#[test]
fn paused_node() {
    let standin = setup();
    standin.add_faults(json!([{"kind": "paused"}, {"kind": "paused", "status": 503, "skip": 1}]));
    for expected_status in [200, 503] {
        let err = insert(&standin, "x").unwrap_err();
        assert!(
            matches!(&err, WebliteError::Paused { status, message } if *status == expected_status && message.contains("paused")),
            "{err:?}"
        );
        assert!(err.is_unavailable());
    }
    assert_eq!(count(&standin), 0);
}

#[test]
fn malformed_answers() {
    let standin = setup();
    standin.add_faults(json!([
        {"kind": "malformed"},
        {"kind": "malformed", "body": "{\"data\": 42}", "skip": 0},
        {"kind": "malformed", "body": "<html>oops</html>", "skip": 1},
    ]));
    // Request 1 gets the first two faults (the first wins); request 2 the third.
    for _ in 0..2 {
        let err = insert(&standin, "x").unwrap_err();
        assert!(
            matches!(err, WebliteError::Malformed { status: 200, .. }),
            "{err:?}"
        );
        assert!(err.is_unavailable());
    }
    // Malformed defaults to `after`: both inserts were executed.
    assert_eq!(count(&standin), 2);
    standin.add_faults(json!({"kind": "malformed", "body": "{\"data\": 42}"}));
    let err = standin.exec("db", "SELECT 1").unwrap_err();
    assert!(matches!(err, WebliteError::Malformed { .. }), "{err:?}");
}

/// Sends a request on a raw socket and returns (head, body bytes received)
/// once the server closes the connection.
fn raw_exchange(port: u16, body: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v2/weblite/sql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading: {e} after {} bytes", received.len()),
        }
    }
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no complete response head");
    let head = String::from_utf8(received[..split].to_vec()).unwrap();
    (head, received[split + 4..].to_vec())
}

#[test]
fn cut_mid_response() {
    let standin = setup();
    // Seen on the wire: fewer body bytes than Content-Length announces, then EOF.
    standin.add_faults(json!({"kind": "cut"}));
    let body = single_request_body(
        "db",
        &Statement::new("INSERT INTO t (v) VALUES (?) RETURNING id, v").bind("cut 1"),
    )
    .unwrap();
    let started = Instant::now();
    let (head, received) = raw_exchange(standin.port, &body);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("no Content-Length");
    assert!(!received.is_empty(), "no body byte was sent");
    assert!(
        received.len() < announced,
        "{} of {announced}",
        received.len()
    );
    // `after` by default: the insert committed although the reply was lost.
    assert_eq!(count(&standin), 1);

    // Seen by an HTTP client: a transport error, never a decoded result.
    standin.add_faults(json!({"kind": "cut"}));
    let err = insert(&standin, "cut 2").unwrap_err();
    assert!(matches!(err, WebliteError::Transport(_)), "{err:?}");
    assert!(err.is_unavailable());
    assert_eq!(count(&standin), 2);

    // `before`: nothing executed.
    standin.add_faults(json!({"kind": "cut", "when": "before"}));
    let err = insert(&standin, "cut 3").unwrap_err();
    assert!(matches!(err, WebliteError::Transport(_)), "{err:?}");
    assert_eq!(count(&standin), 2);

    // The stand-in keeps serving afterwards.
    insert(&standin, "fine").unwrap();
    assert_eq!(count(&standin), 3);
}

#[test]
fn latency_faults_and_timeouts() {
    let standin = setup();
    standin.add_faults(json!({"kind": "latency", "latency_ms": 300}));
    let started = Instant::now();
    insert(&standin, "slow").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A client with a shorter timeout sees a transport error.
    standin.add_faults(json!({"kind": "latency", "latency_ms": 2000}));
    let impatient = agent_with_timeout(Duration::from_millis(300));
    let url = standin.database_url("db");
    let body = single_request_body("db", &Statement::new("SELECT 1")).unwrap();
    let started = Instant::now();
    let err = send_with(&impatient, &url, &body).unwrap_err();
    assert!(matches!(err, WebliteError::Transport(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    // Global latency, for benchmarks.
    standin.set_config(json!({"latency_ms": 150}));
    let started = Instant::now();
    standin.exec("db", "SELECT 1").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    standin.set_config(json!({"latency_ms": 0}));
}

#[test]
fn a_commit_gap_lets_another_request_write_before_a_batchs_trailing_read() {
    let standin = std::sync::Arc::new(setup());
    standin.set_config(json!({"commit_gap_ms": 1000}));
    let batch = {
        let standin = standin.clone();
        std::thread::spawn(move || {
            standin.run_batch(
                "db",
                &[Statement::new("INSERT INTO t (v) VALUES ('batch')")],
                Some(&Statement::new("SELECT count(*) AS n FROM t")),
            )
        })
    };
    // Once the batch has committed, another request writes while the batch
    // waits in the gap; its trailing read then sees that write too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&standin) == 0 {
        assert!(Instant::now() < deadline, "the batch never committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    insert(&standin, "other").unwrap();
    let result = batch.join().unwrap().unwrap();
    assert_eq!(result.get(0, "n").and_then(Value::as_i64), Some(2));
    standin.set_config(json!({"commit_gap_ms": 0}));
}

#[test]
fn faults_target_the_kth_request_and_counters_count() {
    let standin = setup();
    standin.control("POST", "/__standin/stats/reset", None);
    standin.add_faults(json!({"kind": "status", "status": 503, "skip": 2, "times": 2}));
    let pending = standin.control("GET", "/__standin/faults", None);
    assert_eq!(
        pending["pending"].as_array().map(Vec::len),
        Some(1),
        "{pending}"
    );
    let outcomes: Vec<bool> = (0..6)
        .map(|i| insert(&standin, &format!("r{i}")).is_ok())
        .collect();
    assert_eq!(outcomes, [true, true, false, false, true, true]);
    let stats = standin.stats();
    assert_eq!(stats["sql_requests"], 6, "{stats}");
    assert_eq!(stats["faults_injected"], 2, "{stats}");
    assert_eq!(stats["by_database"], json!({"db": 6}), "{stats}");

    // Unauthorized and unparsable requests to the SQL endpoint count too;
    // other endpoints do not.
    let (status, _) = standin.post_sql_raw_with(
        &standin.agent,
        br#"{"sql": "SELECT 1", "database": "other"}"#,
        None,
    );
    assert_eq!(status, 401);
    let (status, _) = standin.post_sql_raw(b"not json");
    assert_eq!(status, 400);
    standin.call("GET", "/v2/health", None);
    standin.call("GET", "/v2/weblite/databases", Some(API_KEY));
    let stats = standin.stats();
    assert_eq!(stats["sql_requests"], 8, "{stats}");
    assert_eq!(
        stats["by_database"],
        json!({"db": 6, "other": 1}),
        "{stats}"
    );

    let reset = standin.control("POST", "/__standin/stats/reset", None);
    assert_eq!(
        reset,
        json!({"sql_requests": 0, "by_database": {}, "faults_injected": 0})
    );

    // Clearing the queue removes faults not yet applied.
    standin.add_faults(json!([{"kind": "paused", "skip": 1}, {"kind": "cut", "times": 3}]));
    let cleared = standin.control("DELETE", "/__standin/faults", None);
    assert_eq!(cleared["cleared"], 2);
    for _ in 0..3 {
        insert(&standin, "clean").unwrap();
    }
    assert_eq!(standin.stats()["faults_injected"], 0);
}

#[test]
fn control_api_rejects_bad_input() {
    let standin = setup();
    for (path, body) in [
        ("/__standin/faults", r#"[{"kind": "explode"}]"#),
        (
            "/__standin/faults",
            r#"[{"kind": "status", "status": 200}]"#,
        ),
        ("/__standin/faults", r#"{"kind": "status", "tmes": 2}"#),
        ("/__standin/config", r#"{"rows": "tables"}"#),
        ("/__standin/config", "not json"),
    ] {
        let mut response = standin
            .agent
            .post(standin.url(path))
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path} {body}");
        let _ = response.body_mut().read_to_vec();
    }
    let (status, _) = standin.call("GET", "/__standin/nothing", None);
    assert_eq!(status, 404);
    // The write-shape key also works with a dash.
    let config = standin.set_config(json!({"write-shape": "null"}));
    assert_eq!(config["write_shape"], "null");
}

/// Parallel writers, single statements and batches, do not corrupt the
/// database or lose rows.
#[test]
fn concurrent_writers() {
    let standin = setup();
    let writers = 4;
    let per_writer = 25;
    std::thread::scope(|scope| {
        for w in 0..writers {
            let standin = &standin;
            scope.spawn(move || {
                for i in 0..per_writer {
                    let value = format!("w{w}-{i}");
                    if i % 2 == 0 {
                        insert(standin, &value).unwrap();
                    } else {
                        standin
                            .run_batch(
                                "db",
                                &[Statement::new("INSERT INTO t (v) VALUES (?)")
                                    .bind(value.as_str())],
                                Some(&Statement::new("SELECT count(*) FROM t")),
                            )
                            .unwrap();
                    }
                }
            });
        }
        // A reader alongside the writers.
        scope.spawn(|| {
            for _ in 0..20 {
                standin.exec("db", "SELECT count(*) FROM t").unwrap();
            }
        });
    });
    assert_eq!(count(&standin), writers * per_writer);
    let distinct = standin
        .exec("db", "SELECT count(DISTINCT v) AS n FROM t")
        .unwrap();
    assert_eq!(
        distinct.get(0, "n"),
        Some(&Value::Integer(writers * per_writer))
    );
    let check = standin.exec("db", "PRAGMA integrity_check").unwrap();
    assert_eq!(check.rows, [vec![Value::Text("ok".into())]]);
}

#[test]
fn exits_cleanly_on_signals() {
    for signal in ["TERM", "INT"] {
        let standin = setup();
        insert(&standin, "x").unwrap();
        let status = standin.stop_with_signal(signal);
        assert!(status.success(), "SIG{signal}: {status:?}");
    }
}
