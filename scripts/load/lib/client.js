// The client flow every Latch load scenario shares: what one user's browser or
// app does, with checks on status and body shape of every answer.
//
// A virtual user (VU) is one client. It keeps one session in its cookie jar
// (`token` and `refreshToken`, as a browser does), signs in once and reuses the
// session, refreshes when the access token is about to expire (or on a 401),
// and signs out at the end of a session. Each iteration performs one
// operation, drawn with the old service's weights (10% sign-up, 40% sign-in,
// 30% profile, 15% refresh, 5% sign-out), so the mix holds by operation.
import http from 'k6/http';
import { check } from 'k6';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
export const PASSWORD = 'correct horse battery staple';
// Refresh this long before the access token expires.
const REFRESH_MARGIN_SECONDS = 30;

/** Operation weights of the old service's load test, in percent. */
export const MIX = [
  ['signup', 10],
  ['signin', 40],
  ['profile', 30],
  ['refresh', 15],
  ['signout', 5],
];
export const OPERATIONS = MIX.map(([name]) => name);

// Any 5xx is a defect, whatever the load; the thresholds require none.
export const unexpected5xx = new Counter('unexpected_5xx');
// A correct password answered 429: the throttle refused a real user.
export const correctSigninRefused = new Counter('correct_signin_refused');
// Operations performed, by name (tag `op`), to show the mix that ran.
export const operations = new Counter('operations');

const JSON_HEADERS = { 'content-type': 'application/json' };
// Statuses that are part of a correct flow, so `http_req_failed` counts only
// the others: a profile read may meet an expired access token (then the client
// refreshes), a refresh may meet a session ended elsewhere (then it signs in).
const OK = http.expectedStatuses(200, 201);
const OK_OR_401 = http.expectedStatuses(200, 401);

function params(op, responseCallback = OK) {
  return { headers: JSON_HEADERS, tags: { op }, responseCallback };
}

function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

function problem(res) {
  const body = json(res);
  return (
    String(res.headers['Content-Type'] || '').startsWith('application/problem+json') &&
    body !== null &&
    typeof body.status === 'number' &&
    typeof body.title === 'string'
  );
}

function watch(res, op) {
  if (res.status >= 500 || res.status === 0) {
    unexpected5xx.add(1, { op, status: String(res.status) });
  }
}

/** A new account: `{email, password}`; undefined if sign-up failed. */
export function signUp(tag) {
  const email = `${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}@load.example.com`;
  const res = http.post(
    `${BASE_URL}/auth/signup`,
    JSON.stringify({ email, password: PASSWORD, fullName: 'Load Test' }),
    params('signup'),
  );
  watch(res, 'signup');
  const ok = check(res, {
    'signup: 201': (r) => r.status === 201,
    'signup: {message, userId}': (r) => {
      const b = json(r);
      return b !== null && typeof b.message === 'string' && typeof b.userId === 'string';
    },
  });
  return ok ? { email, password: PASSWORD } : undefined;
}

/** Seconds since the epoch at which the access token in the jar expires. */
function accessExpiry() {
  const jar = http.cookieJar();
  const token = (jar.cookiesForURL(`${BASE_URL}/user/profile`).token || [])[0];
  if (!token) return 0;
  try {
    const payload = JSON.parse(encoding.b64decode(token.split('.')[1], 'rawurl', 's'));
    return typeof payload.exp === 'number' ? payload.exp : 0;
  } catch (_) {
    return 0;
  }
}

/** One client: its accounts and, at most, one open session. */
export class Client {
  constructor(accounts) {
    this.accounts = accounts.slice();
    this.signedIn = false;
  }

  account() {
    return this.accounts[Math.floor(Math.random() * this.accounts.length)];
  }

  signUp() {
    operations.add(1, { op: 'signup' });
    const account = signUp(`vu${exec.vu.idInTest}`);
    if (account) this.accounts.push(account);
  }

  signIn() {
    operations.add(1, { op: 'signin' });
    const { email, password } = this.account();
    const res = http.post(`${BASE_URL}/auth/signin`, JSON.stringify({ email, password }), params('signin'));
    watch(res, 'signin');
    if (res.status === 429) correctSigninRefused.add(1);
    this.signedIn = check(res, {
      'signin: 200': (r) => r.status === 200,
      'signin: {message, user: {id, email, fullName}}': (r) => {
        const b = json(r);
        return b !== null && b.user && b.user.email === email && typeof b.user.id === 'string';
      },
      'signin: both cookies set': () => {
        const jar = http.cookieJar().cookiesForURL(`${BASE_URL}/auth/refresh`);
        return Boolean(jar.token && jar.refreshToken);
      },
    });
    return this.signedIn;
  }

  /** Signs in if there is no session, and refreshes an access token about to expire. */
  ensureSession() {
    if (!this.signedIn) return this.signIn();
    if (accessExpiry() - Date.now() / 1000 < REFRESH_MARGIN_SECONDS) return this.refresh();
    return true;
  }

  refresh() {
    operations.add(1, { op: 'refresh' });
    const res = http.post(`${BASE_URL}/auth/refresh`, null, params('refresh', OK_OR_401));
    watch(res, 'refresh');
    check(res, {
      'refresh: 200, or 401 problem': (r) => r.status === 200 || (r.status === 401 && problem(r)),
      'refresh: {message}': (r) => r.status !== 200 || typeof (json(r) || {}).message === 'string',
    });
    if (res.status === 200) return true;
    // The session ended (revoked, or rotated by a racing refresh): sign in again.
    this.signedIn = false;
    return this.signIn();
  }

  profile() {
    if (!this.ensureSession()) return;
    operations.add(1, { op: 'profile' });
    let res = http.get(`${BASE_URL}/user/profile`, params('profile', OK_OR_401));
    watch(res, 'profile');
    if (res.status === 401 && this.refresh()) {
      res = http.get(`${BASE_URL}/user/profile`, params('profile'));
      watch(res, 'profile');
    }
    check(res, {
      'profile: 200': (r) => r.status === 200,
      'profile: {user: {id, email, fullName, isActive, createdAt}}': (r) => {
        const u = (json(r) || {}).user;
        return Boolean(u) && typeof u.id === 'string' && typeof u.email === 'string' &&
          u.isActive === true && typeof u.createdAt === 'string';
      },
    });
  }

  signOut() {
    if (!this.ensureSession()) return;
    operations.add(1, { op: 'signout' });
    const res = http.post(`${BASE_URL}/auth/signout`, null, params('signout'));
    watch(res, 'signout');
    check(res, {
      'signout: 200 {message}': (r) => r.status === 200 && typeof (json(r) || {}).message === 'string',
      'signout: cookies cleared': () => {
        const jar = http.cookieJar().cookiesForURL(`${BASE_URL}/auth/refresh`);
        return !jar.token && !jar.refreshToken;
      },
    });
    this.signedIn = false;
  }

  /** One operation drawn by the mix. */
  step() {
    let pick = Math.random() * 100;
    for (const [op, weight] of MIX) {
      pick -= weight;
      if (pick < 0) return this.run(op);
    }
    return this.run('profile');
  }

  run(op) {
    switch (op) {
      case 'signup':
        return this.signUp();
      case 'signin':
        return this.signIn();
      case 'profile':
        return this.profile();
      case 'refresh':
        return this.signedIn ? this.refresh() : this.signIn();
      case 'signout':
        return this.signOut();
      default:
        throw new Error(`unknown operation ${op}`);
    }
  }
}

/** Accounts for `setup()`: `count` sign-ups before the load starts. */
export function createAccounts(count) {
  const accounts = [];
  for (let i = 0; i < count; i += 1) {
    const account = signUp(`setup${i}`);
    if (!account) throw new Error(`setup: sign-up ${i} failed`);
    accounts.push(account);
  }
  return accounts;
}

// One client per VU for the whole test (module state is per VU in k6). Each
// VU starts with its own setup account, so no two clients race on one
// account's throttle counter (more than 5 sign-ins of one account in flight
// get 429 by design: docs/api.md).
let client;
export function clientFor(accounts) {
  if (!client) client = new Client([accounts[(exec.vu.idInTest - 1) % accounts.length]]);
  return client;
}

/** Thresholds every scenario shares; `p95`/`p99` in ms per operation. */
export function thresholds({ p95 = 500, p99 = 1000, failed = 0.01 } = {}) {
  const t = {
    http_req_failed: [`rate<${failed}`],
    checks: [`rate>${1 - failed}`],
    unexpected_5xx: ['count==0'],
    correct_signin_refused: ['count==0'],
  };
  for (const op of OPERATIONS) {
    t[`http_req_duration{op:${op}}`] = [`p(95)<${p95}`, `p(99)<${p99}`];
    // Listed so the summary shows how many of each ran.
    t[`operations{op:${op}}`] = ['count>=0'];
  }
  return t;
}

/** Reads a positive number from the environment, or the default. */
export function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return value;
}
