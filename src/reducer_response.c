/* reducer_response: an LLM run becomes a Response snapshot (SPEC §5).
 *
 * Snapshot (every top-level key is always present; null until known):
 *   {"id", "status": "queued|in_progress|completed|failed|cancelled",
 *    "created_ms": int|null, "completed_ms": int|null, "model": any|null,
 *    "metadata": any|null, "output": [item...],
 *    "usage": {"input_tokens", "output_tokens", "reasoning_tokens"} (ints, 0),
 *    "error": any|null, "event_count", "last_seq", "gapless", "complete",
 *    "ignored_events": int, "anomalies": [{"type", "seq": int|null, "message"}...]}
 *
 * Output items.  Keys that do not apply to an item's type are omitted; keys
 * that apply but were not given by the event are null:
 *   message|reasoning  {"id", "type", "role", "status": "in_progress|completed",
 *                       "content": string}
 *   tool_call          {"type", "status": "pending|completed", "call_id",
 *                       "name", "arguments"}
 *   tool_output        {"type", "status": "completed", "call_id", "name",
 *                       "output", "is_error"} plus "exit_code", "duration_ms",
 *                       "truncated" only when the event carries them.
 *
 * Effects, by event type:
 *   response.created   status "in_progress"; created_ms = ts (or the entry
 *                      id's ms); model and metadata when given.
 *   item.started       {item_id, kind, role?}: append a message|reasoning
 *                      item; status "in_progress" when it was "queued".
 *   item.delta         {item_id, text}: append text to the item's content.
 *   item.completed     {item_id, content?}: item status "completed"; a string
 *                      content replaces the text.
 *   tool.call          {call_id, name, arguments}: append a tool_call item.
 *   tool.output        {call_id, name, output, is_error, ...}: append a
 *                      tool_output item; the tool_call with that call_id gets
 *                      status "completed" (and lends its name when the output
 *                      has none).  call_id falls back to the entry's field.
 *   usage              add each integer token count to usage.
 *   response.completed status "completed", completed_ms.
 *   response.failed    status "failed", error = data.error (null if absent).
 *   response.cancelled status "cancelled".
 *   anything else      ignored_events + 1.
 * Anomalies (recorded, never fatal; the event still counts): item events
 * without a string item_id or for an unknown item, item.started with an
 * unknown kind or an id already used, a non-string delta text or content,
 * tool.call without call_id or with a call_id already used, tool.output
 * without its tool.call, a non-integer usage count or one whose sum would
 * overflow. */
#include "reducer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *dget(const struct sv_event *ev, const char *key)
{
	return ev->data ? json_object_get(ev->data, key) : NULL;
}

/* obj[key] = v (borrowed; null when NULL). */
static int set_opt(json_t *obj, const char *key, json_t *v)
{
	return json_object_set(obj, key, v ? v : json_null());
}

static int anomaly(json_t *snap, const struct sv_event *ev, const char *fmt, const char *arg)
{
	json_t *a = json_object();
	json_t *msg = json_sprintf(fmt, arg ? arg : "");
	if (!msg) /* not UTF-8 after all: keep the record, lose the detail */
		msg = json_string(ev->type);
	if (!a || !msg ||
	    json_object_set_new(a, "type", json_string(ev->type)) < 0 ||
	    json_object_set_new(a, "seq", ev->seq > 0 ? json_integer(ev->seq) : json_null()) < 0 ||
	    json_object_set_new(a, "message", msg) < 0 ||
	    json_array_append_new(json_object_get(snap, "anomalies"), a) < 0) {
		if (!a)
			json_decref(msg);
		json_decref(a);
		return -ENOMEM;
	}
	return 0;
}

static int init(json_t *snap)
{
	json_t *usage = json_pack("{s:i, s:i, s:i}", "input_tokens", 0, "output_tokens", 0,
				  "reasoning_tokens", 0);
	if (!usage || json_object_set_new(snap, "status", json_string("queued")) < 0 ||
	    json_object_set_new(snap, "created_ms", json_null()) < 0 ||
	    json_object_set_new(snap, "completed_ms", json_null()) < 0 ||
	    json_object_set_new(snap, "model", json_null()) < 0 ||
	    json_object_set_new(snap, "metadata", json_null()) < 0 ||
	    json_object_set_new(snap, "output", json_array()) < 0 ||
	    json_object_set_new(snap, "usage", usage) < 0 ||
	    json_object_set_new(snap, "error", json_null()) < 0 ||
	    reducer_add_common_fields(snap) < 0 ||
	    json_object_set_new(snap, "ignored_events", json_integer(0)) < 0 ||
	    json_object_set_new(snap, "anomalies", json_array()) < 0)
		return -ENOMEM;
	return 0;
}

static int set_status(json_t *snap, const char *status)
{
	return json_object_set_new(snap, "status", json_string(status)) < 0 ? -ENOMEM : 0;
}

/* The message/reasoning item whose id equals id, or NULL. */
static json_t *find_item(json_t *output, const json_t *id)
{
	size_t i;
	json_t *it;
	json_array_foreach(output, i, it) {
		json_t *iid = json_object_get(it, "id");
		if (iid && json_equal(iid, id))
			return it;
	}
	return NULL;
}

static json_t *find_call(json_t *output, const json_t *call_id)
{
	size_t i;
	json_t *it;
	json_array_foreach(output, i, it) {
		const char *t = json_string_value(json_object_get(it, "type"));
		if (t && strcmp(t, "tool_call") == 0 && json_equal(json_object_get(it, "call_id"), call_id))
			return it;
	}
	return NULL;
}

/* The item an item.* event refers to; records an anomaly when there is none. */
static int item_of(json_t *snap, const struct sv_event *ev, json_t **item)
{
	json_t *id = dget(ev, "item_id");
	*item = NULL;
	if (!json_is_string(id))
		return anomaly(snap, ev, "%s without item_id", ev->type);
	*item = find_item(json_object_get(snap, "output"), id);
	if (!*item)
		return anomaly(snap, ev, "unknown item %s", json_string_value(id));
	return 0;
}

static int item_started(json_t *snap, const struct sv_event *ev)
{
	json_t *output = json_object_get(snap, "output");
	json_t *id = dget(ev, "item_id");
	const char *kind = json_string_value(dget(ev, "kind"));
	if (!json_is_string(id))
		return anomaly(snap, ev, "%s without item_id", ev->type);
	if (!kind || (strcmp(kind, "message") != 0 && strcmp(kind, "reasoning") != 0))
		return anomaly(snap, ev, "unknown item kind %s", kind ? kind : "(none)");
	if (find_item(output, id))
		return anomaly(snap, ev, "duplicate item %s", json_string_value(id));
	json_t *item = json_object();
	if (!item || json_object_set(item, "id", id) < 0 ||
	    json_object_set_new(item, "type", json_string(kind)) < 0 ||
	    set_opt(item, "role", dget(ev, "role")) < 0 ||
	    json_object_set_new(item, "status", json_string("in_progress")) < 0 ||
	    json_object_set_new(item, "content", json_string("")) < 0 ||
	    json_array_append_new(output, item) < 0) {
		json_decref(item);
		return -ENOMEM;
	}
	const char *st = reducer_status(snap);
	if (st && strcmp(st, "queued") == 0)
		return set_status(snap, "in_progress");
	return 0;
}

static int item_delta(json_t *snap, const struct sv_event *ev)
{
	json_t *item;
	int rc = item_of(snap, ev, &item);
	if (rc < 0 || !item)
		return rc;
	json_t *text = dget(ev, "text");
	if (!json_is_string(text))
		return anomaly(snap, ev, "%s without text", ev->type);
	json_t *content = json_object_get(item, "content");
	if (!json_is_string(content)) {
		content = json_string("");
		if (!content || json_object_set_new(item, "content", content) < 0)
			return -ENOMEM;
	}
	size_t a = json_string_length(content), b = json_string_length(text);
	if (b == 0)
		return 0;
	char *buf = malloc(a + b);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, json_string_value(content), a);
	memcpy(buf + a, json_string_value(text), b);
	/* Both parts are valid UTF-8, so is their concatenation.  A new
	 * string, not an edit in place: the old one may be shared with an
	 * event's data (item.completed content), which must not change. */
	json_t *joined = json_stringn_nocheck(buf, a + b);
	free(buf);
	if (!joined || json_object_set_new(item, "content", joined) < 0)
		return -ENOMEM;
	return 0;
}

static int item_completed(json_t *snap, const struct sv_event *ev)
{
	json_t *item;
	int rc = item_of(snap, ev, &item);
	if (rc < 0 || !item)
		return rc;
	if (json_object_set_new(item, "status", json_string("completed")) < 0)
		return -ENOMEM;
	json_t *content = dget(ev, "content");
	if (!content)
		return 0;
	if (!json_is_string(content))
		return anomaly(snap, ev, "%s with non-string content", ev->type);
	return json_object_set(item, "content", content) < 0 ? -ENOMEM : 0;
}

/* data.call_id, else the entry's call_id field (as a new reference). */
static json_t *call_id_of(const struct sv_event *ev)
{
	json_t *id = dget(ev, "call_id");
	if (id)
		return json_incref(id);
	return ev->call_id ? json_string(ev->call_id) : NULL;
}

static int tool_call(json_t *snap, const struct sv_event *ev)
{
	json_t *output = json_object_get(snap, "output");
	json_t *call_id = call_id_of(ev);
	int rc = 0;
	if (!call_id) {
		rc = anomaly(snap, ev, "%s without call_id", ev->type);
	} else if (find_call(output, call_id)) {
		rc = anomaly(snap, ev, "duplicate call_id %s", json_string_value(call_id));
		json_decref(call_id);
		return rc;
	}
	if (rc < 0) {
		json_decref(call_id);
		return rc;
	}
	json_t *item = json_object();
	if (!item || json_object_set_new(item, "type", json_string("tool_call")) < 0 ||
	    json_object_set_new(item, "status", json_string("pending")) < 0 ||
	    set_opt(item, "call_id", call_id) < 0 ||
	    set_opt(item, "name", dget(ev, "name")) < 0 ||
	    set_opt(item, "arguments", dget(ev, "arguments")) < 0 ||
	    json_array_append_new(output, item) < 0) {
		json_decref(item);
		json_decref(call_id);
		return -ENOMEM;
	}
	json_decref(call_id);
	return 0;
}

static int tool_output(json_t *snap, const struct sv_event *ev)
{
	json_t *output = json_object_get(snap, "output");
	json_t *call_id = call_id_of(ev);
	json_t *call = call_id ? find_call(output, call_id) : NULL;
	json_t *name = dget(ev, "name");
	int rc = 0;
	if (!name && call)
		name = json_object_get(call, "name");
	if (call && json_object_set_new(call, "status", json_string("completed")) < 0)
		rc = -ENOMEM;
	json_t *item = json_object();
	if (rc < 0 || !item || json_object_set_new(item, "type", json_string("tool_output")) < 0 ||
	    json_object_set_new(item, "status", json_string("completed")) < 0 ||
	    set_opt(item, "call_id", call_id) < 0 ||
	    set_opt(item, "name", name) < 0 ||
	    set_opt(item, "output", dget(ev, "output")) < 0 ||
	    set_opt(item, "is_error", dget(ev, "is_error")) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	static const char *const extra[] = {"exit_code", "duration_ms", "truncated"};
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		json_t *v = dget(ev, extra[i]);
		if (v && json_object_set(item, extra[i], v) < 0) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = json_array_append(output, item) < 0 ? -ENOMEM : 0;
	if (rc == 0 && !call)
		rc = anomaly(snap, ev, "tool.output without tool.call %s",
			     call_id && json_is_string(call_id) ? json_string_value(call_id) : "(no call_id)");
out:
	json_decref(item);
	json_decref(call_id);
	return rc;
}

static int usage(json_t *snap, const struct sv_event *ev)
{
	static const char *const keys[] = {"input_tokens", "output_tokens", "reasoning_tokens"};
	json_t *u = json_object_get(snap, "usage");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = dget(ev, keys[i]);
		int rc = 0;
		json_int_t sum;
		if (!v)
			continue;
		if (!json_is_integer(v))
			rc = anomaly(snap, ev, "usage.%s is not an integer", keys[i]);
		else if (__builtin_add_overflow(json_integer_value(json_object_get(u, keys[i])),
						json_integer_value(v), &sum))
			rc = anomaly(snap, ev, "usage.%s overflows", keys[i]);
		else
			rc = reducer_set_int(u, keys[i], sum);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int apply(json_t *snap, const struct sv_event *ev)
{
	const char *t = ev->type;
	if (strcmp(t, "item.delta") == 0)
		return item_delta(snap, ev);
	if (strcmp(t, "item.started") == 0)
		return item_started(snap, ev);
	if (strcmp(t, "item.completed") == 0)
		return item_completed(snap, ev);
	if (strcmp(t, "response.created") == 0) {
		json_t *v;
		if (set_status(snap, "in_progress") < 0 ||
		    reducer_set_int(snap, "created_ms", event_time_ms(ev)) < 0)
			return -ENOMEM;
		if ((v = dget(ev, "model")) && json_object_set(snap, "model", v) < 0)
			return -ENOMEM;
		if ((v = dget(ev, "metadata")) && json_object_set(snap, "metadata", v) < 0)
			return -ENOMEM;
		return 0;
	}
	if (strcmp(t, "tool.call") == 0)
		return tool_call(snap, ev);
	if (strcmp(t, "tool.output") == 0)
		return tool_output(snap, ev);
	if (strcmp(t, "usage") == 0)
		return usage(snap, ev);
	if (strcmp(t, "response.completed") == 0) {
		if (set_status(snap, "completed") < 0 ||
		    reducer_set_int(snap, "completed_ms", event_time_ms(ev)) < 0)
			return -ENOMEM;
		return 0;
	}
	if (strcmp(t, "response.failed") == 0) {
		if (set_status(snap, "failed") < 0 || set_opt(snap, "error", dget(ev, "error")) < 0)
			return -ENOMEM;
		return 0;
	}
	if (strcmp(t, "response.cancelled") == 0)
		return set_status(snap, "cancelled");
	return reducer_set_int(snap, "ignored_events",
			       json_integer_value(json_object_get(snap, "ignored_events")) + 1);
}

const struct reducer_ops reducer_response_ops = {
	.init = init,
	.apply = apply,
	.version = 1,
};
