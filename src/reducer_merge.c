/* reducer_merge: the snapshot is the RFC 7386 JSON merge-patch of every
 * event's data, applied in order, next to the common fields (see reducer.h;
 * top-level data keys named like a common field are ignored).  An event
 * without data changes nothing but the common fields. */
#include "reducer.h"

#include <errno.h>
#include <string.h>

static bool reserved(const char *key, size_t klen)
{
	return strlen(key) == klen && (strcmp(key, "id") == 0 || strcmp(key, "event_count") == 0 ||
	       strcmp(key, "last_seq") == 0 || strcmp(key, "gapless") == 0 ||
	       strcmp(key, "complete") == 0);
}

/* RFC 7386 MergePatch(target, patch) for an object patch, in place.  Nested
 * objects are always built afresh, so no object is shared with the event;
 * arrays and scalars are shared (they are never changed in place). */
static int merge(json_t *target, json_t *patch, bool top)
{
	const char *key;
	size_t klen;
	json_t *v;
	json_object_keylen_foreach(patch, key, klen, v) {
		if (top && reserved(key, klen))
			continue;
		if (json_is_null(v)) {
			json_object_deln(target, key, klen);
		} else if (json_is_object(v)) {
			json_t *cur = json_object_getn(target, key, klen);
			if (!json_is_object(cur)) {
				cur = json_object();
				if (!cur || json_object_setn_new(target, key, klen, cur) < 0)
					return -ENOMEM;
			}
			int rc = merge(cur, v, false);
			if (rc < 0)
				return rc;
		} else if (json_object_setn(target, key, klen, v) < 0) {
			return -ENOMEM;
		}
	}
	return 0;
}

static int init(json_t *snap)
{
	return reducer_add_common_fields(snap);
}

static int apply(json_t *snap, const struct sv_event *ev)
{
	return ev->data ? merge(snap, ev->data, true) : 0;
}

const struct reducer_ops reducer_merge_ops = {
	.init = init,
	.apply = apply,
	.version = 1,
};
