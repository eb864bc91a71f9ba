/* retention.c - conversations are kept RAGD_CONVERSATION_RETENTION_DAYS after
 * their last message, then deleted with their feedback. */
#include "rag/rag.h"
#include "util/clock.h"
#include "util/log.h"

ragd_err rag_conversations_expire(struct rag_engine *e, size_t *deleted) {
  long days = e->cfg->conversation_retention_days;
  size_t n = 0;
  ragd_err rc = RAGD_OK;
  if (days > 0 && !e->store.ops->delete_conversations_before) {
    log_warn("retention: the %s store cannot delete old conversations yet", e->store.ops->name);
    rc = RAGD_EUNSUPPORTED;
  } else if (days > 0) {
    rc = e->store.ops->delete_conversations_before(e->store.ctx, clock_wall_s() - (int64_t)days * 86400, &n);
    if (rc)
      log_warn("retention: could not delete old conversations: %s", ragd_strerror(rc));
    else if (n)
      log_info("retention: deleted %zu conversations idle for more than %ld days", n, days);
  }
  if (deleted) *deleted = n;
  return rc;
}
