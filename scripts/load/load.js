// The load test: clients with 1-3 s of think time between operations, ramping
// up to VUS virtual users, holding for DURATION, ramping down; the old
// service's mix by operation (lib/client.js). Thresholds per operation:
// p95 < 500 ms, p99 < 1 s; failures < 1%; no 5xx; no correct password refused.
//
//   k6 run -e BASE_URL=http://127.0.0.1:3000 -e VUS=100 -e DURATION=5m scripts/load/load.js
//
// VUS (100), RAMP (30s), DURATION (5m), THINK_MIN / THINK_MAX seconds (1 / 3),
// ACCOUNTS created in setup (VUS). scripts/load/run.sh starts the service and runs it.
import { sleep } from 'k6';
import { clientFor, createAccounts, envNumber, thresholds } from './lib/client.js';
export { handleSummary } from './lib/summary.js';

const VUS = envNumber('VUS', 100);
const THINK_MIN = envNumber('THINK_MIN', 1);
const THINK_MAX = envNumber('THINK_MAX', 3);

export const options = {
  // A client keeps its session between operations (k6 empties the jar
  // before each iteration by default).
  noCookiesReset: true,
  setupTimeout: '10m',
  scenarios: {
    load: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: __ENV.RAMP || '30s', target: VUS },
        { duration: __ENV.DURATION || '5m', target: VUS },
        { duration: '10s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  thresholds: thresholds(),
};

export function setup() {
  return { accounts: createAccounts(envNumber('ACCOUNTS', VUS)) };
}

export default function (data) {
  clientFor(data.accounts).step();
  sleep(THINK_MIN + Math.random() * (THINK_MAX - THINK_MIN));
}
