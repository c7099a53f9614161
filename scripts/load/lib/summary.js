// The end-of-run summary every scenario shares: k6's data as JSON (to
// SUMMARY_JSON, when set) and a short table on stdout: per operation the
// count and latency, then the totals each threshold is about, then every
// threshold with its verdict. A capacity run also names its capacity.
const OPERATIONS = ['signup', 'signin', 'profile', 'refresh', 'signout'];

function ms(value) {
  return value === undefined ? '-' : `${value.toFixed(1)} ms`;
}

function metric(data, name) {
  return (data.metrics[name] || {}).values || {};
}

function pad(text, width) {
  const s = String(text);
  return s.length >= width ? s : s + ' '.repeat(width - s.length);
}

/** The highest stage rate whose p95 stayed under 500 ms with nothing dropped or failed. */
export function capacityOf(data) {
  const stage = (data.setup_data || {}).stage;
  if (!stage) return undefined;
  const rows = [];
  let capacity = 0;
  let broken = false;
  for (let i = 0; i < stage.count; i += 1) {
    const duration = metric(data, `http_req_duration{stage:${i}}`);
    const iterations = metric(data, `iterations{stage:${i}}`).count || 0;
    // Stages after the run stopped have no data.
    if (duration['p(95)'] === undefined || iterations === 0) break;
    const rate = stage.start + i * stage.step;
    const dropped = metric(data, `dropped_iterations{stage:${i}}`).count || 0;
    const failed = metric(data, `http_req_failed{stage:${i}}`).rate || 0;
    const ok = duration['p(95)'] < 500 && dropped === 0 && failed === 0;
    rows.push({ rate, p95: duration['p(95)'], p99: duration['p(99)'], achieved: iterations / stage.seconds, dropped, failed, ok });
    if (ok && !broken) capacity = rate;
    if (!ok) broken = true;
  }
  return { capacity, rows };
}

export function handleSummary(data) {
  const lines = [];
  lines.push(`${pad('operation', 10)} ${pad('count', 9)} ${pad('p50', 11)} ${pad('p95', 11)} ${pad('p99', 11)} max`);
  for (const op of OPERATIONS) {
    const d = metric(data, `http_req_duration{op:${op}}`);
    const n = metric(data, `operations{op:${op}}`).count || 0;
    lines.push(`${pad(op, 10)} ${pad(n, 9)} ${pad(ms(d.med), 11)} ${pad(ms(d['p(95)']), 11)} ${pad(ms(d['p(99)']), 11)} ${ms(d.max)}`);
  }
  const reqs = metric(data, 'http_reqs');
  const failed = metric(data, 'http_req_failed');
  lines.push('');
  lines.push(`requests ${reqs.count || 0} (${(reqs.rate || 0).toFixed(1)}/s), failed ${((failed.rate || 0) * 100).toFixed(2)}%` +
    `, checks ${((metric(data, 'checks').rate || 0) * 100).toFixed(2)}% passed` +
    `, 5xx ${metric(data, 'unexpected_5xx').count || 0}` +
    `, correct sign-ins refused ${metric(data, 'correct_signin_refused').count || 0}` +
    `, dropped iterations ${metric(data, 'dropped_iterations').count || 0}`);
  const capacity = capacityOf(data);
  if (capacity) {
    lines.push('');
    lines.push('stage (ops/s)  achieved  p95        p99        dropped  failed');
    for (const r of capacity.rows) {
      lines.push(`${pad(r.rate, 14)} ${pad(r.achieved.toFixed(1), 9)} ${pad(ms(r.p95), 10)} ${pad(ms(r.p99), 10)} ${pad(r.dropped, 8)} ${(r.failed * 100).toFixed(2)}%${r.ok ? '' : '  <- over'}`);
    }
    lines.push(`capacity: ${capacity.capacity} operations/s (p95 under 500 ms, nothing dropped or failed)`);
  }
  lines.push('');
  let allOk = true;
  for (const [name, m] of Object.entries(data.metrics)) {
    for (const [rule, verdict] of Object.entries(m.thresholds || {})) {
      // The listing-only thresholds (count>=0, rate>=0) say nothing.
      if (/>=0$/.test(rule)) continue;
      if (name.includes('{stage:')) continue;
      allOk = allOk && verdict.ok;
      lines.push(`${verdict.ok ? 'ok  ' : 'FAIL'} ${name} ${rule}`);
    }
  }
  lines.push(allOk ? 'thresholds: all met' : 'thresholds: NOT met');
  const out = { stdout: `${lines.join('\n')}\n` };
  if (__ENV.SUMMARY_JSON) {
    out[__ENV.SUMMARY_JSON] = JSON.stringify({ ...data, capacity }, null, 1);
  }
  if (__ENV.SUMMARY_TEXT) out[__ENV.SUMMARY_TEXT] = out.stdout;
  return out;
}
