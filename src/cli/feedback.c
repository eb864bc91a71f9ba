/* feedback.c - `ragd feedback export`: every rating of an answer as CSV
 * (RFC 4180: CRLF line ends, a field quoted when it holds a comma, quote, CR
 * or LF, quotes doubled), for the support team's spreadsheet. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/json.h"

static const char help[] =
    "Usage: ragd feedback export [--data DIR] [--since WHEN]\n"
    "\n"
    "Writes the ratings customers gave answers (POST /v1/conversations/{id}/\n"
    "messages/{message_id}/feedback) to standard output as CSV (RFC 4180), one\n"
    "row per rated answer, oldest change first:\n"
    "  updated_at, created_at (UTC, ISO 8601), conversation_id, message_id,\n"
    "  rating (up|down), comment, question, answer, provider, model,\n"
    "  cited_documents (ids of the documents the answer cited, space-separated)\n"
    "\n"
    "  --data DIR     data folder (RAGD_DATA, default ./data)\n"
    "  --since WHEN   only ratings given or changed since WHEN: YYYY-MM-DD,\n"
    "                 YYYY-MM-DDTHH:MM:SSZ (UTC), Unix seconds, or an age such\n"
    "                 as 7d or 12h\n";

/* WHEN of --since as Unix seconds; -1 when malformed. */
static int64_t parse_since(const char *s, int64_t now) {
  size_t n = strlen(s);
  char *end = NULL;
  long long v;
  struct tm tm;
  if (n == 0) return -1;
  if ((s[n - 1] == 'd' || s[n - 1] == 'h') && n > 1 && isdigit((unsigned char)s[0])) {
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end != s + n - 1 || v < 0 || v > 100000) return -1;
    return now - (int64_t)v * (s[n - 1] == 'd' ? 86400 : 3600);
  }
  if (isdigit((unsigned char)s[0]) && strspn(s, "0123456789") == n) {
    errno = 0;
    v = strtoll(s, &end, 10);
    return errno ? -1 : (int64_t)v;
  }
  memset(&tm, 0, sizeof tm);
  end = strptime(s, "%Y-%m-%d", &tm);
  if (!end) return -1;
  if (*end == 'T') {
    end = strptime(end + 1, "%H:%M:%S", &tm);
    if (!end || strcmp(end, "Z") != 0) return -1;
  } else if (*end) {
    return -1;
  }
  return (int64_t)timegm(&tm);
}

static void put_field(FILE *out, const char *s, int last) {
  if (strpbrk(s, ",\"\r\n")) {
    fputc('"', out);
    for (; *s; s++) {
      if (*s == '"') fputc('"', out);
      fputc(*s, out);
    }
    fputc('"', out);
  } else {
    fputs(s, out);
  }
  fputs(last ? "\r\n" : ",", out);
}

static void put_time(FILE *out, int64_t t) {
  char text[32];
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || !strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm)) text[0] = '\0';
  put_field(out, text, 0);
}

/* The document ids of the sources the answer cited, once each. */
static void put_cited_documents(FILE *out, const char *sources_json, const char *cited_json) {
  json_t *sources = json_loads(sources_json, 0, NULL);
  json_t *cited = json_loads(cited_json, 0, NULL);
  struct buf ids;
  size_t i, j;
  json_t *n, *src;
  buf_init(&ids, 0);
  json_array_foreach(cited, i, n) {
    json_array_foreach(sources, j, src) {
      const char *doc = json_get_str(src, "document_id");
      if (!doc || !json_equal(json_object_get(src, "index"), n)) continue;
      /* ids hold no spaces in practice; a repeat is skipped */
      if (ids.data && strstr(ids.data, doc)) continue;
      if (ids.len) buf_append_char(&ids, ' ');
      buf_append_str(&ids, doc);
    }
  }
  put_field(out, ids.data ? ids.data : "", 1);
  buf_dispose(&ids);
  json_decref(sources);
  json_decref(cited);
}

static int put_row(void *ctx, const struct store_feedback_row *row) {
  FILE *out = ctx;
  put_time(out, row->updated_at);
  put_time(out, row->created_at);
  put_field(out, row->conversation_id, 0);
  put_field(out, row->message_id, 0);
  put_field(out, row->rating, 0);
  put_field(out, row->comment, 0);
  put_field(out, row->question, 0);
  put_field(out, row->answer, 0);
  put_field(out, row->provider, 0);
  put_field(out, row->model, 0);
  put_cited_documents(out, row->sources_json, row->cited_json);
  return ferror(out) ? 1 : 0;
}

int cli_feedback(int argc, char **argv) {
  struct cli_opts opts;
  struct ragd_config cfg;
  struct store st = {0};
  struct buf err;
  const char *since_arg = NULL;
  int64_t since = 0;
  int status = 2, cfg_ready = 0;
  ragd_err rc;

  memset(&opts, 0, sizeof opts);
  buf_init(&err, 0);
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(help, stdout);
    return 0;
  }
  if (argc < 2 || strcmp(argv[1], "export") != 0) {
    fputs(help, stderr);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(help, stdout);
      return 0;
    }
    if ((strcmp(argv[i], "--data") == 0 || strcmp(argv[i], "--since") == 0) && i + 1 < argc) {
      if (strcmp(argv[i], "--data") == 0)
        opts.data = argv[i + 1];
      else
        since_arg = argv[i + 1];
      i++;
      continue;
    }
    fprintf(stderr, "ragd feedback export: unexpected argument \"%s\"\n%s", argv[i], help);
    return 2;
  }
  if (since_arg) {
    since = parse_since(since_arg, clock_wall_s());
    if (since < 0) {
      fprintf(stderr, "ragd feedback export: --since: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, "
                      "Unix seconds or an age like 7d, got \"%s\"\n", since_arg);
      return 2;
    }
  }
  if (cli_config(&opts, &cfg) != 0) goto out;
  cfg_ready = 1;
  status = 1;
  rc = rag_store_open(&cfg, &st, &err);
  if (rc) {
    fprintf(stderr, "ragd feedback export: %s\n", err.data ? err.data : ragd_strerror(rc));
    goto out;
  }
  if (!st.ops->list_feedback) {
    fprintf(stderr, "ragd feedback export: the %s store does not keep feedback yet\n", st.ops->name);
    goto out;
  }
  fputs("updated_at,created_at,conversation_id,message_id,rating,comment,question,answer,"
        "provider,model,cited_documents\r\n", stdout);
  rc = st.ops->list_feedback(st.ctx, since, put_row, stdout);
  if (rc || fflush(stdout) != 0) {
    fprintf(stderr, "ragd feedback export: %s\n",
            rc == RAGD_ECANCELLED || !rc ? "cannot write to standard output" : ragd_strerror(rc));
    goto out;
  }
  status = 0;
out:
  buf_dispose(&err);
  store_close(&st);
  if (cfg_ready) config_dispose(&cfg);
  return status;
}
