// Answers streamed from an upstream that speaks HTTP/2 over TLS, as real
// providers do: the benchmark's fake (bench/streams/fake_upstream_h2.mjs)
// with a throw-away self-signed certificate made by `openssl req`, trusted
// through RAGD_LLM_CA_FILE. Checks that every answer arrives whole, that the
// answers really went over HTTP/2 and shared one connection (ragd
// multiplexes), that without the CA file the certificate is refused, and
// that an unreadable CA file stops ragd at start-up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { startServer, chatStream, ingestSampleKb, tempDir, waitForPort, runRagd, SOURCE_DIR } from './helpers.mjs';

const TOKENS = 6;

function makeCert(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

async function startFakeH2(cert, key) {
  const script = path.join(SOURCE_DIR, 'bench', 'streams', 'fake_upstream_h2.mjs');
  const child = spawn(process.execPath, [script, '--port', '0', '--cert', cert, '--key', key,
    '--tokens', String(TOKENS), '--delay-ms', '30']);
  const port = await waitForPort(child, /^LISTENING (\d+)$/, 'fake h2 upstream', 10000).port;
  return {
    url: `https://127.0.0.1:${port}/v1`,
    // the stats over HTTP/1.1 on a fresh connection, so they count no session
    stats: () => JSON.parse(execFileSync('curl', ['-s', '--http1.1', '--cacert', cert,
      `https://127.0.0.1:${port}/__admin/stats`], { encoding: 'utf8' })),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

// A temporary folder with a fresh certificate and the fake serving with it,
// both removed when test t ends.
async function fakeH2InTempDir(t) {
  const dir = tempDir('ragd-h2-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = makeCert(dir);
  const fake = await startFakeH2(cert, key);
  t.after(() => fake.stop());
  return { dir, cert, fake };
}

const expected = Array.from({ length: TOKENS }, (_, i) => ` tok${i + 1}`).join('');
const text = (r) => r.events.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join('');

test('answers stream through HTTP/2 over TLS, multiplexed on one connection', async (t) => {
  const { cert, fake } = await fakeH2InTempDir(t);
  const common = { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_LAST_RESORT: 'none', RAGD_LLM_RETRIES: '0' };
  const srv = await startServer({ env: { ...common, RAGD_LLM_CA_FILE: cert } });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);

  const n = 20;
  const rs = await Promise.all(Array.from({ length: n }, () => chatStream(srv.base, { message: 'How long do refunds take?' })));
  for (const r of rs) {
    assert.equal(r.status, 200);
    assert.equal(r.events[0].event, 'meta');
    assert.equal(r.events.at(-1).event, 'done', r.text);
    assert.equal(text(r), expected);
  }
  const st = fake.stats();
  assert.equal(st.requests, n);
  assert.equal(st.h2_requests, n, 'every answer went over HTTP/2');
  assert.equal(st.completed, n);
  assert.ok(st.sessions <= 2, `${n} concurrent answers on ${st.sessions} connections`);
  assert.ok(st.max_streams_per_session > 1, `at most ${st.max_streams_per_session} answers shared a connection`);

  // The same server without the CA: the certificate is refused and nothing is sent.
  const other = await startServer({ env: common });
  t.after(() => other.stop());
  await ingestSampleKb(other.base);
  const r = await chatStream(other.base, { message: 'How long do refunds take?' });
  assert.equal(r.events.at(-1).event, 'error', r.text);
  assert.equal(JSON.parse(r.events.at(-1).data).error.code, 'upstream_unavailable');
  assert.equal(fake.stats().requests, n);
});

test('an unreadable RAGD_LLM_CA_FILE stops ragd at start-up', async () => {
  const dir = tempDir('ragd-h2-');
  try {
    const r = await runRagd(['serve', '--listen', '127.0.0.1:0', '--data', dir], {
      env: { RAGD_LLM_BASE_URL: 'https://127.0.0.1:9/v1', RAGD_LLM_CA_FILE: path.join(dir, 'missing.pem') },
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /RAGD_LLM_CA_FILE/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ragd doctor trusts RAGD_LLM_CA_FILE as the generators do', async (t) => {
  const { dir, cert, fake } = await fakeH2InTempDir(t);
  const env = { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_API_KEY: 'sk-h2-doctor' };
  const generator = (stdout) => stdout.split('\n').find((l) => /^ {2}(ok|FAIL) +generator DEFAULT/.test(l)) || '';
  const doctor = (extra) => runRagd(['doctor', '--data', path.join(dir, 'data'), '--listen', '127.0.0.1:0'],
    { env: { ...env, ...extra } });
  // Trusted: the TLS handshake holds and the fake answers (it lists no
  // models, so the line may still fail, but not for want of a connection).
  const trusted = await doctor({ RAGD_LLM_CA_FILE: cert });
  assert.notEqual(generator(trusted.stdout), '', trusted.stdout + trusted.stderr);
  assert.doesNotMatch(generator(trusted.stdout), /cannot reach/, trusted.stdout);
  // Without the CA the same check cannot reach the upstream.
  const refused = await doctor({});
  assert.match(generator(refused.stdout), /^ {2}FAIL .*cannot reach/, refused.stdout);
});
