/* tokens.c - `ragd tokens`: exact BPE token count (and ids) of standard input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "text/text.h"

static const char help[] =
    "Usage: ragd tokens [--encoding cl100k_base|o200k_base | --model NAME] [--ids] < FILE\n"
    "\n"
    "Reads UTF-8 text on standard input and prints its exact token count, the\n"
    "same as OpenAI's tiktoken (encode_ordinary: \"<|endoftext|>\" is plain text).\n"
    "With --ids a second line lists the token ids, separated by spaces.\n"
    "\n"
    "  --encoding NAME  cl100k_base (gpt-4, gpt-3.5-turbo, text-embedding-3-*) or\n"
    "                   o200k_base (gpt-4o, gpt-4.1, gpt-5, o1, o3, o4-mini)\n"
    "  --model NAME     the encoding of a model in the model table (RAGD_MODELS_FILE\n"
    "                   adds entries); default RAGD_LLM_MODEL\n"
    "  --ids            also print the ids\n"
    "\n"
    "The rank files are read from RAGD_TOKENIZER_DIR, by default\n"
    "../data/tokenizers from the folder of the ragd binary.\n";

#define TOKENS_MAX_INPUT ((size_t)1 << 30)

/* Matches "--name VALUE" or "--name=VALUE"; advances *i past a separate
 * value. Returns the value, NULL when argv[*i] is not this option, or ""
 * after printing an error when the value is missing. */
static const char *option_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != '\0') return NULL;
  if (*i + 1 >= argc) {
    fprintf(stderr, "ragd tokens: %s needs a value\n", name);
    return "";
  }
  return argv[++*i];
}

static ragd_err read_stdin(struct buf *in) {
  char chunk[65536];
  size_t n;
  ragd_err rc;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
    rc = buf_append(in, chunk, n);
    if (rc) return rc;
  }
  return ferror(stdin) ? RAGD_EIO : RAGD_OK;
}

/* Chooses the encoding from the flags, or from the model table. */
static int pick_encoding(const char *encoding, const char *model, const struct ragd_config *cfg) {
  struct text_model_table *table = NULL;
  struct text_model m;
  struct buf err;
  int enc = -1;
  ragd_err rc;
  if (encoding) {
    enc = text_bpe_encoding_parse(encoding);
    if (enc < 0)
      fprintf(stderr, "ragd tokens: unknown encoding \"%s\" (cl100k_base or o200k_base)\n",
              encoding);
    return enc;
  }
  if (!model) model = cfg->llm_model;
  buf_init(&err, 0);
  rc = text_model_table_load(cfg->models_file, &table, &err);
  if (rc) {
    fprintf(stderr, "ragd tokens: %s\n", err.data ? err.data : ragd_strerror(rc));
    goto out;
  }
  rc = text_model_lookup(table, model, &m);
  if (rc) {
    fprintf(stderr,
            "ragd tokens: model \"%s\" is not in the model table; name --encoding, or add it "
            "to RAGD_MODELS_FILE\n",
            model);
    goto out;
  }
  enc = (int)m.encoding;
out:
  text_model_table_free(table);
  buf_dispose(&err);
  return enc;
}

int cli_tokens(int argc, char **argv) {
  struct cli_opts o = {0};
  struct ragd_config cfg;
  struct text_bpe *bpe = NULL;
  struct buf in, err, line;
  const char *encoding = NULL, *model = NULL;
  uint32_t *ids = NULL;
  size_t count = 0;
  int want_ids = 0, enc, status = 1;
  ragd_err rc;

  for (int i = 1; i < argc; i++) {
    const char *v;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(help, stdout);
      return 0;
    }
    if (strcmp(argv[i], "--ids") == 0) {
      want_ids = 1;
      continue;
    }
    v = option_value(argc, argv, &i, "--encoding");
    if (v && !v[0]) return 2;
    if (v) {
      encoding = v;
      continue;
    }
    v = option_value(argc, argv, &i, "--model");
    if (v && !v[0]) return 2;
    if (v) {
      model = v;
      continue;
    }
    fprintf(stderr, "ragd tokens: unexpected argument %s (see ragd tokens --help)\n", argv[i]);
    return 2;
  }
  if (encoding && model) {
    fprintf(stderr, "ragd tokens: give --encoding or --model, not both\n");
    return 2;
  }
  if (cli_config(&o, &cfg) != 0) return 2;
  buf_init(&in, TOKENS_MAX_INPUT);
  buf_init(&err, 0);
  buf_init(&line, 0);
  enc = pick_encoding(encoding, model, &cfg);
  if (enc < 0) {
    status = 2;
    goto out;
  }
  rc = text_bpe_load((enum text_bpe_encoding)enc, cfg.tokenizer_dir, &bpe, &err);
  if (rc) {
    fprintf(stderr, "ragd tokens: %s\n", err.data ? err.data : ragd_strerror(rc));
    goto out;
  }
  rc = read_stdin(&in);
  if (rc) {
    fprintf(stderr, "ragd tokens: standard input: %s%s\n", ragd_strerror(rc),
            rc == RAGD_ETOOBIG ? " (the limit is 1 GiB)" : "");
    goto out;
  }
  if (want_ids)
    rc = text_bpe_encode(bpe, in.data ? in.data : "", in.len, &ids, &count);
  else
    rc = text_bpe_count(bpe, in.data ? in.data : "", in.len, &count);
  if (rc == RAGD_EUTF8) {
    size_t bad = 0;
    text_utf8_validate(in.data, in.len, &bad);
    fprintf(stderr, "ragd tokens: standard input is not valid UTF-8 (byte %zu)\n", bad);
    goto out;
  }
  if (rc) {
    fprintf(stderr, "ragd tokens: %s\n", ragd_strerror(rc));
    goto out;
  }
  printf("%zu\n", count);
  if (want_ids) {
    for (size_t i = 0; i < count && !rc; i++) rc = buf_appendf(&line, i ? " %u" : "%u", ids[i]);
    if (rc) goto out;
    printf("%s\n", line.data ? line.data : "");
  }
  status = fflush(stdout) == 0 ? 0 : 1;
out:
  free(ids);
  text_bpe_free(bpe);
  buf_dispose(&line);
  buf_dispose(&err);
  buf_dispose(&in);
  config_dispose(&cfg);
  return status;
}
