/* golden: helpers shared by the reducer and store unit tests to read the
 * golden files under test/golden/:
 *   NAME.events.jsonl  one stream entry per line: {"id": "MS-SEQ",
 *                      "stream"?: "events", FIELD: value...}; a string value
 *                      is the field as is, any other JSON value is written
 *                      compactly (so "data": {...} is the data field)
 *   NAME.json          the expected snapshot
 * Entries go through event_decode like the worker's. */
#ifndef SV_TEST_GOLDEN_H
#define SV_TEST_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "reducer.h"

static void golden_path(char *buf, size_t len, const char *name, const char *suffix)
{
	const char *dir = getenv("SV_TEST_DATA");
	snprintf(buf, len, "%s/golden/%s%s", dir && *dir ? dir : "test", name, suffix);
}

/* Decode one entry given as a JSON object (see above) into *ev. */
static int golden_entry_decode(json_t *line, struct sv_event *ev, const char **reason)
{
	struct sv_field fields[32];
	char *owned[32];
	size_t n = 0;
	const char *key;
	json_t *v;
	const char *id = json_string_value(json_object_get(line, "id"));
	const char *stream = json_string_value(json_object_get(line, "stream"));
	struct sv_entry e = {.stream = stream ? stream : "events", .id = id ? id : "0-1"};

	if (event_parse_id(e.id, &e.id_ms, &e.id_seq) < 0)
		return -1;
	json_object_foreach(line, key, v) {
		if (strcmp(key, "id") == 0 || strcmp(key, "stream") == 0 || n == 32)
			continue;
		owned[n] = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		fields[n] = (struct sv_field){
			.name = key, .name_len = strlen(key),
			.value = owned[n] ? owned[n] : json_string_value(v),
			.value_len = owned[n] ? strlen(owned[n]) : json_string_length(v),
		};
		n++;
	}
	e.fields = fields;
	e.nfields = n;
	int rc = event_decode(&e, ev, reason);
	for (size_t i = 0; i < n; i++)
		free(owned[i]);
	return rc;
}

/* Load NAME.events.jsonl; returns the number of events (all decoded), or
 * -1 on any problem.  Free with golden_free. */
static long golden_load(const char *name, struct sv_event **out)
{
	char path[1024], line[65536];
	golden_path(path, sizeof(path), name, ".events.jsonl");
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		return -1;
	}
	struct sv_event *evs = NULL;
	long n = 0;
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '\n' || line[0] == '#')
			continue;
		json_t *j = json_loads(line, 0, NULL);
		const char *reason = NULL;
		evs = realloc(evs, (size_t)(n + 1) * sizeof(*evs));
		if (!j || golden_entry_decode(j, &evs[n], &reason) < 0) {
			fprintf(stderr, "%s:%ld: bad line (%s)\n", path, n + 1, reason ? reason : "json");
			json_decref(j);
			fclose(f);
			for (long i = 0; i < n; i++)
				event_clear(&evs[i]);
			free(evs);
			return -1;
		}
		json_decref(j);
		n++;
	}
	fclose(f);
	*out = evs;
	return n;
}

static void golden_free(struct sv_event *evs, long n)
{
	for (long i = 0; i < n; i++)
		event_clear(&evs[i]);
	free(evs);
}

static json_t *golden_expected(const char *name)
{
	char path[1024];
	golden_path(path, sizeof(path), name, ".json");
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	if (!j)
		fprintf(stderr, "%s:%d: %s\n", path, err.line, err.text);
	return j;
}

static int golden_cmp_events(const void *a, const void *b)
{
	struct event_key ka, kb;
	event_order_key(a, &ka);
	event_order_key(b, &kb);
	return event_key_cmp(&ka, &kb);
}

/* Sort events into run order (the order key). */
static void golden_sort(struct sv_event *evs, long n)
{
	qsort(evs, (size_t)n, sizeof(*evs), golden_cmp_events);
}

/* The reference: the reducer applied to evs in run order (evs is sorted). */
static json_t *golden_reduce(enum reducer_kind kind, const char *run, struct sv_event *evs, long n)
{
	char err[256];
	json_t *snap = reducer_new(kind, run);
	golden_sort(evs, n);
	for (long i = 0; i < n; i++) {
		if (strcmp(evs[i].run, run) != 0)
			continue;
		if (reducer_apply(kind, snap, &evs[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "reducer: %s\n", err);
			json_decref(snap);
			return NULL;
		}
	}
	return snap;
}

/* json_equal, printing both sides when they differ. */
static int golden_equal(const json_t *got, const json_t *want)
{
	if (got && want && json_equal(got, want))
		return 1;
	char *a = got ? json_dumps(got, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	char *b = want ? json_dumps(want, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	fprintf(stderr, "got:\n%s\nwant:\n%s\n", a ? a : "(null)", b ? b : "(null)");
	free(a);
	free(b);
	return 0;
}

#endif
