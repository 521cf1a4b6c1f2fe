/* reducer: dispatch by kind and the bookkeeping common to every kind (see
 * reducer.h). */
#include "config.h"
#include "reducer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const struct reducer_ops *ops_of(enum reducer_kind kind)
{
	switch (kind) {
	case REDUCER_RESPONSE:
		return &reducer_response_ops;
	case REDUCER_MERGE:
		return &reducer_merge_ops;
	}
	return NULL;
}

const char *reducer_kind_name(enum reducer_kind kind)
{
	switch (kind) {
	case REDUCER_RESPONSE:
		return "response";
	case REDUCER_MERGE:
		return "merge";
	}
	return "unknown";
}

int reducer_version(enum reducer_kind kind)
{
	const struct reducer_ops *ops = ops_of(kind);
	return ops ? ops->version : -EINVAL;
}

int reducer_set_int(json_t *obj, const char *key, int64_t v)
{
	json_t *cur = json_object_get(obj, key);
	if (json_is_integer(cur))
		return json_integer_set(cur, v);
	return json_object_set_new(obj, key, json_integer(v)) < 0 ? -ENOMEM : 0;
}

int reducer_add_common_fields(json_t *snap)
{
	if (json_object_set_new(snap, "event_count", json_integer(0)) < 0 ||
	    json_object_set_new(snap, "last_seq", json_integer(0)) < 0 ||
	    json_object_set_new(snap, "gapless", json_true()) < 0 ||
	    json_object_set_new(snap, "complete", json_false()) < 0)
		return -ENOMEM;
	return 0;
}

json_t *reducer_new(enum reducer_kind kind, const char *run)
{
	const struct reducer_ops *ops = ops_of(kind);
	json_t *snap = json_object();
	if (!snap || !ops || json_object_set_new(snap, "id", json_string(run)) < 0 ||
	    ops->init(snap) < 0) {
		json_decref(snap);
		return NULL;
	}
	return snap;
}

int reducer_check(enum reducer_kind kind, const struct sv_event *ev, char *err, size_t errlen)
{
	if (!ops_of(kind)) {
		snprintf(err, errlen, "unknown reducer kind %d", (int)kind);
		return -EINVAL;
	}
#if SV_FAULT_INJECTION
	/* Test seams: a poison event that crashes the worker, and one that the
	 * reducer rejects. */
	if (strcmp(ev->type, "sv.test.crash") == 0) {
		/* Die of SIGSEGV as a real crash would, without a sanitizer's
		 * handler turning it into a report. */
		signal(SIGSEGV, SIG_DFL);
		raise(SIGSEGV);
	}
	if (strcmp(ev->type, "sv.test.reducer_error") == 0) {
		snprintf(err, errlen, "injected reducer error");
		return -EINVAL;
	}
#else
	(void)ev;
#endif
	return 0;
}

static int64_t get_int(const json_t *snap, const char *key)
{
	return json_integer_value(json_object_get(snap, key));
}

const char *reducer_status(const json_t *snap)
{
	return json_string_value(json_object_get(snap, "status"));
}

bool reducer_terminal(const json_t *snap)
{
	const char *st = reducer_status(snap);
	return st && (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
		      strcmp(st, "cancelled") == 0);
}

bool reducer_complete(const json_t *snap)
{
	return json_is_true(json_object_get(snap, "complete"));
}

int64_t reducer_event_count(const json_t *snap)
{
	return get_int(snap, "event_count");
}

int64_t reducer_last_seq(const json_t *snap)
{
	return get_int(snap, "last_seq");
}

int reducer_apply(enum reducer_kind kind, json_t *snap, const struct sv_event *ev,
		  char *err, size_t errlen)
{
	int rc = reducer_check(kind, ev, err, errlen);
	if (rc < 0)
		return rc;
	int64_t count = get_int(snap, "event_count");
	int64_t last_seq = get_int(snap, "last_seq");
	bool gapless = !json_is_false(json_object_get(snap, "gapless"));

	rc = ops_of(kind)->apply(snap, ev);
	if (rc < 0) {
		snprintf(err, errlen, "reducer: %s", strerror(-rc));
		return rc;
	}
	if (ev->seq > 0) {
		if (ev->seq - 1 != last_seq)
			gapless = false;
		if (ev->seq > last_seq)
			last_seq = ev->seq;
	}
	if (reducer_set_int(snap, "event_count", count + 1) < 0 ||
	    reducer_set_int(snap, "last_seq", last_seq) < 0 ||
	    json_object_set_new(snap, "gapless", json_boolean(gapless)) < 0 ||
	    json_object_set_new(snap, "complete",
				json_boolean(gapless && reducer_terminal(snap))) < 0) {
		snprintf(err, errlen, "reducer: out of memory");
		return -ENOMEM;
	}
	return 0;
}
