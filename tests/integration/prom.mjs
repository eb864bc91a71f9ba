// A strict parser of the Prometheus text exposition format 0.0.4, for tests:
// it throws on anything the format does not allow (so a test that parses the
// whole /metrics output proves the output is valid), and returns the samples.
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s, line) {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`bad value "${s}" in: ${line}`);
  return Number(s);
}

function parseLabels(s, line) {
  // s is the text between { and }; values are "..." with \\, \" and \n escapes
  const labels = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`bad label name "${name}" in: ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`);
    let j = eq + 2;
    let value = '';
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const n = s[++j];
        if (n === 'n') value += '\n';
        else if (n === '\\' || n === '"') value += n;
        else throw new Error(`bad escape in: ${line}`);
      } else if (s[j] === '\n') throw new Error(`raw newline in label: ${line}`);
      else value += s[j];
    }
    if (s[j] !== '"') throw new Error(`unterminated label value in: ${line}`);
    if (name in labels) throw new Error(`duplicate label ${name} in: ${line}`);
    labels[name] = value;
    i = j + 1;
    if (i < s.length) {
      if (s[i] !== ',') throw new Error(`expected , in: ${line}`);
      i++;
    }
  }
  return labels;
}

export function parsePrometheus(text) {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map(); // name -> {type, help, samples: []}
  const seenFamilies = [];
  let current = null;
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // other comments are allowed
      const [, kind, name, rest] = m;
      if (!NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      let fam = families.get(name);
      if (!fam) {
        fam = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, fam);
        seenFamilies.push(name);
      } else if (current !== fam) throw new Error(`family ${name} is not contiguous`);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`bad type in: ${line}`);
        if (fam.samples.length) throw new Error(`TYPE after samples for ${name}`);
        fam.type = rest;
      } else fam.help = rest;
      current = fam;
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name, , labelText, valueText] = m;
    const labels = labelText !== undefined ? parseLabels(labelText, line) : {};
    const value = parseValue(valueText, line);
    let base = name;
    if (current && current.type === 'histogram') base = name.replace(/_(bucket|sum|count)$/, '');
    const fam = families.get(base) ?? families.get(name);
    if (!fam || fam !== current) throw new Error(`sample outside its family: ${line}`);
    fam.samples.push({ name, labels, value });
  }
  // histograms: cumulative buckets ending in +Inf equal to _count
  for (const fam of families.values()) {
    if (fam.type !== 'histogram') continue;
    const series = new Map();
    for (const s of fam.samples) {
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      if (!series.has(key)) series.set(key, { buckets: [], count: undefined });
      const e = series.get(key);
      if (s.name.endsWith('_bucket')) e.buckets.push([parseValue(le, s.name), s.value]);
      if (s.name.endsWith('_count')) e.count = s.value;
    }
    for (const [key, e] of series) {
      for (let i = 1; i < e.buckets.length; i++) {
        if (!(e.buckets[i][0] > e.buckets[i - 1][0])) throw new Error(`${fam.name}${key}: le not ascending`);
        if (e.buckets[i][1] < e.buckets[i - 1][1]) throw new Error(`${fam.name}${key}: buckets not cumulative`);
      }
      const last = e.buckets.at(-1);
      if (!last || last[0] !== Infinity || last[1] !== e.count) throw new Error(`${fam.name}${key}: +Inf bucket must equal _count`);
    }
  }
  return {
    families,
    // The value of the sample with this name whose labels include `labels`.
    value(name, labels = {}) {
      for (const fam of families.values())
        for (const s of fam.samples)
          if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
      return undefined;
    },
    sum(name, labels = {}) {
      let total = 0;
      for (const fam of families.values())
        for (const s of fam.samples)
          if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) total += s.value;
      return total;
    },
  };
}
