// The soak: operations (the load test's mix) arriving at a constant RATE per
// second for DURATION after a ramp of RAMP (1m), by clients that keep their
// sessions between operations. scripts/load/run.sh --scenario soak measures
// the capacity first and soaks at 80% of it, recording the serving process's
// memory.
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
    // Traffic comes up over a minute, as it does on a new pod behind a load
    // balancer. Started at full rate, every client's first operation needs a
    // sign-in, so the first hundred operations hash twice as many passwords
    // as the mix; at 80% of capacity the backlog took two minutes to drain,
    // and k6 added clients (more first sign-ins) while it lasted.
    soak: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      stages: [
        { duration: __ENV.RAMP || '1m', target: RATE },
        { duration: __ENV.DURATION || '10m', target: RATE },
      ],
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
