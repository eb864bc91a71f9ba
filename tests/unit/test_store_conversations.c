/* test_store_conversations.c - the store's conversation ops (messages with
 * ids and metadata, transcripts, deletion, retention, feedback) against the
 * SQLite store, and the migration of a version 1 database. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"
#include "util/clock.h"

struct fixture {
  char dir[64];
  struct store st;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  struct fixture *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/ragd-conv-XXXXXX");
  if (!mkdtemp(fx->dir) || store_open(fx->dir, &fx->st) != RAGD_OK) {
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  struct fixture *fx = *state;
  store_close(&fx->st);
  nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static struct store_message_in msg(const char *conv, const char *id, const char *role,
                                   const char *content) {
  struct store_message_in m;
  memset(&m, 0, sizeof m);
  m.conversation_id = conv;
  m.message_id = id;
  m.role = role;
  m.content = content;
  m.tokens = -1;
  m.prompt_tokens = -1;
  return m;
}

/* A user question and its answer, with every field of the answer set. */
static void put_turn(struct store *st, const char *conv, const char *n, int64_t at) {
  char uid[32], aid[32], q[64], a[64];
  struct store_message_in m;
  snprintf(uid, sizeof uid, "msg_u%s", n);
  snprintf(aid, sizeof aid, "msg_a%s", n);
  snprintf(q, sizeof q, "question %s", n);
  snprintf(a, sizeof a, "answer %s [1]", n);
  m = msg(conv, uid, "user", q);
  m.retrieval_query = "retrieval query";
  m.tokens = 2;
  m.created_at = at;
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
  m = msg(conv, aid, "assistant", a);
  m.sources_json = "[{\"index\":1,\"document_id\":\"en/a.md\"}]";
  m.cited_json = "[1]";
  m.provider = "openai";
  m.model = "gpt-4o-mini";
  m.finish_reason = "stop";
  m.tokens = 5;
  m.prompt_tokens = 812;
  m.created_at = at;
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
}

static void test_transcript_round_trip(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_conversation c;
  const struct store_message *u, *a;
  put_turn(st, "conv_1", "1", 1000);
  put_turn(st, "conv_1", "2", 1005);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_string_equal(c.id, "conv_1");
  assert_int_equal(c.created_at, 1000);
  assert_int_equal(c.updated_at, 1005);
  assert_int_equal(c.messages.count, 4);
  u = &c.messages.items[0];
  a = &c.messages.items[1];
  assert_string_equal(u->id, "msg_u1");
  assert_string_equal(u->role, "user");
  assert_string_equal(u->content, "question 1");
  assert_string_equal(u->retrieval_query, "retrieval query");
  assert_string_equal(u->sources_json, "[]");
  assert_int_equal(u->tokens, 2);
  assert_int_equal(u->prompt_tokens, -1);
  assert_null(u->feedback_rating);
  assert_string_equal(a->id, "msg_a1");
  assert_string_equal(a->role, "assistant");
  assert_string_equal(a->content, "answer 1 [1]");
  assert_string_equal(a->sources_json, "[{\"index\":1,\"document_id\":\"en/a.md\"}]");
  assert_string_equal(a->cited_json, "[1]");
  assert_string_equal(a->provider, "openai");
  assert_string_equal(a->model, "gpt-4o-mini");
  assert_string_equal(a->finish_reason, "stop");
  assert_int_equal(a->tokens, 5);
  assert_int_equal(a->prompt_tokens, 812);
  assert_int_equal(a->created_at, 1000);
  assert_string_equal(c.messages.items[3].id, "msg_a2");
  store_conversation_dispose(&c);
  store_conversation_dispose(&c); /* idempotent on a zeroed struct */

  /* list_messages carries the ids and retrieval queries too */
  {
    struct store_message_list l = {0};
    assert_int_equal(st->ops->list_messages(st->ctx, "conv_1", 2, &l), RAGD_OK);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.items[0].id, "msg_u2");
    assert_string_equal(l.items[0].retrieval_query, "retrieval query");
    assert_string_equal(l.items[1].id, "msg_a2");
    store_message_list_dispose(&l);
  }
}

static void test_put_message_checks(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_message_in m = msg("conv_1", "msg_1", "user", "hello");
  struct store_conversation c;
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
  /* the same id again */
  m = msg("conv_2", "msg_1", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "msg 2", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", NULL, "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "msg_3", "system", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "msg_4", "user", "bad \xff utf-8");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EUTF8);
  m = msg("conv_1", "msg_5", "assistant", "ok");
  m.model = "\xc3";
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EUTF8);
  m = msg("", "msg_6", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  /* nothing of the refused ones was stored, nor a conversation for them */
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 1);
  store_conversation_dispose(&c);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_2", &c), RAGD_ENOTFOUND);
  /* append_message makes its own ids */
  assert_int_equal(st->ops->append_message(st->ctx, "conv_1", "assistant", "hi"), RAGD_OK);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 2);
  assert_true(store_message_id_ok(c.messages.items[1].id));
  assert_int_equal(strncmp(c.messages.items[1].id, "msg_", 4), 0);
  store_conversation_dispose(&c);
}

static void test_delete_conversation(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_conversation c;
  struct store_feedback_in f = {"conv_1", "msg_a1", "up", "thanks"};
  struct store_message_in m;
  put_turn(st, "conv_1", "1", 0);
  put_turn(st, "conv_2", "2", 0);
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_OK);
  assert_int_equal(st->ops->delete_conversation(st->ctx, "conv_1"), RAGD_OK);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->delete_conversation(st->ctx, "conv_1"), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->delete_conversation(st->ctx, "nope"), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  /* the other conversation is untouched */
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_2", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 2);
  store_conversation_dispose(&c);
  /* the deleted message ids went with it: they may be used again */
  m = msg("conv_3", "msg_a1", "user", "again");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
}

static int count_rows(void *ctx, const struct store_feedback_row *row) {
  (void)row;
  (*(int *)ctx)++;
  return 0;
}

static void test_retention(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_conversation c;
  struct store_feedback_in f = {"conv_old", "msg_aold", "down", ""};
  size_t deleted = 99;
  int rows = 0;
  int64_t now = clock_wall_s();
  put_turn(st, "conv_old", "old", now - 10 * 86400);
  put_turn(st, "conv_new", "new", now - 86400);
  /* an old conversation that went on recently is kept */
  put_turn(st, "conv_mixed", "m1", now - 10 * 86400);
  put_turn(st, "conv_mixed", "m2", now);
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_OK);
  assert_int_equal(st->ops->delete_conversations_before(st->ctx, now - 7 * 86400, &deleted),
                   RAGD_OK);
  assert_int_equal(deleted, 1);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_old", &c), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_new", &c), RAGD_OK);
  store_conversation_dispose(&c);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_mixed", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 4);
  store_conversation_dispose(&c);
  /* its feedback went too */
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, count_rows, &rows), RAGD_OK);
  assert_int_equal(rows, 0);
  assert_int_equal(st->ops->delete_conversations_before(st->ctx, now - 7 * 86400, &deleted),
                   RAGD_OK);
  assert_int_equal(deleted, 0);
  assert_int_equal(st->ops->delete_conversations_before(st->ctx, now - 7 * 86400, NULL), RAGD_OK);
}

struct collected {
  int count;
  char rating[3][8];
  char comment[3][64];
  char question[3][64];
  char answer[3][64];
  char message_id[3][32];
  char model[3][32];
  int stop_after;
};

static int collect(void *ctx, const struct store_feedback_row *row) {
  struct collected *c = ctx;
  if (c->count < 3) {
    snprintf(c->rating[c->count], sizeof c->rating[0], "%s", row->rating);
    snprintf(c->comment[c->count], sizeof c->comment[0], "%s", row->comment);
    snprintf(c->question[c->count], sizeof c->question[0], "%s", row->question);
    snprintf(c->answer[c->count], sizeof c->answer[0], "%s", row->answer);
    snprintf(c->message_id[c->count], sizeof c->message_id[0], "%s", row->message_id);
    snprintf(c->model[c->count], sizeof c->model[0], "%s", row->model);
  }
  c->count++;
  return c->stop_after && c->count >= c->stop_after;
}

static void test_feedback(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_feedback_in f;
  struct store_conversation c;
  struct collected got;
  int created = -1;
  put_turn(st, "conv_1", "1", 0);
  put_turn(st, "conv_1", "2", 0);
  put_turn(st, "conv_2", "3", 0);

  f = (struct store_feedback_in){"conv_1", "msg_a1", "down", "wrong fee, \"3,000\"\nsee policy"};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, &created), RAGD_OK);
  assert_int_equal(created, 1);
  /* a change replaces the rating */
  f = (struct store_feedback_in){"conv_1", "msg_a1", "up", NULL};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, &created), RAGD_OK);
  assert_int_equal(created, 0);
  f = (struct store_feedback_in){"conv_2", "msg_a3", "down", "too slow"};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, &created), RAGD_OK);
  assert_int_equal(created, 1);

  /* refused: a user message, another conversation's message, unknown ids,
   * a bad rating, a comment that is not UTF-8 */
  f = (struct store_feedback_in){"conv_1", "msg_u1", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  f = (struct store_feedback_in){"conv_2", "msg_a1", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  f = (struct store_feedback_in){"conv_9", "msg_a9", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  f = (struct store_feedback_in){"conv_1", "msg_a2", "meh", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_EINVAL);
  f = (struct store_feedback_in){"conv_1", "msg_a2", "up", "\xff"};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_EUTF8);
  f = (struct store_feedback_in){"conv_1", "bad id!", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_EINVAL);

  /* the transcript shows it */
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_string_equal(c.messages.items[1].feedback_rating, "up");
  assert_string_equal(c.messages.items[1].feedback_comment, "");
  assert_null(c.messages.items[3].feedback_rating);
  store_conversation_dispose(&c);

  memset(&got, 0, sizeof got);
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, collect, &got), RAGD_OK);
  assert_int_equal(got.count, 2);
  /* same second: ordered by message */
  assert_string_equal(got.message_id[0], "msg_a1");
  assert_string_equal(got.rating[0], "up");
  assert_string_equal(got.question[0], "question 1");
  assert_string_equal(got.answer[0], "answer 1 [1]");
  assert_string_equal(got.model[0], "gpt-4o-mini");
  assert_string_equal(got.message_id[1], "msg_a3");
  assert_string_equal(got.comment[1], "too slow");
  assert_string_equal(got.question[1], "question 3");

  /* since: nothing changed in the future */
  memset(&got, 0, sizeof got);
  assert_int_equal(st->ops->list_feedback(st->ctx, clock_wall_s() + 3600, collect, &got), RAGD_OK);
  assert_int_equal(got.count, 0);
  /* a callback that stops */
  memset(&got, 0, sizeof got);
  got.stop_after = 1;
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, collect, &got), RAGD_ECANCELLED);
  assert_int_equal(got.count, 1);
  /* the store is usable after a stop */
  memset(&got, 0, sizeof got);
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, collect, &got), RAGD_OK);
  assert_int_equal(got.count, 2);
}

/* A database written by schema version 1 (messages without ids) opens,
 * migrates, and its messages get ids. */
static void test_migrate_v1(void **state) {
  struct fixture *fx = *state;
  struct store_conversation c;
  char path[128];
  sqlite3 *db = NULL;
  store_close(&fx->st);
  snprintf(path, sizeof path, "%s/ragd.db", fx->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "DROP TABLE feedback;"
                                "DROP INDEX messages_by_public_id;"
                                "DROP INDEX conversations_by_updated;"
                                "DROP TABLE messages;"
                                "CREATE TABLE messages (id INTEGER PRIMARY KEY,"
                                " conversation_id TEXT NOT NULL REFERENCES conversations(id)"
                                " ON DELETE CASCADE, role TEXT NOT NULL, content TEXT NOT NULL,"
                                " created_at INTEGER NOT NULL);"
                                "INSERT INTO conversations VALUES ('conv_v1', 5, 6);"
                                "INSERT INTO messages(conversation_id, role, content, created_at)"
                                " VALUES ('conv_v1', 'user', 'old question', 5),"
                                " ('conv_v1', 'assistant', 'old answer', 6);"
                                "PRAGMA user_version = 1;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(store_open(fx->dir, &fx->st), RAGD_OK);
  assert_int_equal(fx->st.ops->get_conversation(fx->st.ctx, "conv_v1", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 2);
  assert_true(store_message_id_ok(c.messages.items[0].id));
  assert_true(strcmp(c.messages.items[0].id, c.messages.items[1].id) != 0);
  assert_string_equal(c.messages.items[1].content, "old answer");
  assert_string_equal(c.messages.items[1].sources_json, "[]");
  assert_int_equal(c.messages.items[1].tokens, -1);
  {
    struct store_feedback_in f = {"conv_v1", c.messages.items[1].id, "up", ""};
    assert_int_equal(fx->st.ops->put_feedback(fx->st.ctx, &f, NULL), RAGD_OK);
  }
  store_conversation_dispose(&c);
}

static void test_message_id_ok(void **state) {
  (void)state;
  assert_true(store_message_id_ok("msg_0123456789abcdef01234567"));
  assert_true(store_message_id_ok("a-B_9"));
  assert_false(store_message_id_ok(""));
  assert_false(store_message_id_ok(NULL));
  assert_false(store_message_id_ok("msg/1"));
  assert_false(store_message_id_ok("msg 1"));
  assert_false(store_message_id_ok("메시지"));
  assert_true(store_message_id_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
  assert_false(store_message_id_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_transcript_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_put_message_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_conversation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
      cmocka_unit_test_setup_teardown(test_feedback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
      cmocka_unit_test(test_message_id_ok),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
