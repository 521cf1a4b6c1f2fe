/* reducer: project a run's events, applied in order, into its JSON snapshot
 * (SPEC §5).  Reducers are pure: the snapshot depends only on the events
 * applied to it (no clock, no randomness), so a rebuild from the stored
 * events always yields the same JSON.
 *
 * A snapshot is a jansson object.  reducer.c keeps the fields common to
 * every kind:
 *   id            the run
 *   event_count   events applied
 *   last_seq      highest seq applied (0 when the run uses no seq)
 *   gapless       the seq values applied are exactly 1..last_seq (true when
 *                 the run uses no seq).  Events are applied in order, so this
 *                 is tracked incrementally: an event with seq != last_seq+1
 *                 makes it false (a late event triggers a rebuild instead).
 *   complete      terminal status and gapless
 * Terminal status, for both kinds: the snapshot's top-level "status" is
 * "completed", "failed" or "cancelled".
 *
 * Kinds (enum reducer_kind from sv_config.h):
 *   REDUCER_RESPONSE  reducer_response.c: an LLM run as a Response object;
 *                     see the shape documented there.
 *   REDUCER_MERGE     reducer_merge.c: RFC 7386 merge-patch of each event's
 *                     data, in order.  The common field names above are
 *                     owned by the reducer: data keys with those names are
 *                     ignored at the top level.  "status" comes from the data
 *                     like any other key, so a run is terminal once its
 *                     merged data holds status completed|failed|cancelled.
 *
 * Errors: -EINVAL (with a message in err) means the event can never be
 * applied and is to be dead-lettered; it is reserved for genuinely
 * impossible input and decided by reducer_check() from the event alone,
 * before anything is changed.  -ENOMEM is transient.  Odd but applicable
 * input (unknown item, output without call, unknown type) is never an
 * error.
 * Test seams (fault-injection builds only): type "sv.test.crash" raises
 * SIGSEGV, type "sv.test.reducer_error" fails with -EINVAL. */
#ifndef SV_REDUCER_H
#define SV_REDUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"
#include "sv_config.h"

/* A new, empty snapshot of run (status "queued" for response).  Returns
 * NULL on ENOMEM. */
json_t *reducer_new(enum reducer_kind kind, const char *run);

/* Whether ev can be applied at all (see Errors).  Returns 0 or -EINVAL. */
int reducer_check(enum reducer_kind kind, const struct sv_event *ev, char *err, size_t errlen);

/* Apply ev (the next event in order) to snap in place.  Returns 0, -EINVAL
 * (exactly when reducer_check fails; snap unchanged) or -ENOMEM (snap may
 * be partly changed: discard it). */
int reducer_apply(enum reducer_kind kind, json_t *snap, const struct sv_event *ev,
		  char *err, size_t errlen);

/* The snapshot's top-level "status" string, or NULL. */
const char *reducer_status(const json_t *snap);
/* status is completed|failed|cancelled. */
bool reducer_terminal(const json_t *snap);
/* The common fields. */
bool reducer_complete(const json_t *snap);
int64_t reducer_event_count(const json_t *snap);
int64_t reducer_last_seq(const json_t *snap);

const char *reducer_kind_name(enum reducer_kind kind);
/* The kind's version: it changes whenever the same events would reduce to
 * a different snapshot, so a stored snapshot says which code made it
 * (the store records name and version per file). */
int reducer_version(enum reducer_kind kind);

/* ---- for the reducer implementations ---- */
struct reducer_ops {
	/* Fill a new snapshot that holds only "id": the kind's fields and,
	 * by calling reducer_add_common_fields where they belong, the common
	 * ones. */
	int (*init)(json_t *snap);
	/* The kind's own effect of one event. */
	int (*apply)(json_t *snap, const struct sv_event *ev);
	/* See reducer_version: bump it with any change of output. */
	int version;
};
extern const struct reducer_ops reducer_response_ops;
extern const struct reducer_ops reducer_merge_ops;

/* Set event_count 0, last_seq 0, gapless true, complete false. */
int reducer_add_common_fields(json_t *snap);
/* obj[key] = v, reusing an integer already there; 0 or -ENOMEM. */
int reducer_set_int(json_t *obj, const char *key, int64_t v);

#endif
