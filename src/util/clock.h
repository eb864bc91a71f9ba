/* clock.h - monotonic and wall clocks. */
#ifndef RAGD_UTIL_CLOCK_H
#define RAGD_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on a monotonic clock; only differences are meaningful. */
int64_t clock_mono_ms(void);
/* Microseconds on a monotonic clock. */
int64_t clock_mono_us(void);
/* The time ms milliseconds from now on clock clk (CLOCK_MONOTONIC or
 * CLOCK_REALTIME), normalized, for pthread_cond_timedwait and the like. */
struct timespec clock_deadline_ms(clockid_t clk, long ms);
/* Seconds since the Unix epoch. */
int64_t clock_wall_s(void);

#endif
