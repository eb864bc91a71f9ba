/* test_text_bpe.c - unit tests for the BPE token counter (src/text/bpe*.c):
 * every committed reference vector (tests/vectors/bpe_*.jsonl, made by
 * OpenAI's tiktoken) id for id, the two merge strategies against each other,
 * ill-formed input, rank file errors, threads, and the model table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

#include <cmocka.h>

#include "text/bpe_int.h"
#include "text/text.h"
#include "util/buf.h"
#include "util/json.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static struct text_bpe *encodings[2];
static char root[4096];

/* The repository root: RAGD_SOURCE_DIR (set by ctest), else derived from
 * this file's absolute path. */
static void find_root(void) {
  const char *env = getenv("RAGD_SOURCE_DIR");
  const char *suffix = "tests/unit/test_text_bpe.c";
  size_t len = strlen(__FILE__), slen = strlen(suffix);
  if (env && env[0])
    snprintf(root, sizeof root, "%s", env);
  else if (len > slen && strcmp(__FILE__ + len - slen, suffix) == 0)
    snprintf(root, sizeof root, "%.*s", (int)(len - slen - 1), __FILE__);
  else
    snprintf(root, sizeof root, ".");
}

static int load_encodings(void **state) {
  char dir[4200];
  struct buf err;
  find_root();
  snprintf(dir, sizeof dir, "%s/data/tokenizers", root);
  buf_init(&err, 0);
  for (int e = 0; e < 2; e++) {
    ragd_err rc = text_bpe_load((enum text_bpe_encoding)e, dir, &encodings[e], &err);
    if (rc) {
      fprintf(stderr, "cannot load %s: %s\n", text_bpe_encoding_name((enum text_bpe_encoding)e),
              err.data ? err.data : ragd_strerror(rc));
      buf_dispose(&err);
      return -1;
    }
  }
  buf_dispose(&err);
  return 0;
}

static int free_encodings(void **state) {
  for (int e = 0; e < 2; e++) text_bpe_free(encodings[e]);
  return 0;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  struct buf b;
  char chunk[65536];
  size_t n;
  if (!f) fail_msg("cannot open %s", path);
  buf_init(&b, 0);
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) assert_int_equal(buf_append(&b, chunk, n), RAGD_OK);
  fclose(f);
  return buf_take(&b, len);
}

/* Prints a string with escapes, for failure messages. */
static void print_escaped(const char *s, size_t len) {
  for (size_t i = 0; i < len && i < 200; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == '\\')
      fprintf(stderr, "\\x%02x", c);
    else
      fputc(c, stderr);
  }
  if (len > 200) fprintf(stderr, "... (%zu bytes)", len);
}

/* Encodes every string of one vector file and compares id for id; also the
 * count and the bytes of the ids (they must spell the input again). */
static void check_vectors(enum text_bpe_encoding e) {
  char path[4300];
  size_t len = 0, lines = 0, failures = 0;
  char *data, *line, *next;
  snprintf(path, sizeof path, "%s/tests/vectors/bpe_%s.jsonl", root, text_bpe_encoding_name(e));
  data = slurp(path, &len);
  for (line = data; line < data + len; line = next) {
    char *nl = memchr(line, '\n', (size_t)(data + len - line));
    json_error_t jerr;
    json_t *obj, *want;
    const char *text;
    size_t text_len, count = 0, counted = 0, want_n;
    uint32_t *ids = NULL;
    struct buf spelled;
    next = nl ? nl + 1 : data + len;
    obj = json_loadb(line, (size_t)(next - line), JSON_ALLOW_NUL, &jerr);
    if (!obj) fail_msg("%s:%zu: %s", path, lines + 1, jerr.text);
    lines++;
    text = json_string_value(json_object_get(obj, "text"));
    text_len = json_string_length(json_object_get(obj, "text"));
    want = json_object_get(obj, "ids");
    assert_non_null(text);
    assert_true(json_is_array(want));
    want_n = json_array_size(want);
    assert_int_equal(text_bpe_encode(encodings[e], text, text_len, &ids, &count), RAGD_OK);
    assert_int_equal(text_bpe_count(encodings[e], text, text_len, &counted), RAGD_OK);
    assert_int_equal(counted, count);
    for (size_t i = 0; i < count || i < want_n; i++) {
      long long w = i < want_n ? json_integer_value(json_array_get(want, i)) : -1;
      long long g = i < count ? (long long)ids[i] : -1;
      if (w != g) {
        fprintf(stderr, "%s line %zu: \"", text_bpe_encoding_name(e), lines);
        print_escaped(text, text_len);
        fprintf(stderr, "\"\n  token %zu: got %lld, want %lld (got %zu tokens, want %zu)\n", i, g,
                w, count, want_n);
        failures++;
        break;
      }
    }
    buf_init(&spelled, 0);
    for (size_t i = 0; i < count; i++) {
      size_t n = 0;
      const char *bytes = text_bpe_token_bytes(encodings[e], ids[i], &n);
      assert_non_null(bytes);
      assert_int_equal(buf_append(&spelled, bytes, n), RAGD_OK);
    }
    assert_int_equal(spelled.len, text_len);
    if (text_len) assert_memory_equal(spelled.data, text, text_len);
    buf_dispose(&spelled);
    free(ids);
    json_decref(obj);
  }
  free(data);
  /* The generator writes a few hundred strings; fewer means a broken file. */
  assert_true(lines >= 300);
  if (failures) fail_msg("%zu of %zu %s vectors differ", failures, lines, text_bpe_encoding_name(e));
}

static void test_vectors_cl100k(void **state) { check_vectors(TEXT_BPE_CL100K_BASE); }
static void test_vectors_o200k(void **state) { check_vectors(TEXT_BPE_O200K_BASE); }

/* A few ids anyone can check with tiktoken by hand. */
static void test_known_ids(void **state) {
  uint32_t *ids = NULL;
  size_t n = 0;
  assert_int_equal(text_bpe_encode(encodings[TEXT_BPE_O200K_BASE], S("Hello, world!"), &ids, &n),
                   RAGD_OK);
  assert_int_equal(n, 4);
  assert_int_equal(ids[0], 13225);
  assert_int_equal(ids[1], 11);
  assert_int_equal(ids[2], 2375);
  assert_int_equal(ids[3], 0);
  free(ids);
  assert_int_equal(text_bpe_encode(encodings[TEXT_BPE_CL100K_BASE], S("Hello, world!"), &ids, &n),
                   RAGD_OK);
  assert_int_equal(n, 4);
  assert_int_equal(ids[0], 9906);
  assert_int_equal(ids[1], 11);
  assert_int_equal(ids[2], 1917);
  assert_int_equal(ids[3], 0);
  free(ids);
  assert_int_equal(text_bpe_encode(encodings[0], "", 0, &ids, &n), RAGD_OK);
  assert_int_equal(n, 0);
  assert_null(ids);
}

/* Splits s with the encoding's rules and returns the pieces joined by '|'. */
static char *pieces(enum text_bpe_encoding e, const char *s) {
  struct buf out;
  size_t len = strlen(s), pos = 0;
  buf_init(&out, 0);
  while (pos < len) {
    size_t end = e == TEXT_BPE_CL100K_BASE ? bpe_split_cl100k((const unsigned char *)s, len, pos)
                                           : bpe_split_o200k((const unsigned char *)s, len, pos);
    assert_true(end > pos);
    if (pos) assert_int_equal(buf_append_char(&out, '|'), RAGD_OK);
    assert_int_equal(buf_append(&out, s + pos, end - pos), RAGD_OK);
    pos = end;
  }
  return buf_take(&out, NULL);
}

static void check_pieces(enum text_bpe_encoding e, const char *s, const char *want) {
  char *got = pieces(e, s);
  assert_string_equal(got, want);
  free(got);
}

/* The split rules, branch by branch, in terms a reader can verify against
 * the two regular expressions. */
static void test_split_rules(void **state) {
  const enum text_bpe_encoding cl = TEXT_BPE_CL100K_BASE, o2 = TEXT_BPE_O200K_BASE;
  /* contractions: a piece of their own in cl100k, a suffix in o200k */
  check_pieces(cl, "don't WE'LL", "don|'t| WE|'LL");
  check_pieces(o2, "don't WE'LL", "don't| WE'LL");
  /* runs of spaces leave one space for the next word */
  check_pieces(cl, "a   b", "a|  | b");
  check_pieces(cl, "a  \n\n  b", "a|  \n\n| | b");
  check_pieces(cl, "end  ", "end|  ");
  /* digits go by threes */
  check_pieces(cl, "1234567", "123|456|7");
  check_pieces(o2, "x12345", "x|123|45");
  /* punctuation takes one leading space and trailing line breaks (o200k:
   * slashes too) */
  check_pieces(cl, "a !!\n\nb", "a| !!\n\n|b");
  check_pieces(o2, "a .\n/b", "a| .\n/|b");
  /* o200k splits camel case before an upper-case letter followed by lower
   * case; Hangul (Lo) is both upper and lower */
  check_pieces(o2, "HTTPServer getHTTPResponse", "HTTPServer| get|HTTPResponse");
  check_pieces(o2, "HELLOworld", "HELLOworld");
  check_pieces(cl, "policy를 확인", "policy를| 확인");
  check_pieces(o2, "policy를 확인", "policy를| 확인");
}

/* The heap merge must choose exactly as the array scan, including ties
 * (repeated pairs) and long pieces. */
static void test_merge_strategies_agree(void **state) {
  static const char alphabet[] = "aaabbbcdeeeinorst  ";
  unsigned seed = 12345;
  unsigned char piece[600];
  uint32_t a[601], b[601];
  for (int round = 0; round < 400; round++) {
    size_t n = 2 + (size_t)(round * 7 % 590);
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      piece[i] = (unsigned char)alphabet[(seed >> 16) % (sizeof alphabet - 1)];
    }
    for (int e = 0; e < 2; e++) {
      size_t na = bpe_merge_scan(encodings[e], piece, n, a);
      size_t nb = bpe_merge_heap(encodings[e], piece, n, b);
      assert_int_equal(na, nb);
      assert_memory_equal(a, b, (na + 1) * sizeof a[0]);
      assert_int_equal(a[0], 0);
      assert_int_equal(a[na], n);
    }
  }
}

static void test_invalid_utf8(void **state) {
  static const struct {
    const char *s;
    size_t len;
  } bad[] = {
      {S("abc\xff")},         /* never a UTF-8 byte */
      {S("ok \xe2\x82")},     /* truncated */
      {S("\xed\xa0\x80")},    /* surrogate */
      {S("\xc0\xaf")},        /* overlong */
      {S("x\x80y")},          /* stray continuation */
      {S("\xf4\x90\x80\x80")} /* above U+10FFFF */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    for (int e = 0; e < 2; e++) {
      size_t n = 99;
      uint32_t *ids = (uint32_t *)&n;
      assert_int_equal(text_bpe_count(encodings[e], bad[i].s, bad[i].len, &n), RAGD_EUTF8);
      assert_int_equal(n, 0);
      assert_int_equal(text_bpe_encode(encodings[e], bad[i].s, bad[i].len, &ids, &n), RAGD_EUTF8);
      assert_null(ids);
    }
  }
}

static void test_nul_is_text(void **state) {
  size_t n = 0;
  assert_int_equal(text_bpe_count(encodings[0], S("a\0b"), &n), RAGD_OK);
  assert_true(n >= 2);
}

/* A word of a million letters: the heap keeps it fast (this would take
 * minutes with a quadratic merge) and the ids still spell the input. */
static void test_long_word(void **state) {
  size_t len = 1000000, count = 0, total = 0;
  char *s = malloc(len);
  uint32_t *ids = NULL;
  unsigned seed = 7;
  assert_non_null(s);
  for (size_t i = 0; i < len; i++) {
    seed = seed * 1103515245u + 12345u;
    s[i] = (char)('a' + (seed >> 16) % 26);
  }
  assert_int_equal(text_bpe_encode(encodings[1], s, len, &ids, &count), RAGD_OK);
  assert_true(count > len / 8 && count < len);
  for (size_t i = 0; i < count; i++) {
    size_t n = 0;
    const char *bytes = text_bpe_token_bytes(encodings[1], ids[i], &n);
    assert_memory_equal(bytes, s + total, n);
    total += n;
  }
  assert_int_equal(total, len);
  free(ids);
  free(s);
}

struct thread_job {
  const struct text_bpe *bpe;
  const char *text;
  size_t len, count;
  ragd_err rc;
};

static void *count_in_thread(void *arg) {
  struct thread_job *job = arg;
  for (int i = 0; i < 20 && !job->rc; i++) job->rc = text_bpe_count(job->bpe, job->text, job->len, &job->count);
  return NULL;
}

static void test_threads_share_an_encoding(void **state) {
  static const char text[] =
      "환불은 카드 결제 기준 영업일 3~5일 이내에 처리됩니다. Refunds take 3-5 business days; "
      "we'll e-mail you when it's done. 👍";
  struct thread_job jobs[4];
  pthread_t th[4];
  size_t want = 0;
  assert_int_equal(text_bpe_count(encodings[1], S(text), &want), RAGD_OK);
  for (int i = 0; i < 4; i++) {
    jobs[i] = (struct thread_job){encodings[1], text, sizeof text - 1, 0, RAGD_OK};
    assert_int_equal(pthread_create(&th[i], NULL, count_in_thread, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(jobs[i].rc, RAGD_OK);
    assert_int_equal(jobs[i].count, want);
  }
}

static void test_encoding_names(void **state) {
  assert_int_equal(text_bpe_encoding_parse("cl100k_base"), TEXT_BPE_CL100K_BASE);
  assert_int_equal(text_bpe_encoding_parse("o200k_base"), TEXT_BPE_O200K_BASE);
  assert_int_equal(text_bpe_encoding_parse("p50k_base"), -1);
  assert_int_equal(text_bpe_encoding_parse(NULL), -1);
  assert_string_equal(text_bpe_encoding_name(TEXT_BPE_O200K_BASE), "o200k_base");
  assert_int_equal(text_bpe_encoding_of(encodings[1]), TEXT_BPE_O200K_BASE);
  {
    size_t n = 0;
    assert_null(text_bpe_token_bytes(encodings[0], 100256, &n)); /* first id past the ranks */
    assert_non_null(text_bpe_token_bytes(encodings[0], 100255, &n));
  }
}

/* Writes text to a fresh file in a temporary folder; returns the folder. */
static void write_temp(char *dir, size_t dir_cap, const char *name, const char *text) {
  char path[512];
  FILE *f;
  snprintf(dir, dir_cap, "/tmp/ragd-bpe-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void remove_temp(const char *dir, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unlink(path);
  rmdir(dir);
}

static void test_load_errors(void **state) {
  struct text_bpe *b = (struct text_bpe *)1;
  struct buf err;
  char dir[256];
  buf_init(&err, 0);
  assert_int_equal(text_bpe_load(TEXT_BPE_CL100K_BASE, "/nonexistent-ragd", &b, &err), RAGD_EIO);
  assert_null(b);
  assert_non_null(strstr(err.data, "/nonexistent-ragd/cl100k_base.tiktoken"));
  /* A file whose third line is not "<base64> <rank>". */
  write_temp(dir, sizeof dir, "o200k_base.tiktoken", "IQ== 0\nIg== 1\nnot-base64\n");
  assert_int_equal(text_bpe_load(TEXT_BPE_O200K_BASE, dir, &b, &err), RAGD_EINVAL);
  assert_null(b);
  assert_non_null(strstr(err.data, "o200k_base.tiktoken"));
  remove_temp(dir, "o200k_base.tiktoken");
  buf_dispose(&err);
}

/* A rank file missing a byte cannot encode every text, so it is refused. */
static void test_load_requires_every_byte(void **state) {
  struct buf file, err;
  struct text_bpe *b = NULL;
  char dir[256];
  buf_init(&file, 0);
  buf_init(&err, 0);
  /* 300 lines: bytes 0..254 alone, then "a" followed by each of 45 bytes. */
  for (unsigned r = 0; r < 300; r++) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned c = r < 255 ? r : 'a';
    unsigned d = r - 255;
    if (r < 255)
      buf_appendf(&file, "%c%c== %u\n", b64[c >> 2], b64[(c & 3) << 4], r);
    else
      buf_appendf(&file, "%c%c%c= %u\n", b64[c >> 2], b64[(c & 3) << 4 | d >> 4],
                  b64[(d & 15) << 2], r);
  }
  write_temp(dir, sizeof dir, "cl100k_base.tiktoken", file.data);
  assert_int_equal(text_bpe_load(TEXT_BPE_CL100K_BASE, dir, &b, &err), RAGD_EINVAL);
  if (!strstr(err.data, "byte 0xff has no token")) fail_msg("got: %s", err.data);
  remove_temp(dir, "cl100k_base.tiktoken");
  buf_dispose(&file);
  buf_dispose(&err);
}

/* ---- model table ---------------------------------------------------------------- */

static void check_model(const struct text_model_table *t, const char *model,
                        enum text_bpe_encoding enc, long window) {
  struct text_model m;
  ragd_err rc = text_model_lookup(t, model, &m);
  if (rc) fail_msg("%s: %s", model, ragd_strerror(rc));
  if (m.encoding != enc || m.context_window != window)
    fail_msg("%s: got %s %ld (entry %s), want %s %ld", model, text_bpe_encoding_name(m.encoding),
             m.context_window, m.name, text_bpe_encoding_name(enc), window);
  assert_true(m.output_reserve >= 0 && m.output_reserve < m.context_window);
}

static void test_model_table_builtin(void **state) {
  struct text_model_table *t = NULL;
  struct text_model m;
  assert_int_equal(text_model_table_load(NULL, &t, NULL), RAGD_OK);
  check_model(t, "gpt-4o-mini", TEXT_BPE_O200K_BASE, 128000);
  check_model(t, "gpt-4o-2024-08-06", TEXT_BPE_O200K_BASE, 128000);
  check_model(t, "gpt-4.1-nano", TEXT_BPE_O200K_BASE, 1047576);
  check_model(t, "o1", TEXT_BPE_O200K_BASE, 200000);
  check_model(t, "o1-mini", TEXT_BPE_O200K_BASE, 128000);
  check_model(t, "o3-mini", TEXT_BPE_O200K_BASE, 200000);
  check_model(t, "gpt-4", TEXT_BPE_CL100K_BASE, 8192);
  check_model(t, "gpt-4-turbo-2024-04-09", TEXT_BPE_CL100K_BASE, 128000);
  check_model(t, "gpt-3.5-turbo-0125", TEXT_BPE_CL100K_BASE, 16385);
  check_model(t, "text-embedding-3-small", TEXT_BPE_CL100K_BASE, 8191);
  check_model(t, "openai/gpt-4o", TEXT_BPE_O200K_BASE, 128000);
  assert_int_equal(text_model_lookup(t, "llama3", &m), RAGD_ENOTFOUND);
  assert_int_equal(text_model_lookup(t, "gpt-4-unknown", &m), RAGD_ENOTFOUND);
  assert_int_equal(text_model_lookup(t, "", &m), RAGD_ENOTFOUND);
  text_model_table_free(t);
  /* A NULL table means the built-in one. */
  check_model(NULL, "gpt-4o", TEXT_BPE_O200K_BASE, 128000);
}

static void test_model_table_file(void **state) {
  struct text_model_table *t = NULL;
  struct text_model m;
  struct buf err;
  char dir[256], path[300];
  buf_init(&err, 0);
  write_temp(dir, sizeof dir, "models.txt",
             "# our deployments\n"
             "\n"
             "gpt-4o*\tcl100k_base 32000 1000   # a proxy that cuts the window\n"
             "support-bot  o200k_base  64000 2048\n");
  snprintf(path, sizeof path, "%s/models.txt", dir);
  assert_int_equal(text_model_table_load(path, &t, &err), RAGD_OK);
  check_model(t, "gpt-4o-mini", TEXT_BPE_CL100K_BASE, 32000); /* the file wins */
  check_model(t, "support-bot", TEXT_BPE_O200K_BASE, 64000);
  assert_int_equal(text_model_lookup(t, "support-bot", &m), RAGD_OK);
  assert_int_equal(m.output_reserve, 2048);
  check_model(t, "gpt-4", TEXT_BPE_CL100K_BASE, 8192); /* built-ins still there */
  assert_int_equal(text_model_lookup(t, "support-bot-2", &m), RAGD_ENOTFOUND);
  text_model_table_free(t);
  remove_temp(dir, "models.txt");

  write_temp(dir, sizeof dir, "models.txt", "ok o200k_base 1000 10\nbad p50k_base 1000 10\n");
  snprintf(path, sizeof path, "%s/models.txt", dir);
  assert_int_equal(text_model_table_load(path, &t, &err), RAGD_ECONFIG);
  assert_null(t);
  assert_non_null(strstr(err.data, "models.txt:2: unknown encoding \"p50k_base\""));
  remove_temp(dir, "models.txt");

  write_temp(dir, sizeof dir, "models.txt", "m o200k_base 1000 1000\n");
  snprintf(path, sizeof path, "%s/models.txt", dir);
  assert_int_equal(text_model_table_load(path, &t, &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "models.txt:1:"));
  remove_temp(dir, "models.txt");

  write_temp(dir, sizeof dir, "models.txt", "m o200k_base 1000\n");
  snprintf(path, sizeof path, "%s/models.txt", dir);
  assert_int_equal(text_model_table_load(path, &t, &err), RAGD_ECONFIG);
  remove_temp(dir, "models.txt");

  assert_int_equal(text_model_table_load("/nonexistent-ragd/models.txt", &t, &err), RAGD_EIO);
  assert_non_null(strstr(err.data, "RAGD_MODELS_FILE"));
  buf_dispose(&err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors_cl100k),
      cmocka_unit_test(test_vectors_o200k),
      cmocka_unit_test(test_known_ids),
      cmocka_unit_test(test_split_rules),
      cmocka_unit_test(test_merge_strategies_agree),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_nul_is_text),
      cmocka_unit_test(test_long_word),
      cmocka_unit_test(test_threads_share_an_encoding),
      cmocka_unit_test(test_encoding_names),
      cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_load_requires_every_byte),
      cmocka_unit_test(test_model_table_builtin),
      cmocka_unit_test(test_model_table_file),
  };
  return cmocka_run_group_tests(tests, load_encodings, free_encodings);
}
