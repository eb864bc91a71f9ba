// `ragd doctor`: a deployment that holds exits 0 with every check "ok"; each
// kind of problem is named in plain words on its own FAIL line, exits 1,
// and does not stop the other checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { runRagd, startFakeOpenAI, tempDir } from './helpers.mjs';

const KEY = 'sk-doctor-test-key-0123456789abcdef';

// A setup that holds: the fake as generator and embedder, its models in the
// price and token tables.
function goodEnv(fake, dir) {
  const models = path.join(dir, 'models.txt');
  writeFileSync(models, 'gpt-fake-1 o200k_base 32000 1000\n');
  return {
    RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_API_KEY: KEY, RAGD_LLM_MODEL: 'gpt-fake-1',
    RAGD_PRICES: 'gpt-fake-1=0.5/1.5', RAGD_MODELS_FILE: models,
    RAGD_EMBED_BASE_URL: fake.url, RAGD_EMBED_API_KEY: KEY, RAGD_EMBED_MODEL: 'gpt-fake-2',
  };
}

function doctor(dir, env, { listen = '127.0.0.1:0', data = path.join(dir, 'data') } = {}) {
  return runRagd(['doctor', '--data', data, '--listen', listen], { env });
}

function verdicts(stdout) {
  return stdout.split('\n').filter((l) => /^ {2}(ok|FAIL|skip) /.test(l)).map((l) => l.trim());
}

function assertClean(r) {
  assert.doesNotMatch(r.stderr, /Sanitizer|runtime error:/, r.stderr);
  assert.ok(!r.stdout.includes(KEY) && !r.stderr.includes(KEY), 'the API key was printed');
}

test('a setup that holds: every check ok, exit 0, one authenticated GET /models each', async (t) => {
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = await doctor(dir, goodEnv(fake, dir));
  assertClean(r);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const lines = verdicts(r.stdout);
  assert.deepEqual(lines.filter((l) => !l.startsWith('ok')), [], r.stdout);
  for (const want of [/^ok +configuration/, /^ok +data folder .*writable/, /^ok +store .*schema current/,
    /^ok +generator DEFAULT, model gpt-fake-1 \(openai\): .* answers with the key and lists the model/,
    /^ok +model gpt-fake-1: priced at \$0\.5 \/ \$1\.5 .*o200k_base, 32000-token window/,
    /^ok +embedder, model gpt-fake-2 \(openai\): .* lists the model/, /^ok +listen address 127\.0\.0\.1:0: free/,
    /^ok +API keys: none, and none needed/])
    assert.ok(lines.some((l) => want.test(l)), `${want} in:\n${r.stdout}`);
  assert.match(r.stdout, /Everything holds\./);
  const calls = (await fake.log()).filter((c) => c.method === 'GET');
  assert.equal(calls.length, 2, JSON.stringify(calls));
  for (const c of calls) {
    assert.equal(new URL(c.url, 'http://x').pathname, '/v1/models');
    assert.equal(c.headers.authorization, `Bearer ${KEY}`);
  }
});

test('an unreachable LLM, a refused key and unknown models are each named', async (t) => {
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A port nothing listens on.
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const closedPort = probe.address().port;
  probe.close();
  await once(probe, 'close');

  let r = await doctor(dir, { ...goodEnv(fake, dir), RAGD_LLM_BASE_URL: `http://127.0.0.1:${closedPort}/v1` });
  assertClean(r);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, new RegExp(`FAIL +generator DEFAULT, model gpt-fake-1 \\(openai\\): cannot reach http://127\\.0\\.0\\.1:${closedPort}/v1: .*[Cc]onnect`));
  // The other checks still ran and hold.
  assert.match(r.stdout, /ok +embedder, model gpt-fake-2/);
  assert.match(r.stdout, /ok +listen address/);
  assert.match(r.stdout, /1 problem found/);

  await fake.configure({ status: 401 });
  r = await doctor(dir, goodEnv(fake, dir));
  assertClean(r);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FAIL +generator DEFAULT.*refused the API key \(HTTP 401\): check RAGD_LLM_API_KEY/);
  assert.match(r.stdout, /FAIL +embedder.*refused the API key \(HTTP 401\): check RAGD_EMBED_API_KEY/);
  await fake.configure({ reset: true });

  const env = goodEnv(fake, dir);
  delete env.RAGD_PRICES;
  delete env.RAGD_MODELS_FILE;
  r = await doctor(dir, { ...env, RAGD_EMBED_MODEL: 'text-embedding-nope' });
  assertClean(r);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FAIL +model gpt-fake-1: not in the price table.*RAGD_PRICES/);
  assert.match(r.stdout, /FAIL +model gpt-fake-1: not in the token table.*RAGD_MODELS_FILE/);
  assert.match(r.stdout, /FAIL +embedder, model text-embedding-nope \(openai\): .* do not include "text-embedding-nope"/);
  assert.match(r.stdout, /3 problems found/);
});

test('an unwritable data folder, a port in use and a bad variable', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Under a regular file nothing can create a folder, not even root.
  const file = path.join(dir, 'not-a-folder');
  writeFileSync(file, 'x');
  let r = await doctor(dir, {}, { data: path.join(file, 'data') });
  assertClean(r);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FAIL +data folder .*not-a-folder\/data: cannot create it: Not a directory/);
  assert.match(r.stdout, /skip +store: not opened/);

  r = await doctor(dir, {}, { data: file });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FAIL +data folder .*not-a-folder: exists but is not a folder/);

  const busy = net.createServer().listen(0, '127.0.0.1');
  await once(busy, 'listening');
  t.after(() => busy.close());
  const port = busy.address().port;
  r = await doctor(dir, {}, { listen: `127.0.0.1:${port}` });
  assertClean(r);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, new RegExp(`FAIL +listen address 127\\.0\\.0\\.1:${port}: already in use`));
  assert.match(r.stdout, /ok +store/);

  // Bad variables are all named, and the good ones still apply.
  r = await doctor(dir, { RAGD_NOT_A_SETTING: '1', RAGD_TOP_K: 'many', RAGD_LLM_BASE_URL: 'http://127.0.0.1:1/v1' });
  assertClean(r);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FAIL +configuration: RAGD_NOT_A_SETTING: unknown RAGD_ variable/);
  assert.match(r.stdout, /FAIL +configuration: RAGD_TOP_K: /);
  assert.match(r.stdout, /FAIL +generator DEFAULT.*cannot reach http:\/\/127\.0\.0\.1:1\/v1/);
  assert.match(r.stdout, /ok +listen address/);
});

test('beyond loopback an API key must exist, unless RAGD_ALLOW_OPEN=1', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const data = path.join(dir, 'data');
  let r = await doctor(dir, {}, { data, listen: '0.0.0.0:0' });
  assertClean(r);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FAIL +API keys: none, so `ragd serve` refuses to listen on 0\.0\.0\.0:0: create one with `ragd keys create --scope admin`/);

  r = await doctor(dir, { RAGD_ALLOW_OPEN: '1' }, { data, listen: '0.0.0.0:0' });
  assertClean(r);
  assert.equal(r.code, 0, r.stdout);
  assert.match(r.stdout, /skip +API keys: none, and RAGD_ALLOW_OPEN=1: anyone who can reach 0\.0\.0\.0:0/);

  const created = await runRagd(['keys', 'create', '--data', data, '--scope', 'admin', '--name', 'doctor test']);
  assert.equal(created.code, 0, created.stderr);
  r = await doctor(dir, {}, { data, listen: '0.0.0.0:0' });
  assertClean(r);
  assert.equal(r.code, 0, r.stdout);
  assert.match(r.stdout, /ok +API keys: 1 active/);
  assert.ok(!r.stdout.includes(created.stdout.trim().split('\n').at(-1)), 'the key was printed');
});
