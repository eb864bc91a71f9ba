#!/usr/bin/env node
// fake_anthropic.mjs - a stand-in for Anthropic's Messages API (POST
// /v1/messages with "stream": true), for tests. Options, admin API and fault
// modes: see fake_common.mjs. The stream is the documented event sequence:
// message_start (usage.input_tokens), content_block_start (an empty text
// block), ping, one content_block_delta/text_delta per token, content_block_stop,
// message_delta (stop_reason, usage.output_tokens), message_stop. A request
// whose max_tokens is smaller than the answer is cut there with stop_reason
// "max_tokens"; mode safety ends with stop_reason "refusal"; stream-error sends
// an `error` event (overloaded_error) after the first delta; garbage sends a
// data line that is not JSON after message_start. Errors are Anthropic's
// {"type":"error","error":{"type","message"}} bodies.
import { runFake, tokenize } from './fake_common.mjs';

const errorTypes = {
  400: ['invalid_request_error', 'messages: field required'],
  401: ['authentication_error', 'invalid x-api-key'],
  404: ['not_found_error', 'Not found'],
  429: ['rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit'],
  500: ['api_error', 'Internal server error'],
  529: ['overloaded_error', 'Overloaded'],
};

function errorBody(status) {
  const [type, message] = errorTypes[status] || ['api_error', 'Internal server error'];
  return { type: 'error', error: { type, message } };
}

const ev = (name, obj) => `event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`;

function events(body, cfg) {
  let tokens = tokenize(cfg.text);
  let stop = cfg.mode === 'safety' ? 'refusal' : 'end_turn';
  if (Number.isInteger(body.max_tokens) && body.max_tokens < tokens.length) {
    tokens = tokens.slice(0, body.max_tokens);
    stop = 'max_tokens';
  }
  let input = 0;
  for (const m of body.messages || []) if (typeof m.content === 'string') input += tokenize(m.content).length;
  if (typeof body.system === 'string') input += tokenize(body.system).length;
  const out = [ev('message_start', {
    type: 'message_start',
    message: { id: 'msg_fake01', type: 'message', role: 'assistant', content: [], model: body.model,
      stop_reason: null, stop_sequence: null, usage: { input_tokens: input, output_tokens: 1 } },
  })];
  if (cfg.mode === 'garbage') out.push('event: content_block_start\ndata: {"type": not json\n\n');
  out.push(ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
  out.push(ev('ping', { type: 'ping' }));
  tokens.forEach((t, i) => {
    out.push(ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t } }));
    if (i === 0 && cfg.mode === 'stream-error') {
      out.push(ev('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
    }
  });
  out.push(ev('content_block_stop', { type: 'content_block_stop', index: 0 }));
  out.push(ev('message_delta', { type: 'message_delta', delta: { stop_reason: stop, stop_sequence: null },
    usage: { output_tokens: tokens.length } }));
  out.push(ev('message_stop', { type: 'message_stop' }));
  return out;
}

runFake({
  name: 'fake_anthropic',
  matches: (url, method) => method === 'POST' && url.pathname.endsWith('/messages'),
  errorBody,
  events,
});
