/* streamvisorctl: the command-line client of streamvisord's control socket
 * (supervisorctl style), plus `snapshot`, which reads SQLite directly and
 * read-only. */
#include "config.h" /* generated: PACKAGE_VERSION, SV_DEFAULT_CONFIG, SV_DEFAULT_SOCKET */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "ctl_dead.h"
#include "log.h"
#include "snapdb.h"
#include "store.h"
#include "sv_config.h"
#include "util.h"

#include <sqlite3.h>

enum {
	EXIT_OK = 0,
	EXIT_REFUSED = 1,     /* the daemon said no (or another runtime error) */
	EXIT_USAGE = 2,
	EXIT_NOT_RUNNING = 3, /* status: some worker is not RUNNING */
	EXIT_NO_SNAPSHOT = 4, /* snapshot: nothing of that run persisted */
	EXIT_INCOMPLETE = 5,  /* snapshot --wait: exists, not complete */
	EXIT_UNREACHABLE = 7, /* daemon not reachable */
};

#define DEFAULT_TIMEOUT_MS 30000
#define SNAPSHOT_POLL_MS 20

static const char *prog = "streamvisorctl";

struct opts {
	const char *conf;      /* -c */
	const char *sock;      /* -s */
	bool json;
	int timeout_ms;        /* -t, or -2 = not given */
	struct sv_config *cfg; /* loaded from -c or the default file */
	const char *socket_path;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-c CONF | -s SOCKET] [--json] [-t TIMEOUT_S] COMMAND [ARGS]\n"
		"\n"
		"options:\n"
		"  -c, --config CONF     read the socket (and SQLite) path from CONF\n"
		"  -s, --socket SOCKET   the daemon's control socket\n"
		"  -j, --json            print the daemon's JSON reply\n"
		"  -t, --timeout SECS    give up waiting for a reply after SECS seconds\n"
		"  -h, --help            this help\n"
		"      --version         print the version\n"
		"\n"
		"commands:\n"
		"  status [NAME|POOL]              workers and their state (exit 3: not all RUNNING)\n"
		"  start|stop|restart NAME|POOL|all\n"
		"  pause|resume NAME|POOL|all      stop or start reading new entries\n"
		"  reload                          re-read and apply the configuration\n"
		"  scale POOL N                    resize a pool live\n"
		"  pending [--stream NAME]         streams, groups, lag and pending entries\n"
		"  events [N]                      the newest N supervisor events (state changes)\n"
		"                                  (one summary row per pattern and group)\n"
		"  dead list [STREAM] [N] [--after ID]\n"
		"                                  dead letters, newest first, N a page\n"
		"  dead show ID [--raw FILE]       one dead letter whole\n"
		"  dead retry ID|all               re-drive dead letters\n"
		"  dead purge [--older-than MS]    delete dead letters\n"
		"  snapshot RUN [--pool POOL] [--wait SECONDS]\n"
		"                                  print a run's snapshot (reads SQLite)\n"
		"  drain --yes                     destroy the consumer groups and delete the streams\n"
		"  forget RUN... --yes [--no-wait] make runs as if never seen (stored events, snapshots,\n"
		"                                  tool done keys; on every node)\n"
		"  metrics                         Prometheus text exposition\n"
		"  shutdown                        stop the daemon gracefully\n"
		"\n"
		"exit: 0 ok, 1 the daemon said no, 2 usage, 3 not all RUNNING,\n"
		"      4 no snapshot, 5 snapshot not complete, 7 daemon not reachable\n",
		prog);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fprintf(stderr,
		"usage: %s [-c CONF | -s SOCKET] [--json] [-t TIMEOUT_S] COMMAND [ARGS]\n"
		"Try '%s --help' for the list of commands.\n",
		prog, prog);
	return EXIT_USAGE;
}

static bool parse_uint(const char *s, long long *out)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	if (out)
		*out = v;
	return true;
}

static bool parse_seconds(const char *s, double *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0 || v > 86400.0 * 365)
		return false;
	*out = v;
	return true;
}

/* ---- formatting ----------------------------------------------------- */

static void fmt_duration(char *b, size_t n, long long ms)
{
	if (ms < 0) {
		snprintf(b, n, "-");
	} else if (ms < 1000) {
		snprintf(b, n, "%lldms", ms);
	} else if (ms < 10000) {
		snprintf(b, n, "%lld.%llds", ms / 1000, (ms % 1000) / 100);
	} else if (ms < 60000) {
		snprintf(b, n, "%llds", ms / 1000);
	} else {
		long long s = ms / 1000;
		if (s < 3600)
			snprintf(b, n, "%lldm%02llds", s / 60, s % 60);
		else if (s < 86400)
			snprintf(b, n, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
		else
			snprintf(b, n, "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
	}
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(EXIT_REFUSED);
	}
	return d;
}

/* A cell's text: strings as they are (control characters shown as '?'),
 * numbers, booleans, compact JSON for the rest, "-" for null/missing. */
static char *cell(const json_t *v)
{
	char buf[64];
	const char *s = NULL;
	char *dyn = NULL;
	if (!v)
		return xstrdup("-");
	switch (json_typeof(v)) {
	case JSON_STRING:
		s = json_string_length(v) ? json_string_value(v) : "-";
		break;
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		s = buf;
		break;
	case JSON_REAL:
		snprintf(buf, sizeof(buf), "%g", json_real_value(v));
		s = buf;
		break;
	case JSON_TRUE:
		s = "true";
		break;
	case JSON_FALSE:
		s = "false";
		break;
	case JSON_OBJECT:
	case JSON_ARRAY:
		dyn = json_dumps(v, JSON_COMPACT);
		s = dyn ? dyn : "?";
		break;
	default:
		s = "-";
	}
	char *out = strdup(s);
	free(dyn);
	if (!out) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(EXIT_REFUSED);
	}
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return out;
}

/* Display width of a UTF-8 string (code points; good enough for names). */
static size_t text_width(const char *s)
{
	size_t w = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p & 0xc0) != 0x80)
			w++;
	return w;
}

struct table {
	size_t ncols, nrows;
	char **cells; /* (nrows + 1) * ncols, row 0 = header */
};

static void table_init(struct table *t, size_t ncols, size_t nrows)
{
	t->ncols = ncols;
	t->nrows = nrows;
	t->cells = calloc((nrows + 1) * ncols, sizeof(char *));
	if (!t->cells) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(EXIT_REFUSED);
	}
}

static void table_set(struct table *t, size_t row, size_t col, char *text)
{
	t->cells[row * t->ncols + col] = text;
}

static void table_print(struct table *t, const char *indent)
{
	size_t *w = calloc(t->ncols, sizeof(size_t));
	if (!w)
		exit(EXIT_REFUSED);
	for (size_t r = 0; r <= t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			size_t l = text_width(s ? s : "-");
			if (l > w[c])
				w[c] = l;
		}
	for (size_t r = 0; r <= t->nrows; r++) {
		fputs(indent, stdout);
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			if (!s)
				s = "-";
			fputs(s, stdout);
			if (c + 1 < t->ncols) {
				for (size_t k = text_width(s); k < w[c] + 2; k++)
					fputc(' ', stdout);
			}
		}
		fputc('\n', stdout);
	}
	free(w);
	for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

static char *duration_cell(const json_t *v)
{
	if (!json_is_number(v))
		return xstrdup("-");
	char b[32];
	fmt_duration(b, sizeof(b), (long long)json_number_value(v));
	return xstrdup(b);
}

static char *pid_cell(const json_t *v)
{
	if (json_is_integer(v) && json_integer_value(v) > 0)
		return cell(v);
	return xstrdup("-");
}

static char *last_exit_cell(const json_t *w)
{
	const json_t *ex = json_object_get(w, "last_exit");
	const json_t *er = json_object_get(w, "last_error");
	char a[64] = "";
	if (json_is_integer(ex)) {
		json_int_t v = json_integer_value(ex);
		if (v < 0)
			snprintf(a, sizeof(a), "signal %" JSON_INTEGER_FORMAT, -v);
		else
			snprintf(a, sizeof(a), "exit %" JSON_INTEGER_FORMAT, v);
	} else if (json_is_string(ex) && json_string_length(ex)) {
		snprintf(a, sizeof(a), "%s", json_string_value(ex));
	}
	const char *e = json_is_string(er) && json_string_length(er) ? json_string_value(er) : "";
	if (!*a && !*e)
		return xstrdup("-");
	size_t n = strlen(a) + strlen(e) + 3;
	char *s = malloc(n);
	if (!s)
		exit(EXIT_REFUSED);
	snprintf(s, n, "%s%s%s", a, *a && *e ? ": " : "", e);
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return s;
}

static void print_json_line(const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if (s) {
		puts(s);
		free(s);
	}
}

static void print_reply_error(const json_t *reply)
{
	fflush(stdout);
	const char *e = json_string_value(json_object_get(reply, "error"));
	fprintf(stderr, "%s: %s\n", prog, e ? e : "the daemon refused the request");
}

/* ---- talking to the daemon ------------------------------------------ */

/* Send req (stolen) and return the reply, or exit with the right code. */
static json_t *call_daemon(const struct opts *o, json_t *req, int default_timeout_ms)
{
	int fd = control_connect(o->socket_path);
	if (fd < 0) {
		int err = -fd;
		if (err == EACCES || err == EPERM)
			fprintf(stderr, "%s: cannot connect to %s: permission denied (%s)\n", prog,
				o->socket_path, strerror(err));
		else
			fprintf(stderr, "%s: cannot connect to %s: the daemon is not running (%s)\n",
				prog, o->socket_path, strerror(err));
		json_decref(req);
		exit(EXIT_UNREACHABLE);
	}
	int timeout = o->timeout_ms != -2 ? o->timeout_ms : default_timeout_ms;
	json_t *reply = NULL;
	int r = control_call(fd, req, &reply, timeout);
	close(fd);
	json_decref(req);
	if (r == -ETIMEDOUT) {
		fprintf(stderr, "%s: no reply from the daemon on %s within %.1f s\n", prog,
			o->socket_path, timeout / 1000.0);
		exit(EXIT_REFUSED);
	}
	if (r == -EBADMSG) {
		fprintf(stderr, "%s: invalid reply from the daemon on %s\n", prog, o->socket_path);
		exit(EXIT_REFUSED);
	}
	if (r < 0) {
		fprintf(stderr, "%s: lost the connection to the daemon on %s (%s)\n", prog,
			o->socket_path, strerror(-r));
		exit(EXIT_UNREACHABLE);
	}
	return reply;
}

static json_t *make_request(const char *cmd, char **args, int nargs)
{
	json_t *a = json_array();
	for (int i = 0; a && i < nargs; i++) {
		if (json_array_append_new(a, json_string(args[i])) < 0) {
			fprintf(stderr, "%s: argument %d is not valid UTF-8\n", prog, i + 1);
			exit(EXIT_USAGE);
		}
	}
	json_t *req = a ? json_pack("{s:s,s:o}", "cmd", cmd, "args", a) : NULL;
	if (!req) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(EXIT_REFUSED);
	}
	return req;
}

static bool reply_ok(const json_t *reply) { return json_is_true(json_object_get(reply, "ok")); }

/* ctl_dead's way to the daemon. */
static json_t *dead_call(void *ctx, json_t *req) { return call_daemon(ctx, req, DEFAULT_TIMEOUT_MS); }

/* ---- commands ------------------------------------------------------- */

static const char *const status_cols[] = {
	"NAME", "STATE", "PID", "UPTIME", "BEAT", "STATUS", "PROCESSED",
	"FAILED", "RESTARTS", "PENDING", "HEALTH", "LAST EXIT/ERROR",
};
/* Inserted after PENDING when some pool reads a pattern. */
static const char *const status_set_cols[] = {"STREAMS", "ACTIVE"};
#define STATUS_SET_AT 10

/* The pools reading a pattern, from status's "patterns" rows. */
static json_t *pattern_pools(const json_t *reply)
{
	json_t *pools = json_object();
	if (!pools)
		exit(EXIT_REFUSED);
	size_t i, j;
	json_t *r, *p;
	json_array_foreach(json_object_get(reply, "patterns"), i, r) {
		json_array_foreach(json_object_get(r, "pools"), j, p) {
			if (json_is_string(p))
				json_object_set_new(pools, json_string_value(p), json_true());
		}
	}
	return pools;
}

/* One summary row per pattern and group; the figures' age says how fresh
 * they are (the daemon walks the streams at a bounded rate). */
static void show_patterns(const json_t *rows)
{
	static const char *const cols[] = {"PATTERN", "GROUP", "STREAMS", "ACTIVE", "LAG", "PENDING",
					   "OLDEST PENDING", "AGE"};
	struct table t;
	size_t i;
	json_t *r;
	printf("patterns:\n");
	table_init(&t, ARRAY_SIZE(cols), json_array_size(rows));
	for (size_t c = 0; c < ARRAY_SIZE(cols); c++)
		table_set(&t, 0, c, xstrdup(cols[c]));
	json_array_foreach(rows, i, r) {
		size_t row = i + 1, c = 0;
		json_t *oldest = json_object_get(r, "oldest_pending_idle_ms");
		table_set(&t, row, c++, cell(json_object_get(r, "pattern")));
		table_set(&t, row, c++, cell(json_object_get(r, "group")));
		table_set(&t, row, c++, cell(json_object_get(r, "matched")));
		table_set(&t, row, c++, cell(json_object_get(r, "active")));
		table_set(&t, row, c++, cell(json_object_get(r, "lag")));
		table_set(&t, row, c++, cell(json_object_get(r, "pending")));
		table_set(&t, row, c++, json_integer_value(oldest) > 0 ? duration_cell(oldest) : xstrdup("-"));
		table_set(&t, row, c++, duration_cell(json_object_get(r, "age_ms")));
	}
	table_print(&t, "  ");
}

/* A persistent tool's handler, on a line of its own under its worker:
 * "  handler TOOL", its state, pid, STATUS "draining" while an old process
 * drains, PROCESSED the calls it answered, RESTARTS, PENDING the calls in
 * flight, and its last error. */
static void handler_row(struct table *t, size_t r, size_t ncols, const json_t *hd)
{
	char *tool = cell(json_object_get(hd, "tool")); /* control characters shown as '?' */
	size_t len = strlen(tool) + 16;
	char *name = malloc(len);
	if (!name) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(EXIT_REFUSED);
	}
	snprintf(name, len, "  handler %s", tool);
	free(tool);
	size_t c = 0;
	table_set(t, r, c++, name);
	table_set(t, r, c++, cell(json_object_get(hd, "state")));
	table_set(t, r, c++, pid_cell(json_object_get(hd, "pid")));
	table_set(t, r, c++, xstrdup("-"));
	table_set(t, r, c++, xstrdup("-"));
	table_set(t, r, c++, xstrdup(json_is_true(json_object_get(hd, "draining")) ? "draining" : "-"));
	table_set(t, r, c++, cell(json_object_get(hd, "served")));
	table_set(t, r, c++, xstrdup("-"));
	table_set(t, r, c++, cell(json_object_get(hd, "restarts")));
	table_set(t, r, c++, cell(json_object_get(hd, "inflight")));
	while (c + 2 < ncols)
		table_set(t, r, c++, xstrdup("-")); /* STREAMS, ACTIVE */
	table_set(t, r, c++, xstrdup("-"));
	const json_t *le = json_object_get(hd, "last_error");
	table_set(t, r, c++, json_is_string(le) ? cell(le) : xstrdup(""));
}

/* The workers' table: STREAMS and ACTIVE only when a pool reads a
 * pattern (a literal-only configuration keeps its columns), and then
 * "-" for the workers of the other pools. */
static void show_workers(const json_t *reply)
{
	json_t *workers = json_object_get(reply, "workers");
	json_t *ppools = pattern_pools(reply);
	size_t nsets = json_object_size(ppools) ? ARRAY_SIZE(status_set_cols) : 0;
	size_t ncols = ARRAY_SIZE(status_cols) + nsets;
	struct table t;
	size_t i;
	json_t *w;
	size_t rows = json_array_size(workers);
	json_array_foreach(workers, i, w) rows += json_array_size(json_object_get(w, "handlers"));
	table_init(&t, ncols, rows);
	for (size_t c = 0, k = 0; c < ARRAY_SIZE(status_cols); c++) {
		if (c == STATUS_SET_AT)
			for (size_t j = 0; j < nsets; j++)
				table_set(&t, 0, k++, xstrdup(status_set_cols[j]));
		table_set(&t, 0, k++, xstrdup(status_cols[c]));
	}
	size_t r = 0;
	json_array_foreach(workers, i, w) {
		size_t c = 0;
		r++;
		table_set(&t, r, c++, cell(json_object_get(w, "name")));
		table_set(&t, r, c++, cell(json_object_get(w, "state")));
		table_set(&t, r, c++, pid_cell(json_object_get(w, "pid")));
		table_set(&t, r, c++, duration_cell(json_object_get(w, "uptime_ms")));
		table_set(&t, r, c++, duration_cell(json_object_get(w, "beat_age_ms")));
		table_set(&t, r, c++, cell(json_object_get(w, "status")));
		table_set(&t, r, c++, cell(json_object_get(w, "processed")));
		table_set(&t, r, c++, cell(json_object_get(w, "failed")));
		table_set(&t, r, c++, cell(json_object_get(w, "restarts")));
		table_set(&t, r, c++, cell(json_object_get(w, "pending")));
		if (nsets) {
			const char *pool = json_string_value(json_object_get(w, "pool"));
			bool reads = pool && json_object_get(ppools, pool);
			table_set(&t, r, c++, reads ? cell(json_object_get(w, "streams")) : xstrdup("-"));
			table_set(&t, r, c++, reads ? cell(json_object_get(w, "active")) : xstrdup("-"));
		}
		table_set(&t, r, c++, cell(json_object_get(w, "health")));
		table_set(&t, r, c++, last_exit_cell(w));
		size_t j;
		json_t *hd;
		json_array_foreach(json_object_get(w, "handlers"), j, hd)
			handler_row(&t, ++r, ncols, hd);
	}
	table_print(&t, "");
	json_decref(ppools);
}

/* The tool calls the workers have in hand, one row each: who runs what
 * for which run (the heartbeat's bounded list, "+N more" past it). */
static void show_calls(const json_t *workers)
{
	static const char *const cols[] = {"WORKER", "CALL", "TOOL", "RUN", "CALL_ID", "ENTRY"};
	size_t rows = 0, i, j;
	json_t *w, *k;
	json_array_foreach(workers, i, w) rows += json_array_size(json_object_get(w, "calls")) +
						   (json_integer_value(json_object_get(w, "calls_more")) > 0);
	if (!rows)
		return;
	struct table t;
	table_init(&t, ARRAY_SIZE(cols), rows);
	for (size_t c = 0; c < ARRAY_SIZE(cols); c++)
		table_set(&t, 0, c, xstrdup(cols[c]));
	size_t r = 1;
	json_array_foreach(workers, i, w) {
		json_array_foreach(json_object_get(w, "calls"), j, k) {
			table_set(&t, r, 0, cell(json_object_get(w, "name")));
			table_set(&t, r, 1, cell(json_object_get(k, "state")));
			table_set(&t, r, 2, cell(json_object_get(k, "tool")));
			table_set(&t, r, 3, cell(json_object_get(k, "run")));
			table_set(&t, r, 4, cell(json_object_get(k, "call_id")));
			table_set(&t, r++, 5, cell(json_object_get(k, "entry")));
		}
		json_int_t more = json_integer_value(json_object_get(w, "calls_more"));
		if (more > 0) {
			char buf[64];
			snprintf(buf, sizeof(buf), "+%" JSON_INTEGER_FORMAT " more", more);
			table_set(&t, r, 0, cell(json_object_get(w, "name")));
			table_set(&t, r, 1, xstrdup("waiting"));
			table_set(&t, r, 2, xstrdup(buf));
			for (size_t c = 3; c < ARRAY_SIZE(cols); c++)
				table_set(&t, r, c, xstrdup("-"));
			r++;
		}
	}
	printf("tool calls:\n");
	table_print(&t, "  ");
}

/* The web child: where it listens, its pid (0 while it restarts). */
static void show_web(const json_t *web)
{
	if (!json_is_object(web))
		return;
	const char *listen = json_string_value(json_object_get(web, "listen"));
	const char *mlisten = json_string_value(json_object_get(web, "metrics_listen"));
	json_int_t pid = json_integer_value(json_object_get(web, "pid"));
	json_int_t restarts = json_integer_value(json_object_get(web, "restarts"));
	printf("web: ");
	if (listen && *listen)
		printf("console on %s%s", listen, json_is_true(json_object_get(web, "token")) ? "" : " (no token)");
	if (mlisten && *mlisten)
		printf("%smetrics on %s", listen && *listen ? ", " : "", mlisten);
	if (pid > 0)
		printf(", pid %lld, %lld restarts\n", (long long)pid, (long long)restarts);
	else
		printf(", not running (%lld restarts)\n", (long long)restarts);
}

static int show_status(const struct opts *o, json_t *reply)
{
	json_t *workers = json_object_get(reply, "workers");
	int code = EXIT_OK;
	size_t i;
	json_t *w;
	json_array_foreach(workers, i, w) {
		const char *st = json_string_value(json_object_get(w, "state"));
		if (!st || strcmp(st, "RUNNING") != 0)
			code = EXIT_NOT_RUNNING;
	}
	if (!reply_ok(reply)) {
		if (o->json)
			print_json_line(reply);
		else
			print_reply_error(reply);
		return EXIT_REFUSED;
	}
	if (o->json) {
		print_json_line(reply);
		return code;
	}
	show_workers(reply);
	show_calls(workers);
	json_t *patterns = json_object_get(reply, "patterns");
	if (json_array_size(patterns) > 0)
		show_patterns(patterns);
	show_web(json_object_get(reply, "web"));
	struct table t;
	json_t *remote = json_object_get(reply, "remote");
	if (json_array_size(remote) > 0) {
		static const char *const rcols[] = {"NAME", "NODE", "POOL", "STATUS", "BEAT", "STALE"};
		printf("remote:\n");
		table_init(&t, ARRAY_SIZE(rcols), json_array_size(remote));
		for (size_t c = 0; c < ARRAY_SIZE(rcols); c++)
			table_set(&t, 0, c, xstrdup(rcols[c]));
		json_array_foreach(remote, i, w) {
			size_t r = i + 1;
			table_set(&t, r, 0, cell(json_object_get(w, "name")));
			table_set(&t, r, 1, cell(json_object_get(w, "node")));
			table_set(&t, r, 2, cell(json_object_get(w, "pool")));
			table_set(&t, r, 3, cell(json_object_get(w, "status")));
			table_set(&t, r, 4, duration_cell(json_object_get(w, "beat_age_ms")));
			json_t *stale = json_object_get(w, "stale");
			table_set(&t, r, 5, xstrdup(json_is_true(stale) ? "stale" : "-"));
		}
		table_print(&t, "");
	}
	return code;
}

static int show_results(const struct opts *o, json_t *reply, bool pause_cmd)
{
	if (o->json) {
		print_json_line(reply);
		return reply_ok(reply) ? EXIT_OK : EXIT_REFUSED;
	}
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(reply, "results"), i, r) {
		char *name = cell(json_object_get(r, "name"));
		char *what;
		if (pause_cmd) {
			json_t *p = json_object_get(r, "paused");
			what = xstrdup(json_is_boolean(p) ? (json_is_true(p) ? "paused" : "resumed")
							  : "-");
		} else {
			what = cell(json_object_get(r, "state"));
		}
		const char *err = json_string_value(json_object_get(r, "error"));
		if (err && *err)
			printf("%s: %s (%s)\n", name, what, err);
		else
			printf("%s: %s\n", name, what);
		free(name);
		free(what);
	}
	if (!reply_ok(reply)) {
		print_reply_error(reply);
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

static int show_reload(const struct opts *o, json_t *reply)
{
	if (o->json) {
		print_json_line(reply);
		return reply_ok(reply) ? EXIT_OK : EXIT_REFUSED;
	}
	size_t i;
	json_t *v;
	if (!reply_ok(reply)) {
		print_reply_error(reply);
		json_array_foreach(json_object_get(reply, "errors"), i, v) {
			if (json_is_string(v))
				fprintf(stderr, "%s\n", json_string_value(v));
		}
		return EXIT_REFUSED;
	}
	json_t *changes = json_object_get(reply, "changes");
	if (json_array_size(changes) == 0) {
		printf("reloaded (no changes)\n");
		return EXIT_OK;
	}
	printf("reloaded\n");
	json_array_foreach(changes, i, v) {
		char *s = cell(v);
		printf("  %s\n", s);
		free(s);
	}
	return EXIT_OK;
}

static bool is_object_array(const json_t *a)
{
	if (!json_is_array(a) || json_array_size(a) == 0)
		return false;
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) {
		if (!json_is_object(v))
			return false;
	}
	return true;
}

static char *upper(const char *s)
{
	char *u = xstrdup(s);
	for (char *p = u; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	return u;
}

/* An array of objects as a table whose columns are the union of their
 * keys, in order of first appearance. */
static void print_object_table(const json_t *arr, const char *indent)
{
	json_t *cols = json_array();
	if (!cols)
		exit(EXIT_REFUSED);
	size_t i;
	json_t *row;
	json_array_foreach(arr, i, row) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)row, k, v) {
			bool seen = false;
			size_t j;
			json_t *c;
			json_array_foreach(cols, j, c) {
				if (!strcmp(json_string_value(c), k)) {
					seen = true;
					break;
				}
			}
			if (!seen)
				json_array_append_new(cols, json_string(k));
		}
	}
	struct table t;
	size_t nc = json_array_size(cols);
	table_init(&t, nc ? nc : 1, json_array_size(arr));
	if (!nc)
		table_set(&t, 0, 0, xstrdup("-"));
	for (size_t c = 0; c < nc; c++)
		table_set(&t, 0, c, upper(json_string_value(json_array_get(cols, c))));
	json_array_foreach(arr, i, row) {
		for (size_t c = 0; c < nc; c++)
			table_set(&t, i + 1, c,
				  cell(json_object_get(row, json_string_value(json_array_get(cols, c)))));
	}
	table_print(&t, indent);
	json_decref(cols);
}

/* Generic human output: tables for arrays of objects, "key: value" for
 * the rest. */
/* events: one line per supervisor event, newest first: its id, then the
 * fields as KEY=VALUE (control characters shown as '?'). */
static int show_events(const struct opts *o, json_t *reply)
{
	if (o->json || !reply_ok(reply)) {
		if (o->json)
			print_json_line(reply);
		else
			print_reply_error(reply);
		return reply_ok(reply) ? EXIT_OK : EXIT_REFUSED;
	}
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(reply, "events"), i, e) {
		char *id = cell(json_object_get(e, "id"));
		printf("%s", id);
		free(id);
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(e, "fields"), k, v) {
			json_t *jk = json_string(k);
			char *key = cell(jk), *val = cell(v);
			json_decref(jk);
			printf(" %s=%s", key, val);
			free(key);
			free(val);
		}
		putchar('\n');
	}
	return EXIT_OK;
}

static int show_generic(const struct opts *o, json_t *reply, const char *done)
{
	if (o->json) {
		print_json_line(reply);
		return reply_ok(reply) ? EXIT_OK : EXIT_REFUSED;
	}
	if (!reply_ok(reply)) {
		print_reply_error(reply);
		return EXIT_REFUSED;
	}
	size_t nkeys = json_object_size(reply) - (json_object_get(reply, "ok") ? 1 : 0);
	bool printed = false;
	const char *k;
	json_t *v;
	json_object_foreach(reply, k, v) {
		if (!strcmp(k, "ok"))
			continue;
		printed = true;
		if (is_object_array(v)) {
			if (nkeys > 1) {
				printf("%s:\n", k);
				print_object_table(v, "  ");
			} else {
				print_object_table(v, "");
			}
		} else if (json_is_array(v)) {
			if (json_array_size(v) == 0) {
				printf("%s: (none)\n", k);
				continue;
			}
			printf("%s:\n", k);
			size_t i;
			json_t *e;
			json_array_foreach(v, i, e) {
				char *s = cell(e);
				printf("  %s\n", s);
				free(s);
			}
		} else if (json_is_object(v)) {
			printf("%s:\n", k);
			const char *k2;
			json_t *v2;
			json_object_foreach(v, k2, v2) {
				char *s = cell(v2);
				printf("  %s: %s\n", k2, s);
				free(s);
			}
		} else {
			char *s = cell(v);
			printf("%s: %s\n", k, s);
			free(s);
		}
	}
	if (!printed)
		printf("%s\n", done);
	return EXIT_OK;
}

static int show_metrics(const struct opts *o, json_t *reply)
{
	if (o->json || !reply_ok(reply))
		return show_generic(o, reply, "ok");
	const char *text = json_string_value(json_object_get(reply, "text"));
	if (text) {
		fputs(text, stdout);
		size_t n = strlen(text);
		if (n && text[n - 1] != '\n')
			fputc('\n', stdout);
	}
	return EXIT_OK;
}

static int show_scale(const struct opts *o, json_t *reply)
{
	if (o->json || !reply_ok(reply))
		return show_generic(o, reply, "ok");
	char *p = cell(json_object_get(reply, "pool"));
	char *n = cell(json_object_get(reply, "count"));
	printf("%s: %s workers\n", p, n);
	free(p);
	free(n);
	return EXIT_OK;
}

/* ---- snapshot ------------------------------------------------------- */

/* The files a run may be in, and the lookup itself: snapdb.h (shared with
 * the web child). */

static void snap_dbs_add(struct snapdbs *l, const char *pool, const char *path, int busy_ms,
			 enum reducer_kind reducer)
{
	if (snapdb_add(l, pool, path, busy_ms, reducer) < 0) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(EXIT_REFUSED);
	}
}

/* With a configuration: every persistence pool's file. */
static void snap_sources_from_config(const struct sv_config *cfg, struct snapdbs *l)
{
	int busy_ms = 5000;
	if (cfg->sqlite.busy_timeout_ms > 0 && cfg->sqlite.busy_timeout_ms < busy_ms)
		busy_ms = (int)cfg->sqlite.busy_timeout_ms;
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct pool_config *p = &cfg->pools[i];
		if (p->kind == POOL_PERSISTENCE && p->sqlite_path)
			snap_dbs_add(l, p->name, p->sqlite_path, busy_ms, p->reducer);
	}
	if (l->n == 0)
		snap_dbs_add(l, NULL, cfg->sqlite.path, busy_ms, REDUCER_RESPONSE);
}

/* With only a socket: the daemon names the files ("pools" of its config
 * reply; a daemon without it names sqlite_path alone). */
static int snap_sources_from_daemon(const struct opts *o, struct snapdbs *l)
{
	json_t *reply = call_daemon(o, make_request("config", NULL, 0), DEFAULT_TIMEOUT_MS);
	if (!reply_ok(reply)) {
		print_reply_error(reply);
		json_decref(reply);
		return -EPROTO;
	}
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(reply, "pools"), i, p) {
		const char *name = json_string_value(json_object_get(p, "name"));
		const char *path = json_string_value(json_object_get(p, "sqlite_path"));
		if (name && path && *path)
			snap_dbs_add(l, name, path, 5000, REDUCER_RESPONSE);
	}
	const char *global = json_string_value(json_object_get(reply, "sqlite_path"));
	if (l->n == 0 && global && *global)
		snap_dbs_add(l, NULL, global, 5000, REDUCER_RESPONSE);
	json_decref(reply);
	if (l->n == 0) {
		fprintf(stderr, "%s: the daemon did not name its SQLite database\n", prog);
		return -EPROTO;
	}
	return 0;
}

/* --pool NAME: keep that pool's file alone. */
static int snap_select_pool(struct snapdbs *l, const char *pool)
{
	int r = snapdb_select_pool(l, pool);
	if (r == -ENOENT) {
		fprintf(stderr, "%s: snapshot: no persistence pool \"%s\"; the pools are:", prog, pool);
		for (size_t i = 0; i < l->n; i++)
			fprintf(stderr, " %s", snapdb_name(&l->v[i]));
		fputc('\n', stderr);
	} else if (r < 0) {
		fprintf(stderr, "%s: out of memory\n", prog);
	}
	return r;
}

/* Several files hold the run: which one is meant is the user's call. */
static int snap_ambiguous(const struct snapdbs *l, const char *run)
{
	fflush(stdout);
	fprintf(stderr, "%s: run %s is stored by several pools; choose one with --pool:\n", prog, run);
	for (size_t i = 0; i < l->n; i++) {
		if (!l->v[i].body)
			continue;
		char red[128];
		snapdb_reducer(&l->v[i], red, sizeof(red));
		fprintf(stderr, "  %s\t%s (%s)\n", snapdb_name(&l->v[i]), l->v[i].path, red);
	}
	return EXIT_USAGE;
}

static void print_snapshot(const struct opts *o, const char *body)
{
	json_t *j = json_loads(body, JSON_ALLOW_NUL, NULL);
	char *s = j ? json_dumps(j, o->json ? JSON_COMPACT : JSON_INDENT(2)) : NULL;
	puts(s ? s : body);
	free(s);
	json_decref(j);
}

/* The deadline passed: what there is, and why it is not enough. */
static int snap_timed_out(const struct opts *o, const char *run, const struct snapdb *hit, double wait_s)
{
	if (!hit) {
		fprintf(stderr, "%s: never arrived: nothing of run %s was persisted within %g s\n", prog, run,
			wait_s);
		return EXIT_NO_SNAPSHOT;
	}
	print_snapshot(o, hit->body);
	fflush(stdout);
	json_t *j = json_loads(hit->body, JSON_ALLOW_NUL, NULL);
	const char *st = json_string_value(json_object_get(j, "status"));
	fprintf(stderr, "%s: not yet: the snapshot of run %s is not complete (status %s) after %g s\n", prog,
		run, st ? st : "unknown", wait_s);
	json_decref(j);
	return EXIT_INCOMPLETE;
}

struct snap_args {
	const char *run;
	const char *pool; /* --pool, or NULL */
	bool wait;
	double wait_s;
};

static int snap_lookup(const struct opts *o, struct snapdbs *l, const struct snap_args *a)
{
	int64_t deadline = util_mono_ms() + (int64_t)llround(a->wait_s * 1000.0);
	char err[512] = "";
	for (;;) {
		struct snapdb *hit;
		bool unsure;
		int n = snapdb_find(l, a->run, &hit, &unsure, err, sizeof(err));
		if (n < 0 || (unsure && !a->wait)) {
			fprintf(stderr, "%s: %s\n", prog, err);
			return EXIT_REFUSED;
		}
		if (n > 1)
			return snap_ambiguous(l, a->run);
		bool late = util_mono_ms() >= deadline;
		/* A busy file may hold the run too: wait for it to answer. */
		if (n == 1 && (!a->wait || hit->complete) && (!unsure || late)) {
			print_snapshot(o, hit->body);
			return EXIT_OK;
		}
		if (!a->wait) {
			fprintf(stderr, "%s: nothing of run %s was persisted\n", prog, a->run);
			return EXIT_NO_SNAPSHOT;
		}
		if (late)
			return snap_timed_out(o, a->run, hit, a->wait_s);
		int64_t left = deadline - util_mono_ms();
		util_sleep_ms(left < SNAPSHOT_POLL_MS ? (left > 0 ? left : 0) : SNAPSHOT_POLL_MS, NULL);
	}
}

static int cmd_snapshot(const struct opts *o, const struct snap_args *a)
{
	struct snapdbs l = {0};
	int code = EXIT_REFUSED;
	if (o->cfg)
		snap_sources_from_config(o->cfg, &l);
	else if (snap_sources_from_daemon(o, &l) < 0)
		goto out;
	code = EXIT_USAGE;
	if (a->pool && snap_select_pool(&l, a->pool) < 0)
		goto out;
	code = snap_lookup(o, &l, a);
out:
	snapdbs_free(&l);
	return code;
}

/* ---- forget ---------------------------------------------------------- */

#define FORGET_WAIT_S 10.0
#define FORGET_USAGE "usage: forget RUN... --yes [--no-wait]"

struct forget_args {
	bool yes, no_wait;
	int nruns;
};

/* forget RUN... --yes [--no-wait]; the options are taken out of argv
 * (*argc shrinks), so only the runs and --yes go to the daemon. */
static int parse_forget_args(int *argc, char **argv, struct forget_args *a)
{
	int n = 0;
	for (int i = 0; i < *argc; i++) {
		if (strcmp(argv[i], "--no-wait") == 0) {
			a->no_wait = true;
			continue;
		}
		if (strcmp(argv[i], "--yes") == 0)
			a->yes = true;
		else if (argv[i][0] == '\0')
			return usage_error("forget: a run id cannot be empty");
		else
			a->nruns++;
		argv[n++] = argv[i];
	}
	*argc = n;
	if (!a->nruns)
		return usage_error(FORGET_USAGE);
	if (!a->yes)
		return usage_error("forget deletes the runs' stored events and snapshots on every node and "
				   "their tool done keys; confirm with \"forget RUN... --yes\"");
	return 0;
}

static bool parse_entry_id(const char *s, uint64_t *ms, uint64_t *seq)
{
	char tail;
	return s && sscanf(s, "%" SCNu64 "-%" SCNu64 "%c", ms, seq, &tail) == 2;
}

/* Has the file applied the NS:forget entry ms-seq (meta forget_last)?  A
 * file not there yet holds nothing to forget. */
static bool forget_applied(struct snapdb *s, uint64_t ms, uint64_t seq)
{
	if (access(s->path, F_OK) < 0 && errno == ENOENT)
		return true;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bool done = false;
	if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(db, s->busy_ms);
		/* no meta table (an older schema): the workers migrate it at start */
		if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = '" STORE_META_FORGET_LAST "'", -1,
				       &st, NULL) == SQLITE_OK) {
			uint64_t lms, lseq;
			done = sqlite3_step(st) == SQLITE_ROW &&
			       parse_entry_id((const char *)sqlite3_column_text(st, 0), &lms, &lseq) &&
			       (lms > ms || (lms == ms && lseq >= seq));
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return done;
}

/* Wait until this node's persistence files applied the forget (its
 * NS:forget entry), so a snapshot read next no longer shows the old
 * run.  Other nodes' files apply it on their own. */
static void forget_wait(const struct opts *o, const char *entry)
{
	uint64_t ms, seq;
	struct snapdbs l = {0};
	if (!parse_entry_id(entry, &ms, &seq))
		return;
	if (o->cfg)
		snap_sources_from_config(o->cfg, &l);
	else if (snap_sources_from_daemon(o, &l) < 0)
		return;
	int64_t deadline = util_mono_ms() + (int64_t)(FORGET_WAIT_S * 1000);
	for (size_t i = 0; i < l.n; i++) {
		while (!forget_applied(&l.v[i], ms, seq) && util_mono_ms() < deadline)
			poll(NULL, 0, 50);
		if (!forget_applied(&l.v[i], ms, seq))
			fprintf(stderr,
				"%s: forget: %s (%s) has not applied it yet (workers paused or down?); its "
				"workers apply it before their next batch\n",
				prog, l.v[i].path, snapdb_name(&l.v[i]));
	}
	snapdbs_free(&l);
}

static int show_forget(const struct opts *o, json_t *reply, const struct forget_args *a)
{
	if (reply_ok(reply) && !a->no_wait)
		forget_wait(o, json_string_value(json_object_get(reply, "entry")));
	if (o->json || !reply_ok(reply))
		return show_generic(o, reply, "ok");
	json_t *runs = json_object_get(reply, "forgotten");
	const char *pos = json_string_value(json_object_get(reply, "position"));
	printf("forgot %zu run%s at position %s\n", json_array_size(runs), json_array_size(runs) == 1 ? "" : "s",
	       pos ? pos : "?");
	return EXIT_OK;
}

/* ---- main ----------------------------------------------------------- */

/* The client load: the socket and SQLite paths without the daemon's
 * secrets, so any control.group member can run us. */
static int load_config(struct opts *o, const char *path)
{
	struct config_errors errs = {0};
	int r = config_load_client(path, &o->cfg, &errs);
	if (r < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.v[i]);
		if (errs.n == 0)
			fprintf(stderr, "%s: cannot load %s: %s\n", prog, path, strerror(-r));
		config_errors_free(&errs);
		o->cfg = NULL;
		return r;
	}
	config_errors_free(&errs);
	return 0;
}

static bool is_cmd(const char *c, const char *const *names)
{
	for (; *names; names++)
		if (!strcmp(c, *names))
			return true;
	return false;
}

#define SNAPSHOT_USAGE "usage: snapshot RUN [--pool POOL] [--wait SECONDS]"

/* OPT VALUE or OPT=VALUE at argv[*i]: the value (advancing *i past a
 * separate one), NULL when argv[*i] is not OPT; *missing when OPT has no
 * value. */
static const char *option_value(int argc, char **argv, int *i, const char *opt, bool *missing)
{
	size_t n = strlen(opt);
	*missing = false;
	if (strncmp(argv[*i], opt, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

static int snapshot_usage(const char *why)
{
	usage_error("%s", why);
	return -EINVAL;
}

/* snapshot's arguments: RUN, --wait SECONDS, --pool POOL in any order.
 * Returns 0, or -EINVAL after telling why. */
static int parse_snapshot_args(int argc, char **argv, struct snap_args *a)
{
	for (int i = 0; i < argc; i++) {
		bool missing;
		const char *v;
		if ((v = option_value(argc, argv, &i, "--wait", &missing)) || missing) {
			if (!v || !parse_seconds(v, &a->wait_s))
				return snapshot_usage("snapshot: --wait needs SECONDS");
			a->wait = true;
		} else if ((v = option_value(argc, argv, &i, "--pool", &missing)) || missing) {
			if (!v || !*v)
				return snapshot_usage("snapshot: --pool needs the name of a persistence pool");
			a->pool = v;
		} else if (!a->run && (argv[i][0] != '-' || !argv[i][1])) {
			a->run = argv[i];
		} else if (!a->run && !strcmp(argv[i], "--") && i + 1 < argc) {
			a->run = argv[++i];
		} else {
			return snapshot_usage(SNAPSHOT_USAGE);
		}
	}
	if (!a->run || !*a->run)
		return snapshot_usage(SNAPSHOT_USAGE);
	return 0;
}

static int run(struct opts *o, const char *cmd, int argc, char **argv)
{
	char *split_args[3]; /* "--opt=VALUE" as two words */
	struct forget_args fa = {0};
	/* Check the arguments before talking to anyone. */
	if (!strcmp(cmd, "status")) {
		if (argc > 1)
			return usage_error("status takes at most one NAME or POOL");
	} else if (is_cmd(cmd, (const char *const[]){"start", "stop", "restart", "pause", "resume",
						    NULL})) {
		if (argc != 1)
			return usage_error("%s takes one NAME, POOL or \"all\"", cmd);
	} else if (is_cmd(cmd, (const char *const[]){"reload", "shutdown", "metrics", NULL})) {
		if (argc != 0)
			return usage_error("%s takes no arguments", cmd);
	} else if (!strcmp(cmd, "pending")) {
		/* The daemon takes --stream and its value as two words. */
		if (argc == 1 && !strncmp(argv[0], "--stream=", 9) && argv[0][9]) {
			static char opt[] = "--stream";
			split_args[0] = opt;
			split_args[1] = argv[0] + 9;
			argv = split_args;
			argc = 2;
		} else if (argc != 0 && !(argc == 2 && !strcmp(argv[0], "--stream") && *argv[1])) {
			return usage_error("usage: pending [--stream NAME]");
		}
	} else if (!strcmp(cmd, "events")) {
		if (argc > 1 || (argc == 1 && !parse_uint(argv[0], NULL)))
			return usage_error("usage: events [N]  (N from 1 to 500, default 100)");
	} else if (!strcmp(cmd, "scale")) {
		if (argc != 2)
			return usage_error("scale takes POOL and N");
		if (!parse_uint(argv[1], NULL))
			return usage_error("scale: N must be a non-negative integer, not \"%s\"", argv[1]);
	} else if (!strcmp(cmd, "dead")) {
		struct ctl_dead_io io = {.prog = prog, .json = o->json, .call = dead_call, .ctx = o};
		return ctl_dead(&io, argc, argv);
	} else if (!strcmp(cmd, "drain")) {
		if (argc != 1 || strcmp(argv[0], "--yes") != 0)
			return usage_error("drain destroys every consumer group and deletes the "
					   "streams (pending entries are lost); confirm with "
					   "\"drain --yes\"");
	} else if (!strcmp(cmd, "forget")) {
		int r = parse_forget_args(&argc, argv, &fa);
		if (r)
			return r;
	} else if (!strcmp(cmd, "snapshot")) {
		struct snap_args sa = {0};
		if (parse_snapshot_args(argc, argv, &sa) < 0)
			return EXIT_USAGE;
		return cmd_snapshot(o, &sa);
	} else {
		return usage_error("unknown command \"%s\"", cmd);
	}

	bool waits = is_cmd(cmd, (const char *const[]){"start", "stop", "restart", NULL});
	json_t *reply = call_daemon(o, make_request(cmd, argv, argc),
				    waits ? -1 : DEFAULT_TIMEOUT_MS);
	int code;
	if (!strcmp(cmd, "status"))
		code = show_status(o, reply);
	else if (waits)
		code = show_results(o, reply, false);
	else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume"))
		code = show_results(o, reply, true);
	else if (!strcmp(cmd, "reload"))
		code = show_reload(o, reply);
	else if (!strcmp(cmd, "metrics"))
		code = show_metrics(o, reply);
	else if (!strcmp(cmd, "scale"))
		code = show_scale(o, reply);
	else if (!strcmp(cmd, "shutdown"))
		code = show_generic(o, reply, "shutting down");
	else if (!strcmp(cmd, "forget"))
		code = show_forget(o, reply, &fa);
	else if (!strcmp(cmd, "events"))
		code = show_events(o, reply);
	else
		code = show_generic(o, reply, "ok");
	json_decref(reply);
	return code;
}

int main(int argc, char **argv)
{
	log_open("streamvisorctl", LOG_WARN, LOG_FMT_LOGFMT, NULL);
	struct opts o = {.timeout_ms = -2};
	enum { OPT_VERSION = 256 };
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0},
	};
	int ch;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:c:s:jt:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.conf = optarg;
			break;
		case 's':
			o.sock = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 't': {
			double s;
			if (!parse_seconds(optarg, &s) || s <= 0 || s * 1000.0 > INT_MAX)
				return usage_error("-t needs a positive number of seconds");
			o.timeout_ms = (int)llround(s * 1000.0);
			if (o.timeout_ms < 1)
				o.timeout_ms = 1;
			break;
		}
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case OPT_VERSION:
			printf("streamvisorctl %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		case ':':
			return usage_error("option %s needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option -%c", optopt);
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command given");
	const char *cmd = argv[optind];
	/* --json is also accepted after the command. */
	int nargs = 0;
	char **args = argv + optind + 1;
	for (int i = optind + 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j"))
			o.json = true;
		else
			args[nargs++] = argv[i];
	}

	if (o.conf) {
		if (load_config(&o, o.conf) < 0)
			return EXIT_USAGE;
	} else if (!o.sock && access(SV_DEFAULT_CONFIG, R_OK) == 0) {
		if (load_config(&o, SV_DEFAULT_CONFIG) < 0)
			return EXIT_USAGE;
	}
	if (o.sock)
		o.socket_path = o.sock;
	else if (o.cfg && o.cfg->control.socket && *o.cfg->control.socket)
		o.socket_path = o.cfg->control.socket;
	else
		o.socket_path = SV_DEFAULT_SOCKET;

	int code = run(&o, cmd, nargs, args);
	fflush(stdout);
	if (o.cfg)
		config_free(o.cfg);
	log_close();
	return code;
}
