// POST /v1/chat end to end: the offline extractive generator on the sample
// knowledge base, and the openai generator against the fake upstream, with
// the exact event sequence, byte-exact text relay, citations and cancellation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeOpenAI, chatStream, postJson, ingestSampleKb, sleep } from './helpers.mjs';

// Checks the native streaming contract and returns the parsed events.
function checkContract(r) {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  assert.equal(r.headers.get('x-accel-buffering'), 'no');
  assert.equal(r.headers.get('content-encoding'), null);
  assert.ok(!r.text.includes('\r'), 'SSE lines end with \\n only');
  assert.equal(r.retry, 3000);
  const evs = r.events.map((e) => ({ ...e, json: JSON.parse(e.data) }));
  assert.ok(evs.length >= 3, r.text);
  const responseId = evs[0].json.response_id;
  evs.forEach((e, i) => {
    assert.equal(e.json.type, e.event, 'data.type equals the event name');
    assert.equal(e.id, `${responseId}.${i}`, 'ids are <response_id>.<seq>');
    assert.ok(!e.data.includes('\n'), 'one data line per event');
  });
  assert.equal(evs[0].event, 'meta');
  assert.ok(['done', 'error'].includes(evs.at(-1).event), 'the last event is done or error');
  assert.equal(evs.filter((e) => e.event === 'done' || e.event === 'error').length, 1);
  return evs;
}

function names(evs) {
  // Collapses runs of text_delta for sequence comparisons.
  const out = [];
  for (const e of evs) if (!(e.event === 'text_delta' && out.at(-1) === 'text_delta+')) out.push(e.event === 'text_delta' ? 'text_delta+' : e.event);
  return out;
}

function answerText(evs) {
  return evs.filter((e) => e.event === 'text_delta').map((e) => e.json.content).join('');
}

function citedNumbers(text) {
  return [...text.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]));
}

test('extractive answers in Korean and English with valid citations', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);

  for (const [question, lang, expectDoc] of [
    ['비밀번호를 잊어버렸어요. 어떻게 재설정하나요?', 'ko', /^ko\/account-signup-and-password/],
    ['How much is the shipping fee?', 'en', /^en\/shipping-fees/],
  ]) {
    const r = await chatStream(srv.base, { message: question, top_k: 4 });
    const evs = checkContract(r);
    assert.deepEqual(names(evs), ['meta', 'sources', 'text_delta+', 'usage', 'done'], question);
    const meta = evs[0].json;
    assert.equal(meta.model, 'extractive');
    assert.equal(meta.degraded, false);
    assert.match(meta.conversation_id, /^conv_[0-9a-f]+$/);
    const sources = evs[1].json.sources;
    assert.equal(sources.length, 4);
    sources.forEach((s, i) => assert.equal(s.index, i + 1));
    assert.match(sources[0].document_id, expectDoc);
    const text = answerText(evs);
    if (lang === 'ko') assert.match(text, /[\uac00-\ud7a3]/, 'a Korean question gets a Korean answer');
    else assert.doesNotMatch(text, /[\uac00-\ud7a3]/);
    const cited = citedNumbers(text);
    assert.ok(cited.length >= 1, `answer cites its sources: ${text}`);
    for (const n of cited) assert.ok(n >= 1 && n <= sources.length, `[${n}] is a listed source`);
    const done = evs.at(-1).json;
    assert.equal(done.finish_reason, 'stop');
    assert.deepEqual(done.invalid_citations, []);
    assert.deepEqual(done.cited_sources, [...new Set(cited)].sort((a, b) => a - b));
    const usage = evs.at(-2).json;
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  }

  // Nothing relevant: an honest answer and no citation.
  const none = await chatStream(srv.base, { message: 'xyzzy qwertyuiop zebra', top_k: 3 });
  const evs = checkContract(none);
  assert.deepEqual(evs[1].json.sources, []);
  const text = answerText(evs);
  assert.match(text, /could not find|찾지 못/);
  assert.deepEqual(citedNumbers(text), []);

  // stream: false returns one JSON object with the same parts.
  const one = await postJson(srv.base, '/v1/chat', { message: 'How do I reset my password?', stream: false });
  assert.equal(one.status, 200, one.text);
  assert.match(one.headers.get('content-type'), /^application\/json/);
  assert.equal(typeof one.json.answer, 'string');
  assert.ok(one.json.answer.length > 0);
  assert.ok(one.json.sources.length > 0);
  assert.equal(one.json.finish_reason, 'stop');
  assert.ok(one.json.usage.total_tokens > 0);
  for (const n of citedNumbers(one.json.answer)) assert.ok(n <= one.json.sources.length);
});

test('openai generator: deltas relay the upstream text byte for byte', async (t) => {
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  // Retries and breakers have their own test (resilience.test.mjs); here each
  // failure must reach the failover logic exactly once.
  const srv = await startServer({
    env: {
      RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_API_KEY: 'sk-test-key', RAGD_LLM_MODEL: 'gpt-fake-1',
      RAGD_LLM_RETRIES: '0', RAGD_LLM_BREAKER_MIN_REQUESTS: '0',
    },
  });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const ready = await (await fetch(srv.base + '/readyz')).json();
  assert.equal(ready.generator, 'openai');

  const text = '  Leading spaces survive.\n\nRefunds take 3 business days [1].\n"Quotes", \\backslash\\, emoji 😀🎉 and 한국어 [2].\n';
  for (const split of ['whole', 'bytes', 'random']) {
    await fake.configure({ reset: true, split, text });
    const r = await chatStream(srv.base, { message: 'How long do refunds take?', top_k: 3 }, { 'x-request-id': `split-${split}` });
    const evs = checkContract(r);
    assert.deepEqual(names(evs), ['meta', 'sources', 'text_delta+', 'usage', 'done'], split);
    assert.equal(evs[0].json.model, 'gpt-fake-1');
    assert.equal(answerText(evs), text, `split ${split}: text relayed exactly`);
    const usage = evs.at(-2).json;
    const log = await fake.log();
    const req = log.at(-1);
    assert.equal(usage.completion_tokens, (text.match(/\s*\S+|\s+/gu) || []).length);
    assert.ok(usage.prompt_tokens > 0);
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    const { message_id: answerId, ...done } = evs.at(-1).json;
    assert.deepEqual(done, { type: 'done', finish_reason: 'stop', cited_sources: [1, 2], invalid_citations: [] });
    assert.match(answerId, /^msg_[0-9a-f]{24}$/); // the stored answer, for feedback
    // What went upstream: the model, streaming, the key, the request id, and
    // a prompt holding the passages and the question.
    assert.equal(req.body.model, 'gpt-fake-1');
    assert.equal(req.body.stream, true);
    assert.equal(req.headers.authorization, 'Bearer sk-test-key');
    assert.equal(req.headers['x-request-id'], `split-${split}`);
    assert.equal(req.body.messages[0].role, 'system');
    const user = req.body.messages.at(-1);
    assert.equal(user.role, 'user');
    assert.match(user.content, /<passage number="1">/);
    assert.match(user.content, /\n<question>\nHow long do refunds take\?\n<\/question>$/);
  }

  // A citation the model invents is reported and not counted as a source.
  await fake.configure({ reset: true, text: 'See [1] and also [9].' });
  let evs = checkContract(await chatStream(srv.base, { message: 'refund', top_k: 2 }));
  assert.deepEqual(evs.at(-1).json.cited_sources, [1]);
  assert.deepEqual(evs.at(-1).json.invalid_citations, [9]);

  // The provider fails before its first token: the extractive last resort
  // answers from the passages, and a notice says so.
  await fake.configure({ reset: true, status: 500 });
  evs = checkContract(await chatStream(srv.base, { message: 'How long do refunds take?', top_k: 2 }));
  assert.deepEqual(names(evs), ['meta', 'sources', 'notice', 'text_delta+', 'usage', 'done']);
  const notice = evs[2].json;
  assert.equal(notice.provider, 'extractive');
  assert.equal(notice.degraded, true);
  assert.equal(notice.reason, 'upstream_unavailable');
  assert.ok(citedNumbers(answerText(evs)).length >= 1, 'the fallback answer cites its passages');
  // Non-stream: the same fallback, marked degraded.
  const p = await postJson(srv.base, '/v1/chat', { message: 'How long do refunds take?', stream: false });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json.degraded, true);
  assert.equal(p.json.model, 'extractive');

  // A failure after the first token is never silently restarted: error event.
  await fake.configure({ reset: true, mode: 'close-after:3' });
  evs = checkContract(await chatStream(srv.base, { message: 'refund', top_k: 2 }));
  assert.equal(names(evs).at(-1), 'error');
  assert.ok(!names(evs).includes('notice'));
  assert.equal(evs.at(-1).json.error.code, 'upstream_closed');
  // Garbage before any text: nothing reached the client yet, so the answer
  // fails over (the notice carries the protocol error).
  await fake.configure({ reset: true, mode: 'garbage' });
  evs = checkContract(await chatStream(srv.base, { message: 'refund', top_k: 2 }));
  assert.equal(evs[2].event, 'notice');
  assert.equal(evs[2].json.reason, 'upstream_protocol');
  assert.equal(evs.at(-1).event, 'done');

  // Nothing retrieved: the model is not asked at all.
  await fake.configure({ reset: true });
  await fetch(fake.base + '/__admin/log', { method: 'DELETE' });
  evs = checkContract(await chatStream(srv.base, { message: 'xyzzy qwertyuiop', top_k: 2 }));
  assert.match(answerText(evs), /could not find/);
  assert.deepEqual(await fake.log(), []);
  assert.equal(srv.child.exitCode, null);
});

test('failover chain: primary down, backup answers; with no last resort the error reaches the client', async (t) => {
  const primary = await startFakeOpenAI(['--status', '503']);
  t.after(() => primary.stop());
  const backup = await startFakeOpenAI(['--text', 'Backup says hello [1].']);
  t.after(() => backup.stop());
  const srv = await startServer({
    env: {
      RAGD_LLM_CHAIN: 'primary,backup',
      RAGD_LLM_PRIMARY_PROVIDER: 'openai',
      RAGD_LLM_PRIMARY_BASE_URL: primary.url,
      RAGD_LLM_PRIMARY_MODEL: 'model-a',
      RAGD_LLM_BACKUP_PROVIDER: 'openai',
      RAGD_LLM_BACKUP_BASE_URL: backup.url,
      RAGD_LLM_BACKUP_MODEL: 'model-b',
      RAGD_LLM_LAST_RESORT: 'none',
      RAGD_LLM_RETRIES: '0',
      RAGD_LLM_BREAKER_MIN_REQUESTS: '0',
    },
  });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const ready = await (await fetch(srv.base + '/readyz')).json();
  assert.deepEqual(ready.chain.map((g) => g.name), ['PRIMARY', 'BACKUP']);
  let evs = checkContract(await chatStream(srv.base, { message: 'refund', top_k: 2 }));
  assert.deepEqual(names(evs), ['meta', 'sources', 'notice', 'text_delta+', 'usage', 'done']);
  assert.equal(evs[0].json.model, 'model-a');
  assert.equal(evs[2].json.model, 'model-b');
  assert.equal(evs[2].json.degraded, false);
  assert.equal(answerText(evs), 'Backup says hello [1].');
  assert.equal((await primary.log()).length, 1);
  assert.equal((await backup.log()).length, 1);
  // Both down and no last resort: an error event, not a silent stop.
  await backup.configure({ reset: true, status: 500 });
  evs = checkContract(await chatStream(srv.base, { message: 'refund', top_k: 2 }));
  assert.deepEqual(names(evs), ['meta', 'sources', 'notice', 'error']);
  assert.equal(evs.at(-1).json.error.code, 'upstream_unavailable');
});

test('a client that disconnects mid-answer cancels the upstream request', async (t) => {
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  const srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url } });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const words = Array.from({ length: 200 }, (_, i) => ` word${i}`).join('');
  await fake.configure({ reset: true, text: words, delay_ms: 50 });
  await fetch(fake.base + '/__admin/log', { method: 'DELETE' });

  const ctrl = new AbortController();
  const res = await fetch(srv.base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'refund policy' }),
    signal: ctrl.signal,
  });
  const reader = res.body.getReader();
  let seen = '';
  while (!seen.includes('event: text_delta')) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'stream ended before any text');
    seen += Buffer.from(value).toString('utf8');
  }
  const abortedAt = Date.now();
  ctrl.abort();
  let entry;
  for (let i = 0; i < 100; i++) {
    entry = (await fake.log()).at(-1);
    if (entry?.client_aborted) break;
    await sleep(50);
  }
  assert.ok(entry?.client_aborted, 'the fake upstream saw its connection close');
  const elapsed = Date.now() - abortedAt;
  assert.ok(elapsed < 3000, `upstream cancelled after ${elapsed} ms`);
  // And the server is fine afterwards.
  const h = await fetch(srv.base + '/healthz');
  assert.equal(h.status, 200);
});
