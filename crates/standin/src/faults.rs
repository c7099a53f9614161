//! Injected faults and request counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Answer an HTTP status with a plausible body.
    Status,
    /// Answer like a paused free node: JSON with a `message`.
    Paused,
    /// 200 with a body that is not JSON (or a chosen `body`).
    Malformed,
    /// Send the head and part of the body, then close the connection.
    Cut,
    /// Delay the answer.
    Latency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Fail without executing the SQL.
    Before,
    /// Execute (and commit) the SQL, then fail the reply.
    After,
}

/// A fault as posted to `/__standin/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// SQL requests to let through first, counted from when the fault is added.
    #[serde(default)]
    pub skip: u64,
    /// How many SQL requests it applies to.
    #[serde(default = "one")]
    pub times: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// For `malformed`: the exact body to send instead of broken JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn one() -> u64 {
    1
}

const DEFAULT_LATENCY_MS: u64 = 200;

impl FaultSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.times == 0 {
            return Err("times must be at least 1".to_owned());
        }
        if let Some(status) = self.status {
            let allowed = match self.kind {
                FaultKind::Status => (400..=599).contains(&status),
                _ => (200..=599).contains(&status),
            };
            if !allowed {
                return Err(format!(
                    "status {status} is not allowed for this fault kind"
                ));
            }
        }
        if self.body.is_some() && self.kind != FaultKind::Malformed {
            return Err("body is only for malformed faults".to_owned());
        }
        Ok(())
    }

    pub fn when(&self) -> When {
        self.when.unwrap_or(match self.kind {
            FaultKind::Status | FaultKind::Paused | FaultKind::Latency => When::Before,
            FaultKind::Cut | FaultKind::Malformed => When::After,
        })
    }

    pub fn latency_ms(&self) -> u64 {
        self.latency_ms.unwrap_or(match self.kind {
            FaultKind::Latency => DEFAULT_LATENCY_MS,
            _ => 0,
        })
    }

    pub fn status(&self) -> u16 {
        self.status.unwrap_or(match self.kind {
            FaultKind::Status => 503,
            _ => 200,
        })
    }
}

/// A fault in the queue, with the SQL request numbers it applies to.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedFault {
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// First and last SQL request sequence numbers (inclusive).
    pub first_request: u64,
    pub last_request: u64,
}

/// What the faults matching one request ask for.
#[derive(Debug, Default)]
pub struct Plan {
    pub delay_before_ms: u64,
    pub delay_after_ms: u64,
    /// The first non-latency fault that matched.
    pub failure: Option<FaultSpec>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub sql_requests: u64,
    pub by_database: BTreeMap<String, u64>,
    pub faults_injected: u64,
}

/// The fault queue and counters, kept behind one lock.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Numbers SQL requests for fault targeting; never reset, unlike stats.
    sequence: u64,
    queue: Vec<QueuedFault>,
    stats: Stats,
}

impl Ledger {
    pub fn add_faults(&mut self, specs: Vec<FaultSpec>) -> usize {
        let count = specs.len();
        for spec in specs {
            let first_request = self.sequence + spec.skip + 1;
            let last_request = first_request + spec.times - 1;
            self.queue.push(QueuedFault {
                spec,
                first_request,
                last_request,
            });
        }
        count
    }

    pub fn clear_faults(&mut self) -> usize {
        std::mem::take(&mut self.queue).len()
    }

    pub fn pending_faults(&self) -> &[QueuedFault] {
        &self.queue
    }

    /// Counts one SQL request and returns what the faults want done with it.
    pub fn begin_sql_request(&mut self, database: Option<&str>) -> Plan {
        self.sequence += 1;
        let current = self.sequence;
        self.stats.sql_requests += 1;
        if let Some(database) = database {
            *self
                .stats
                .by_database
                .entry(database.to_owned())
                .or_default() += 1;
        }
        let mut plan = Plan::default();
        for fault in &self.queue {
            if !(fault.first_request..=fault.last_request).contains(&current) {
                continue;
            }
            self.stats.faults_injected += 1;
            let spec = &fault.spec;
            match spec.when() {
                When::Before => plan.delay_before_ms += spec.latency_ms(),
                When::After => plan.delay_after_ms += spec.latency_ms(),
            }
            if spec.kind != FaultKind::Latency && plan.failure.is_none() {
                plan.failure = Some(spec.clone());
            }
        }
        self.queue.retain(|f| f.last_request > current);
        plan
    }

    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FaultSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults() {
        let status = spec(r#"{"kind": "status"}"#);
        assert_eq!(
            (status.status(), status.when(), status.times),
            (503, When::Before, 1)
        );
        let cut = spec(r#"{"kind": "cut"}"#);
        assert_eq!((cut.status(), cut.when()), (200, When::After));
        assert_eq!(spec(r#"{"kind": "malformed"}"#).when(), When::After);
        assert_eq!(spec(r#"{"kind": "paused"}"#).status(), 200);
        assert_eq!(spec(r#"{"kind": "latency"}"#).latency_ms(), 200);
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind": "status", "typo": 1}"#).is_err());
        assert!(
            spec(r#"{"kind": "status", "times": 0}"#)
                .validate()
                .is_err()
        );
        assert!(
            spec(r#"{"kind": "status", "status": 200}"#)
                .validate()
                .is_err()
        );
        assert!(spec(r#"{"kind": "cut", "body": "x"}"#).validate().is_err());
    }

    #[test]
    fn targets_requests_counted_from_when_added() {
        let mut ledger = Ledger::default();
        ledger.begin_sql_request(Some("a"));
        ledger.add_faults(vec![spec(r#"{"kind": "status", "skip": 1, "times": 2}"#)]);
        let hits: Vec<bool> = (0..5)
            .map(|_| ledger.begin_sql_request(Some("a")).failure.is_some())
            .collect();
        assert_eq!(hits, [false, true, true, false, false]);
        assert!(ledger.pending_faults().is_empty());
        let stats = ledger.stats();
        assert_eq!(stats.sql_requests, 6);
        assert_eq!(stats.faults_injected, 2);
        assert_eq!(stats.by_database["a"], 6);
        // Resetting the stats does not move pending faults.
        ledger.add_faults(vec![spec(r#"{"kind": "paused", "skip": 1}"#)]);
        ledger.reset_stats();
        assert!(ledger.begin_sql_request(None).failure.is_none());
        assert!(ledger.begin_sql_request(None).failure.is_some());
    }

    #[test]
    fn latencies_add_up_and_first_failure_wins() {
        let mut ledger = Ledger::default();
        ledger.add_faults(vec![
            spec(r#"{"kind": "latency", "latency_ms": 10}"#),
            spec(r#"{"kind": "latency", "latency_ms": 5, "when": "after"}"#),
            spec(r#"{"kind": "status", "status": 502}"#),
            spec(r#"{"kind": "paused"}"#),
        ]);
        let plan = ledger.begin_sql_request(None);
        assert_eq!(plan.delay_before_ms, 10);
        assert_eq!(plan.delay_after_ms, 5);
        assert_eq!(plan.failure.map(|f| f.status()), Some(502));
        assert_eq!(ledger.stats().faults_injected, 4);
    }
}
