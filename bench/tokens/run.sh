#!/bin/sh
# bench/tokens/run.sh - tokens per second of `ragd tokens` (exact BPE count)
# on English and Korean support text, for both encodings.
#
#   sh bench/tokens/run.sh [path/to/ragd]      (default build/ragd; build it
#                                               first with `make build`)
#
# The input is the sample knowledge base (examples/kb/en, examples/kb/ko)
# repeated to about 16 MB per language. Each figure is the best of three runs;
# the time of an empty input (process start and loading the rank file) is
# measured separately and subtracted, so the rate is the counting alone.
# Optional: TIKTOKEN=/path/to/node_modules/tiktoken also times OpenAI's
# tiktoken (Rust compiled to WebAssembly, npm) on the same text.
set -eu
cd "$(dirname "$0")/../.."
RAGD=${1:-build/ragd}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TARGET=$((16 * 1024 * 1024))

make_corpus() { # lang out
  cat examples/kb/"$1"/*.md > "$WORK/one"
  : > "$2"
  while [ "$(wc -c < "$2")" -lt "$TARGET" ]; do cat "$WORK/one" >> "$2"; done
}

now() { date +%s.%N; }

best_of_three() { # command... (stdin from $INPUT)
  best=""
  for _ in 1 2 3; do
    t0=$(now)
    "$@" < "$INPUT" > "$WORK/out"
    t1=$(now)
    best=$(awk -v a="$t0" -v b="$t1" -v best="$best" \
      'BEGIN { t = b - a; if (best == "" || t < best + 0) best = t; printf "%.6f", best }')
  done
  echo "$best"
}

make_corpus en "$WORK/en.txt"
make_corpus ko "$WORK/ko.txt"
printf '%-6s %-12s %10s %10s %9s %12s %10s\n' lang encoding MB tokens load_s count_s Mtok/s
for lang in en ko; do
  for enc in cl100k_base o200k_base; do
    INPUT=/dev/null
    load=$(best_of_three "$RAGD" tokens --encoding "$enc")
    INPUT="$WORK/$lang.txt"
    total=$(best_of_three "$RAGD" tokens --encoding "$enc")
    tokens=$(head -1 "$WORK/out")
    bytes=$(wc -c < "$INPUT")
    awk -v lang="$lang" -v enc="$enc" -v bytes="$bytes" -v tokens="$tokens" -v load="$load" \
      -v total="$total" 'BEGIN { c = total - load;
        printf "%-6s %-12s %10.1f %10d %9.3f %12.3f %10.2f  (%.1f MB/s)\n", lang, enc,
               bytes / 1048576, tokens, load, c, tokens / c / 1e6, bytes / c / 1048576 }'
  done
done

if [ -n "${TIKTOKEN:-}" ]; then
  echo "tiktoken (npm, WebAssembly) on the same text, encode_ordinary:"
  for lang in en ko; do
    node -e '
      const { get_encoding } = require(process.argv[1]);
      const text = require("fs").readFileSync(process.argv[2], "utf8");
      for (const name of ["cl100k_base", "o200k_base"]) {
        const enc = get_encoding(name);
        let best = Infinity, n = 0;
        for (let i = 0; i < 3; i++) {
          const t0 = process.hrtime.bigint();
          n = enc.encode_ordinary(text).length;
          best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
        }
        console.log(`${process.argv[3]}     ${name.padEnd(12)} ${n} tokens ${best.toFixed(3)} s ${(n / best / 1e6).toFixed(2)} Mtok/s`);
        enc.free();
      }' "$TIKTOKEN" "$WORK/$lang.txt" "$lang"
  done
fi
