// Capacity: operations (the load test's mix, no think time) arrive at a rate
// that climbs by STEP every STAGE seconds, from START up to MAX per second.
// Each request is tagged with its stage; the summary names the capacity: the
// highest rate whose stage kept p95 under 500 ms, with nothing dropped and no
// failure. The run stops once a stage's p95 passes 500 ms.
//
//   k6 run -e BASE_URL=... -e START=10 -e STEP=5 -e STAGE=20 -e MAX=200 scripts/load/capacity.js
import exec from 'k6/execution';
import { clientFor, createAccounts, envNumber, thresholds } from './lib/client.js';
export { handleSummary } from './lib/summary.js';

const START = envNumber('START', 10);
const STEP = envNumber('STEP', 5);
const STAGE = envNumber('STAGE', 20);
const MAX = envNumber('MAX', 200);
const MAX_VUS = envNumber('MAX_VUS', 300);
const STAGES = Math.floor((MAX - START) / STEP) + 1;
// A short ramp between stages, then a plateau: the rate each stage is tagged with.
const RAMP = 2;

function stageThresholds() {
  const t = thresholds();
  for (let i = 0; i < STAGES; i += 1) {
    t[`http_req_duration{stage:${i}}`] = [
      { threshold: 'p(95)<500', abortOnFail: true, delayAbortEval: `${STAGE}s` },
    ];
    t[`iterations{stage:${i}}`] = ['count>=0'];
    t[`dropped_iterations{stage:${i}}`] = ['count>=0'];
    t[`http_req_failed{stage:${i}}`] = ['rate>=0'];
  }
  return t;
}

const stages = [];
for (let i = 0; i < STAGES; i += 1) {
  stages.push({ duration: `${RAMP}s`, target: START + i * STEP });
  stages.push({ duration: `${STAGE - RAMP}s`, target: START + i * STEP });
}

export const options = {
  // A client keeps its session between operations (k6 empties the jar
  // before each iteration by default).
  noCookiesReset: true,
  setupTimeout: '10m',
  scenarios: {
    capacity: {
      executor: 'ramping-arrival-rate',
      startRate: START,
      timeUnit: '1s',
      preAllocatedVUs: Math.min(MAX_VUS, 50),
      maxVUs: MAX_VUS,
      stages,
    },
  },
  thresholds: stageThresholds(),
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return {
    accounts: createAccounts(envNumber('ACCOUNTS', MAX_VUS)),
    stage: { start: START, step: STEP, seconds: STAGE, count: STAGES },
  };
}

export default function (data) {
  // The stage is read from the time since the load began (setup excluded).
  const since = (Date.now() - exec.scenario.startTime) / 1000;
  exec.vu.metrics.tags.stage = String(Math.min(STAGES - 1, Math.floor(since / STAGE)));
  clientFor(data.accounts).step();
}
