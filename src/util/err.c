#include "util/err.h"

const char *ragd_strerror(ragd_err rc) {
  switch (rc) {
#define RAGD_ERR_MSG(name, num, msg) \
  case name:                         \
    return msg;
    RAGD_ERR_LIST(RAGD_ERR_MSG)
#undef RAGD_ERR_MSG
  }
  return "unknown error";
}

const char *ragd_errname(ragd_err rc) {
  switch (rc) {
#define RAGD_ERR_NAME(name, num, msg) \
  case name:                          \
    return #name;
    RAGD_ERR_LIST(RAGD_ERR_NAME)
#undef RAGD_ERR_NAME
  }
  return "RAGD_EUNKNOWN";
}
