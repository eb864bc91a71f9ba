/* routes.c - the route table: every URL ragd answers. */
#include "api/api_int.h"

const struct http_route api_routes[] = {
    {"POST", "/v1/chat", HTTP_BODY_JSON, api_chat_handle},
    {"GET", "/v1/chat/stream", HTTP_BODY_NONE, api_chat_stream_get},
    {"POST", "/v1/chat/completions", HTTP_BODY_OPENAI_JSON, api_chat_completions},
    {"POST", "/v1/search", HTTP_BODY_JSON, api_search_handle},
    {"POST", "/v1/documents", HTTP_BODY_JSON, api_documents_post},
    {"GET", "/v1/documents", HTTP_BODY_NONE, api_documents_list},
    {"GET", "/v1/documents/*", HTTP_BODY_NONE, api_documents_get},
    {"DELETE", "/v1/documents/*", HTTP_BODY_NONE, api_documents_delete},
    {"GET", "/v1/conversations/*", HTTP_BODY_NONE, api_conversations_get},
    {"DELETE", "/v1/conversations/*", HTTP_BODY_NONE, api_conversations_delete},
    /* .../{conversation_id}/messages/{message_id}/feedback */
    {"POST", "/v1/conversations/*", HTTP_BODY_JSON, api_conversations_post},
    {"GET", "/healthz", HTTP_BODY_NONE, api_healthz_handle},
    {"GET", "/readyz", HTTP_BODY_NONE, api_readyz_handle},
    {"GET", "/metrics", HTTP_BODY_NONE, api_metrics_handle},
    {"GET", "/", HTTP_BODY_NONE, api_web_handle},
    {"GET", "/web/*", HTTP_BODY_NONE, api_web_handle},
    {"GET", "/openapi.json", HTTP_BODY_NONE, api_web_handle},
    {"GET", "/docs", HTTP_BODY_NONE, api_web_handle},
};

const size_t api_route_count = sizeof api_routes / sizeof api_routes[0];
