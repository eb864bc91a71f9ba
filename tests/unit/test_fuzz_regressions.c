/* Inputs the libFuzzer drivers in tests/fuzz/ once crashed on, reduced to the
 * smallest case that shows the bug, so they never come back. Each test names
 * the driver that found it and what was wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "text/text.h"

/* fuzz_chunk: a numeric character reference with eight hex digits above
 * 0x7FFFFFFF overflowed the signed code point accumulator in the entity
 * decoder (UBSan: signed integer overflow in text_int_entity). It must decode
 * to U+FFFD like any other out-of-range reference, in markdown and HTML. */
static void test_entity_with_eight_hex_digits(void **state) {
  static const char *const inputs[] = {"two &#xAfffffff; end", "<p>two &#xFFFFFFFF; end</p>"};
  static const enum text_format formats[] = {TEXT_FORMAT_MARKDOWN, TEXT_FORMAT_HTML};
  (void)state;
  for (size_t i = 0; i < 2; i++) {
    struct text_chunk_list list = {0};
    assert_int_equal(text_chunk(inputs[i], strlen(inputs[i]), formats[i], NULL, &list), RAGD_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].text, "two \xEF\xBF\xBD end");
    text_chunk_list_dispose(&list);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_entity_with_eight_hex_digits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
