// make_bpe_vectors.mjs - writes tests/vectors/bpe_<encoding>.jsonl: reference
// token ids for cl100k_base and o200k_base, one {"text", "ids"} object a line,
// produced by the npm package `tiktoken` (OpenAI's Rust tokenizer compiled to
// WebAssembly) with encode_ordinary (special tokens are plain text).
//
// Generated with tiktoken 1.0.22 on node 20. The package is not a dependency
// of ragd; install it in a scratch folder and name that folder:
//
//   npm install --prefix /tmp/bpe-gen tiktoken@1.0.22
//   node tests/vectors/make_bpe_vectors.mjs /tmp/bpe-gen/node_modules/tiktoken
//
// The strings are the same for both encodings: hand-picked cases for every
// branch of the pre-tokenization rules, paragraphs of the sample knowledge
// base (English and Korean), seeded random strings over an alphabet of tricky
// characters, and a few long inputs for the merge loop. The output is
// deterministic, so running the script again must leave git status clean.
import { createRequire } from 'node:module';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const pkg = process.argv[2];
if (!pkg) {
  console.error('usage: node make_bpe_vectors.mjs PATH/TO/node_modules/tiktoken');
  process.exit(2);
}
const require = createRequire(join(root, 'package.json'));
const { get_encoding } = require(pkg);

const handPicked = [
  '',
  'a',
  'Hello, world!',
  'hello world',
  ' hello',
  '  hello',
  '   leading and trailing   ',
  'How long does a refund take?',
  'The quick brown fox jumps over the lazy dog.',
  "I'm sure you'll like it, won't you? We've seen they'd go.",
  "DON'T SHOUT. IT'S FINE. YOU'LL SEE. THEY'RE HERE. WE'VE GONE. I'M OK. HE'D GO.",
  "it'S mixed 'Re 'vE 'M 'Ll 'D",
  "'s at the start, 'sup, ''s, 'x, 'll",
  "'ſ long s, ſ alone, boſs'ſ",
  "'ſtar 'Star 'star x'ſtar X'STAR",
  "rock'n'roll o'clock ma'am y'all",
  'policy를 확인해 주세요',
  '비밀번호를 잊어버렸어요. 어떻게 재설정하나요?',
  '환불은 카드 결제 기준 영업일 3~5일 이내에 처리됩니다.',
  '주문 번호 HB-2024-000123 의 배송 상태를 알려 주세요!',
  'ㄱㄴㄷ ㅏㅑ 한글 자모',
  '日本語のテキストと漢字、カタカナ。',
  '中文客服：您好，请问有什么可以帮您？',
  'Привет, как дела? Всё хорошо.',
  'مرحبا بالعالم ١٢٣٤٥',
  'नमस्ते दुनिया, हिन्दी में पाठ',
  'ภาษาไทยไม่มีช่องว่าง',
  'Ελληνικά γράμματα ΑΒΓ',
  'café naïve façade Ångström',
  'cafe\u0301 e\u0301\u0301 \u0301start',
  'ǅungla ǈudevit ǋ Title',
  'ʰello ʷorld ˈstress ᵃ',
  'HELLOworld iPhone McDONALD\'s XMLHttpRequest HTTPServer getHTTPResponseCode',
  'ALLCAPS Word wORD WoRd',
  '1 12 123 1234 12345 123456 1234567',
  '3.14159 1,000,000 2024-01-01 10:30 +82-10-1234-5678',
  '٣٤٥ ۱۲۳ ① ② Ⅻ ½ ² ³ 𝟙𝟚',
  'a1b2c3 x86_64 utf8 v1.2.3 1st 2nd 3rd',
  'https://example.com/help/refunds?order=123&lang=ko#card',
  'mail support@example.com or call 1588-0000',
  '/usr/local/bin/ragd --data ./data',
  'path/to/file.txt\nnext/line/\n',
  'a/b/c// ///\n//x',
  '!!!???... --- *** ### @@@ $$$ %%%',
  '— – … « » “quoted” ‘single’ 「括弧」',
  '(parens) [brackets] {braces} <angles>',
  'tab\tseparated\tvalues\t',
  '\t\tindented\n\t\t\tmore',
  'line one\nline two\r\nline three\rline four',
  '\n',
  '\n\n\n',
  '\r\n\r\n',
  '   ',
  ' ',
  'a  b   c    d',
  'a \n\n b',
  'x   \n   y',
  'end with spaces   ',
  'end with newline spaces \n  ',
  '  \n',
  '\u00a0non-breaking\u00a0space\u00a0\u00a0twice',
  '\u3000全角スペース\u3000',
  'thin\u2009space em\u2003space\u2028line sep\u2029para sep\u0085nel',
  'zero\u200bwidth\u200cjoiners\u200d',
  'control\u0001chars\u0000nul\u001fus\u007fdel',
  '👍 thanks! 👍👍',
  '👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag',
  '🇰🇷 🇺🇸 🇯🇵 flags',
  '👋🏽 wave with skin tone, ❤️ heart, ✅ done',
  'emoji😀inside😀words',
  '😀😃😄😁😆😅🤣😂',
  '<|endoftext|> is plain text here <|fim_prefix|>',
  'int main(void) {\n  return 0;\n}\n',
  'static ragd_err load(const char *path, struct buf *err) {\n\tif (!path) return RAGD_EINVAL;\n}',
  'def f(x):\n    return x ** 2  # square\n\n\nprint(f(3))',
  '{"message": "환불은 언제 되나요?", "top_k": 5, "stream": true}',
  '<div class="faq"><h2>Refunds</h2><p>Within 5&nbsp;days.</p></div>',
  'SELECT id, title FROM documents WHERE id = ? AND deleted_at IS NULL;',
  'for i in $(seq 1 10); do echo "$i"; done | sort -n > out.txt',
  '    indented code block\n        deeper\n',
  '- item one\n- item two\n  - nested\n1. first\n2. second',
  '| col | col |\n|-----|-----|\n| a   | b   |',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'supercalifragilisticexpialidocious antidisestablishmentarianism',
  'pneumonoultramicroscopicsilicovolcanoconiosis',
  'SGVsbG8sIHdvcmxkISBUaGlzIGlzIGJhc2U2NCBlbmNvZGVkIHRleHQu+/==',
  '0123456789abcdef0123456789ABCDEF deadbeef cafebabe',
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '````\n```js\nconst x = 1;\n```',
  '...',
  "'",
  "''''",
  ' \' " ` ',
  '\u00ad soft hyphen \u00ad',
  '\ufeffBOM at start',
  '\ufffd replacement',
  '𐍈 gothic 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝',
];

// Paragraphs of the sample knowledge base, as customers' documents look.
function kbParagraphs() {
  const out = [];
  for (const lang of ['en', 'ko']) {
    const dir = join(root, 'examples', 'kb', lang);
    for (const name of readdirSync(dir).sort()) {
      if (!name.endsWith('.md')) continue;
      const text = readFileSync(join(dir, name), 'utf8');
      const paras = text.split(/\n\s*\n/).filter((p) => p.trim().length > 0);
      out.push(...paras.slice(0, 4));
    }
  }
  return out;
}

// A small deterministic PRNG (xorshift32), so reruns give the same strings.
let seed = 0x2f6b9a1d;
function rand(n) {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
}

const alphabet = [
  'a', 'b', 'e', 'z', 'A', 'B', 'Z', 's', 'S', 't', 'T', 'r', 'e', 'v', 'm', 'l', 'L', 'd', 'D',
  "'", "'", '"', ' ', ' ', ' ', ' ', '  ', '\n', '\n', '\r', '\r\n', '\t', '\u00a0', '\u3000',
  '0', '1', '7', '9', '٣', 'Ⅻ', '½', '.', ',', '!', '?', '/', '/', '-', '_', '(', ')', '#', '@',
  '가', '나', '한', '글', 'ㄱ', '日', 'カ', 'é', 'e\u0301', '\u0301', 'ǅ', 'ʰ', 'ſ', 'Ω', 'ж',
  '😀', '👍🏽', '👨‍👩‍👧', '🇰🇷', '\u200d', '\u00ad', '€', '$', '→', '♥',
];

function randomString() {
  const len = 1 + rand(40);
  let s = '';
  for (let i = 0; i < len; i++) s += alphabet[rand(alphabet.length)];
  return s;
}

function longInputs() {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  let word = '';
  for (let i = 0; i < 3000; i++) word += letters[rand(letters.length)];
  let hex = '';
  for (let i = 0; i < 2000; i++) hex += '0123456789abcdef'[rand(16)];
  return [
    word,
    hex,
    'x'.repeat(1500),
    ' '.repeat(2000) + 'end',
    '\n'.repeat(300) + 'end',
    '가나다라마바사아자차카타파하'.repeat(80),
    '😀'.repeat(400),
    'The refund is issued within three to five business days. '.repeat(40),
  ];
}

const strings = [...handPicked, ...kbParagraphs()];
for (let i = 0; i < 180; i++) strings.push(randomString());
strings.push(...longInputs());

for (const name of ['cl100k_base', 'o200k_base']) {
  const enc = get_encoding(name);
  const lines = strings.map((text) =>
    JSON.stringify({ text, ids: Array.from(enc.encode_ordinary(text)) }),
  );
  enc.free();
  const path = join(here, `bpe_${name}.jsonl`);
  writeFileSync(path, lines.join('\n') + '\n');
  console.log(`${path}: ${lines.length} strings`);
}
