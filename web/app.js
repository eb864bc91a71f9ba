// The chat page: POST /v1/chat, read the native event stream with fetch (so
// the Stop button can abort it, which cancels the answer upstream), render
// text as it arrives and turn [n] into links to source n.
'use strict';

const form = document.getElementById('ask');
const input = document.getElementById('question');
const sendButton = document.getElementById('send');
const stopButton = document.getElementById('stop');
const log = document.getElementById('log');
const statusLine = document.getElementById('status');
let conversationId = null;
let controller = null;

// The API key, when the server has keys: kept in localStorage, sent as a
// Bearer token. A 401 opens the key box so the visitor can paste one.
const keyBox = document.getElementById('keybox');
const keyInput = document.getElementById('api-key');
const KEY_STORAGE = 'ragd.apiKey';
keyInput.value = localStorage.getItem(KEY_STORAGE) || '';
keyInput.addEventListener('change', () => {
  const k = keyInput.value.trim();
  if (k) localStorage.setItem(KEY_STORAGE, k);
  else localStorage.removeItem(KEY_STORAGE);
});
function authHeaders() {
  const k = keyInput.value.trim();
  return k ? { authorization: `Bearer ${k}` } : {};
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Renders answer text with each [n] (or [n, m]) as links to the sources list.
function renderAnswer(node, text, turnId) {
  node.textContent = '';
  const re = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    node.append(text.slice(last, m.index));
    const sup = el('sup', 'cite');
    m[1].split(/\s*,\s*/).forEach((n, i) => {
      if (i) sup.append(',');
      const a = el('a', null, `[${n}]`);
      a.href = `#${turnId}-src-${n}`;
      sup.append(a);
    });
    node.append(sup);
    last = m.index + m[0].length;
  }
  node.append(text.slice(last));
}

function renderSources(list, sources, turnId) {
  list.textContent = '';
  for (const s of sources) {
    const li = el('li');
    li.id = `${turnId}-src-${s.index}`;
    li.value = s.index;
    const label = s.title || s.document_id;
    if (s.url) {
      const a = el('a', null, label);
      a.href = s.url;
      a.target = '_blank';
      a.rel = 'noopener';
      li.append(a);
    } else {
      li.append(label);
    }
    list.append(li);
  }
}

// Splits a growing text buffer into complete SSE events.
function takeEvents(state) {
  const out = [];
  let cut;
  while ((cut = state.buffer.search(/\r?\n\r?\n/)) >= 0) {
    const block = state.buffer.slice(0, cut);
    state.buffer = state.buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
    const ev = { event: 'message', data: [] };
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') ev.event = value;
      else if (field === 'data') ev.data.push(value);
    }
    if (ev.data.length) out.push({ event: ev.event, data: ev.data.join('\n') });
  }
  return out;
}

async function ask(question) {
  const turnId = `t${log.children.length + 1}`;
  const turn = el('li', 'turn');
  turn.append(el('div', 'question', question));
  const answer = el('p', 'answer streaming');
  const sources = el('ol', 'sources');
  turn.append(answer, sources);
  log.append(turn);
  let text = '';
  controller = new AbortController();
  sendButton.disabled = true;
  stopButton.disabled = false;
  statusLine.textContent = 'Searching…';
  try {
    const body = { message: question };
    if (conversationId) body.conversation_id = conversationId;
    const res = await fetch('/v1/chat', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders() },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (res.status === 401 || res.status === 403) {
      keyBox.open = true;
      keyInput.focus();
    }
    if (!res.ok) {
      const problem = await res.json().catch(() => ({}));
      throw new Error(problem.detail || problem.title || `HTTP ${res.status}`);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const state = { buffer: '' };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      state.buffer += value;
      for (const ev of takeEvents(state)) {
        const data = JSON.parse(ev.data);
        if (ev.event === 'meta') conversationId = data.conversation_id;
        else if (ev.event === 'sources') renderSources(sources, data.sources, turnId);
        else if (ev.event === 'text_delta') {
          text += data.content;
          renderAnswer(answer, text, turnId);
          statusLine.textContent = 'Answering…';
        } else if (ev.event === 'done') statusLine.textContent = '';
        else if (ev.event === 'error') throw new Error(data.error.message);
      }
    }
    turn.dataset.state = 'done';
  } catch (e) {
    if (e.name === 'AbortError') {
      statusLine.textContent = 'Stopped.';
      turn.dataset.state = 'stopped';
    } else {
      answer.append(el('span', 'error', ` ${e.message}`));
      statusLine.textContent = '';
      turn.dataset.state = 'error';
    }
  } finally {
    answer.classList.remove('streaming');
    sendButton.disabled = false;
    stopButton.disabled = true;
    controller = null;
  }
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const q = input.value.trim();
  if (!q || controller) return;
  input.value = '';
  ask(q);
});
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    form.requestSubmit();
  }
});
stopButton.addEventListener('click', () => controller?.abort());
