// Conversation memory through the HTTP API: a three-turn conversation whose
// third question only makes sense with the first two (the retrieval query in
// meta carries both, and the sources are the intended document), the
// transcript with citations, feedback with strict validation, the CSV export,
// deletion, and the settings. RAGD_CONDENSE=llm: a follow-up rewritten into
// a standalone question by the first LLM of the chain (the fake OpenAI
// server), with a fixed prompt that holds the conversation and the question
// in their own tagged sections, personal data masked, a short timeout, and
// the rule-based condensation when the rewrite fails or there is no LLM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startServer, startFakeOpenAI, postJson, chatStream, ingestSampleKb, runRagd, tempDir } from './helpers.mjs';

const event = (events, name) => {
  const ev = events.find((e) => e.event === name);
  assert.ok(ev, `a ${name} event among ${events.map((e) => e.event).join(',')}`);
  return JSON.parse(ev.data);
};

// One streamed turn: {meta, sources, done, text}.
async function turn(base, message, conversation_id) {
  const r = await chatStream(base, conversation_id ? { message, conversation_id } : { message });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.events.at(-1).event, 'done', r.text);
  const text = r.events.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join('');
  return { meta: event(r.events, 'meta'), sources: event(r.events, 'sources').sources, done: event(r.events, 'done'), text };
}

async function topDocument(base, query) {
  const r = await postJson(base, '/v1/search', { query, top_k: 1 });
  assert.equal(r.status, 200, r.text);
  return r.json.results[0]?.document_id;
}

// RFC 4180: CRLF records, quoted fields with doubled quotes.
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), (i += 2);
      else if (c === '"') (quoted = false), i++;
      else (field += c), i++;
    } else if (c === '"' && field === '') (quoted = true), i++;
    else if (c === ',') row.push(field), (field = ''), i++;
    else if (c === '\r' && text[i + 1] === '\n') row.push(field), rows.push(row), (row = []), (field = ''), (i += 2);
    else {
      assert.ok(c !== '\n' && c !== '\r' && c !== '"', `bare ${JSON.stringify(c)} at ${i} outside quotes`);
      field += c;
      i++;
    }
  }
  assert.equal(field, '', 'the last record ends with CRLF');
  assert.equal(row.length, 0);
  return rows;
}

const INTL = 'en/international-shipping.md';

test('a three-turn conversation, its transcript, feedback, export and deletion', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);

  // Turn 1 stands alone: searched as asked.
  const q1 = 'Do you ship to Japan?';
  const t1 = await turn(srv.base, q1);
  const conv = t1.meta.conversation_id;
  assert.match(conv, /^conv_[0-9a-f]{32}$/);
  assert.equal(t1.meta.retrieval_query, q1);
  assert.equal(t1.sources[0].document_id, INTL);
  assert.match(t1.done.message_id, /^msg_[0-9a-f]{24}$/);

  // Turn 2 is about paying for turn 1's order: alone it finds the general
  // payment methods.
  const q2 = 'Can I pay with PayPal?';
  assert.notEqual(await topDocument(srv.base, q2), INTL);
  const t2 = await turn(srv.base, q2, conv);
  assert.equal(t2.meta.conversation_id, conv);
  assert.equal(t2.meta.retrieval_query, 'ship Japan Can I pay with PayPal?');
  assert.equal(t2.sources[0].document_id, INTL);

  // Turn 3 needs both: returns (its own) of an order shipped to Japan (turn
  // 1) and paid with PayPal (turn 2), carried by turn 2's retrieval query.
  // Alone it finds the domestic return requests.
  const q3 = 'And for returns?';
  assert.notEqual(await topDocument(srv.base, q3), INTL);
  const t3 = await turn(srv.base, q3, conv);
  assert.equal(t3.meta.retrieval_query, 'ship Japan pay PayPal And for returns?');
  assert.equal(t3.sources[0].document_id, INTL);
  const ids = new Set([t1.done.message_id, t2.done.message_id, t3.done.message_id]);
  assert.equal(ids.size, 3);

  // The same through the non-streaming form.
  const flat = await postJson(srv.base, '/v1/chat', { message: 'What about customs duties?', conversation_id: conv, stream: false });
  assert.equal(flat.status, 200, flat.text);
  assert.equal(flat.json.retrieval_query, 'ship Japan pay PayPal returns What about customs duties?');
  assert.match(flat.json.message_id, /^msg_[0-9a-f]{24}$/);

  // The transcript: every turn in order, with ids, retrieval queries, sources and citations.
  let r = await fetch(`${srv.base}/v1/conversations/${conv}`);
  assert.equal(r.status, 200);
  const tr = await r.json();
  assert.equal(tr.id, conv);
  assert.ok(tr.created_at <= tr.updated_at && tr.created_at > 1.7e9);
  assert.deepEqual(tr.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
  assert.deepEqual(tr.messages.filter((m) => m.role === 'user').map((m) => m.content), [q1, q2, q3, 'What about customs duties?']);
  assert.deepEqual(tr.messages.filter((m) => m.role === 'user').map((m) => m.retrieval_query).slice(0, 3),
    [q1, 'ship Japan Can I pay with PayPal?', 'ship Japan pay PayPal And for returns?']);
  assert.deepEqual(tr.messages.filter((m) => m.role === 'assistant').map((m) => m.id),
    [t1.done.message_id, t2.done.message_id, t3.done.message_id, flat.json.message_id]);
  const a3 = tr.messages[5];
  assert.deepEqual(a3.sources.map((s) => s.chunk_id), t3.sources.map((s) => s.chunk_id));
  assert.deepEqual(a3.cited_sources, t3.done.cited_sources);
  for (const s of a3.sources) assert.equal(s.cited, a3.cited_sources.includes(s.index));
  assert.ok(a3.cited_sources.length > 0);
  for (const n of a3.cited_sources) assert.match(a3.content, new RegExp(`\\[${n}\\]`));
  assert.equal(a3.provider, 'extractive');
  assert.equal(a3.model, 'extractive');
  assert.equal(a3.finish_reason, 'stop');
  assert.equal(a3.feedback, null);
  assert.ok(Number.isInteger(a3.tokens) && a3.tokens > 0);
  for (const m of tr.messages) assert.match(m.id, /^msg_[0-9a-f]{24}$/);

  // Feedback: created, then changed.
  const fb = (mid, body, c = conv) => postJson(srv.base, `/v1/conversations/${c}/messages/${mid}/feedback`, body);
  const comment = 'Right document, but "6,000 KRW"\nwas not mentioned';
  r = await fb(t3.done.message_id, { rating: 'down', comment });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, { conversation_id: conv, message_id: t3.done.message_id, rating: 'down', comment, created: true });
  r = await fb(t3.done.message_id, { rating: 'up', comment: '재확인: 맞아요' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.created, false);
  r = await fb(t1.done.message_id, { rating: 'up' });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.comment, '');
  const again = await (await fetch(`${srv.base}/v1/conversations/${conv}`)).json();
  assert.deepEqual(again.messages[5].feedback, { rating: 'up', comment: '재확인: 맞아요' });
  assert.deepEqual(again.messages[1].feedback, { rating: 'up', comment: '' });

  // Strict validation, problem+json with the code that says what is wrong.
  const bad = async (res, status, code, detail) => {
    assert.equal(res.status, status, res.text);
    assert.match(res.headers.get('content-type'), /^application\/problem\+json/);
    assert.equal(res.json.code, code, res.text);
    if (detail) assert.match(res.json.detail, detail);
  };
  const mid = t2.done.message_id;
  await bad(await fb(mid, { rating: 'meh' }), 400, 'invalid_field', /"rating" must be "up" or "down"/);
  await bad(await fb(mid, { rating: 'UP' }), 400, 'invalid_field');
  await bad(await fb(mid, { rating: 1 }), 400, 'invalid_field', /"rating" must be a string/);
  await bad(await fb(mid, {}), 400, 'missing_field', /"rating" is required/);
  await bad(await fb(mid, { comment: 'no rating' }), 400, 'missing_field');
  await bad(await fb(mid, { rating: 'up', score: 5 }), 400, 'invalid_field', /unknown field "score"/);
  await bad(await fb(mid, { rating: 'up', comment: 5 }), 400, 'invalid_field', /"comment" must be a string/);
  await bad(await fb(mid, { rating: 'up', comment: 'x'.repeat(4001) }), 400, 'invalid_field', /longer than 4000 bytes/);
  await bad(await fb(mid, { rating: 'up', comment: 'a\u0000b' }), 400, 'invalid_json', /u0000/);
  await bad(await fb(mid, '{"rating": "up",'), 400, 'invalid_json');
  await bad(await fb(mid, '["up"]'), 400, 'invalid_json');
  await bad(await postJson(srv.base, `/v1/conversations/${conv}/messages/${mid}/feedback`, 'rating=up', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
  // ids that name nothing rateable
  const u1 = tr.messages[0].id;
  await bad(await fb(u1, { rating: 'up' }), 404, 'message_not_found'); // a question, not an answer
  await bad(await fb('msg_000000000000000000000000', { rating: 'up' }), 404, 'message_not_found');
  await bad(await fb(mid, { rating: 'up' }, 'conv_nope'), 404, 'message_not_found');
  await bad(await fb('bad%20id', { rating: 'up' }), 404, 'message_not_found');
  await bad(await postJson(srv.base, `/v1/conversations/${conv}/feedback`, { rating: 'up' }), 404, 'not_found');
  await bad(await postJson(srv.base, `/v1/conversations/${conv}`, { rating: 'up' }), 404, 'not_found');
  r = await fetch(`${srv.base}/v1/conversations/${conv}/messages/${mid}/feedback`, { method: 'PUT' });
  assert.equal(r.status, 405);
  // nothing of the refused requests was stored
  const after = await (await fetch(`${srv.base}/v1/conversations/${conv}`)).json();
  assert.equal(after.messages[3].feedback, null);

  // A second conversation with a rating, so the export has more than one.
  const other = await turn(srv.base, '환불은 언제 되나요?');
  r = await fb(other.done.message_id, { rating: 'down', comment: 'slow, "very" slow' }, other.meta.conversation_id);
  assert.equal(r.status, 201, r.text);

  // The CSV export, RFC 4180.
  let out = await runRagd(['feedback', 'export', '--data', srv.dataDir]);
  assert.equal(out.code, 0, out.stderr);
  let rows = parseCsv(out.stdout);
  assert.deepEqual(rows[0], ['updated_at', 'created_at', 'conversation_id', 'message_id', 'rating', 'comment', 'question', 'answer', 'provider', 'model', 'cited_documents']);
  assert.equal(rows.length, 4, out.stdout);
  for (const row of rows.slice(1)) {
    assert.equal(row.length, 11);
    assert.match(row[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  }
  const byId = new Map(rows.slice(1).map((row) => [row[3], row]));
  const r3 = byId.get(t3.done.message_id);
  assert.deepEqual(r3.slice(2, 7), [conv, t3.done.message_id, 'up', '재확인: 맞아요', q3]);
  assert.equal(r3[7], a3.content);
  assert.deepEqual(r3.slice(8, 10), ['extractive', 'extractive']);
  assert.deepEqual(r3[10].split(' '), [...new Set(a3.cited_sources.map((n) => a3.sources[n - 1].document_id))]);
  const rk = byId.get(other.done.message_id);
  assert.deepEqual(rk.slice(4, 7), ['down', 'slow, "very" slow', '환불은 언제 되나요?']);
  assert.ok(out.stdout.includes('"slow, ""very"" slow"'), 'quotes are doubled inside a quoted field');
  // --since: nothing changed tomorrow; everything since yesterday
  out = await runRagd(['feedback', 'export', '--data', srv.dataDir, '--since', new Date(Date.now() + 86400e3).toISOString().slice(0, 10)]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(parseCsv(out.stdout).length, 1);
  out = await runRagd(['feedback', 'export', '--data', srv.dataDir, '--since', '1d']);
  assert.equal(parseCsv(out.stdout).length, 4);
  for (const badSince of ['yesterday', '2025-13-40', '7w', '']) {
    out = await runRagd(['feedback', 'export', '--data', srv.dataDir, '--since', badSince]);
    assert.equal(out.code, 2, `--since ${badSince}`);
    assert.match(out.stderr, /--since/);
  }
  out = await runRagd(['feedback', 'import', '--data', srv.dataDir]);
  assert.equal(out.code, 2);

  // Deletion: the transcript, its messages and their feedback.
  r = await fetch(`${srv.base}/v1/conversations/${conv}`, { method: 'DELETE' });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { id: conv, deleted: true });
  for (const method of ['GET', 'DELETE']) {
    r = await fetch(`${srv.base}/v1/conversations/${conv}`, { method });
    assert.equal(r.status, 404);
    assert.equal((await r.json()).code, 'conversation_not_found');
  }
  await bad(await fb(t3.done.message_id, { rating: 'up' }), 404, 'message_not_found');
  out = await runRagd(['feedback', 'export', '--data', srv.dataDir]);
  rows = parseCsv(out.stdout);
  assert.deepEqual(rows.slice(1).map((row) => row[3]), [other.done.message_id]);
  r = await fetch(`${srv.base}/v1/conversations/not%2Fan%2Fid`);
  assert.equal((await r.json()).code, 'conversation_not_found');

  // A conversation id the client made up starts a conversation under that id.
  const mine = await turn(srv.base, 'Do you ship to Japan?', 'ticket-4711');
  assert.equal(mine.meta.conversation_id, 'ticket-4711');
  const follow = await turn(srv.base, 'How much is the fee?', 'ticket-4711');
  assert.equal(follow.meta.retrieval_query, 'ship Japan How much is the fee?');
});

test('Korean follow-ups carry the subject of earlier turns', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const t1 = await turn(srv.base, '일본으로 배송되나요?');
  assert.equal(t1.meta.retrieval_query, '일본으로 배송되나요?');
  assert.equal(t1.sources[0].document_id, 'ko/international-shipping.md');
  const conv = t1.meta.conversation_id;
  const t2 = await turn(srv.base, '그럼 배송비는?', conv);
  assert.equal(t2.meta.retrieval_query, '일본 배송 그럼 배송비는?');
  const t3 = await turn(srv.base, '그럼 반품은요?', conv);
  assert.equal(t3.meta.retrieval_query, '일본 배송 배송비 그럼 반품은요?');
  assert.ok(t3.sources.some((s) => s.document_id === 'ko/international-shipping.md'), JSON.stringify(t3.sources.map((s) => s.document_id)));
  // a new subject stands alone
  const t4 = await turn(srv.base, '비밀번호를 잊어버렸어요. 어떻게 재설정하나요?', conv);
  assert.equal(t4.meta.retrieval_query, '비밀번호를 잊어버렸어요. 어떻게 재설정하나요?');
});

test('the extractive generator answers a follow-up from its standalone question', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const t1 = await turn(srv.base, 'Do you ship to Japan?');
  const conv = t1.meta.conversation_id;
  await turn(srv.base, 'Can I pay with PayPal?', conv);
  const { meta, sources, text: answer } = await turn(srv.base, 'And what about the shipping fee?', conv);
  assert.equal(meta.retrieval_query, 'ship Japan pay PayPal And what about the shipping fee?');
  // The fee of the international order, not the destinations (the carried
  // "Japan" alone) nor a domestic fee (the follow-up alone).
  const m = /^The exact fee is shown at checkout before you pay \[(\d+)\]\./.exec(answer);
  assert.ok(m, answer);
  assert.equal(sources[Number(m[1]) - 1].document_id, INTL);
  assert.doesNotMatch(answer, /We currently ship to 8 countries/);
  // Asked alone, the same words find and quote the domestic fees.
  const alone = await turn(srv.base, 'And what about the shipping fee?');
  assert.equal(alone.meta.retrieval_query, 'And what about the shipping fee?');
  assert.notEqual(alone.sources[0].document_id, INTL);
});

test('RAGD_CONDENSE=off searches the question as asked; retention keeps recent conversations', async (t) => {
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const srv = await startServer({ data, env: { RAGD_CONDENSE: 'off', RAGD_CONVERSATION_RETENTION_DAYS: '30' } });
  await ingestSampleKb(srv.base);
  const t1 = await turn(srv.base, 'Do you ship to Japan?');
  const t2 = await turn(srv.base, 'How much is the fee?', t1.meta.conversation_id);
  assert.equal(t2.meta.retrieval_query, 'How much is the fee?');
  // retention ran at start-up and leaves a conversation of today alone after a restart
  await srv.stop();
  const again = await startServer({ data, env: { RAGD_CONVERSATION_RETENTION_DAYS: '1' } });
  const r = await fetch(`${again.base}/v1/conversations/${t1.meta.conversation_id}`);
  assert.equal(r.status, 200);
  assert.equal((await r.json()).messages.length, 4);
  for (const [name, value] of [['RAGD_CONDENSE', 'llm-ish'], ['RAGD_CONVERSATION_RETENTION_DAYS', '-1']]) {
    const out = await runRagd(['feedback', 'export', '--data', data], { env: { [name]: value } });
    assert.equal(out.code, 2, `${name}=${value}`);
    assert.match(out.stderr, new RegExp(name));
  }
  await again.stop();
});

const ANSWER = 'International shipping starts at 15,000 KRW [1].';

async function metric(base, line) {
  const text = await (await fetch(base + '/metrics')).text();
  const row = text.split('\n').find((l) => l.startsWith(line + ' '));
  return row ? Number(row.slice(line.length + 1)) : 0;
}

test('RAGD_CONDENSE=llm: the model rewrites the follow-up; the rules take over when it fails', async (t) => {
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  const srv = await startServer({
    env: {
      RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_MODEL: 'gpt-fake-1', RAGD_LLM_RETRIES: '0',
      RAGD_CONDENSE: 'llm', RAGD_CONDENSE_TIMEOUT_MS: '1500',
    },
  });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  await fake.configure({ reset: true, text: ANSWER });
  const clearLog = () => fetch(fake.base + '/__admin/log', { method: 'DELETE' });

  // A first question has nothing to lean on: no rewrite call.
  await clearLog();
  const t1 = await turn(srv.base, 'Do you ship to Japan?');
  const conv = t1.meta.conversation_id;
  assert.equal(t1.meta.retrieval_query, 'Do you ship to Japan?');
  assert.equal(t1.meta.retrieval_query_source, 'question');
  assert.equal((await fake.log()).length, 1);

  // The follow-up: one rewrite request, then the answer. The reply's quotes
  // and line break are not part of the query.
  const REWRITE = 'What are the international shipping fees for an order to Japan?';
  const q2 = 'And what about the fee? My card is 4111 1111 1111 1111.';
  await clearLog();
  await fake.configure({ queue: [{ text: ` "${REWRITE}"\n` }] });
  const t2 = await turn(srv.base, q2, conv);
  assert.equal(t2.meta.retrieval_query, REWRITE);
  assert.equal(t2.meta.retrieval_query_source, 'llm');
  assert.equal(t2.meta.retrieval_query_fallback, undefined);
  assert.equal(t2.sources[0].document_id, INTL);
  assert.equal(t2.text, ANSWER);
  const log = await fake.log();
  assert.equal(log.length, 2, 'a rewrite, then the answer');
  const rw = log[0].body;
  assert.equal(rw.model, 'gpt-fake-1');
  assert.equal(rw.max_tokens, 128);
  assert.equal(rw.temperature, 0);
  assert.equal(log[0].headers['x-request-id'], t2.meta.request_id);
  assert.deepEqual(rw.messages.map((m) => m.role), ['system', 'user']);
  assert.match(rw.messages[0].content, /standalone question/);
  assert.match(rw.messages[0].content, /<conversation>.*<question>/s);
  // The earlier turns and the question in their own sections, the card
  // number masked as it is in the answer's prompt.
  assert.equal(rw.messages[1].content,
    '<conversation>\nCustomer: Do you ship to Japan?\nAssistant: ' + ANSWER + '\n</conversation>\n\n' +
    '<question>\nAnd what about the fee? My card is [CARD].\n</question>');
  // The answer's own prompt still asks the customer's question.
  assert.match(log[1].body.messages.at(-1).content, /<question>\nAnd what about the fee\? My card is \[CARD\]\.\n<\/question>$/);
  // The transcript keeps the query retrieval ran.
  const tr = await (await fetch(`${srv.base}/v1/conversations/${conv}`)).json();
  assert.equal(tr.messages[2].retrieval_query, REWRITE);
  assert.equal(await metric(srv.base, 'ragd_condense_total{method="llm",fallback="none"}'), 1);

  // The model fails (HTTP 500): the rules condense it, and meta says why.
  await clearLog();
  await fake.configure({ queue: [{ status: 500 }] });
  const t3 = await turn(srv.base, 'And for returns?', conv);
  assert.equal(t3.meta.retrieval_query_source, 'rules');
  assert.equal(t3.meta.retrieval_query_fallback, 'upstream_unavailable');
  assert.equal(t3.meta.retrieval_query, 'international shipping fees order Japan And for returns?');
  assert.equal(t3.text, ANSWER, 'the answer itself is unaffected');
  assert.equal((await fake.log()).length, 2);

  // The model is too slow: cancelled after RAGD_CONDENSE_TIMEOUT_MS.
  await clearLog();
  await fake.configure({ queue: [{ delay_ms: 4000 }] });
  const started = Date.now();
  const t4 = await turn(srv.base, 'What about customs duties?', conv);
  const took = Date.now() - started;
  assert.equal(t4.meta.retrieval_query_source, 'rules');
  assert.equal(t4.meta.retrieval_query_fallback, 'timeout');
  assert.match(t4.meta.retrieval_query, / What about customs duties\?$/);
  assert.ok(took < 3500, `the answer waited ${took} ms`);
  const slow = await fake.log();
  assert.equal(slow[0].client_aborted, true, 'the slow rewrite was cancelled');
  assert.equal(await metric(srv.base, 'ragd_condense_total{method="rules",fallback="upstream_unavailable"}'), 1);
  assert.equal(await metric(srv.base, 'ragd_condense_total{method="rules",fallback="timeout"}'), 1);

  // The non-streamed reply carries the same fields.
  await fake.configure({ queue: [{ text: 'Can I return an item shipped to Japan?' }] });
  const flat = await postJson(srv.base, '/v1/chat', { message: 'Can I send it back?', conversation_id: conv, stream: false });
  assert.equal(flat.status, 200, flat.text);
  assert.equal(flat.json.retrieval_query, 'Can I return an item shipped to Japan?');
  assert.equal(flat.json.retrieval_query_source, 'llm');
});

test('RAGD_CONDENSE=llm with only the extractive generator: the rules, and meta says so', async (t) => {
  const srv = await startServer({ env: { RAGD_CONDENSE: 'llm' } });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const t1 = await turn(srv.base, 'Do you ship to Japan?');
  const t2 = await turn(srv.base, 'How much is the fee?', t1.meta.conversation_id);
  assert.equal(t2.meta.retrieval_query, 'ship Japan How much is the fee?');
  assert.equal(t2.meta.retrieval_query_source, 'rules');
  assert.equal(t2.meta.retrieval_query_fallback, 'no_llm');
});
