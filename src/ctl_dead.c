/* ctl_dead: `streamvisorctl dead ...` (see ctl_dead.h, admin_dead.h). */
#include "ctl_dead.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "event.h"
#include "util.h"

enum { DEAD_EXIT_OK = 0, DEAD_EXIT_REFUSED = 1, DEAD_EXIT_USAGE = 2 };

/* Characters of a name or value shown in a table cell before "…(N bytes)". */
#define DEAD_CELL_NAME 32
#define DEAD_CELL_VALUE 48

struct dead_buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct dead_buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(struct dead_buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static int usage(const struct ctl_dead_io *io, const char *msg)
{
	fprintf(stderr, "%s: %s\n", io->prog, msg);
	return DEAD_EXIT_USAGE;
}

static const char *reply_error(const json_t *reply)
{
	const char *e = json_string_value(json_object_get(reply, "error"));
	return e ? e : "the daemon refused the request";
}

/* One JSON line on stdout (--json). */
static void print_json(const json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	puts(s ? s : "{}");
	free(s);
}

static bool is_uint(const char *s)
{
	return s && *s && strspn(s, "0123456789") == strlen(s);
}

/* ---------- bytes ---------- */

/* The bytes a JSON text stands for: a string, or {"b64": ...}.  Returns
 * a malloc'd buffer (NUL-terminated) or NULL when it is neither. */
static char *dead_raw(const json_t *v, size_t *len)
{
	if (json_is_string(v)) {
		*len = json_string_length(v);
		char *p = util_xcalloc(1, *len + 1);
		memcpy(p, json_string_value(v), *len);
		return p;
	}
	const char *b = json_string_value(json_object_get(v, "b64"));
	return b ? (char *)b64_decode(b, strlen(b), len) : NULL;
}

/* Bytes for a terminal: printable ASCII as is, "\\" doubled, valid UTF-8
 * characters other than C1 controls as is, every other byte \xHH.  At
 * most max characters (0: all); returns whether it stopped short. */
static bool dead_escape(struct dead_buf *out, const char *p, size_t n, size_t max)
{
	size_t shown = 0;
	for (size_t i = 0; i < n; shown++) {
		if (max && shown >= max)
			return true;
		unsigned char c = (unsigned char)p[i];
		size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		if (c == '\\') {
			buf_str(out, "\\\\");
		} else if (c >= 0x20 && c < 0x7f) {
			buf_add(out, &c, 1);
		} else if (k > 1 && i + k <= n && event_valid_text(p + i, k) &&
			   !(c == 0xc2 && (unsigned char)p[i + 1] < 0xa0)) {
			buf_add(out, p + i, k);
			i += k;
			continue;
		} else {
			char hex[5];
			snprintf(hex, sizeof(hex), "\\x%02x", c);
			buf_str(out, hex);
		}
		i++;
	}
	return false;
}

/* A JSON text escaped into out; cut shows "…(SIZE bytes)" after it. */
static void dead_cell_text(struct dead_buf *out, const json_t *v, size_t max, bool cut, json_int_t size)
{
	size_t len;
	char *raw = dead_raw(v, &len);
	if (!raw) {
		buf_str(out, "-");
		return;
	}
	bool more = dead_escape(out, raw, len, max);
	free(raw);
	if (more || cut) {
		char note[48];
		snprintf(note, sizeof(note), "…(%lld bytes)", (long long)size);
		buf_str(out, note);
	}
}

/* ---------- list ---------- */

static const char *const list_cols[] = {"ID", "STREAM", "ORIGIN_ID", "GROUPS", "REASON", "DELIVERIES", "FIELDS"};
#define NCOLS (sizeof(list_cols) / sizeof(list_cols[0]))

static char *cell_groups(const json_t *e)
{
	struct dead_buf b = {0};
	size_t i;
	json_t *g;
	json_array_foreach(json_object_get(e, "groups"), i, g) {
		if (i)
			buf_str(&b, ",");
		dead_cell_text(&b, g, 0, false, 0);
	}
	if (!b.p)
		buf_str(&b, "-");
	return b.p;
}

static char *cell_fields(const json_t *e)
{
	struct dead_buf b = {0};
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(e, "fields"), i, f) {
		if (i)
			buf_str(&b, " ");
		json_t *ns = json_object_get(f, "name_size");
		dead_cell_text(&b, json_object_get(f, "name"), DEAD_CELL_NAME, ns != NULL, json_integer_value(ns));
		buf_str(&b, "=");
		json_t *size = json_object_get(f, "size");
		dead_cell_text(&b, json_object_get(f, "value"), DEAD_CELL_VALUE,
			       json_is_true(json_object_get(f, "cut")) && !ns, json_integer_value(size));
	}
	if (json_is_true(json_object_get(e, "fields_cut"))) {
		char note[64];
		snprintf(note, sizeof(note), " …(%lld fields)", (long long)json_integer_value(json_object_get(e, "nfields")));
		buf_str(&b, note);
	}
	if (!b.p)
		buf_str(&b, "-");
	return b.p;
}

static char *cell_of(const json_t *e, const char *key)
{
	struct dead_buf b = {0};
	json_t *v = json_object_get(e, key);
	if (json_is_integer(v)) {
		char n[24];
		snprintf(n, sizeof(n), "%lld", (long long)json_integer_value(v));
		buf_str(&b, n);
	} else {
		dead_cell_text(&b, v, 0, false, 0);
	}
	return b.p;
}

/* Display width: UTF-8 characters (escapes are ASCII). */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static void print_list(const json_t *reply)
{
	const json_t *entries = json_object_get(reply, "entries");
	size_t n = json_array_size(entries);
	if (n == 0) {
		printf("no dead letters\n");
		return;
	}
	char **cells = util_xcalloc((n + 1) * NCOLS, sizeof(*cells));
	size_t w[NCOLS] = {0};
	for (size_t c = 0; c < NCOLS; c++)
		cells[c] = util_xstrdup(list_cols[c]);
	for (size_t r = 0; r < n; r++) {
		const json_t *e = json_array_get(entries, r);
		char **row = cells + (r + 1) * NCOLS;
		row[0] = cell_of(e, "id");
		row[1] = cell_of(e, "stream");
		row[2] = cell_of(e, "origin_id");
		row[3] = cell_groups(e);
		row[4] = cell_of(e, "reason");
		row[5] = cell_of(e, "deliveries");
		row[6] = cell_fields(e);
	}
	for (size_t i = 0; i < (n + 1) * NCOLS; i++)
		if (width(cells[i]) > w[i % NCOLS])
			w[i % NCOLS] = width(cells[i]);
	for (size_t r = 0; r <= n; r++) {
		for (size_t c = 0; c < NCOLS; c++) {
			char *s = cells[r * NCOLS + c];
			if (c + 1 < NCOLS)
				printf("%s%*s  ", s, (int)(w[c] - width(s)), "");
			else
				printf("%s\n", s);
			free(s);
		}
	}
	free(cells);
	const char *next = json_string_value(json_object_get(reply, "next"));
	if (next)
		printf("(more: dead list ... --after %s)\n", next);
	if (json_is_true(json_object_get(reply, "truncated")))
		printf("(only the first dead-letter streams of the pattern streams were read)\n");
}

static int cmd_list(const struct ctl_dead_io *io, int argc, char **argv)
{
	json_t *args = json_pack("[s]", "list");
	int npos = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--after") || !strncmp(a, "--after=", 8)) {
			const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || !*v) {
				json_decref(args);
				return usage(io, "dead list: --after needs a dead letter id");
			}
			json_array_append_new(args, json_string("--after"));
			json_array_append_new(args, json_string(v));
		} else if (npos < 2 && a[0] != '-') {
			npos++;
			if (json_array_append_new(args, json_string(a)) < 0) {
				json_decref(args);
				return usage(io, "dead list: STREAM is not valid UTF-8");
			}
		} else {
			json_decref(args);
			return usage(io, "usage: dead list [STREAM] [N] [--after ID]");
		}
	}
	/* With two words the second is N. */
	if (npos == 2 && !is_uint(json_string_value(json_array_get(args, json_array_size(args) - 1)))) {
		json_decref(args);
		return usage(io, "dead list: N must be a non-negative integer");
	}
	json_t *reply = io->call(io->ctx, json_pack("{s:s, s:o}", "cmd", "dead", "args", args));
	bool ok = json_is_true(json_object_get(reply, "ok"));
	if (io->json) {
		print_json(reply);
	} else if (ok) {
		print_list(reply);
	} else {
		fprintf(stderr, "%s: %s\n", io->prog, reply_error(reply));
	}
	json_decref(reply);
	return ok ? DEAD_EXIT_OK : DEAD_EXIT_REFUSED;
}

/* ---------- show ---------- */

struct dead_items {
	struct dead_buf *v;
	json_int_t *size;
	size_t n;      /* items announced */
	size_t at;     /* the item being filled */
};

/* Append one part; parts come in order.  Returns 0 or -EPROTO. */
static int items_add(struct dead_items *it, const json_t *part)
{
	json_int_t item = json_integer_value(json_object_get(part, "item"));
	json_int_t size = json_integer_value(json_object_get(part, "size"));
	json_int_t off = json_integer_value(json_object_get(part, "offset"));
	const char *b = json_string_value(json_object_get(part, "b64"));
	if (!b || item < 0 || (size_t)item >= it->n || size < 0)
		return -EPROTO;
	while (it->at < (size_t)item && it->at < it->n && it->v[it->at].len == (size_t)it->size[it->at])
		it->at++;
	if ((size_t)item != it->at || (size_t)off != it->v[item].len)
		return -EPROTO;
	size_t len;
	unsigned char *raw = b64_decode(b, strlen(b), &len);
	if (!raw || (json_int_t)(off + (json_int_t)len) > size) {
		free(raw);
		return -EPROTO;
	}
	it->size[item] = size;
	buf_add(&it->v[item], raw, len);
	free(raw);
	return 0;
}

static bool items_complete(const struct dead_items *it)
{
	for (size_t i = 0; i < it->n; i++)
		if (it->v[i].len != (size_t)it->size[i])
			return false;
	return true;
}

static void items_free(struct dead_items *it)
{
	for (size_t i = 0; i < it->n; i++)
		free(it->v[i].p);
	free(it->v);
	free(it->size);
}

/* Ask for the letter chunk by chunk.  Returns the first reply (metadata)
 * with the items filled, or NULL after printing why. */
static json_t *show_fetch(const struct ctl_dead_io *io, const char *id, const char *stream, struct dead_items *it)
{
	memset(it, 0, sizeof(*it));
	json_t *first = NULL;
	char *from = NULL;
	for (;;) {
		json_t *args = json_pack("[s, s]", "show", id);
		const char *st = stream ? stream : json_string_value(json_object_get(first, "stream"));
		if (st) {
			json_array_append_new(args, json_string("--stream"));
			json_array_append_new(args, json_string(st));
		}
		if (from) {
			json_array_append_new(args, json_string("--from"));
			json_array_append_new(args, json_string(from));
		}
		json_t *reply = io->call(io->ctx, json_pack("{s:s, s:o}", "cmd", "dead", "args", args));
		if (!json_is_true(json_object_get(reply, "ok"))) {
			if (io->json) {
				print_json(reply);
			} else {
				fprintf(stderr, "%s: %s\n", io->prog,
					reply_error(reply));
			}
			json_decref(reply);
			break;
		}
		if (!first) {
			json_int_t n = json_integer_value(json_object_get(reply, "items"));
			if (n < 0 || n % 2)
				n = -1;
			it->n = n > 0 ? (size_t)n : 0;
			it->v = util_xcalloc(it->n ? it->n : 1, sizeof(*it->v));
			it->size = util_xcalloc(it->n ? it->n : 1, sizeof(*it->size));
			first = json_incref(reply);
			if (n < 0)
				goto bad;
		}
		size_t i;
		json_t *p;
		json_array_foreach(json_object_get(reply, "parts"), i, p) {
			if (items_add(it, p) < 0)
				goto bad;
		}
		const char *next = json_string_value(json_object_get(reply, "next"));
		if (!next) {
			json_decref(reply);
			free(from);
			if (!items_complete(it)) {
				fprintf(stderr, "%s: dead show %s: the daemon's chunks do not add up\n", io->prog, id);
				json_decref(first);
				items_free(it);
				return NULL;
			}
			return first;
		}
		if (from && !strcmp(from, next))
			goto bad;
		free(from);
		from = util_xstrdup(next);
		json_decref(reply);
		continue;
bad:
		fprintf(stderr, "%s: dead show %s: malformed chunk from the daemon\n", io->prog, id);
		json_decref(reply);
		break;
	}
	free(from);
	json_decref(first);
	items_free(it);
	return NULL;
}

/* The original fields as netstrings, name then value: "LEN:BYTES,". */
static int write_raw(const struct ctl_dead_io *io, const char *path, const struct dead_items *it)
{
	FILE *f = fopen(path, "wb");
	if (!f) {
		fprintf(stderr, "%s: cannot write %s: %s\n", io->prog, path, strerror(errno));
		return -errno;
	}
	for (size_t i = 0; i < it->n; i++) {
		fprintf(f, "%zu:", it->v[i].len);
		if (it->v[i].len)
			fwrite(it->v[i].p, 1, it->v[i].len, f);
		fputc(',', f);
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "%s: cannot write %s: %s\n", io->prog, path, strerror(errno));
		return -EIO;
	}
	return 0;
}

static json_t *bytes_json(const struct dead_buf *b)
{
	const char *p = b->p ? b->p : "";
	if (event_valid_text(p, b->len))
		return json_stringn(p, b->len);
	char *s = b64_encode(p, b->len, NULL);
	json_t *o = json_pack("{s:s}", "b64", s);
	free(s);
	return o;
}

static void print_show(const json_t *meta, const struct dead_items *it, const char *raw_path)
{
	static const char *const keys[] = {"id", "dead_stream", "stream", "origin_id", "origin_stream",
					   "groups", "consumer", "reason", "deliveries"};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		char *c = !strcmp(keys[k], "groups") ? cell_groups(meta) : cell_of(meta, keys[k]);
		printf("%-14s %s\n", keys[k], c ? c : "-");
		free(c);
	}
	printf("%-14s %lld bytes in %zu fields%s%s\n", "size", (long long)json_integer_value(json_object_get(meta, "size")),
	       it->n / 2, raw_path ? ", written to " : "", raw_path ? raw_path : "");
	for (size_t i = 0; i + 1 < it->n; i += 2) {
		struct dead_buf line = {0};
		buf_str(&line, "  ");
		dead_escape(&line, it->v[i].p ? it->v[i].p : "", it->v[i].len, 0);
		buf_str(&line, ": ");
		if (raw_path) {
			char n[40];
			snprintf(n, sizeof(n), "(%zu bytes)", it->v[i + 1].len);
			buf_str(&line, n);
		} else {
			dead_escape(&line, it->v[i + 1].p ? it->v[i + 1].p : "", it->v[i + 1].len, 0);
		}
		puts(line.p);
		free(line.p);
	}
}

static int cmd_show(const struct ctl_dead_io *io, int argc, char **argv)
{
	const char *id = NULL, *stream = NULL, *raw = NULL;
	for (int i = 0; i < argc; i++) {
		const char **opt = !strcmp(argv[i], "--stream") ? &stream : !strcmp(argv[i], "--raw") ? &raw : NULL;
		if (opt) {
			if (i + 1 >= argc || !*argv[i + 1])
				return usage(io, "usage: dead show ID [--stream STREAM] [--raw FILE]");
			*opt = argv[++i];
		} else if (!id && argv[i][0] != '-') {
			id = argv[i];
		} else {
			return usage(io, "usage: dead show ID [--stream STREAM] [--raw FILE]");
		}
	}
	if (!id)
		return usage(io, "usage: dead show ID [--stream STREAM] [--raw FILE]");
	struct dead_items it;
	json_t *meta = show_fetch(io, id, stream, &it);
	if (!meta)
		return DEAD_EXIT_REFUSED;
	int code = DEAD_EXIT_OK;
	if (raw && write_raw(io, raw, &it) < 0)
		code = DEAD_EXIT_REFUSED;
	json_object_del(meta, "parts");
	json_object_del(meta, "items");
	json_object_del(meta, "next");
	if (io->json) {
		json_t *fields = json_array();
		for (size_t i = 0; i + 1 < it.n; i += 2)
			json_array_append_new(fields, json_pack("{s:o, s:o}", "name", bytes_json(&it.v[i]), "value",
								bytes_json(&it.v[i + 1])));
		json_object_set_new(meta, "fields", fields);
		print_json(meta);
	} else {
		print_show(meta, &it, raw);
	}
	json_decref(meta);
	items_free(&it);
	return code;
}

/* ---------- retry, purge ---------- */

static int cmd_simple(const struct ctl_dead_io *io, const char *sub, int argc, char **argv)
{
	json_t *args = json_pack("[s]", sub);
	int npos = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '=');
		bool is_opt = !strncmp(a, "--stream", 8) || !strncmp(a, "--older-than", 12);
		if (is_opt && eq) {
			json_array_append_new(args, json_stringn(a, (size_t)(eq - a)));
			json_array_append_new(args, json_string(eq + 1));
			continue;
		}
		if (is_opt && i + 1 < argc) {
			json_array_append_new(args, json_string(a));
			json_array_append_new(args, json_string(argv[++i]));
			continue;
		}
		if (a[0] == '-' || ++npos > 1 || json_array_append_new(args, json_string(a)) < 0) {
			json_decref(args);
			return usage(io, !strcmp(sub, "retry") ? "usage: dead retry ID|all [--stream STREAM]"
							       : "usage: dead purge [--older-than MS] [--stream STREAM]");
		}
	}
	for (size_t i = 1; i + 1 < json_array_size(args); i++)
		if (!strcmp(json_string_value(json_array_get(args, i)), "--older-than") &&
		    !is_uint(json_string_value(json_array_get(args, i + 1)))) {
			json_decref(args);
			return usage(io, "dead purge: --older-than needs milliseconds");
		}
	if (!strcmp(sub, "retry") && npos != 1) {
		json_decref(args);
		return usage(io, "usage: dead retry ID|all [--stream STREAM]");
	}
	if (!strcmp(sub, "purge") && npos != 0) {
		json_decref(args);
		return usage(io, "usage: dead purge [--older-than MS] [--stream STREAM]");
	}
	json_t *reply = io->call(io->ctx, json_pack("{s:s, s:o}", "cmd", "dead", "args", args));
	bool ok = json_is_true(json_object_get(reply, "ok"));
	if (io->json) {
		print_json(reply);
	} else {
		size_t i;
		json_t *r;
		json_array_foreach(json_object_get(reply, "retried"), i, r) {
			printf("re-driven %s into %s as %s (origin_id %s)\n", json_string_value(json_object_get(r, "id")),
			       json_string_value(json_object_get(r, "stream")), json_string_value(json_object_get(r, "new_id")),
			       json_string_value(json_object_get(r, "origin_id")));
		}
		json_int_t dropped = json_integer_value(json_object_get(reply, "dropped"));
		if (dropped)
			printf("%lld dead letters of an origin re-driven already removed\n", (long long)dropped);
		if (json_object_get(reply, "purged"))
			printf("purged: %lld\n", (long long)json_integer_value(json_object_get(reply, "purged")));
		if (!ok)
			fprintf(stderr, "%s: %s\n", io->prog, reply_error(reply));
	}
	json_decref(reply);
	return ok ? DEAD_EXIT_OK : DEAD_EXIT_REFUSED;
}

int ctl_dead(const struct ctl_dead_io *io, int argc, char **argv)
{
	if (argc < 1)
		return usage(io, "dead needs list, show, retry or purge");
	const char *sub = argv[0];
	if (!strcmp(sub, "list"))
		return cmd_list(io, argc - 1, argv + 1);
	if (!strcmp(sub, "show"))
		return cmd_show(io, argc - 1, argv + 1);
	if (!strcmp(sub, "retry") || !strcmp(sub, "purge"))
		return cmd_simple(io, sub, argc - 1, argv + 1);
	fprintf(stderr, "%s: dead: unknown subcommand \"%s\"\n", io->prog, sub);
	return DEAD_EXIT_USAGE;
}
