// Prompt budgeting through the HTTP API: ragd's own prompt count equals the
// provider's for the same encoding, passages are dropped to fit a small
// window (and are then not listed as sources), and a question that cannot
// fit is a clear 400.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from 'gpt-tokenizer/encoding/o200k_base';
import { startServer, startFakeOpenAI, chatStream, postJson, ingestSampleKb } from './helpers.mjs';

function promptTokens(messages) {
  let n = 3;
  for (const m of messages) n += 3 + encode(m.role).length + encode(m.content).length;
  return n;
}

test('usage: ragd and the provider count the prompt the same', async (t) => {
  const fake = await startFakeOpenAI(['--encoding', 'o200k_base', '--text', 'Refunds take 3 to 5 business days [1].']);
  t.after(() => fake.stop());
  const srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_MODEL: 'gpt-4o-mini' } });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  for (const message of ['How long do card refunds take?', '카드 환불은 며칠 걸리나요?']) {
    const r = await chatStream(srv.base, { message, top_k: 5 });
    const usage = JSON.parse(r.events.find((e) => e.event === 'usage').data);
    assert.ok(usage.prompt_tokens > 100);
    assert.equal(usage.ragd_prompt_tokens, usage.prompt_tokens, 'ragd counts like the provider');
    const sent = (await fake.log()).at(-1).body.messages;
    assert.equal(usage.prompt_tokens, promptTokens(sent));
    assert.equal(usage.completion_tokens, encode('Refunds take 3 to 5 business days [1].').length);
  }
});

test('a small window drops the lowest-ranked passages; a long question is refused', async (t) => {
  const fake = await startFakeOpenAI(['--text', 'Short answer [1].']);
  t.after(() => fake.stop());
  const window = 1200;
  const maxTokens = 200;
  const srv = await startServer({
    env: {
      RAGD_LLM_BASE_URL: fake.url,
      RAGD_LLM_MODEL: 'gpt-4o-mini',
      RAGD_LLM_CONTEXT_WINDOW: String(window),
      RAGD_LLM_MAX_TOKENS: String(maxTokens),
    },
  });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const r = await chatStream(srv.base, { message: 'How long do refunds take?', top_k: 10 });
  const sources = JSON.parse(r.events.find((e) => e.event === 'sources').data).sources;
  assert.ok(sources.length >= 1 && sources.length < 10, `${sources.length} passages kept`);
  const sent = (await fake.log()).at(-1).body.messages;
  const tokens = promptTokens(sent);
  assert.ok(tokens <= window - maxTokens, `prompt of ${tokens} tokens fits ${window - maxTokens}`);
  // every kept source is in the prompt, no dropped one is
  const user = sent.at(-1).content;
  assert.equal((user.match(/<passage number="/g) || []).length, sources.length);
  const usage = JSON.parse(r.events.find((e) => e.event === 'usage').data);
  assert.equal(usage.ragd_prompt_tokens, tokens);

  const long = 'refund '.repeat(1200);
  const p = await postJson(srv.base, '/v1/chat', { message: long.slice(0, 8000), stream: true });
  assert.equal(p.status, 400, p.text);
  assert.equal(p.json.code, 'question_too_long');
});
