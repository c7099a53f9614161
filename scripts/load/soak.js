// The soak: operations (the load test's mix) arriving at a constant RATE per
// second for DURATION, by clients that keep their sessions between
// operations. scripts/load/run.sh --scenario soak measures the capacity first
// and soaks at 80% of it, recording the serving process's memory.
//
//   k6 run -e BASE_URL=... -e RATE=40 -e DURATION=10m scripts/load/soak.js
import { clientFor, createAccounts, envNumber, thresholds } from './lib/client.js';
export { handleSummary } from './lib/summary.js';

const RATE = envNumber('RATE', 20);
const MAX_VUS = envNumber('MAX_VUS', 200);

export const options = {
  // A client keeps its session between operations (k6 empties the jar
  // before each iteration by default).
  noCookiesReset: true,
  setupTimeout: '10m',
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '10m',
      preAllocatedVUs: Math.min(MAX_VUS, Math.ceil(RATE * 2)),
      maxVUs: MAX_VUS,
    },
  },
  thresholds: { ...thresholds(), dropped_iterations: ['count==0'] },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return { accounts: createAccounts(envNumber('ACCOUNTS', MAX_VUS)) };
}

export default function (data) {
  clientFor(data.accounts).step();
}
