#!/usr/bin/env node
// fake_gemini.mjs - a stand-in for the Gemini API's
// POST /v1beta/models/{model}:streamGenerateContent?alt=sse, for tests.
// Options, admin API and fault modes: see fake_common.mjs. Each event is
// `data: <GenerateContentResponse JSON>` ended by CRLF CRLF, as Google sends
// it: one chunk per token with candidates[0].content.parts[0].text, the last
// chunk with finishReason and usageMetadata (promptTokenCount,
// candidatesTokenCount, totalTokenCount); the stream then just ends. A
// request whose generationConfig.maxOutputTokens is smaller than the answer
// is cut there with finishReason MAX_TOKENS; mode safety ends with
// finishReason SAFETY; stream-error sends {"error":{...}} after the first
// chunk; garbage sends a data line that is not JSON first. Errors are
// Google's {"error":{"code","message","status"}} bodies.
import { runFake, tokenize } from './fake_common.mjs';

const statuses = {
  400: ['INVALID_ARGUMENT', 'Invalid JSON payload received.'],
  403: ['PERMISSION_DENIED', 'API key not valid. Please pass a valid API key.'],
  404: ['NOT_FOUND', 'models/unknown is not found for API version v1beta'],
  429: ['RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).'],
  500: ['INTERNAL', 'An internal error has occurred.'],
  503: ['UNAVAILABLE', 'The model is overloaded. Please try again later.'],
};

function errorBody(code) {
  const [status, message] = statuses[code] || ['INTERNAL', 'An internal error has occurred.'];
  return { error: { code, message, status } };
}

const data = (obj) => `data: ${JSON.stringify(obj)}\r\n\r\n`;

function events(body, cfg) {
  let tokens = tokenize(cfg.text);
  let finish = cfg.mode === 'safety' ? 'SAFETY' : 'STOP';
  const max = body.generationConfig && body.generationConfig.maxOutputTokens;
  if (Number.isInteger(max) && max < tokens.length) {
    tokens = tokens.slice(0, max);
    finish = 'MAX_TOKENS';
  }
  let prompt = 0;
  for (const c of body.contents || []) for (const p of c.parts || []) if (typeof p.text === 'string') prompt += tokenize(p.text).length;
  const si = body.systemInstruction;
  if (si && Array.isArray(si.parts)) for (const p of si.parts) if (typeof p.text === 'string') prompt += tokenize(p.text).length;
  const usage = (n) => ({ promptTokenCount: prompt, candidatesTokenCount: n, totalTokenCount: prompt + n });
  const out = [];
  if (cfg.mode === 'garbage') out.push('data: {"candidates": [oops\r\n\r\n');
  tokens.forEach((t, i) => {
    const last = i === tokens.length - 1;
    const cand = { content: { parts: [{ text: t }], role: 'model' }, index: 0 };
    if (last) {
      cand.finishReason = finish;
      if (finish === 'SAFETY') cand.safetyRatings = [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true }];
    }
    out.push(data({ candidates: [cand], usageMetadata: usage(i + 1), modelVersion: 'gemini-fake-001' }));
    if (i === 0 && cfg.mode === 'stream-error') out.push(data(errorBody(500)));
  });
  if (tokens.length === 0) {
    out.push(data({ candidates: [{ content: { parts: [{ text: '' }], role: 'model' }, finishReason: finish, index: 0 }], usageMetadata: usage(0) }));
  }
  return out;
}

runFake({
  name: 'fake_gemini',
  matches: (url, method) => method === 'POST' && /\/models\/[^/]+:streamGenerateContent$/.test(url.pathname) &&
    url.searchParams.get('alt') === 'sse',
  errorBody,
  events,
});
