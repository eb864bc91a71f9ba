#include "util/workq.h"

#include <pthread.h>
#include <stdlib.h>

struct workq_job {
  workq_fn fn;
  void *arg;
  struct workq_job *next;
};

struct workq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct workq_job *head, *tail;
  int stopping;
  size_t nthreads;
  pthread_t *threads;
};

static void *workq_main(void *arg) {
  struct workq *q = arg;
  for (;;) {
    struct workq_job *job;
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->stopping) pthread_cond_wait(&q->cv, &q->mu);
    job = q->head;
    if (job) {
      q->head = job->next;
      if (!q->head) q->tail = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    if (!job) return NULL; /* stopping and drained */
    job->fn(job->arg);
    free(job);
  }
}

ragd_err workq_new(size_t threads, struct workq **out) {
  struct workq *q = calloc(1, sizeof *q);
  if (!q) return RAGD_ENOMEM;
  q->threads = calloc(threads, sizeof *q->threads);
  if (!q->threads) {
    free(q);
    return RAGD_ENOMEM;
  }
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  for (size_t i = 0; i < threads; i++) {
    if (pthread_create(&q->threads[i], NULL, workq_main, q) != 0) break;
    q->nthreads++;
  }
  if (q->nthreads == 0) {
    workq_free(q);
    return RAGD_ENOMEM;
  }
  *out = q;
  return RAGD_OK;
}

ragd_err workq_submit(struct workq *q, workq_fn fn, void *arg) {
  struct workq_job *job = malloc(sizeof *job);
  if (!job) return RAGD_ENOMEM;
  job->fn = fn;
  job->arg = arg;
  job->next = NULL;
  pthread_mutex_lock(&q->mu);
  if (q->stopping) {
    pthread_mutex_unlock(&q->mu);
    free(job);
    return RAGD_ECANCELLED;
  }
  if (q->tail)
    q->tail->next = job;
  else
    q->head = job;
  q->tail = job;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return RAGD_OK;
}

void workq_free(struct workq *q) {
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  q->stopping = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  for (size_t i = 0; i < q->nthreads; i++) pthread_join(q->threads[i], NULL);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  free(q->threads);
  free(q);
}
