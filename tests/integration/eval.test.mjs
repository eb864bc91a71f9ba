// `ragd eval` on small BEIR-format collections written here, where the ranking
// of every judged query is known, so each metric can be worked out by hand;
// malformed input lines; answers with the extractive generator; and, when the
// shared development sets sit beside the repository, a floor on a slice of one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runRagd, tempDir, SOURCE_DIR } from './helpers.mjs';

const jsonl = (rows) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const filler = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike '
  + 'november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee';

// Documents: titles share no word with any query.
const corpus = [
  // "zebra": z-many holds it three times, z-once once, same length: z-many ranks first.
  { _id: 'z-many', title: 'Savanna notes', text: 'zebra zebra zebra grazing' },
  { _id: 'z-once', title: 'Field notes', text: 'zebra grazing field open' },
  // "quokka": only q-doc holds it.
  { _id: 'q-doc', title: 'Island notes', text: 'the quokka lives on an island' },
  { _id: 'q-other', title: 'Other notes', text: 'an unrelated page about kelp' },
  // "walrus": w-long is five paragraphs (five chunks at 32 tokens), each with the
  // word three times; w-short has it once in a paragraph of the same length.
  {
    _id: 'w-long',
    title: 'Arctic notes',
    text: Array.from({ length: 5 }, () => `walrus walrus walrus ${filler}`).join('\n\n'),
  },
  { _id: 'w-short', title: 'Harbour notes', text: `walrus ${filler} zulu` },
  { _id: 'n-doc', title: 'Ocean notes', text: 'a page that nobody searches for' },
  { _id: 'e-1', title: 'Spare', text: 'kelp forests grow fast in cold water' },
  { _id: 'e-2', title: 'Spare', text: 'penguins cannot fly but swim well' },
  { _id: 'e-3', title: 'Spare', text: 'the tide comes in twice a day' },
  { _id: 'e-4', title: 'Spare', text: 'coral reefs need warm clear water' },
  { _id: 'e-5', title: 'Spare', text: 'seals rest on rocks in the sun' },
];
const queries = [
  { id: 'q-zebra', text: 'zebra' },
  { id: 'q-quokka', text: 'quokka' },
  { id: 'q-narwhal', text: 'narwhal' },
  { id: 'q-walrus', text: 'walrus' },
  { id: 'q-unjudged', text: 'kelp' },
  { id: 'q-zero', text: 'penguins' },
];
const qrels = [
  'query-id\tcorpus-id\tscore',
  'q-zebra\tz-once\t1',
  'q-quokka\tq-doc\t2',
  'q-quokka\tn-doc\t1', // relevant, never retrieved for "quokka"
  'q-narwhal\tn-doc\t1', // nothing holds "narwhal"
  'q-walrus\tw-short\t1',
  'q-zero\te-2\t0', // judged not relevant: the query is not evaluated
  'q-elsewhere\te-1\t1', // a query not in the queries file
].join('\n') + '\n';

function writeSet(dir, files) {
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return (name) => path.join(dir, name);
}

async function evalJson(args, env = {}) {
  const r = await runRagd(['eval', ...args, '--json'], { env });
  assert.equal(r.code, 0, `ragd eval failed: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /Sanitizer|runtime error:/);
  return JSON.parse(r.stdout);
}

const close = (got, want, what) =>
  assert.ok(Math.abs(got - want) < 1e-9, `${what}: got ${got}, want ${want}`);

test('keyword metrics match the hand computation', async () => {
  const dir = tempDir('ragd-eval-set-');
  const tmp = tempDir('ragd-eval-tmp-');
  try {
    const f = writeSet(dir, {
      'corpus.jsonl': jsonl(corpus),
      'queries.jsonl': jsonl(queries),
      'qrels.tsv': qrels,
    });
    const out = await evalJson(
      ['--corpus', f('corpus.jsonl'), '--queries', f('queries.jsonl'), '--qrels', f('qrels.tsv'),
        '--mode', 'keyword'],
      { RAGD_CHUNK_TOKENS: '32', RAGD_CHUNK_OVERLAP: '0', TMPDIR: tmp },
    );
    assert.equal(out.documents, corpus.length);
    assert.ok(out.chunks >= corpus.length + 4, `w-long should make 5 chunks: ${out.chunks}`);
    assert.equal(out.queries, 4, 'zebra, quokka, narwhal and walrus are judged');
    assert.deepEqual(Object.keys(out.modes), ['keyword']);
    const m = out.modes.keyword;
    // Ranks of the relevant documents, per query:
    //   zebra: z-once at 2 (z-many first)           -> R@1 0, R@5 1, RR 1/2
    //   quokka: q-doc (gain 2) at 1, n-doc missing  -> R@1 1/2, R@5 1/2, RR 1
    //   narwhal: nothing retrieved                  -> 0 everywhere
    //   walrus: w-short at 2 once w-long's five chunks count as one document
    close(m['recall@1'], (0 + 0.5 + 0 + 0) / 4, 'recall@1');
    close(m['recall@5'], (1 + 0.5 + 0 + 1) / 4, 'recall@5');
    close(m['recall@10'], (1 + 0.5 + 0 + 1) / 4, 'recall@10');
    close(m['recall@20'], (1 + 0.5 + 0 + 1) / 4, 'recall@20');
    close(m['mrr@10'], (0.5 + 1 + 0 + 0.5) / 4, 'mrr@10');
    const d2 = 1 / Math.log2(3); // discount at rank 2
    const ndcgZebra = d2 / 1;
    const ndcgQuokka = 2 / (2 + d2); // ideal: gain 2 at rank 1, gain 1 at rank 2
    close(m['ndcg@10'], (ndcgZebra + ndcgQuokka + 0 + d2) / 4, 'ndcg@10');
    assert.ok(m.p50_ms > 0 && m.p99_ms >= m.p50_ms, `latencies ${m.p50_ms} ${m.p99_ms}`);
    // The temporary data folder is gone.
    assert.deepEqual(readdirSync(tmp), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('--mode all reports every mode, unavailable ones as null, and a table without --json', async () => {
  const dir = tempDir('ragd-eval-set-');
  try {
    const f = writeSet(dir, {
      'corpus.jsonl': jsonl(corpus),
      'queries.jsonl': jsonl(queries),
      'qrels.tsv': qrels,
    });
    const args = ['--corpus', f('corpus.jsonl'), '--queries', f('queries.jsonl'), '--qrels',
      f('qrels.tsv')];
    const out = await evalJson(args);
    assert.deepEqual(Object.keys(out.modes).sort(), ['hybrid', 'keyword', 'vector']);
    for (const [mode, m] of Object.entries(out.modes)) {
      if (m === null) continue;
      for (const key of ['recall@1', 'recall@5', 'recall@10', 'recall@20', 'mrr@10', 'ndcg@10',
        'p50_ms', 'p99_ms'])
        assert.equal(typeof m[key], 'number', `${mode}.${key}`);
      assert.ok(m['recall@1'] <= m['recall@5'] && m['recall@5'] <= m['recall@10'], mode);
    }
    assert.notEqual(out.modes.keyword, null);
    const t = await runRagd(['eval', ...args, '--mode', 'keyword']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /nDCG@10/);
    assert.match(t.stdout, /^keyword\s+0\.125\s+0\.625\s/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a malformed line is reported with its file and line number', async () => {
  const dir = tempDir('ragd-eval-set-');
  try {
    const good = {
      'corpus.jsonl': jsonl(corpus.slice(0, 3)),
      'queries.jsonl': jsonl(queries.slice(0, 2)),
      'qrels.tsv': 'query-id\tcorpus-id\tscore\nq-zebra\tz-once\t1\n',
    };
    const cases = [
      ['corpus.jsonl', jsonl(corpus.slice(0, 2)) + '{"_id": "x", "text": \n', /corpus\.jsonl:3:/],
      ['corpus.jsonl', jsonl([{ _id: 'a', text: 'x' }, { title: 'no id', text: 'y' }]), /corpus\.jsonl:2:.*id/],
      ['queries.jsonl', '{"id": "q1", "text": "ok"}\n\n[1, 2]\n', /queries\.jsonl:3:/],
      ['queries.jsonl', '{"id": "q1"}\n', /queries\.jsonl:1:.*text/],
      ['qrels.tsv', 'query-id\tcorpus-id\tscore\nq-zebra\tz-once\t1\nq-zebra\tz-many\n', /qrels\.tsv:3:/],
      ['qrels.tsv', 'query-id\tcorpus-id\tscore\nq-zebra\tz-once\tone\n', /qrels\.tsv:2:.*integer/],
      ['answers.jsonl', '{"id": "q-zebra", "answers": "zebra"}\n', /answers\.jsonl:1:.*answers/],
    ];
    for (const [name, text, want] of cases) {
      const f = writeSet(dir, { ...good, 'answers.jsonl': '', [name]: text });
      const r = await runRagd(['eval', '--corpus', f('corpus.jsonl'), '--queries',
        f('queries.jsonl'), '--qrels', f('qrels.tsv'), '--answers', f('answers.jsonl'), '--json']);
      assert.notEqual(r.code, 0, `${name}: ${text}`);
      assert.match(r.stderr, want);
      assert.equal(r.stdout, '');
      assert.doesNotMatch(r.stderr, /Sanitizer|runtime error:/);
    }
    const missing = await runRagd(['eval', '--corpus', path.join(dir, 'nope.jsonl'), '--queries',
      path.join(dir, 'queries.jsonl'), '--qrels', path.join(dir, 'qrels.tsv')]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /nope\.jsonl/);
    const usage = await runRagd(['eval', '--corpus', 'x']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--queries/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--answers measures the extractive answers', async () => {
  const dir = tempDir('ragd-eval-set-');
  try {
    const docs = [
      { id: 'card', title: 'Card refunds',
        text: 'We process every refund request within one day. A refund to a credit card '
          + 'takes 3 to 5 business days to appear on your statement.' },
      { id: 'ship', title: 'Shipping',
        text: 'Orders ship from our warehouse in Busan. Standard delivery takes two days.' },
      { id: 'pw', title: '비밀번호',
        text: '로그인 화면에서 비밀번호 찾기를 누르세요. 가입한 이메일로 재설정 링크를 보내 드립니다.' },
    ];
    const qs = [
      { id: 'a1', text: 'How long does a card refund take?' },
      { id: 'a2', text: 'Where does the warehouse ship orders from?' },
      { id: 'a3', text: '비밀번호 재설정 링크는 어디로 오나요?' },
      { id: 'a4', text: 'Do you sell narwhal figurines?' },
      { id: 'a5', text: 'How long is standard delivery?' }, // no gold answers: not asked
    ];
    const f = writeSet(dir, {
      'corpus.jsonl': jsonl(docs),
      'queries.jsonl': jsonl(qs),
      'qrels.tsv': 'query-id\tcorpus-id\tscore\na1\tcard\t1\na2\tship\t1\na3\tpw\t1\n',
      'answers.jsonl': jsonl([
        { id: 'a1', answers: ['3 to 5  BUSINESS days'] }, // case and spacing do not matter
        { id: 'a2', answers: ['Busan'] },
        { id: 'a3', answers: ['가입한 이메일'] },
        { id: 'a4', answers: ['we do not'] },
        { id: 'a5', answers: [] },
        { id: 'not-a-query', answers: ['x'] },
      ]),
    });
    const out = await evalJson(['--corpus', f('corpus.jsonl'), '--queries', f('queries.jsonl'),
      '--qrels', f('qrels.tsv'), '--mode', 'keyword', '--answers', f('answers.jsonl')]);
    const a = out.answers;
    assert.equal(a.questions, 4);
    close(a.contains_answer, 3 / 4, 'contains_answer');
    close(a.with_citation, 3 / 4, 'with_citation');
    close(a.not_found, 1 / 4, 'not_found (narwhal)');
    close(a.citations_in_sources, 1, 'citations_in_sources');
    assert.ok(a.mean_chars > 10 && a.mean_chars < 400, `mean_chars ${a.mean_chars}`);
    assert.ok(a.p50_ms > 0 && a.p99_ms >= a.p50_ms);
    close(out.modes.keyword['recall@1'], 1, 'recall@1 of the three judged queries');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A floor on a slice of the shared development sets, when they are beside the
// repository (../shared/eval); set from measured numbers with some margin.
const shared = path.resolve(SOURCE_DIR, '..', 'shared', 'eval');
test('floor on slices of the shared development sets', async (t) => {
  if (!existsSync(path.join(shared, 'en_xquad', 'answers.jsonl'))) {
    t.skip(`no development sets at ${shared}`);
    return;
  }
  const set = (name, file) => path.join(shared, name, file);
  const ko = await evalJson(['--corpus', set('ko_welfare_faq', 'corpus.jsonl'), '--queries',
    set('ko_welfare_faq', 'queries.jsonl'), '--qrels', set('ko_welfare_faq', 'qrels.tsv'),
    '--mode', 'keyword', '--limit-queries', '300']);
  assert.ok(ko.modes.keyword['ndcg@10'] >= 0.75, `ko_welfare_faq keyword nDCG@10 ${ko.modes.keyword['ndcg@10']}`);
  const xq = await evalJson(['--corpus', set('en_xquad', 'corpus.jsonl'), '--queries',
    set('en_xquad', 'queries.jsonl'), '--qrels', set('en_xquad', 'qrels.tsv'), '--mode',
    'keyword', '--answers', set('en_xquad', 'answers.jsonl'), '--limit-queries', '400']);
  assert.ok(xq.modes.keyword['ndcg@10'] >= 0.93, `en_xquad keyword nDCG@10 ${xq.modes.keyword['ndcg@10']}`);
  assert.ok(xq.answers.contains_answer >= 0.82, `en_xquad contains_answer ${xq.answers.contains_answer}`);
  assert.equal(xq.answers.citations_in_sources, 1);
});

// The lsa embedder (issue 10) on slices of the two support sets, with the
// default fusion: floors a little under the measured nDCG@10 of vector and
// hybrid (ko_welfare_faq first 300 queries: keyword 0.828, vector 0.832,
// hybrid 0.838; en_stackfaq first 300: 0.770, 0.735, 0.782; see the lsa
// section of docs/retrieval.md), and the target: hybrid at least
// as good as either ranker alone. Fitting these corpora takes about a second.
// Chosen with --embedder (the hash vectors score about 0.75 here, under the
// floor, so the flag is checked too).
test('lsa floor on slices of the shared development sets', async (t) => {
  if (!existsSync(path.join(shared, 'en_stackfaq', 'qrels.tsv'))) {
    t.skip(`no development sets at ${shared}`);
    return;
  }
  const set = (name, file) => path.join(shared, name, file);
  const floors = {
    ko_welfare_faq: { vector: 0.81, hybrid: 0.82 },
    en_stackfaq: { vector: 0.71, hybrid: 0.76 },
  };
  for (const [name, floor] of Object.entries(floors)) {
    const out = await evalJson(['--corpus', set(name, 'corpus.jsonl'), '--queries',
      set(name, 'queries.jsonl'), '--qrels', set(name, 'qrels.tsv'), '--mode', 'all',
      '--limit-queries', '300', '--embedder', 'lsa']);
    const ndcg = (mode) => out.modes[mode]['ndcg@10'];
    for (const mode of ['vector', 'hybrid'])
      assert.ok(ndcg(mode) >= floor[mode], `${name} lsa ${mode} nDCG@10 ${ndcg(mode)} < ${floor[mode]}`);
    assert.ok(ndcg('hybrid') >= Math.max(ndcg('keyword'), ndcg('vector')),
      `${name}: hybrid ${ndcg('hybrid')} below keyword ${ndcg('keyword')} or lsa ${ndcg('vector')}`);
  }
});
