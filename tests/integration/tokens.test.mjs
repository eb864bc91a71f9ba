// `ragd tokens`: the real binary counts standard input exactly as OpenAI's
// tiktoken does (reference ids in tests/vectors/, made by
// tests/vectors/make_bpe_vectors.mjs), picks encodings by model name, and
// fails with a clear message on bad input or a missing rank file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { SOURCE_DIR, runRagd, tempDir } from './helpers.mjs';

function vectors(encoding) {
  const file = path.join(SOURCE_DIR, 'tests', 'vectors', `bpe_${encoding}.jsonl`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

for (const encoding of ['cl100k_base', 'o200k_base']) {
  test(`ragd tokens --encoding ${encoding} --ids matches tiktoken`, async () => {
    const all = vectors(encoding);
    // Every 20th vector keeps the test quick; the unit test checks them all.
    const sample = all.filter((_, i) => i % 20 === 0);
    assert.ok(sample.length >= 20, `only ${sample.length} vectors`);
    for (const v of sample) {
      const r = await runRagd(['tokens', '--encoding', encoding, '--ids'], { input: v.text });
      assert.equal(r.code, 0, r.stderr);
      const [count, ids] = r.stdout.split('\n');
      assert.equal(Number(count), v.ids.length, JSON.stringify(v.text));
      assert.equal(ids, v.ids.join(' '), JSON.stringify(v.text));
    }
  });
}

test('ragd tokens picks the encoding from the model name', async () => {
  const text = '환불은 영업일 3~5일 이내에 처리됩니다. Refunds take 3-5 business days.';
  const count = async (args, env) => {
    const r = await runRagd(['tokens', ...args], { input: text, env });
    assert.equal(r.code, 0, r.stderr);
    return Number(r.stdout.trim());
  };
  const cl = await count(['--encoding', 'cl100k_base']);
  const o2 = await count(['--encoding', 'o200k_base']);
  assert.notEqual(cl, o2); // Korean costs more tokens in cl100k_base
  assert.equal(await count(['--model', 'gpt-4']), cl);
  assert.equal(await count(['--model', 'gpt-4o-mini']), o2);
  // Without flags: the encoding of RAGD_LLM_MODEL.
  assert.equal(await count([], { RAGD_LLM_MODEL: 'gpt-3.5-turbo' }), cl);
  assert.equal(await count([]), o2); // default model gpt-4o-mini

  const dir = tempDir();
  try {
    const file = path.join(dir, 'models.txt');
    writeFileSync(file, '# in-house\nsupport-bot cl100k_base 16000 1000\n');
    assert.equal(await count(['--model', 'support-bot'], { RAGD_MODELS_FILE: file }), cl);
    writeFileSync(file, 'support-bot p50k_base 16000 1000\n');
    const bad = await runRagd(['tokens', '--model', 'support-bot'], {
      input: text,
      env: { RAGD_MODELS_FILE: file },
    });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /models\.txt:1: unknown encoding "p50k_base"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ragd tokens refuses bad input, unknown names and a missing rank file', async () => {
  let r = await runRagd(['tokens', '--encoding', 'o200k_base'], {
    input: Buffer.from([0x61, 0x62, 0xff, 0x63]),
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not valid UTF-8 \(byte 2\)/);

  r = await runRagd(['tokens', '--encoding', 'p50k_base'], { input: 'x' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown encoding "p50k_base"/);

  r = await runRagd(['tokens', '--model', 'llama-3-70b'], { input: 'x' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /"llama-3-70b" is not in the model table/);

  const dir = tempDir();
  try {
    r = await runRagd(['tokens', '--encoding', 'cl100k_base'], {
      input: 'x',
      env: { RAGD_TOKENIZER_DIR: dir },
    });
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(path.join(dir, 'cl100k_base.tiktoken')), r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  r = await runRagd(['tokens', '--encoding', 'o200k_base'], { input: '' });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, '0\n');
});
