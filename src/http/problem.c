#include <string.h>

#include "http/http.h"

/* The fixed list of problem codes; docs/errors.md documents each. Append only. */
static const struct {
  const char *code;
  int status;
  const char *title;
} problems[] = {
    {"invalid_json", 400, "The request body is not valid JSON"},
    {"invalid_utf8", 400, "The request contains invalid UTF-8"},
    {"invalid_field", 400, "A field has the wrong type or value"},
    {"missing_field", 400, "A required field is missing"},
    {"invalid_document", 400, "The document cannot be ingested"},
    {"invalid_query", 400, "A query parameter is invalid"},
    {"not_found", 404, "No such route"},
    {"document_not_found", 404, "No such document"},
    {"method_not_allowed", 405, "Method not allowed on this route"},
    {"body_too_large", 413, "The request body is too large"},
    {"unsupported_media_type", 415, "The request body must be application/json"},
    {"internal_error", 500, "Internal error"},
    {"upstream_unavailable", 502, "The language model provider is unavailable"},
    {"upstream_error", 502, "The language model provider returned an error"},
    {"upstream_timeout", 504, "The language model provider timed out"},
    {"store_unavailable", 503, "The document store is unavailable"},
    {"not_ready", 503, "The server is not ready"},
    {"overloaded", 503, "The server is overloaded"},
    {"question_too_long", 400, "The question does not fit the model's context window"},
    {"conversation_not_found", 404, "No such conversation"},
    {"message_not_found", 404, "No such answer in this conversation"},
    {"unauthorized", 401, "A valid API key is required"},
    {"forbidden", 403, "Not allowed: the API key's scope or the request's origin"},
    {"rate_limited", 429, "Too many requests"},
    {"request_timeout", 504, "The request took longer than the server's time limit"},
    {"key_not_found", 404, "No such active API key"},
    {"headers_too_large", 431, "The request line and headers are too large"},
};

static int find(const char *code) {
  for (size_t i = 0; i < sizeof problems / sizeof problems[0]; i++)
    if (strcmp(problems[i].code, code) == 0) return (int)i;
  return -1;
}

int http_problem_status(const char *code) {
  int i = find(code);
  return i < 0 ? 500 : problems[i].status;
}

const char *http_problem_title(const char *code) {
  int i = find(code);
  return i < 0 ? "Error" : problems[i].title;
}

const char *http_openai_error_type(int status) {
  return status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
}
