/* test_store_keys.c - the API key ops of the SQLite store: only hashes are
 * kept, lookups see revocations at once, and a second connection (another
 * server on the same database) sees them too. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "util/crypto.h"

struct fixture {
  char dir[64];
  struct store a, b; /* two connections to one database */
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  struct fixture *fx = calloc(1, sizeof *fx);
  snprintf(fx->dir, sizeof fx->dir, "/tmp/ragd-keys-XXXXXX");
  if (!mkdtemp(fx->dir) || store_open(fx->dir, &fx->a) != RAGD_OK ||
      store_open(fx->dir, &fx->b) != RAGD_OK)
    return -1;
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  struct fixture *fx = *state;
  store_close(&fx->a);
  store_close(&fx->b);
  nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static void make_key(const char *secret, const char *id, const char *scope, char hash[65],
                     struct store_key *k) {
  crypto_sha256_hex(secret, strlen(secret), hash);
  memset(k, 0, sizeof *k);
  k->id = (char *)id;
  k->name = (char *)"widget";
  k->scope = (char *)scope;
  k->hash = hash;
  k->rpm = 30;
}

static void test_create_lookup_revoke(void **state) {
  struct fixture *fx = *state;
  const struct store_ops *ops = fx->a.ops;
  struct store_key k, got;
  struct store_key_list l;
  char hash[65], other[65];
  size_t n = 99;
  assert_int_equal(ops->key_count(fx->a.ctx, &n), RAGD_OK);
  assert_int_equal(n, 0);
  make_key("rk_secret-one", "rk_secret-o", "query", hash, &k);
  assert_int_equal(ops->key_create(fx->a.ctx, &k), RAGD_OK);
  /* The same id or the same hash again: refused. */
  assert_int_equal(ops->key_create(fx->a.ctx, &k), RAGD_EINVAL);
  k.id = (char *)"rk_another";
  assert_int_equal(ops->key_create(fx->a.ctx, &k), RAGD_EINVAL);
  /* Malformed fields. */
  make_key("rk_x", "rk_x", "root", other, &k);
  assert_int_equal(ops->key_create(fx->a.ctx, &k), RAGD_EINVAL);
  make_key("rk_x", "rk_x", "admin", other, &k);
  k.hash = (char *)"ABCDEF";
  assert_int_equal(ops->key_create(fx->a.ctx, &k), RAGD_EINVAL);

  /* Found through the other connection, by hash. */
  assert_int_equal(fx->b.ops->key_lookup(fx->b.ctx, hash, &got), RAGD_OK);
  assert_string_equal(got.id, "rk_secret-o");
  assert_string_equal(got.scope, "query");
  assert_string_equal(got.name, "widget");
  assert_string_equal(got.hash, hash);
  assert_int_equal(got.rpm, 30);
  assert_int_equal(got.revoked_at, 0);
  assert_true(got.created_at > 0);
  store_key_dispose(&got);
  crypto_sha256_hex("rk_secret-two", 13, other);
  assert_int_equal(ops->key_lookup(fx->a.ctx, other, &got), RAGD_ENOTFOUND);
  assert_int_equal(ops->key_lookup(fx->a.ctx, "not a hash", &got), RAGD_ENOTFOUND);

  /* Nothing stored holds the key itself. */
  assert_int_equal(ops->key_list(fx->a.ctx, &l), RAGD_OK);
  assert_int_equal(l.count, 1);
  assert_null(strstr(l.items[0].hash, "secret"));
  store_key_list_dispose(&l);

  /* Revoked on one connection, gone on the other at once. */
  assert_int_equal(ops->key_revoke(fx->a.ctx, "rk_secret-o"), RAGD_OK);
  assert_int_equal(fx->b.ops->key_lookup(fx->b.ctx, hash, &got), RAGD_ENOTFOUND);
  assert_int_equal(ops->key_revoke(fx->a.ctx, "rk_secret-o"), RAGD_ENOTFOUND);
  assert_int_equal(ops->key_revoke(fx->a.ctx, "rk_nope"), RAGD_ENOTFOUND);
  assert_int_equal(fx->b.ops->key_count(fx->b.ctx, &n), RAGD_OK);
  assert_int_equal(n, 0);
  assert_int_equal(ops->key_list(fx->a.ctx, &l), RAGD_OK);
  assert_int_equal(l.count, 1);
  assert_true(l.items[0].revoked_at > 0);
  store_key_list_dispose(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_create_lookup_revoke, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
