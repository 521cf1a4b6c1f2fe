/* worker_persist: the persistence worker kind.  Decodes each entry, stores
 * it in SQLite and keeps its run's snapshot equal to the reduction of all
 * its events (store.c), one transaction per batch; XACK only after COMMIT;
 * entries that can never succeed are dead-lettered. */
#ifndef SV_WORKER_PERSIST_H
#define SV_WORKER_PERSIST_H

#include "consumer.h"

/* Fills kind for one worker of pool (slot: kept for the callers; whichever
 * worker holds the file's writer lease prunes retention.events_keep_ms);
 * the state is freed by worker_persist_free.  Host services (heartbeat
 * counters) come through consumer_host().  Returns 0. */
int worker_persist_init(const struct sv_config *cfg, const struct pool_config *pool, int slot,
			struct consumer_kind *kind);
void worker_persist_free(struct consumer_kind *kind);

#endif
