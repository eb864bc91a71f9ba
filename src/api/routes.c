/* routes.c - the route table: every URL ragd answers. */
#include "api/api_int.h"

/* lane: health, metrics and the static pages run on the quick pool, never
 * behind queued questions (see enum http_lane).
 * access: chat (every protocol), search and conversations need a query key
 * (the zero value); the knowledge base and the API keys need an admin key; health,
 * the chat page and the API description are open; /metrics follows
 * RAGD_METRICS_AUTH. */
const struct http_route api_routes[] = {
    {"POST", "/v1/chat", HTTP_BODY_JSON, api_chat_handle, HTTP_ACCESS_QUERY, HTTP_LANE_WORK},
    {"GET", "/v1/chat/stream", HTTP_BODY_NONE, api_chat_stream_get, HTTP_ACCESS_QUERY, HTTP_LANE_WORK},
    {"POST", "/v1/chat/completions", HTTP_BODY_OPENAI_JSON, api_chat_completions, HTTP_ACCESS_QUERY, HTTP_LANE_WORK},
    {"POST", "/v1/search", HTTP_BODY_JSON, api_search_handle, HTTP_ACCESS_QUERY, HTTP_LANE_WORK},
    {"POST", "/v1/documents", HTTP_BODY_JSON, api_documents_post, HTTP_ACCESS_ADMIN, HTTP_LANE_WORK},
    {"GET", "/v1/documents", HTTP_BODY_NONE, api_documents_list, HTTP_ACCESS_ADMIN, HTTP_LANE_WORK},
    {"GET", "/v1/documents/*", HTTP_BODY_NONE, api_documents_get, HTTP_ACCESS_ADMIN, HTTP_LANE_WORK},
    {"DELETE", "/v1/documents/*", HTTP_BODY_NONE, api_documents_delete, HTTP_ACCESS_ADMIN, HTTP_LANE_WORK},
    {"GET", "/v1/conversations/*", HTTP_BODY_NONE, api_conversations_get, HTTP_ACCESS_QUERY, HTTP_LANE_WORK},
    {"DELETE", "/v1/conversations/*", HTTP_BODY_NONE, api_conversations_delete, HTTP_ACCESS_QUERY, HTTP_LANE_WORK},
    /* .../{conversation_id}/messages/{message_id}/feedback */
    {"POST", "/v1/conversations/*", HTTP_BODY_JSON, api_conversations_post, HTTP_ACCESS_QUERY, HTTP_LANE_WORK},
    {"POST", "/v1/keys", HTTP_BODY_JSON, api_keys_post, HTTP_ACCESS_ADMIN, HTTP_LANE_WORK},
    {"GET", "/v1/keys", HTTP_BODY_NONE, api_keys_list, HTTP_ACCESS_ADMIN, HTTP_LANE_WORK},
    {"DELETE", "/v1/keys/*", HTTP_BODY_NONE, api_keys_delete, HTTP_ACCESS_ADMIN, HTTP_LANE_WORK},
    {"GET", "/healthz", HTTP_BODY_NONE, api_healthz_handle, HTTP_ACCESS_OPEN, HTTP_LANE_QUICK},
    {"GET", "/readyz", HTTP_BODY_NONE, api_readyz_handle, HTTP_ACCESS_OPEN, HTTP_LANE_QUICK},
    {"GET", "/metrics", HTTP_BODY_NONE, api_metrics_handle, HTTP_ACCESS_METRICS, HTTP_LANE_QUICK},
    {"GET", "/", HTTP_BODY_NONE, api_web_handle, HTTP_ACCESS_OPEN, HTTP_LANE_QUICK},
    {"GET", "/web/*", HTTP_BODY_NONE, api_web_handle, HTTP_ACCESS_OPEN, HTTP_LANE_QUICK},
    {"GET", "/openapi.json", HTTP_BODY_NONE, api_web_handle, HTTP_ACCESS_OPEN, HTTP_LANE_QUICK},
    {"GET", "/docs", HTTP_BODY_NONE, api_web_handle, HTTP_ACCESS_OPEN, HTTP_LANE_QUICK},
};

const size_t api_route_count = sizeof api_routes / sizeof api_routes[0];
