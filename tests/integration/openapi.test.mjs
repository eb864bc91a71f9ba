// GET /openapi.json describes exactly the routes the server answers (the
// route table in src/api/routes.c), and real responses -- JSON bodies,
// problem+json errors, the data of every event of real streams -- validate
// against the schemas it gives for their route, status and media type.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import { startServer, startFakeOpenAI, postJson, parseSse, ingestSampleKb, SOURCE_DIR } from './helpers.mjs';

const METHODS = ['get', 'post', 'delete'];

// "METHOD /path" for every entry of the route table; a trailing * is a path
// parameter, written {param} so it compares with the document's templates.
function routeTable() {
  const src = readFileSync(path.join(SOURCE_DIR, 'src', 'api', 'routes.c'), 'utf8');
  const routes = new Set();
  for (const m of src.matchAll(/\{\s*"(GET|POST|DELETE)",\s*"([^"]+)"/g)) routes.add(`${m[1]} ${m[2].replace(/\*$/, '{param}')}`);
  assert.ok(routes.size >= 10, `parsed ${routes.size} routes from routes.c`);
  return routes;
}

function documented(doc) {
  const routes = new Set();
  for (const [p, item] of Object.entries(doc.paths))
    // a route ending in * serves its whole subtree: everything from the first
    // path parameter on ("/v1/conversations/{id}/messages/{message_id}/feedback")
    for (const m of METHODS) if (item[m]) routes.add(`${m.toUpperCase()} ${p.replace(/\{.*$/, '{param}')}`);
  return routes;
}

const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');

function makeValidator(doc) {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema(doc, 'openapi.json');
  const cache = new Map();
  // Validates one body (parsed JSON) against the schema the document gives
  // for this route, status and media type; fails when there is none.
  return (method, template, status, mediaType, body) => {
    const op = doc.paths[template]?.[method];
    assert.ok(op, `${method} ${template} is described`);
    const resp = op.responses[String(status)];
    assert.ok(resp, `${method} ${template} describes status ${status}`);
    assert.ok(resp.content?.[mediaType], `${method} ${template} ${status} describes ${mediaType}`);
    const ptr = `openapi.json#/paths/${esc(template)}/${method}/responses/${status}/content/${esc(mediaType)}/schema`;
    if (!cache.has(ptr)) cache.set(ptr, ajv.compile({ $ref: ptr }));
    const validate = cache.get(ptr);
    assert.ok(validate(body), `${method} ${template} ${status} ${mediaType}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 400)}`);
  };
}

async function call(base, method, route, body, headers = {}) {
  const init = { method: method.toUpperCase(), headers: { ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] ??= 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(base + route, init);
  const text = await res.text();
  const mediaType = (res.headers.get('content-type') || '').split(';')[0].trim();
  return { status: res.status, mediaType, text, json: mediaType.endsWith('json') ? JSON.parse(text) : undefined };
}

test('the OpenAPI document matches the route table and the real responses', async (t) => {
  const fake = await startFakeOpenAI(['--text', 'Refunds take 3 business days [1].']);
  t.after(() => fake.stop());
  const srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_MODEL: 'gpt-4o-mini', RAGD_LLM_RETRIES: '0' } });
  t.after(() => srv.stop());
  const ids = await ingestSampleKb(srv.base);

  const r = await call(srv.base, 'get', '/openapi.json');
  assert.equal(r.status, 200);
  assert.equal(r.mediaType, 'application/json');
  const doc = r.json;
  assert.equal(doc.openapi, '3.1.0');
  const check = makeValidator(doc);

  // Every route the server answers is described, and nothing else is.
  assert.deepEqual([...documented(doc)].sort(), [...routeTable()].sort());
  // Every error code of docs/errors.md is in the Problem schema.
  const errorsMd = readFileSync(path.join(SOURCE_DIR, 'docs', 'errors.md'), 'utf8');
  const mdCodes = [...errorsMd.matchAll(/^\| `([a-z0-9_]+)` \| \d{3} \|/gm)].map((m) => m[1]);
  assert.ok(mdCodes.length >= 15);
  const described = new Set(doc.components.schemas.Problem.properties.code.enum);
  assert.deepEqual(mdCodes.filter((c) => !described.has(c)), [], 'codes of docs/errors.md missing from the Problem schema');

  // Every described operation exists on the server: neither an unknown path
  // nor a method the path does not take.
  const sample = { id: encodeURIComponent(ids[0]), file: 'style.css' };
  for (const [template, item] of Object.entries(doc.paths))
    for (const method of METHODS) {
      if (!item[method]) continue;
      const route = template.replace(/\{(\w+)\}/g, (_, name) => sample[name]);
      const res = await call(srv.base, method, route, method === 'post' ? {} : undefined);
      assert.notEqual(res.status, 405, `${method} ${route}`);
      assert.ok(!(res.status === 404 && res.json?.code === 'not_found'), `${method} ${route} is not routed`);
      if (method === 'delete') await call(srv.base, 'post', '/v1/documents', { id: ids[0], text: 'restored' });
    }
  assert.equal((await call(srv.base, 'get', '/docs')).mediaType, 'text/html');

  // JSON responses.
  const json = async (method, template, route, body, status = 200) => {
    const res = await call(srv.base, method, route, body);
    assert.equal(res.status, status, `${method} ${route}: ${res.text}`);
    check(method, template, res.status, res.mediaType, res.json);
    return res.json;
  };
  await json('post', '/v1/documents', '/v1/documents', { id: 'openapi-doc', title: 'T', text: '# Returns\n\nReturns are free within 30 days.' });
  await json('post', '/v1/documents', '/v1/documents', { documents: [{ text: 'one' }, { id: 'openapi-doc', text: '# Returns\n\nReturns are free within 30 days.' }] });
  await json('get', '/v1/documents', '/v1/documents?limit=3');
  await json('get', '/v1/documents/{id}', '/v1/documents/openapi-doc');
  await json('delete', '/v1/documents/{id}', '/v1/documents/openapi-doc');
  const found = await json('post', '/v1/search', '/v1/search', { query: 'refund', top_k: 3 });
  assert.ok(found.results.length > 0);
  const answered = await json('post', '/v1/chat', '/v1/chat', { message: 'How long do refunds take?', stream: false });
  const convPath = `/v1/conversations/${answered.conversation_id}`;
  const feedbackTemplate = '/v1/conversations/{id}/messages/{message_id}/feedback';
  await json('get', '/v1/conversations/{id}', convPath);
  await json('post', feedbackTemplate, `${convPath}/messages/${answered.message_id}/feedback`, { rating: 'up' }, 201);
  await json('post', feedbackTemplate, `${convPath}/messages/${answered.message_id}/feedback`, { rating: 'down', comment: 'x' });
  await json('post', feedbackTemplate, `${convPath}/messages/${answered.message_id}/feedback`, { rating: 'sideways' }, 400);
  await json('post', feedbackTemplate, `${convPath}/messages/msg_nope/feedback`, { rating: 'up' }, 404);
  await json('delete', '/v1/conversations/{id}', convPath);
  await json('get', '/v1/conversations/{id}', convPath, undefined, 404);
  await json('post', '/v1/chat/completions', '/v1/chat/completions', { messages: [{ role: 'user', content: 'How long do refunds take?' }] });
  await json('get', '/healthz', '/healthz');
  await json('get', '/readyz', '/readyz');

  // Errors: problem+json (and OpenAI error objects on the OpenAI route).
  await json('post', '/v1/search', '/v1/search', '{"query": ', 400);
  await json('post', '/v1/search', '/v1/search', { top_k: 3 }, 400);
  await json('post', '/v1/chat', '/v1/chat', { message: 'x', top_k: 'five' }, 400);
  await json('get', '/v1/documents', '/v1/documents?limit=0', undefined, 400);
  await json('get', '/v1/documents/{id}', '/v1/documents/missing', undefined, 404);
  await json('delete', '/v1/documents/{id}', '/v1/documents/missing', undefined, 404);
  await json('get', '/healthz', '/healthz/nope', undefined, 404);
  await json('post', '/v1/chat/completions', '/v1/chat/completions', { messages: [] }, 400);
  const wrongMethod = await call(srv.base, 'delete', '/v1/search');
  assert.equal(wrongMethod.status, 405);
  check('post', '/v1/search', 405, wrongMethod.mediaType, wrongMethod.json);
  const wrongType = await call(srv.base, 'post', '/v1/search', 'query=x', { 'content-type': 'text/plain' });
  check('post', '/v1/search', 415, wrongType.mediaType, wrongType.json);

  // Streams: the data of every event validates against the text/event-stream schema.
  const streams = [
    ['post', '/v1/chat', '/v1/chat', { message: 'How long do refunds take?' }],
    ['post', '/v1/chat', '/v1/chat', { message: 'xyzzy qwertyuiop' }],
    ['get', '/v1/chat/stream', '/v1/chat/stream?message=' + encodeURIComponent('비밀번호를 잊어버렸어요'), undefined],
    ['post', '/v1/chat/completions', '/v1/chat/completions', { messages: [{ role: 'user', content: 'refunds?' }], stream: true, stream_options: { include_usage: true } }],
  ];
  await fake.configure({ reset: true, text: 'Refunds take 3 business days [1].' });
  for (const [method, template, route, body] of streams) {
    const res = await call(srv.base, method, route, body);
    assert.equal(res.status, 200);
    assert.equal(res.mediaType, 'text/event-stream');
    const { events } = parseSse(res.text);
    assert.ok(events.length >= 3, `${route}: ${events.length} events`);
    const types = new Set();
    for (const ev of events) {
      if (ev.data === '[DONE]') continue;
      const data = JSON.parse(ev.data);
      check(method, template, 200, 'text/event-stream', data);
      if (template !== '/v1/chat/completions') assert.equal(data.type, ev.event);
      types.add(data.type ?? data.object);
    }
    if (template !== '/v1/chat/completions') for (const ty of ['meta', 'sources', 'done']) assert.ok(types.has(ty), `${route} sent ${ty}`);
  }
  // Keys last: the first key switches authentication on.
  const created = await call(srv.base, 'post', '/v1/keys', { scope: 'admin', name: 'openapi' });
  assert.equal(created.status, 201, created.text);
  check('post', '/v1/keys', 201, created.mediaType, created.json);
  const auth = { authorization: `Bearer ${created.json.key}` };
  const keyCalls = [
    ['get', '/v1/keys', '/v1/keys', undefined, 200],
    ['post', '/v1/keys', '/v1/keys', { scope: 'admin', rpm: -1 }, 400],
    ['delete', '/v1/keys/{id}', `/v1/keys/${created.json.id}`, undefined, 200],
    ['delete', '/v1/keys/{id}', `/v1/keys/${created.json.id}`, undefined, 404],
  ];
  for (const [method, template, route, body, status] of keyCalls) {
    const res = await call(srv.base, method, route, body, auth);
    assert.equal(res.status, status, `${method} ${route}: ${res.text}`);
    check(method, template, status, res.mediaType, res.json);
  }

  // An error event from a failing upstream (no last resort).
  const failing = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_RETRIES: '0', RAGD_LLM_LAST_RESORT: 'none' } });
  t.after(() => failing.stop());
  await ingestSampleKb(failing.base);
  await fake.configure({ reset: true, status: 503 });
  const res = await call(failing.base, 'post', '/v1/chat', { message: 'How long do refunds take?' });
  const last = parseSse(res.text).events.at(-1);
  assert.equal(last.event, 'error');
  check('post', '/v1/chat', 200, 'text/event-stream', JSON.parse(last.data));
});
