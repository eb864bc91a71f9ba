#!/usr/bin/env node
// scale_corpus.mjs - grows real BEIR corpora to N synthetic documents for
// benchmarks: each document takes the title of a random source document and
// 2..6 sentences drawn from random source documents, so vocabulary, term
// rarity and the Korean/English mix stay those of the real data. One
// document is about one chunk at the default chunk size.
//
//   node scale_corpus.mjs --out DIR --docs N [--seed S] CORPUS.jsonl...
// Writes DIR/part-00000.json ... ({"documents": [...]}, 1000 each) for
// `ragd ingest`, and DIR.queries.txt beside it (one query a line: source
// titles, 500 of them).
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
let out = '', docs = 10000, seed = 1;
const inputs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out') out = args[++i];
  else if (args[i] === '--docs') docs = Number(args[++i]);
  else if (args[i] === '--seed') seed = Number(args[++i]);
  else inputs.push(args[i]);
}
if (!out || !inputs.length || !(docs > 0)) {
  process.stderr.write('usage: scale_corpus.mjs --out DIR --docs N [--seed S] CORPUS.jsonl...\n');
  process.exit(2);
}
let state = seed >>> 0 || 1;
const rnd = (n) => {
  state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
  return state % n;
};
const titles = [];
const sentences = [];
for (const file of inputs) {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const d = JSON.parse(line);
    if (d.title) titles.push(d.title);
    for (const s of (d.text || '').split(/(?<=[.!?。])\s+|\n+/)) if (s.trim().length > 20) sentences.push(s.trim());
  }
}
mkdirSync(out, { recursive: true });
let bytes = 0;
for (let part = 0; part * 1000 < docs; part++) {
  const list = [];
  for (let i = part * 1000; i < Math.min(docs, (part + 1) * 1000); i++) {
    const n = 2 + rnd(5);
    const text = Array.from({ length: n }, () => sentences[rnd(sentences.length)]).join(' ');
    bytes += Buffer.byteLength(text);
    list.push({ id: `bench-${i}`, title: titles[rnd(titles.length)], text, format: 'text', metadata: { lang: /[\uac00-\ud7a3]/.test(text) ? 'ko' : 'en' } });
  }
  writeFileSync(path.join(out, `part-${String(part).padStart(5, '0')}.json`), JSON.stringify({ documents: list }));
}
const queries = Array.from({ length: 500 }, () => titles[rnd(titles.length)]);
writeFileSync(`${out}.queries.txt`, queries.join("\n") + "\n");
process.stdout.write(`${docs} documents, ${(bytes / 1e6).toFixed(1)} MB of text\n`);
