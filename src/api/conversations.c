/* conversations.c - GET and DELETE /v1/conversations/{id} (the transcript
 * with citations; deletion with its feedback) and
 * POST /v1/conversations/{id}/messages/{message_id}/feedback. */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define FEEDBACK_COMMENT_MAX 4000 /* bytes */

/* A stored JSON array (sources, citations) back as JSON; [] when it does not
 * parse (a store that kept nothing). */
static json_t *stored_array(const char *text) {
  json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
  if (json_is_array(v)) return v;
  json_decref(v);
  return json_array();
}

static json_t *count_or_null(long n) { return n < 0 ? json_null() : json_integer(n); }

static json_t *message_json(const struct store_message *m) {
  json_t *o = json_object();
  int assistant = strcmp(m->role, "assistant") == 0;
  json_object_set_new(o, "id", json_string(m->id ? m->id : ""));
  json_object_set_new(o, "role", json_string(m->role));
  json_object_set_new(o, "content", json_string(m->content));
  json_object_set_new(o, "created_at", json_integer(m->created_at));
  json_object_set_new(o, "tokens", count_or_null(m->tokens));
  if (!assistant) {
    json_object_set_new(o, "retrieval_query", json_string(m->retrieval_query ? m->retrieval_query : ""));
    return o;
  }
  {
    json_t *sources = stored_array(m->sources_json);
    json_t *cited = stored_array(m->cited_json);
    size_t i, j;
    json_t *src, *n;
    /* mark the sources the answer cited */
    json_array_foreach(sources, i, src) {
      int was_cited = 0;
      json_t *index = json_object_get(src, "index");
      json_array_foreach(cited, j, n) if (json_equal(n, index)) was_cited = 1;
      if (json_is_object(src)) json_object_set_new(src, "cited", json_boolean(was_cited));
    }
    json_object_set_new(o, "sources", sources);
    json_object_set_new(o, "cited_sources", cited);
  }
  json_object_set_new(o, "provider", json_string(m->provider ? m->provider : ""));
  json_object_set_new(o, "model", json_string(m->model ? m->model : ""));
  json_object_set_new(o, "finish_reason", json_string(m->finish_reason ? m->finish_reason : ""));
  json_object_set_new(o, "prompt_tokens", count_or_null(m->prompt_tokens));
  if (m->feedback_rating) {
    json_t *f = json_object();
    json_object_set_new(f, "rating", json_string(m->feedback_rating));
    json_object_set_new(f, "comment", json_string(m->feedback_comment ? m->feedback_comment : ""));
    json_object_set_new(o, "feedback", f);
  } else {
    json_object_set_new(o, "feedback", json_null());
  }
  return o;
}

/* Stores written before these ops (a NULL entry in the ops table) cannot
 * serve the route: say so instead of crashing. */
static int store_lacks(struct http_request *r, const struct store *st, int has_op) {
  if (has_op) return 0;
  http_reply_problem(r, "store_unavailable", "the %s store does not keep transcripts and feedback yet",
                     st->ops->name);
  return 1;
}

static void reply_store_error(struct http_request *r, ragd_err rc, const char *not_found_code,
                              const char *what) {
  if (rc == RAGD_ENOTFOUND || rc == RAGD_EINVAL || rc == RAGD_EUTF8)
    http_reply_problem(r, not_found_code, "%s", what);
  else if (rc == RAGD_ENOMEM)
    http_reply_problem(r, "internal_error", "out of memory");
  else
    http_reply_problem(r, "store_unavailable", "%s", ragd_strerror(rc));
}

void api_conversations_get(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  struct store *st = &app->engine->store;
  const char *id = http_request_path_param(r);
  struct store_conversation conv;
  json_t *o, *arr;
  ragd_err rc;
  memset(&conv, 0, sizeof conv);
  if (store_lacks(r, st, st->ops->get_conversation != NULL)) return;
  /* an id ragd could not have made cannot exist */
  rc = store_message_id_ok(id) ? st->ops->get_conversation(st->ctx, id, &conv) : RAGD_ENOTFOUND;
  if (rc) {
    reply_store_error(r, rc, "conversation_not_found", "no conversation with this id");
    return;
  }
  o = json_object();
  arr = json_array();
  for (size_t i = 0; i < conv.messages.count; i++)
    json_array_append_new(arr, message_json(&conv.messages.items[i]));
  json_object_set_new(o, "id", json_string(conv.id));
  json_object_set_new(o, "created_at", json_integer(conv.created_at));
  json_object_set_new(o, "updated_at", json_integer(conv.updated_at));
  json_object_set_new(o, "messages", arr);
  store_conversation_dispose(&conv);
  http_reply_json(r, 200, o);
}

void api_conversations_delete(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  struct store *st = &app->engine->store;
  const char *id = http_request_path_param(r);
  json_t *o;
  ragd_err rc;
  if (store_lacks(r, st, st->ops->delete_conversation != NULL)) return;
  rc = store_message_id_ok(id) ? st->ops->delete_conversation(st->ctx, id) : RAGD_ENOTFOUND;
  if (rc) {
    reply_store_error(r, rc, "conversation_not_found", "no conversation with this id");
    return;
  }
  o = json_object();
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "deleted", json_true());
  http_reply_json(r, 200, o);
}

/* Splits "{conversation_id}/messages/{message_id}/feedback" (the path after
 * /v1/conversations/) into conv[] and msg[]. Read from the end: the ids
 * themselves never hold '/'. 0 when the path has another shape. */
static int feedback_path(const char *param, char *conv, size_t conv_size, char *msg,
                         size_t msg_size) {
  static const char tail[] = "/feedback";
  static const char mid[] = "/messages/";
  size_t n = strlen(param), tail_len = sizeof tail - 1, mid_len = sizeof mid - 1;
  const char *msg_start, *msg_end;
  size_t conv_len, msg_len;
  if (n <= tail_len || strcmp(param + n - tail_len, tail) != 0) return 0;
  msg_end = param + n - tail_len;
  msg_start = msg_end;
  while (msg_start > param && msg_start[-1] != '/') msg_start--;
  msg_len = (size_t)(msg_end - msg_start);
  if ((size_t)(msg_start - param) < mid_len || msg_len == 0) return 0;
  if (strncmp(msg_start - mid_len, mid, mid_len) != 0) return 0;
  conv_len = (size_t)(msg_start - mid_len - param);
  if (conv_len == 0 || conv_len >= conv_size || msg_len >= msg_size) {
    /* too long to be an id: keep the shape, fail the lookup */
    conv_len = conv_len >= conv_size ? 0 : conv_len;
    msg_len = msg_len >= msg_size ? 0 : msg_len;
  }
  memcpy(conv, param, conv_len);
  conv[conv_len] = '\0';
  memcpy(msg, msg_start, msg_len);
  msg[msg_len] = '\0';
  return 1;
}

void api_conversations_post(struct http_request *r, void *arg) {
  static const char *const fields[] = {"rating", "comment", NULL};
  struct api_app *app = arg;
  struct store *st = &app->engine->store;
  json_t *body = http_request_json(r);
  struct store_feedback_in f;
  char conv[80], msg[80];
  const char *rating = NULL, *comment = NULL;
  int created = 0;
  json_t *o;
  ragd_err rc;
  if (!feedback_path(http_request_path_param(r), conv, sizeof conv, msg, sizeof msg)) {
    http_reply_problem(r, "not_found",
                       "POST takes /v1/conversations/{id}/messages/{message_id}/feedback");
    return;
  }
  if (!api_fields_known(r, body, fields) ||
      !api_field_string(r, body, "rating", 1, 8, &rating) ||
      !api_field_string(r, body, "comment", 0, FEEDBACK_COMMENT_MAX, &comment))
    return;
  if (strcmp(rating, "up") != 0 && strcmp(rating, "down") != 0) {
    http_reply_problem(r, "invalid_field", "\"rating\" must be \"up\" or \"down\"");
    return;
  }
  if (store_lacks(r, st, st->ops->put_feedback != NULL)) return;
  memset(&f, 0, sizeof f);
  f.conversation_id = conv;
  f.message_id = msg;
  f.rating = rating;
  f.comment = comment ? comment : "";
  rc = store_message_id_ok(conv) && store_message_id_ok(msg)
           ? st->ops->put_feedback(st->ctx, &f, &created)
           : RAGD_ENOTFOUND;
  if (rc == RAGD_EUTF8) {
    http_reply_problem(r, "invalid_utf8", "\"comment\" is not valid UTF-8");
    return;
  }
  if (rc) {
    reply_store_error(r, rc, "message_not_found",
                      "the conversation has no answer with this message id");
    return;
  }
  o = json_object();
  json_object_set_new(o, "conversation_id", json_string(conv));
  json_object_set_new(o, "message_id", json_string(msg));
  json_object_set_new(o, "rating", json_string(rating));
  json_object_set_new(o, "comment", json_string(f.comment));
  json_object_set_new(o, "created", json_boolean(created));
  http_reply_json(r, created ? 201 : 200, o);
}
