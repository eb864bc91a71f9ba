#!/usr/bin/env node
// latency.mjs - sequential POST /v1/search requests against a running ragd;
// prints p50/p99 per mode, with --pid PID also the CPU time the server spent
// per request (utime + stime from /proc/PID/stat around the timed requests:
// the fair number on a shared machine, where wall time includes waiting for
// a core), and with --compare BASE2 the recall@10 of BASE's vector results
// against BASE2's (an exact index on the same data).
//   node latency.mjs --base http://127.0.0.1:PORT --queries FILE [--n 300]
//        [--modes keyword,vector,hybrid] [--pid PID] [--compare http://127.0.0.1:PORT2] [--label NAME]
import { readFileSync } from 'node:fs';
import { execSync } from 'node:child_process';

const a = process.argv.slice(2);
const opt = (k, d) => (a.includes(k) ? a[a.indexOf(k) + 1] : d);
const base = opt('--base');
const queries = readFileSync(opt('--queries'), 'utf8').split('\n').filter(Boolean);
const n = Number(opt('--n', '300'));
const modes = opt('--modes', 'keyword,vector,hybrid').split(',');
const compare = opt('--compare');
const pid = opt('--pid');
const tick = pid ? Number(execSync('getconf CLK_TCK').toString()) : 100;
// utime + stime of pid in seconds (fields 14 and 15, after the ")" of comm)
const cpu = () => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop().trim().split(' ');
  return (Number(f[11]) + Number(f[12])) / tick;
};

async function search(b, query, mode) {
  const r = await fetch(b + '/v1/search', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, mode, top_k: 10 }),
  });
  return (await r.json()).results.map((x) => x.chunk_id);
}
const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
for (const mode of modes) {
  for (let i = 0; i < 20; i++) await search(base, queries[i % queries.length], mode); // warm-up
  const ms = [];
  const c0 = pid ? cpu() : 0;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await search(base, queries[i % queries.length], mode);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const per = pid ? `  cpu ${(((cpu() - c0) * 1000) / n).toFixed(2)} ms/request` : '';
  ms.sort((x, y) => x - y);
  console.log(`${mode.padEnd(8)} p50 ${pct(ms, 50).toFixed(2)} ms  p99 ${pct(ms, 99).toFixed(2)} ms${per}  (${n} requests)`);
}
if (compare) {
  let found = 0, total = 0;
  for (let i = 0; i < Math.min(n, queries.length); i++) {
    const [x, y] = await Promise.all([search(base, queries[i], 'vector'), search(compare, queries[i], 'vector')]);
    const s = new Set(y);
    found += x.filter((id) => s.has(id)).length;
    total += y.length;
  }
  console.log(`${opt('--label', 'int8')} recall@10 against exact: ${(found / total).toFixed(4)} (${Math.min(n, queries.length)} queries)`);
}
