// The stress test: the load test's clients, ramping to many more users than a
// pod is sized for (STRESS_VUS, default 2000, as the old service's), to see
// how the service degrades. Looser thresholds, as the old test had: failures
// < 10%, p95 < 3 s; still no 5xx and no correct password refused.
//
//   k6 run -e BASE_URL=... -e STRESS_VUS=500 scripts/load/stress.js
import { sleep } from 'k6';
import { clientFor, createAccounts, envNumber, thresholds } from './lib/client.js';
export { handleSummary } from './lib/summary.js';

const VUS = envNumber('STRESS_VUS', 2000);

export const options = {
  // A client keeps its session between operations (k6 empties the jar
  // before each iteration by default).
  noCookiesReset: true,
  setupTimeout: '20m',
  scenarios: {
    stress: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: '1m', target: Math.ceil(VUS / 4) },
        { duration: '1m', target: Math.ceil(VUS / 2) },
        { duration: '1m', target: VUS },
        { duration: __ENV.DURATION || '2m', target: VUS },
        { duration: '30s', target: 0 },
      ],
      gracefulRampDown: '30s',
    },
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  thresholds: thresholds({ p95: 3000, p99: 10000, failed: 0.1 }),
};

export function setup() {
  return { accounts: createAccounts(envNumber('ACCOUNTS', Math.min(VUS, 500))) };
}

export default function (data) {
  clientFor(data.accounts).step();
  sleep(1 + Math.random() * 2);
}
