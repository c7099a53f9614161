//! Black-box tests of the runner: real wasm components, real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Options, TestApp, fixtures, get, post, probe_manifest};

#[test]
fn most_specific_route_wins_and_unmatched_paths_are_404() {
    let app = TestApp::start(&probe_manifest(
        &[
            ("/...", "root"),
            ("/a/...", "a-any"),
            ("/a/b", "a-b"),
            ("/p/:id/...", "param"),
        ],
        "",
    ));
    let matched = |path: &str| app.get(path).echoed().get("spin-matched-route").cloned();
    assert_eq!(matched("/a/b/echo").as_deref(), Some("/a/..."));
    assert_eq!(matched("/p/7/echo").as_deref(), Some("/p/:id/..."));
    assert_eq!(matched("/z/echo").as_deref(), Some("/..."));
    // `/a/b` is exact: it wins over `/a/...` for itself only.
    // `/a/b` is exact: it wins for itself (the probe answers "unknown probe"
    // to a path not naming a probe) but not below it.
    assert_eq!(app.get("/a/b").body, "unknown probe");
    assert_eq!(matched("/a/b/c/echo").as_deref(), Some("/a/..."));

    let exact = TestApp::start(&probe_manifest(&[("/exact", "exact")], ""));
    assert_eq!(exact.get("/exact").body, "unknown probe");
    let miss = exact.get("/exact/more");
    assert_eq!((miss.status, miss.body.as_str()), (404, ""));
    assert_eq!(exact.get("/other").status, 404);
    let health = exact.get("/.well-known/spin/health");
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
}

#[test]
fn spin_headers_are_set_as_spin_sets_them() {
    let app = TestApp::start(&probe_manifest(&[("/p/:id/...", "probe")], ""));
    // The probe echoes for any path-info of `/echo`, so put it at the end.
    let url = app.url("/p/42/echo?q=1");
    let reply = support::agent()
        .get(&url)
        .header("spin-client-addr", "6.6.6.6:1")
        .header("spin-path-match-id", "spoofed")
        .call()
        .unwrap();
    let body = reply.into_body().read_to_string().unwrap();
    let echoed: std::collections::HashMap<String, String> = body
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let host = app.addr.to_string();
    assert_eq!(echoed["uri"], format!("http://{host}/p/42/echo?q=1"));
    assert_eq!(
        echoed["spin-full-url"],
        format!("http://{host}/p/42/echo?q=1")
    );
    assert_eq!(echoed["spin-path-info"], "/echo");
    assert_eq!(echoed["spin-matched-route"], "/p/:id/...");
    assert_eq!(echoed["spin-raw-component-route"], "/p/:id/...");
    assert_eq!(echoed["spin-component-route"], "/p/:id");
    assert_eq!(echoed["spin-path-match-id"], "42");
    assert_eq!(echoed["spin-base-path"], "/");
    let client = &echoed["spin-client-addr"];
    assert!(client.starts_with("127.0.0.1:"), "{client}");
    assert_ne!(
        client, "6.6.6.6:1",
        "a client must not choose its own address"
    );
}

#[test]
fn exact_route_has_empty_path_info_and_parameters_use_dashes() {
    let app = TestApp::start(&probe_manifest(
        &[("/echo", "probe"), ("/u/:user_id/...", "probe")],
        "",
    ));
    let exact = app.get("/echo").echoed();
    assert_eq!(exact["spin-path-info"], "");
    assert_eq!(exact["spin-component-route"], "/echo");
    let param = app.get("/u/abc/echo").echoed();
    assert_eq!(param["spin-path-match-user-id"], "abc");
}

#[test]
fn sqlite_is_limited_to_listed_databases() {
    let extra = format!(
        "[component.probe]\nsource = \"{}\"\nsqlite_databases = [\"default\", \"other\"]\n[component.stranger]\nsource = \"{}\"\nsqlite_databases = []\n",
        fixtures().probe.display(),
        fixtures().probe.display()
    );
    let app = TestApp::start(&probe_manifest(
        &[("/db/...", "probe"), ("/x/...", "stranger")],
        &extra,
    ));
    let sql = |db: &str, sql: &str| app.get(&format!("/db/sqlite?db={db}&sql={}", urlencode(sql)));
    assert_eq!(sql("default", "CREATE TABLE t (v TEXT)").status, 200);
    assert_eq!(sql("default", "INSERT INTO t VALUES ('hello')").status, 200);
    let read = sql("default", "SELECT v FROM t");
    assert_eq!((read.status, read.body.as_str()), (200, "hello"));
    // A second label is a separate file.
    assert_eq!(sql("other", "SELECT count(*) FROM sqlite_master").body, "0");
    assert!(app.dir.path().join(".latch/sqlite/default.db").exists());
    assert!(app.dir.path().join(".latch/sqlite/other.db").exists());
    // Not listed: refused, whether the database exists or not.
    let denied = sql("secret", "SELECT 1");
    assert_eq!(denied.status, 403);
    assert!(denied.body.ends_with("AccessDenied"), "{}", denied.body);
    let stranger = app.get("/x/sqlite?db=default&sql=SELECT%201");
    assert_eq!(stranger.status, 403);
    assert!(stranger.body.ends_with("AccessDenied"), "{}", stranger.body);
    // SQL errors come back as the interface's io error, not a trap.
    let bad = sql("default", "SELECT nope FROM t");
    assert_eq!(bad.status, 500);
    assert!(bad.body.contains("Io("), "{}", bad.body);
}

#[test]
fn variables_come_from_defaults_environment_and_templates() {
    let extra = format!(
        r#"[variables]
greeting = {{ default = "hello" }}
target = {{ required = true }}

[component.probe]
source = "{}"
[component.probe.variables]
message = "{{{{ greeting }}}}, {{{{ target }}}}!"
plain = "fixed"
"#,
        fixtures().probe.display()
    );
    let manifest = probe_manifest(&[("/...", "probe")], &extra);
    let mut options = Options::default();
    options
        .env
        .insert("SPIN_VARIABLE_TARGET".into(), "world".into());
    let app = TestApp::start_with(&manifest, options);
    assert_eq!(app.get("/var?name=message").body, "hello, world!");
    assert_eq!(app.get("/var?name=plain").body, "fixed");
    let undefined = app.get("/var?name=greeting");
    assert_eq!(
        undefined.status, 404,
        "only component variables are visible"
    );
    assert!(undefined.body.contains("Undefined"), "{}", undefined.body);
    assert!(app.get("/var?name=Bad-Name").body.contains("InvalidName"));

    let mut options = Options::default();
    options
        .env
        .insert("SPIN_VARIABLE_TARGET".into(), "moon".into());
    options
        .env
        .insert("SPIN_VARIABLE_GREETING".into(), "bye".into());
    let app = TestApp::start_with(&manifest, options);
    assert_eq!(app.get("/var?name=message").body, "bye, moon!");

    // A required variable without a value stops start-up.
    let dir = tempfile::tempdir().unwrap();
    let err = support::load(
        dir.path(),
        &manifest,
        &Options::default(),
        latch_runner::GuestLog::tracing(),
    )
    .err()
    .expect("start-up must fail");
    assert!(
        err.to_string()
            .contains("no provider resolved required variable(s): target"),
        "{err:#}"
    );
}

#[test]
fn outbound_http_only_to_allowed_hosts() {
    let allowed = one_shot_server();
    let refused = one_shot_server();
    let extra = format!(
        r#"[variables]
upstream = {{ default = "127.0.0.1:{}" }}
[component.probe]
source = "{}"
allowed_outbound_hosts = ["http://{{{{ upstream }}}}"]
"#,
        allowed.port(),
        fixtures().probe.display()
    );
    let app = TestApp::start(&probe_manifest(&[("/...", "probe")], &extra));
    let ok = app.get(&format!("/fetch?url=http://127.0.0.1:{}/", allowed.port()));
    assert_eq!((ok.status, ok.body.as_str()), (200, "status=200"));
    let denied = app.get(&format!("/fetch?url=http://127.0.0.1:{}/", refused.port()));
    assert_eq!(denied.status, 502);
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
    let https = app.get(&format!("/fetch?url=https://127.0.0.1:{}/", allowed.port()));
    assert!(https.body.contains("HttpRequestDenied"), "{}", https.body);
    assert_eq!(
        refused.hits(),
        0,
        "a denied request never leaves the runner"
    );
}

#[test]
fn trap_timeout_and_memory_exhaustion_fail_only_their_request() {
    let mut options = Options::default();
    options.serve.request_timeout = Duration::from_millis(1500);
    options.engine.memory_limit = 32 << 20;
    let app = TestApp::start_with(&probe_manifest(&[("/...", "probe")], ""), options);
    for (path, detail) in [
        ("/trap", "failed (trap)"),
        ("/loop", "exceeded its time limit"),
        ("/oom", "exceeded its memory limit"),
    ] {
        let started = Instant::now();
        let reply = app.get(path);
        assert_eq!(reply.status, 500, "{path}: {}", reply.body);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        let problem = reply.json();
        assert_eq!(problem["status"], 500);
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{path}: {problem}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{path} took {:?}",
            started.elapsed()
        );
        let after = app.get("/version");
        assert_eq!(
            (after.status, after.body.as_str()),
            (200, "probe"),
            "after {path}"
        );
    }
}

#[test]
fn oversized_bodies_get_413() {
    let mut options = Options::default();
    options.serve.max_body_bytes = 1024;
    let app = TestApp::start_with(&probe_manifest(&[("/...", "probe")], ""), options);
    let ok = post(&app.url("/body"), &[b'x'; 1024]);
    assert_eq!((ok.status, ok.body.as_str()), (200, "1024"));
    let big = post(&app.url("/body"), &[b'x'; 1025]);
    assert_eq!(big.status, 413);
    assert_eq!(big.headers["content-type"], "application/problem+json");
    // Without a Content-Length (chunked), the limit still holds.
    let chunked = chunked_post(app.addr, "/body", 4096);
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
}

#[test]
fn guest_output_becomes_log_lines_with_the_component_id() {
    let app = TestApp::start(&probe_manifest(&[("/...", "probe")], ""));
    assert_eq!(app.get("/stdout").status, 200);
    let lines = app.guest_lines.lock().unwrap().clone();
    assert!(
        lines.contains(&"probe stdout line one".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"probe stderr line two".to_string()),
        "{lines:?}"
    );
}

#[test]
fn swap_under_load_has_no_failed_request_and_broken_wasm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("svc.wasm");
    std::fs::copy(&fixtures().probe, &source).unwrap();
    let manifest = "spin_manifest_version = 2\n[application]\nname = \"swap\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"svc\"\n[component.svc]\nsource = \"svc.wasm\"\n".to_string();
    let options = Options {
        watch: true,
        ..Options::default()
    };
    let app = TestApp::start_in(dir, &manifest, options);
    let url = app.url("/version");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, failures, served) =
                (url.clone(), stop.clone(), failures.clone(), served.clone());
            std::thread::spawn(move || {
                let agent = support::agent();
                while !stop.load(Ordering::Relaxed) {
                    match agent.get(&url).call() {
                        Ok(r) if r.status() == 200 => {
                            let body = r.into_body().read_to_string().unwrap_or_default();
                            if body == "probe" || body == "other" {
                                served.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(300));
    replace_file(&source, &std::fs::read(&fixtures().other).unwrap());
    let swapped = wait_for(Duration::from_secs(60), || get(&url).body == "other");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(swapped, "the new component never served");
    assert!(
        served.load(Ordering::Relaxed) > 20,
        "too little load: {}",
        served.load(Ordering::Relaxed)
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );

    // Garbage and a component that cannot link are refused; `other` keeps serving.
    replace_file(&source, b"this is not wasm");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(&url).body, "other");
    replace_file(
        &source,
        br#"(component (import "acme:missing/thing@1.0.0" (instance)))"#,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(&url).body, "other");
    // And a good one is still taken afterwards.
    replace_file(&source, &std::fs::read(&fixtures().probe).unwrap());
    assert!(wait_for(Duration::from_secs(60), || get(&url).body == "probe"));
}

#[test]
fn shutdown_drains_requests_in_flight_and_stops_accepting() {
    let mut app = TestApp::start(&probe_manifest(&[("/...", "probe")], ""));
    let url = app.url("/sleep?ms=1500");
    let in_flight = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(300));
    let server = app.shutdown();
    let reply = in_flight.join().unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "slept"));
    server.join().unwrap();
    assert!(
        std::net::TcpStream::connect(app.addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn a_restart_loads_compiled_components_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manifest = probe_manifest(&[("/...", "probe")], "");
    let options = || Options {
        data_dir: Some(data.clone()),
        cache_dir: Some(data.join("cache")),
        ..Options::default()
    };
    let first = support::load(
        dir.path(),
        &manifest,
        &options(),
        latch_runner::GuestLog::tracing(),
    )
    .unwrap();
    assert_eq!(
        first.slots["probe"].loaded_from,
        latch_runner::engine::LoadedFrom::Compiled
    );
    drop(first);
    let second = support::load(
        dir.path(),
        &manifest,
        &options(),
        latch_runner::GuestLog::tracing(),
    )
    .unwrap();
    assert_eq!(
        second.slots["probe"].loaded_from,
        latch_runner::engine::LoadedFrom::Cache
    );
}

#[test]
fn unsupported_manifest_keys_stop_start_up_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = probe_manifest(&[("/...", "probe")], "").replace(
        "[component.probe]\n",
        "[component.probe]\nkey_value_stores = [\"default\"]\n",
    );
    let err = support::load(
        dir.path(),
        &manifest,
        &Options::default(),
        latch_runner::GuestLog::tracing(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("component.probe.key_value_stores"),
        "{err:#}"
    );
    let manifest = probe_manifest(&[("/...", "probe")], "")
        .replace("[application]\n", "[application]\ncolour = \"red\"\n");
    let err = support::load(
        dir.path(),
        &manifest,
        &Options::default(),
        latch_runner::GuestLog::tracing(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("colour"), "{err:#}");
}

// --- helpers ---------------------------------------------------------------

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn chunked_post(addr: std::net::SocketAddr, path: &str, size: usize) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{size:x}\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'x', size));
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    // The server may answer before reading everything; a reset on write is fine.
    let _ = stream.write_all(&request);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// A loopback HTTP server that answers 200 to anything and counts requests.
struct OneShotServer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl OneShotServer {
    fn port(&self) -> u16 {
        self.port
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

fn one_shot_server() -> OneShotServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    OneShotServer { port, hits }
}

/// A server that reads one request whole (by its `content-length`) and
/// answers `<bytes> <pattern ok>`: what the fixture `whole` sent.
fn counting_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut received = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            let head_end = loop {
                if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            };
            let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while received.len() < head_end + length {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
            let body = &received[head_end..];
            let intact =
                body.len() == length && body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8);
            let answer = format!("{} {intact}", body.len());
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}

fn whole_manifest(extra: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "whole"
[[trigger.http]]
route = "/..."
component = "whole"
[component.whole]
source = "{}"
{extra}
"#,
        fixtures().whole.display()
    )
}

#[test]
fn a_response_larger_than_the_host_buffer_arrives_whole() {
    let app = TestApp::start(&whole_manifest(""));
    // 5 MB: more than the host's two queued writes of 1 MiB, so the head must
    // be handed over before the body is all written, or the component would
    // wait forever for a reader.
    let length = 5_000_000;
    let reply = support::agent()
        .get(&app.url(&format!("/respond?bytes={length}")))
        .call()
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply
            .headers()
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        length.to_string()
    );
    let body = reply
        .into_body()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()
        .unwrap();
    assert_eq!(body.len(), length);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    // And a small one still comes whole, with its length.
    let small = app.get("/respond?bytes=10");
    assert_eq!((small.status, small.body.len()), (200, 10));
}

#[test]
fn a_request_larger_than_the_host_buffer_leaves_whole() {
    let port = counting_server();
    let app = TestApp::start(&whole_manifest(&format!(
        r#"allowed_outbound_hosts = ["http://127.0.0.1:{port}"]"#
    )));
    for length in [10, 5_000_000] {
        let reply = app.get(&format!(
            "/post?url=http://127.0.0.1:{port}/&bytes={length}"
        ));
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, format!("status=200 body={length} true").as_str())
        );
    }
}

#[test]
fn service_chaining_reaches_a_private_component_in_process() {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "chain"
[[trigger.http]]
route = "/..."
component = "probe"
[[trigger.http]]
route = {{ private = true }}
component = "other"
[component.probe]
source = "{probe}"
allowed_outbound_hosts = ["http://other.spin.internal"]
[component.other]
source = "{other}"
"#,
        probe = fixtures().probe.display(),
        other = fixtures().other.display(),
    );
    let app = TestApp::start(&manifest);
    // The private component answers through its `.spin.internal` name...
    let chained = app.get("/fetch?url=http://other.spin.internal/anything");
    assert_eq!((chained.status, chained.body.as_str()), (200, "status=200"));
    // ...a name that is no component is an error, not a request on the network...
    let unknown = app.get("/fetch?url=http://nobody.spin.internal/");
    assert_eq!(unknown.status, 502, "{}", unknown.body);
    // ...and nothing public routes to it (every path is the probe's).
    assert_eq!(app.get("/version").body, "probe");
}

#[test]
fn service_chaining_needs_the_host_in_allowed_outbound_hosts() {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "chain"
[[trigger.http]]
route = "/..."
component = "probe"
[[trigger.http]]
route = {{ private = true }}
component = "other"
[component.probe]
source = "{probe}"
[component.other]
source = "{other}"
"#,
        probe = fixtures().probe.display(),
        other = fixtures().other.display(),
    );
    let app = TestApp::start(&manifest);
    let denied = app.get("/fetch?url=http://other.spin.internal/");
    assert_eq!(denied.status, 502);
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
}
