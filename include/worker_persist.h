/* worker_persist: the persistence worker kind.  Decodes each entry, stores
 * it in SQLite and keeps its run's snapshot equal to the reduction of all
 * its events (store.c), one transaction per batch; XACK only after COMMIT;
 * entries that can never succeed are dead-lettered. */
#ifndef SV_WORKER_PERSIST_H
#define SV_WORKER_PERSIST_H

#include "consumer.h"

/* Fills kind for w; the state is freed by worker_persist_free. */
int worker_persist_init(struct worker *w, struct consumer_kind *kind);
void worker_persist_free(struct consumer_kind *kind);

#endif
