/* clock.h - monotonic and wall clocks. */
#ifndef RAGD_UTIL_CLOCK_H
#define RAGD_UTIL_CLOCK_H

#include <stdint.h>

/* Milliseconds on a monotonic clock; only differences are meaningful. */
int64_t clock_mono_ms(void);
/* Microseconds on a monotonic clock. */
int64_t clock_mono_us(void);
/* Seconds since the Unix epoch. */
int64_t clock_wall_s(void);

#endif
