// Streaming as independent clients see it: the official openai SDK against
// /v1/chat/completions, eventsource-parser on the native stream, the ai
// package's own UI message stream reader on the Vercel protocol, EventSource's
// GET route, Last-Event-ID resume, and cancellation of the upstream request
// when the client hangs up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { createParser } from 'eventsource-parser';
import { DefaultChatTransport, readUIMessageStream } from 'ai';
import { startServer, startFakeOpenAI, ingestSampleKb, parseSse, sleep } from './helpers.mjs';

const TEXT = '  Refunds take 3 business days [1].\n\n"Quotes", \\backslash\\, emoji 😀 and 한국어 [2].\n';
let fake, srv;

before(async () => {
  fake = await startFakeOpenAI();
  srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_MODEL: 'gpt-fake-1' } });
  await ingestSampleKb(srv.base);
});
after(async () => {
  await srv?.stop();
  await fake?.stop();
});

async function clearLog() {
  await fetch(fake.base + '/__admin/log', { method: 'DELETE' });
}

// Rates an answer the way a support front end would, by the ids the stream
// carried, and checks that the rating landed on that answer.
async function rate(conversationId, messageId, rating) {
  assert.match(conversationId, /^conv_[0-9a-f]{32}$/);
  assert.match(messageId, /^msg_[0-9a-f]{24}$/);
  const r = await fetch(`${srv.base}/v1/conversations/${conversationId}/messages/${messageId}/feedback`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ rating, comment: 'from the client test' }),
  });
  assert.equal(r.status, 201, await r.text());
  const tr = await (await fetch(`${srv.base}/v1/conversations/${conversationId}`)).json();
  const answer = tr.messages.find((m) => m.id === messageId);
  assert.equal(answer?.role, 'assistant', JSON.stringify(tr.messages));
  assert.deepEqual(answer.feedback, { rating, comment: 'from the client test' });
  return answer;
}

test('the openai SDK streams the exact text, then usage, from /v1/chat/completions', async () => {
  await fake.configure({ reset: true, split: 'random', text: TEXT });
  const client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: 'anything',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'How long do refunds take?' }],
  });
  let text = '';
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    for (const ch of chunk.choices) text += ch.delta?.content ?? '';
  }
  assert.equal(text, TEXT);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(chunks[0].model, 'gpt-fake-1');
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  const sources = chunks[0].ragd.sources;
  assert.ok(sources.length >= 2, 'citations travel in the extra ragd field');
  const finish = chunks.find((c) => c.choices[0]?.finish_reason);
  assert.equal(finish.choices[0].finish_reason, 'stop');
  assert.deepEqual(finish.ragd.cited_sources, [1, 2]);
  // The ids feedback needs ride next to the citations; the SDK passes them through.
  assert.equal(finish.ragd.conversation_id, chunks[0].ragd.conversation_id);
  const rated = await rate(finish.ragd.conversation_id, finish.ragd.message_id, 'up');
  assert.equal(rated.content, TEXT);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
  assert.ok(last.usage.completion_tokens > 0);
});

test('the openai SDK non-stream call, multi-turn history, and OpenAI-shaped errors', async () => {
  await fake.configure({ reset: true, text: TEXT });
  await clearLog();
  const client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0 });
  const done = await client.chat.completions.create({
    model: 'anything',
    messages: [
      { role: 'system', content: 'be nice' },
      { role: 'user', content: 'I ordered a lamp last week.' },
      { role: 'assistant', content: 'Thanks, how can I help with the lamp?' },
      { role: 'user', content: [{ type: 'text', text: 'How long do refunds take?' }] },
    ],
  });
  assert.equal(done.object, 'chat.completion');
  assert.equal(done.choices[0].message.content, TEXT);
  assert.equal(done.choices[0].finish_reason, 'stop');
  assert.ok(done.usage.total_tokens > 0);
  assert.ok(done.ragd.sources.length > 0);
  const rated = await rate(done.ragd.conversation_id, done.ragd.message_id, 'down');
  assert.equal(rated.content, TEXT);
  // The earlier turns reached the model as history, before the question.
  const sent = (await fake.log()).at(-1).body.messages;
  const contents = sent.map((m) => m.content);
  assert.ok(contents.includes('I ordered a lamp last week.'), JSON.stringify(contents));
  assert.ok(contents.includes('Thanks, how can I help with the lamp?'));
  assert.match(sent.at(-1).content, /<question>\nHow long do refunds take\?\n<\/question>$/);

  await assert.rejects(
    client.chat.completions.create({ model: 'x', messages: [{ role: 'system', content: 'hi' }] }),
    (e) => e.status === 400 && e.code === 'invalid_field' && e.type === 'invalid_request_error' && /user/.test(e.message),
  );
  const raw = await fetch(srv.base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"messages": [' });
  assert.equal(raw.status, 400);
  const body = await raw.json();
  assert.equal(body.error.code, 'invalid_json');
  assert.equal(body.error.type, 'invalid_request_error');
  assert.equal(typeof body.error.message, 'string');

  // An upstream failure mid-stream reaches the SDK as an error.
  await fake.configure({ reset: true, mode: 'close-after:3' });
  const stream = await client.chat.completions.create({ model: 'x', stream: true, messages: [{ role: 'user', content: 'refund' }] });
  await assert.rejects(async () => {
    for await (const _ of stream) { /* drain */ }
  }, (e) => /upstream/i.test(String(e.message) + String(e.code)));
});

test('eventsource-parser reads the native stream: every data is JSON of its event type', async () => {
  await fake.configure({ reset: true, split: 'bytes', text: TEXT });
  const res = await fetch(srv.base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'How long do refunds take?' }),
  });
  const events = [];
  let retry;
  const parser = createParser({
    onEvent: (e) => events.push(e),
    onRetry: (ms) => (retry = ms),
  });
  const decoder = new TextDecoder();
  for await (const piece of res.body) parser.feed(decoder.decode(piece, { stream: true }));
  assert.equal(retry, 3000);
  assert.ok(events.length >= 4);
  const rid = JSON.parse(events[0].data).response_id;
  events.forEach((e, i) => {
    const data = JSON.parse(e.data);
    assert.equal(data.type, e.event);
    assert.equal(e.id, `${rid}.${i}`);
  });
  const text = events.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join('');
  assert.equal(text, TEXT);
  assert.equal(events.at(-1).event, 'done');
});

test("the ai package's UI message stream reader reassembles the Vercel stream", async () => {
  await fake.configure({ reset: true, split: 'random', text: TEXT });
  let headers;
  const transport = new DefaultChatTransport({
    api: srv.base + '/v1/chat?protocol=vercel',
    fetch: async (url, init) => {
      const r = await fetch(url, init);
      headers = r.headers;
      return r;
    },
  });
  const chunks = await transport.sendMessages({
    trigger: 'submit-message',
    chatId: 'chat1',
    messageId: undefined,
    messages: [{ id: 'm1', role: 'user', parts: [{ type: 'text', text: 'How long do refunds take?' }] }],
    abortSignal: undefined,
  });
  assert.equal(headers.get('x-vercel-ai-ui-message-stream'), 'v1');
  let message;
  for await (const m of readUIMessageStream({ stream: chunks, terminateOnError: true })) message = m;
  const text = message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
  assert.equal(text, TEXT);
  const urls = message.parts.filter((p) => p.type === 'source-url');
  assert.ok(urls.length >= 2, JSON.stringify(message.parts));
  assert.match(urls[0].url, /^https:\/\/help\.hanbit-market\.example\//);
  assert.equal(urls[0].sourceId, '1');
  assert.deepEqual(message.metadata.cited_sources, [1, 2]);
  // The start part named the message by ragd's id; the metadata carries the
  // conversation, and the stored id once the answer was saved.
  assert.equal(message.id, message.metadata.message_id);
  const rated = await rate(message.metadata.conversation_id, message.id, 'up');
  assert.equal(rated.content, TEXT);
});

test('GET /v1/chat/stream serves the native stream for EventSource', async () => {
  await fake.configure({ reset: true, text: TEXT });
  const res = await fetch(srv.base + '/v1/chat/stream?message=' + encodeURIComponent('How long do refunds take?') + '&top_k=2');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const { events } = parseSse(await res.text());
  assert.equal(events[0].event, 'meta');
  assert.equal(JSON.parse(events[1].data).sources.length, 2);
  assert.equal(events.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join(''), TEXT);
  const bad = await fetch(srv.base + '/v1/chat/stream');
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).code, 'invalid_query');
});

test('resume: read half, hang up, reconnect with Last-Event-ID, get exactly the rest', async () => {
  const words = Array.from({ length: 120 }, (_, i) => ` w${i}`).join('');
  await fake.configure({ reset: true, text: words });
  await clearLog();
  // The whole answer, as one uninterrupted client sees it, for comparison.
  const ctrl = new AbortController();
  const res = await fetch(srv.base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'refund policy' }),
    signal: ctrl.signal,
  });
  const reader = res.body.getReader();
  let seen = '';
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'the stream ended before half');
    seen += decoder.decode(value, { stream: true });
    if (parseSse(seen).events.length >= 40) break;
  }
  ctrl.abort();
  const firstPart = parseSse(seen).events.slice(0, 40);
  const lastId = firstPart.at(-1).id;
  await sleep(100);
  const again = await fetch(srv.base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'last-event-id': lastId },
    body: JSON.stringify({ message: 'refund policy' }),
  });
  const rest = parseSse(await again.text());
  const all = [...firstPart, ...rest.events];
  const rid = JSON.parse(firstPart[0].data).response_id;
  all.forEach((e, i) => assert.equal(e.id, `${rid}.${i}`, 'no event lost or repeated'));
  assert.equal(all.at(-1).event, 'done');
  const text = all.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join('');
  assert.equal(text, words);
  assert.equal((await fake.log()).length, 1, 'no second upstream call');

  // The query-string form, for clients that cannot set headers.
  const q = await fetch(srv.base + `/v1/chat/stream?last_event_id=${encodeURIComponent(all.at(-3).id)}`);
  const tail = parseSse(await q.text()).events;
  assert.deepEqual(tail.map((e) => e.id), all.slice(-2).map((e) => e.id));

  // Unknown or expired ids get a clear error event.
  for (const id of ['resp_000000000000000000000000.3', 'garbage']) {
    const u = await fetch(srv.base + '/v1/chat/stream', { headers: { 'last-event-id': id } });
    assert.equal(u.status, 200);
    const evs = parseSse(await u.text()).events;
    assert.equal(evs.length, 1);
    assert.equal(evs[0].event, 'error');
    const data = JSON.parse(evs[0].data);
    assert.equal(data.type, 'error');
    assert.equal(data.error.code, 'resume_unavailable');
    assert.match(data.error.message, /no answer is held/);
  }
});

test('a client that hangs up while the stream waits cancels the upstream within 100 ms', async () => {
  const words = Array.from({ length: 100 }, (_, i) => ` word${i}`).join('');
  const elapsed = [];
  for (let round = 0; round < 3; round++) {
    await fake.configure({ reset: true, text: words, delay_ms: 400 });
    await clearLog();
    const ctrl = new AbortController();
    const res = await fetch(srv.base + '/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ stream: true, messages: [{ role: 'user', content: 'refund policy' }] }),
      signal: ctrl.signal,
    });
    const reader = res.body.getReader();
    let seen = '';
    while (!seen.includes('"content":" word0"')) {
      const { value, done } = await reader.read();
      assert.ok(!done);
      seen += Buffer.from(value).toString('utf8');
    }
    // The server now waits ~400 ms for the next token, its connection suspended.
    await sleep(50);
    const t0 = performance.now();
    ctrl.abort();
    let entry;
    while (performance.now() - t0 < 3000) {
      entry = (await fake.log()).at(-1);
      if (entry?.client_aborted) break;
      await sleep(5);
    }
    assert.ok(entry?.client_aborted, 'the upstream request was cancelled');
    elapsed.push(performance.now() - t0);
  }
  elapsed.sort((a, b) => a - b);
  console.log(`upstream cancelled after ${elapsed.map((x) => x.toFixed(1)).join(", ")} ms`);
  assert.ok(elapsed[1] < 100, `upstream cancelled after ${elapsed.map((x) => x.toFixed(0)).join(', ')} ms`);
});
