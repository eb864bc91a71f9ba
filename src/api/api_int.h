/* api_int.h - the handlers behind api_routes; private to api/. Each runs on a
 * worker thread and replies exactly once (see http.h). */
#ifndef RAGD_API_INT_H
#define RAGD_API_INT_H

#include "api/api.h"

void api_chat_handle(struct http_request *r, void *app);
void api_search_handle(struct http_request *r, void *app);
void api_documents_post(struct http_request *r, void *app);
void api_documents_list(struct http_request *r, void *app);
void api_documents_get(struct http_request *r, void *app);
void api_documents_delete(struct http_request *r, void *app);
void api_healthz_handle(struct http_request *r, void *app);
void api_readyz_handle(struct http_request *r, void *app);

#endif
