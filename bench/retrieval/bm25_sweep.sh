#!/bin/sh
# bench/retrieval/bm25_sweep.sh - keyword and hybrid nDCG@10 on the development
# sets for BM25 parameters and Korean token modes (docs/retrieval.md, "BM25
# parameters").
#
#   sh bench/retrieval/bm25_sweep.sh [BUILD_DIR] > sweep.tsv
#
# One `ragd eval --mode all --json` per setting and set; prints a TSV row
# per run: set, setting, keyword nDCG@10, vector nDCG@10, hybrid nDCG@10.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
E=${EVAL_DIR:-$ROOT/../shared/eval}
export RAGD_LOG_LEVEL=warn
run() { # set, then VAR=value settings
  s=$1; shift
  env "$@" "$BUILD/ragd" eval --corpus "$E/$s/corpus.jsonl" --queries "$E/$s/queries.jsonl" \
    --qrels "$E/$s/qrels.tsv" --mode all --json |
    node -e 'let t="";process.stdin.on("data",d=>t+=d).on("end",()=>{const m=JSON.parse(t).modes;
      const f=x=>x?x["ndcg@10"].toFixed(4):"-";
      console.log([process.argv[1],process.argv[2],f(m.keyword),f(m.vector),f(m.hybrid)].join("\t"))})' \
      "$s" "${*:-defaults}"
}
printf 'set\tsetting\tkeyword\tvector\thybrid\n'
for TOK in words both; do run ko_welfare_faq RAGD_KEYWORD_TOKENS=$TOK; done
for s in ko_welfare_faq en_stackfaq; do
  run $s RAGD_LOG_LEVEL=warn
  for K1 in 0.6 0.9 1.5 2.0; do run $s RAGD_BM25_K1=$K1; done
  for B in 0.3 0.5 0.9 1.0; do run $s RAGD_BM25_B=$B; done
  for W in 1,1,1 3,1.5,1 2,1,1 4,2,1 1.5,1.5,1; do run $s RAGD_BM25_WEIGHTS=$W; done
done
