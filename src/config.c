/* config: load streamvisor.conf (libconfig), apply defaults, validate every
 * key and cross-check, and compare two configurations for a reload.
 *
 * Notes on libconfig 1.5 (Debian 12), the oldest version we support:
 *
 * - @include: libconfig has a single include directory.  We set it to the
 *   directory of the main file, so every @include -- also one inside an
 *   included file -- resolves relative to the MAIN file's directory, not
 *   to the including file's.  config_setting_source_file() reports the name
 *   as written in the @include directive; error messages print it joined to
 *   the main file's directory (as given), so the path is usable.  An
 *   absolute @include path does not work in 1.5 (it is appended to the
 *   include directory); use a path relative to the main file.
 *
 * - Integer wrap: libconfig 1.5 stores a plain integer literal (no L
 *   suffix) in a 32-bit int and silently wraps it modulo 2^32
 *   (2147483648 -> -2147483648, 4294967297 -> 1, 0xFFFFFFFF -> -1; a
 *   literal beyond 64 bits saturates first).  Literals with the L suffix
 *   are INT64 and exact (saturating at INT64_MAX).  So, after parsing, we
 *   re-read every named integer setting's literal from its source file:
 *   the file is loaded once, comments and strings are blanked, and the N-th
 *   "NAME = literal" / "NAME : literal" whose name starts on the setting's
 *   line is parsed with overflow detection (N = how many settings of that
 *   name precede it on that line).  The literal's true value is what we
 *   use, so "keep_ms = 3000000000" is read as 3000000000 (as libconfig
 *   >= 1.6 does) and then range-checked; a literal beyond 64 bits is an
 *   error ("value of KEY is too large").  Every integer key has a range,
 *   so a big number for a small key (count) is an out-of-range error.
 *
 * - Relative paths (sqlite.path, control.socket, log.file,
 *   redis.password_file, pools[].sqlite_path) resolve against the main
 *   file's directory made absolute (cfg->dir), and are normalized
 *   lexically ("a/./b/../c" -> "a/c").
 *
 * - One grammar, two loads: config_load (the daemon, -t) and
 *   config_load_client (streamvisorctl) run the same code; the client's
 *   skips only what checks_machine() guards, the checks that read outside
 *   the configuration files (password file, tool executables, NSS).
 *
 * Ranges (all integers are read as 64-bit):
 *   durations (timeouts, intervals)    1 ms .. 30 days, except
 *     sqlite.busy_timeout_ms, restart.start_ms, restart.stop_timeout_ms
 *                                      0 .. 30 days (0 is meaningful)
 *   retention.keep_ms                  0 .. 86399999 (< tool done-key TTL)
 *   retention.dead_keep_ms             1 ms .. 365 days
 *   retention.events_keep_ms           0 (keep) .. 365 days
 *   restart.max_retries                0 .. 1000000
 *   restart.burst                      0 .. PROC_BURST_LIMIT (63: the crash
 *                                      history holds 64, see proc.h)
 *   pools[].count                      0 .. 1000 (0 = defined, no workers)
 *   pools[].batch                      1 .. 100000
 *   pools[].max_deliveries             1 .. 1000000
 *   pools[].max_rss_mb                 0 (off) .. 1048576
 *   pools[].discover_ms                100 .. 600000
 *   pools[].read_keys                  1 .. 1000
 *   pools[].idle_ms                    100 .. 86400000
 *   pools[].idle_check_rate            1 .. 1000000 (keys a second)
 *   pools[].snapshot_interval_ms       0 (every batch) .. 3600000
 *   tools[].max_output                 1 .. 67108864 bytes
 *   tools[].concurrency                1 .. 1000 (persistent only)
 *   tools[].start_timeout_ms           duration (persistent only)
 *   tools[].max_calls                  0 (never) .. 1000000000 (persistent only)
 *   tools[].max_rss_mb                 0 (off) .. 1048576 (persistent only)
 *   tools[].rlimits.cpu_s              0 .. 2592000, as_mb 0 .. 16777216,
 *                                      nofile 0 .. 1048576 (0 = unlimited)
 *   control.mode                       octal string, <= 0777
 */
#include "sv_config.h"

#include "config.h"
#include "proc.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DAY_MS INT64_C(86400000)
#define MAX_DURATION_MS (30 * DAY_MS)
#define MAX_KEEP_MS (365 * DAY_MS)
#define MAX_COUNT 1000
#define MAX_BIG 1000000

#define DEFAULT_URL "redis://127.0.0.1:6379/0"

/* ---- loader state ---------------------------------------------------- */

struct srcfile {
	char *name;   /* as libconfig reports it */
	char *text;   /* comments and strings blanked, NULL if unreadable */
	size_t len;
	size_t *lines; /* offset of each line's start */
	size_t nlines;
};

struct intlit {
	const config_setting_t *s;
	int64_t v;
	bool overflow;
};

struct seen {
	const char *file;
	unsigned line;
	const char *name;
};

/* A semantic error waiting to be sorted by file and line. */
struct pending {
	char *file;
	unsigned line;
	size_t seq;
	char *text; /* the whole "FILE:LINE: message" */
};

struct ld {
	struct sv_config *cfg;
	struct config_errors *errs;
	config_t lc;
	const char *path;  /* as given */
	char *dir_given;   /* dirname of path as given */
	struct srcfile *files;
	size_t nfiles;
	struct intlit *lits;
	size_t nlits;
	struct seen *seen;
	size_t nseen;
	struct pending *pend;
	size_t npend;
	/* config_load_client: check the file, never read a secret or probe
	 * the machine (see checks_machine). */
	bool client;
	const config_setting_t *sqlite_path; /* where sqlite.path is, or NULL */
};

/* Whether this load checks the machine as well as the file: the password
 * file's contents, tool executables, users and groups.  The daemon needs
 * all of that; streamvisorctl needs none of it and must work for a
 * control.group member who may not read the daemon's secrets. */
static bool checks_machine(const struct ld *ld)
{
	return !ld->client;
}

/* ---- errors ---------------------------------------------------------- */

static void errs_push(struct config_errors *e, char *msg)
{
	char **v = realloc(e->v, (e->n + 1) * sizeof(*v));
	if (!v)
		abort();
	e->v = v;
	e->v[e->n++] = msg;
}

/* The name to print for a file libconfig reports (see the header note). */
static char *display_file(const struct ld *ld, const char *src)
{
	if (!src || strcmp(src, ld->path) == 0 || src[0] == '/' || strcmp(ld->dir_given, ".") == 0)
		return util_xstrdup(src ? src : ld->path);
	return util_xasprintf("%s/%s", ld->dir_given, src);
}

static void err_file_line(struct ld *ld, const char *src, unsigned line, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
static void err_file_line(struct ld *ld, const char *src, unsigned line, const char *fmt, va_list ap)
{
	char *f = display_file(ld, src);
	char *m = util_xvasprintf(fmt, ap);
	struct pending *v = realloc(ld->pend, (ld->npend + 1) * sizeof(*v));
	if (!v)
		abort();
	ld->pend = v;
	line = line ? line : 1;
	ld->pend[ld->npend] = (struct pending){f, line, ld->npend, util_xasprintf("%s:%u: %s", f, line, m)};
	ld->npend++;
	free(m);
}

static int pending_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	if (c)
		return c;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Move the semantic errors to errs, sorted by file and line. */
static void flush_pending(struct ld *ld)
{
	if (ld->npend)
		qsort(ld->pend, ld->npend, sizeof(*ld->pend), pending_cmp);
	for (size_t i = 0; i < ld->npend; i++) {
		errs_push(ld->errs, ld->pend[i].text);
		free(ld->pend[i].file);
	}
	free(ld->pend);
	ld->pend = NULL;
	ld->npend = 0;
}

/* Error at setting s (its file and line; line 1 for the root group). */
static void errf(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void errf(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_file_line(ld, s ? config_setting_source_file(s) : NULL, s ? config_setting_source_line(s) : 1,
		      fmt, ap);
	va_end(ap);
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->v[i]);
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

/* ---- paths ----------------------------------------------------------- */

/* Lexical normalization of an absolute path. */
static char *path_normalize(const char *p)
{
	size_t n = strlen(p);
	char *out = util_xcalloc(n + 2, 1);
	size_t *stack = util_xcalloc(n + 1, sizeof(size_t));
	size_t depth = 0, len = 0;
	const char *s = p;
	while (*s) {
		while (*s == '/')
			s++;
		if (!*s)
			break;
		const char *e = strchr(s, '/');
		size_t cl = e ? (size_t)(e - s) : strlen(s);
		if (cl == 1 && s[0] == '.') {
			/* skip */
		} else if (cl == 2 && s[0] == '.' && s[1] == '.') {
			if (depth > 0)
				len = stack[--depth];
		} else {
			stack[depth++] = len;
			out[len++] = '/';
			memcpy(out + len, s, cl);
			len += cl;
		}
		s += cl;
	}
	if (len == 0)
		out[len++] = '/';
	out[len] = '\0';
	free(stack);
	return out;
}

/* "" stays ""; absolute paths are normalized; relative ones are joined to
 * cfg->dir first. */
static char *resolve_path(const struct ld *ld, const char *p)
{
	if (!p || !*p)
		return util_xstrdup("");
	if (p[0] == '/')
		return path_normalize(p);
	char *j = util_xasprintf("%s/%s", ld->cfg->dir, p);
	char *r = path_normalize(j);
	free(j);
	return r;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return util_xstrdup(".");
	if (slash == path)
		return util_xstrdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* ---- integer literals (libconfig 1.5 wrap, see the header note) ------- */

static struct srcfile *source_file(struct ld *ld, const char *name)
{
	for (size_t i = 0; i < ld->nfiles; i++)
		if (strcmp(ld->files[i].name, name) == 0)
			return &ld->files[i];
	struct srcfile *v = realloc(ld->files, (ld->nfiles + 1) * sizeof(*v));
	if (!v)
		abort();
	ld->files = v;
	struct srcfile *f = &ld->files[ld->nfiles++];
	memset(f, 0, sizeof(*f));
	f->name = util_xstrdup(name);

	char *open_path;
	if (strcmp(name, ld->path) == 0 || name[0] == '/')
		open_path = util_xstrdup(name);
	else
		open_path = util_xasprintf("%s/%s", ld->cfg->dir, name);
	FILE *fp = fopen(open_path, "r");
	free(open_path);
	if (!fp)
		return f;
	size_t cap = 4096, len = 0;
	char *t = malloc(cap);
	size_t got;
	while (t && (got = fread(t + len, 1, cap - len - 1, fp)) > 0) {
		len += got;
		if (cap - len < 2) {
			char *nt = realloc(t, cap * 2);
			if (!nt) {
				free(t);
				t = NULL;
				break;
			}
			t = nt;
			cap *= 2;
		}
	}
	fclose(fp);
	if (!t)
		abort();
	t[len] = '\0';

	/* Blank comments and strings; keep newlines so lines stay put. */
	enum { NORMAL, STR, LINE_C, BLOCK_C } st = NORMAL;
	for (size_t i = 0; i < len; i++) {
		char c = t[i];
		switch (st) {
		case NORMAL:
			if (c == '"') {
				st = STR;
				t[i] = ' ';
			} else if (c == '#') {
				st = LINE_C;
				t[i] = ' ';
			} else if (c == '/' && i + 1 < len && t[i + 1] == '/') {
				st = LINE_C;
				t[i] = ' ';
			} else if (c == '/' && i + 1 < len && t[i + 1] == '*') {
				st = BLOCK_C;
				t[i] = t[i + 1] = ' ';
				i++;
			}
			break;
		case STR:
			if (c == '\\' && i + 1 < len && t[i + 1] != '\n') {
				t[i] = t[i + 1] = ' ';
				i++;
			} else if (c == '"') {
				st = NORMAL;
				t[i] = ' ';
			} else if (c != '\n') {
				t[i] = ' ';
			}
			break;
		case LINE_C:
			if (c == '\n')
				st = NORMAL;
			else
				t[i] = ' ';
			break;
		case BLOCK_C:
			if (c == '*' && i + 1 < len && t[i + 1] == '/') {
				st = NORMAL;
				t[i] = t[i + 1] = ' ';
				i++;
			} else if (c != '\n') {
				t[i] = ' ';
			}
			break;
		}
	}
	size_t nl = 1;
	for (size_t i = 0; i < len; i++)
		if (t[i] == '\n')
			nl++;
	f->lines = util_xcalloc(nl, sizeof(size_t));
	f->nlines = 0;
	f->lines[f->nlines++] = 0;
	for (size_t i = 0; i < len; i++)
		if (t[i] == '\n')
			f->lines[f->nlines++] = i + 1;
	f->text = t;
	f->len = len;
	return f;
}

static bool name_start(int c) { return isalpha(c) || c == '*'; }
static bool name_char(int c) { return isalnum(c) || c == '*' || c == '-' || c == '_'; }

/* Parse an integer literal at p: [-+]?(0x[0-9a-f]+|[0-9]+)(L|LL)?
 * Returns the end, or NULL when p holds no integer literal. */
static const char *parse_literal(const char *p, int64_t *v, bool *overflow)
{
	bool neg = false;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	uint64_t mag = 0;
	bool ovf = false;
	const char *ds;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && isxdigit((unsigned char)p[2])) {
		p += 2;
		ds = p;
		while (isxdigit((unsigned char)*p)) {
			int d = isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10);
			if (mag > (UINT64_MAX >> 4))
				ovf = true;
			mag = (mag << 4) | (uint64_t)d;
			p++;
		}
	} else {
		ds = p;
		while (isdigit((unsigned char)*p)) {
			if (mag > (UINT64_MAX - 9) / 10)
				ovf = true;
			mag = mag * 10 + (uint64_t)(*p - '0');
			p++;
		}
	}
	if (p == ds)
		return NULL;
	if (*p == 'L') {
		p++;
		if (*p == 'L')
			p++;
	}
	if (*p == '.' || *p == 'e' || *p == 'E' || name_char((unsigned char)*p))
		return NULL; /* a float or something else */
	if (!ovf && neg && mag > (uint64_t)INT64_MAX + 1)
		ovf = true;
	if (!ovf && !neg && mag > (uint64_t)INT64_MAX)
		ovf = true;
	*overflow = ovf;
	if (ovf)
		*v = 0;
	else if (neg)
		*v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
	else
		*v = (int64_t)mag;
	return p;
}

static bool find_literal(const struct srcfile *f, unsigned line, const char *name, unsigned ordinal,
			 int64_t *v, bool *overflow)
{
	if (!f->text || line == 0 || line > f->nlines)
		return false;
	size_t nlen = strlen(name);
	size_t i = f->lines[line - 1];
	size_t end = line < f->nlines ? f->lines[line] : f->len;
	const char *t = f->text;
	while (i < end) {
		if (!name_start((unsigned char)t[i]) || (i > 0 && name_char((unsigned char)t[i - 1]))) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < f->len && name_char((unsigned char)t[j]))
			j++;
		if (j - i == nlen && memcmp(t + i, name, nlen) == 0) {
			size_t k = j;
			while (k < f->len && isspace((unsigned char)t[k]))
				k++;
			/* Every "NAME =" here is a setting of that name, whatever
			 * its value: count them all. */
			if (k < f->len && (t[k] == '=' || t[k] == ':')) {
				if (ordinal > 0) {
					ordinal--;
				} else {
					k++;
					while (k < f->len && isspace((unsigned char)t[k]))
						k++;
					return parse_literal(t + k, v, overflow) != NULL;
				}
			}
		}
		i = j;
	}
	return false;
}

static void scan_literals(struct ld *ld, const config_setting_t *s)
{
	const char *name = config_setting_name(s);
	const char *file = config_setting_source_file(s);
	if (!file)
		file = ld->path;
	if (name) {
		unsigned line = config_setting_source_line(s);
		unsigned ord = 0;
		for (size_t i = 0; i < ld->nseen; i++)
			if (ld->seen[i].line == line && strcmp(ld->seen[i].name, name) == 0 &&
			    strcmp(ld->seen[i].file, file) == 0)
				ord++;
		struct seen *sv = realloc(ld->seen, (ld->nseen + 1) * sizeof(*sv));
		if (!sv)
			abort();
		ld->seen = sv;
		ld->seen[ld->nseen++] = (struct seen){file, line, name};
		int type = config_setting_type(s);
		if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
			int64_t v;
			bool ovf;
			if (find_literal(source_file(ld, file), line, name, ord, &v, &ovf)) {
				struct intlit *lv = realloc(ld->lits, (ld->nlits + 1) * sizeof(*lv));
				if (!lv)
					abort();
				ld->lits = lv;
				ld->lits[ld->nlits++] = (struct intlit){s, v, ovf};
			}
		}
	}
	if (config_setting_is_aggregate(s)) {
		int n = config_setting_length(s);
		for (int i = 0; i < n; i++)
			scan_literals(ld, config_setting_get_elem(s, (unsigned)i));
	}
}

/* The true value of an integer setting; false if it does not fit 64 bits. */
static bool int_value(const struct ld *ld, const config_setting_t *s, int64_t *v)
{
	for (size_t i = 0; i < ld->nlits; i++) {
		if (ld->lits[i].s == s) {
			*v = ld->lits[i].v;
			return !ld->lits[i].overflow;
		}
	}
	/* Not found in the source (cannot happen for a named setting written
	 * as libconfig accepts it): libconfig's value is all we have. */
	*v = config_setting_get_int64(s);
	return true;
}

/* ---- typed getters ---------------------------------------------------- */

static void keypath(char *buf, size_t len, const char *where, const char *key)
{
	if (where && *where)
		snprintf(buf, len, "%s.%s", where, key);
	else
		snprintf(buf, len, "%s", key);
}

static const char *type_name(int t)
{
	switch (t) {
	case CONFIG_TYPE_GROUP: return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_LIST: return "a list";
	default: return "empty";
	}
}

static config_setting_t *member(const config_setting_t *g, const char *key)
{
	if (!g || config_setting_type(g) != CONFIG_TYPE_GROUP)
		return NULL;
	return config_setting_get_member(g, key);
}

static void check_keys(struct ld *ld, const config_setting_t *g, const char *where,
		       const char *const *allowed)
{
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		bool ok = false;
		for (const char *const *a = allowed; *a && name; a++)
			if (strcmp(*a, name) == 0)
				ok = true;
		if (!ok) {
			if (where && *where)
				errf(ld, s, "unknown key \"%s\" in %s", name ? name : "?", where);
			else
				errf(ld, s, "unknown key \"%s\"", name ? name : "?");
		}
	}
}

/* A sub-group; NULL when absent or of the wrong type (reported). */
static const config_setting_t *get_group(struct ld *ld, const config_setting_t *g, const char *where,
					 const char *key, const char *const *allowed)
{
	config_setting_t *s = member(g, key);
	char kp[128];
	keypath(kp, sizeof(kp), where, key);
	if (!s)
		return NULL;
	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		errf(ld, s, "%s must be a group { ... }, not %s", kp, type_name(config_setting_type(s)));
		return NULL;
	}
	check_keys(ld, s, kp, allowed);
	return s;
}

static const config_setting_t *get_str(struct ld *ld, const config_setting_t *g, const char *where,
				       const char *key, const char *def, char **out)
{
	config_setting_t *s = member(g, key);
	char kp[128];
	keypath(kp, sizeof(kp), where, key);
	free(*out);
	*out = NULL;
	if (s && config_setting_type(s) != CONFIG_TYPE_STRING) {
		errf(ld, s, "%s must be a string, not %s", kp, type_name(config_setting_type(s)));
		s = NULL;
	}
	*out = util_xstrdup(s ? config_setting_get_string(s) : def);
	return s;
}

/* Returns the setting when present and valid; on any error *out keeps the
 * default. */
static const config_setting_t *get_int(struct ld *ld, const config_setting_t *g, const char *where,
				       const char *key, int64_t def, int64_t min, int64_t max, int64_t *out)
{
	config_setting_t *s = member(g, key);
	char kp[128];
	keypath(kp, sizeof(kp), where, key);
	*out = def;
	if (!s)
		return NULL;
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
		errf(ld, s, "%s must be an integer, not %s", kp, type_name(t));
		return NULL;
	}
	int64_t v;
	if (!int_value(ld, s, &v)) {
		errf(ld, s, "value of %s is too large (does not fit 64 bits)", kp);
		return NULL;
	}
	if (v < min || v > max) {
		if (min == 0 && v < 0)
			errf(ld, s, "%s must not be negative (got %" PRId64 ")", kp, v);
		else
			errf(ld, s, "%s must be between %" PRId64 " and %" PRId64 " (got %" PRId64 ")", kp,
			     min, max, v);
		return NULL;
	}
	*out = v;
	return s;
}

static const config_setting_t *get_bool(struct ld *ld, const config_setting_t *g, const char *where,
					const char *key, bool def, bool *out)
{
	config_setting_t *s = member(g, key);
	char kp[128];
	keypath(kp, sizeof(kp), where, key);
	*out = def;
	if (!s)
		return NULL;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		errf(ld, s, "%s must be true or false, not %s", kp, type_name(config_setting_type(s)));
		return NULL;
	}
	*out = config_setting_get_bool(s) != 0;
	return s;
}

static void strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void strlist_copy(struct strlist *dst, const struct strlist *src)
{
	dst->n = src->n;
	dst->v = util_xcalloc(src->n + 1, sizeof(char *)) /* NULL-terminated: argv */;
	for (size_t i = 0; i < src->n; i++)
		dst->v[i] = util_xstrdup(src->v[i]);
}

static bool strlist_equal(const struct strlist *a, const struct strlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

/* An array (or list) of strings.  Returns the setting when present and of
 * the right type (elements of another type are reported and skipped). */
static const config_setting_t *get_strlist(struct ld *ld, const config_setting_t *g, const char *where,
					   const char *key, struct strlist *out)
{
	config_setting_t *s = member(g, key);
	char kp[128];
	keypath(kp, sizeof(kp), where, key);
	strlist_free(out);
	if (!s)
		return NULL;
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		errf(ld, s, "%s must be an array of strings [ \"...\", ... ], not %s", kp, type_name(t));
		return NULL;
	}
	int n = config_setting_length(s);
	out->v = util_xcalloc((size_t)n + 1, sizeof(char *)) /* NULL-terminated: argv */;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			errf(ld, e, "%s[%d] must be a string, not %s", kp, i, type_name(config_setting_type(e)));
			continue;
		}
		out->v[out->n++] = util_xstrdup(config_setting_get_string(e));
	}
	return s;
}

/* A list of stream names: non-empty names, no duplicates. */
static void check_streams(struct ld *ld, const config_setting_t *s, const char *kp, const struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		if (!l->v[i][0])
			errf(ld, s, "%s: empty stream name", kp);
		for (size_t j = 0; j < i; j++)
			if (strcmp(l->v[i], l->v[j]) == 0) {
				errf(ld, s, "%s: duplicate stream \"%s\"", kp, l->v[i]);
				break;
			}
	}
}

/* ---------- stream patterns ---------- */

bool config_is_pattern(const char *entry)
{
	for (const char *p = entry; *p; p++) {
		if (*p == '\\') {
			if (!*++p)
				break;
			continue;
		}
		if (*p == '*' || *p == '?' || *p == '[')
			return true;
	}
	return false;
}

bool config_pattern_match(const char *pattern, const char *name)
{
	return fnmatch(pattern, name, 0) == 0;
}

bool config_strlist_has(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

bool config_match_any(const struct strlist *patterns, const char *name)
{
	for (size_t i = 0; i < patterns->n; i++)
		if (config_pattern_match(patterns->v[i], name))
			return true;
	return false;
}

bool config_own_key(const struct sv_config *cfg, const char *name)
{
	size_t ns = strlen(cfg->namespace), n = strlen(name);
	if (strncmp(name, cfg->namespace, ns) == 0 && name[ns] == ':')
		return true;
	return n >= 5 && strcmp(name + n - 5, ":dead") == 0;
}

/* A literal entry's stream name: "\\" before a glob character ('*', '?',
 * '[', ']') or before another "\\" is removed; any other backslash is kept,
 * so names written before patterns existed read as they did. */
static char *unescape_literal(const char *e)
{
	char *out = util_xstrdup(e), *o = out;
	for (const char *p = e; *p; p++) {
		if (*p == '\\' && p[1] && strchr("*?[]\\", p[1]))
			p++;
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

/* Why a pattern entry cannot be used, or NULL. */
static const char *bad_pattern(const char *e)
{
	for (const char *p = e; *p; p++) {
		if (*p == '\\') {
			if (!p[1])
				return "ends in an unescaped '\\'";
			p++;
		} else if (*p == '[') {
			const char *q = p + 1;
			if (*q == '!' || *q == '^')
				q++;
			if (*q == ']')
				q++;
			while (*q && *q != ']')
				q += (*q == '\\' && q[1]) ? 2 : 1;
			if (!*q)
				return "has a '[' without its ']'";
			p = q;
		}
	}
	return NULL;
}

/* Split a checked `streams` list into literal names (all) and patterns. */
static void split_streams(struct ld *ld, const config_setting_t *s, const char *kp, struct strlist *all,
			  struct strlist *patterns)
{
	struct strlist lit = {util_xcalloc(all->n + 1, sizeof(char *)), 0};
	strlist_free(patterns);
	patterns->v = util_xcalloc(all->n + 1, sizeof(char *));
	for (size_t i = 0; i < all->n; i++) {
		const char *why;
		if (!config_is_pattern(all->v[i])) {
			lit.v[lit.n++] = unescape_literal(all->v[i]);
		} else if (s && (why = bad_pattern(all->v[i]))) {
			errf(ld, s, "%s: pattern \"%s\" %s", kp, all->v[i], why);
		} else if (s && strncmp(all->v[i], ld->cfg->namespace, strlen(ld->cfg->namespace)) == 0 &&
			   all->v[i][strlen(ld->cfg->namespace)] == ':') {
			errf(ld, s, "%s: pattern \"%s\" lies under the namespace \"%s:\" (streamvisor's own keys never match)",
			     kp, all->v[i], ld->cfg->namespace);
		} else {
			patterns->v[patterns->n++] = util_xstrdup(all->v[i]);
		}
	}
	strlist_free(all);
	*all = lit;
}

/* Node and pool names become part of consumer names NODE/POOL/SLOT. */
static const char *bad_name(const char *s)
{
	if (!*s)
		return "must not be empty";
	for (; *s; s++) {
		if (*s == '/')
			return "must not contain '/'";
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return "must not contain spaces or control characters";
	}
	return NULL;
}

static char *replace_node(const char *s, const char *node)
{
	static const char tok[] = "{node}";
	size_t n = 0;
	for (const char *p = strstr(s, tok); p; p = strstr(p + sizeof(tok) - 1, tok))
		n++;
	char *out = util_xcalloc(strlen(s) + n * strlen(node) + 1, 1);
	char *o = out;
	const char *p;
	while ((p = strstr(s, tok))) {
		memcpy(o, s, (size_t)(p - s));
		o += p - s;
		strcpy(o, node);
		o += strlen(node);
		s = p + sizeof(tok) - 1;
	}
	strcpy(o, s);
	return out;
}

/* ---- sections --------------------------------------------------------- */

static const char *const top_keys[] = {
	"node", "namespace", "redis", "sqlite", "control", "run_as", "heartbeat", "restart",
	"streams", "pools", "tools", "retention", "metrics", "http", "log", NULL,
};

static void load_redis(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = {"url", "password_file", "connect_timeout_ms",
					   "command_timeout_ms", NULL};
	struct sv_config *cfg = ld->cfg;
	const config_setting_t *g = get_group(ld, root, "", "redis", keys);
	const config_setting_t *s;
	char *pwfile = NULL;

	s = get_str(ld, g, "redis", "url", DEFAULT_URL, &cfg->redis.url);
	char why[160];
	if (redis_url_parse(cfg->redis.url, &cfg->redis.parsed, why, sizeof(why)) < 0) {
		/* Never echo the URL: it may hold a password. */
		errf(ld, s ? s : g, "redis.url: cannot parse the URL: %s", why);
		free(cfg->redis.url);
		cfg->redis.url = util_xstrdup(DEFAULT_URL);
		redis_url_parse(cfg->redis.url, &cfg->redis.parsed, why, sizeof(why));
	}
	s = get_str(ld, g, "redis", "password_file", "", &pwfile);
	cfg->redis.password_file = resolve_path(ld, pwfile);
	free(pwfile);
	if (cfg->redis.password_file[0] && checks_machine(ld)) {
		FILE *fp = fopen(cfg->redis.password_file, "r");
		char *line = NULL;
		size_t cap = 0;
		ssize_t n = -1;
		if (!fp) {
			errf(ld, s, "redis.password_file: cannot read %s: %s", cfg->redis.password_file,
			     strerror(errno));
		} else {
			errno = 0;
			n = getline(&line, &cap, fp);
			int e = errno;
			fclose(fp);
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				line[--n] = '\0';
			if (n < 0 && e)
				errf(ld, s, "redis.password_file: cannot read %s: %s",
				     cfg->redis.password_file, strerror(e));
			else if (n <= 0)
				errf(ld, s, "redis.password_file: %s is empty", cfg->redis.password_file);
		}
		if (n > 0) {
			/* The file wins over the URL's password. */
			if (cfg->redis.parsed.password) {
				explicit_bzero(cfg->redis.parsed.password, strlen(cfg->redis.parsed.password));
				free(cfg->redis.parsed.password);
			}
			cfg->redis.parsed.password = util_xstrdup(line);
		}
		if (line) {
			explicit_bzero(line, cap);
			free(line);
		}
	}
	if (cfg->redis.parsed.password)
		cfg->redis.password = util_xstrdup(cfg->redis.parsed.password);
	cfg->redis.url_redacted = redis_url_redact(&cfg->redis.parsed);
	if (!cfg->redis.url_redacted)
		abort();
	get_int(ld, g, "redis", "connect_timeout_ms", 2000, 1, MAX_DURATION_MS, &cfg->redis.connect_timeout_ms);
	get_int(ld, g, "redis", "command_timeout_ms", 10000, 1, MAX_DURATION_MS, &cfg->redis.command_timeout_ms);
}

static void load_sqlite(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = {"path", "synchronous", "busy_timeout_ms", NULL};
	struct sv_config *cfg = ld->cfg;
	const config_setting_t *g = get_group(ld, root, "", "sqlite", keys);
	char *tmp = NULL;
	const config_setting_t *s = get_str(ld, g, "sqlite", "path", SV_DEFAULT_SQLITE, &tmp);
	ld->sqlite_path = s ? s : g;
	if (!tmp[0]) {
		errf(ld, s, "sqlite.path must not be empty");
		free(tmp);
		tmp = util_xstrdup(SV_DEFAULT_SQLITE);
	}
	cfg->sqlite.path = resolve_path(ld, tmp);
	free(tmp);
	tmp = NULL;
	s = get_str(ld, g, "sqlite", "synchronous", "full", &tmp);
	if (strcmp(tmp, "full") == 0)
		cfg->sqlite.synchronous = SV_SYNC_FULL;
	else if (strcmp(tmp, "normal") == 0)
		cfg->sqlite.synchronous = SV_SYNC_NORMAL;
	else
		errf(ld, s, "sqlite.synchronous must be \"full\" or \"normal\", not \"%s\"", tmp);
	free(tmp);
	get_int(ld, g, "sqlite", "busy_timeout_ms", 5000, 0, MAX_DURATION_MS, &cfg->sqlite.busy_timeout_ms);
}

static void check_group_exists(struct ld *ld, const config_setting_t *s, const char *kp, const char *name)
{
	if (name[0] && checks_machine(ld) && !getgrnam(name))
		errf(ld, s, "%s: no such group \"%s\"", kp, name);
}

static void load_control(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = {"socket", "mode", "group", NULL};
	struct sv_config *cfg = ld->cfg;
	const config_setting_t *g = get_group(ld, root, "", "control", keys);
	char *tmp = NULL;
	const config_setting_t *s = get_str(ld, g, "control", "socket", SV_DEFAULT_SOCKET, &tmp);
	if (!tmp[0]) {
		errf(ld, s, "control.socket must not be empty");
		free(tmp);
		tmp = util_xstrdup(SV_DEFAULT_SOCKET);
	}
	cfg->control.socket = resolve_path(ld, tmp);
	free(tmp);
	tmp = NULL;
	if (strlen(cfg->control.socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		errf(ld, s ? s : g, "control.socket: path %s is too long for a UNIX socket (max %zu bytes)",
		     cfg->control.socket, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);

	config_setting_t *ms = member(g, "mode");
	cfg->control.mode = 0660;
	if (ms && config_setting_type(ms) != CONFIG_TYPE_STRING) {
		errf(ld, ms, "control.mode must be an octal string like \"0660\", not %s",
		     type_name(config_setting_type(ms)));
	} else if (ms) {
		const char *m = config_setting_get_string(ms);
		bool ok = *m && strlen(m) <= 4;
		unsigned long v = 0;
		for (const char *c = m; ok && *c; c++) {
			if (*c < '0' || *c > '7')
				ok = false;
			else
				v = v * 8 + (unsigned long)(*c - '0');
		}
		if (!ok || v > 0777)
			errf(ld, ms, "control.mode must be an octal string like \"0660\" (at most 0777), not \"%s\"", m);
		else
			cfg->control.mode = (mode_t)v;
	}
	s = get_str(ld, g, "control", "group", "", &cfg->control.group);
	check_group_exists(ld, s, "control.group", cfg->control.group);
}

static void load_run_as(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = {"user", "group", NULL};
	struct sv_config *cfg = ld->cfg;
	const config_setting_t *g = get_group(ld, root, "", "run_as", keys);
	const config_setting_t *s = get_str(ld, g, "run_as", "user", "", &cfg->run_as.user);
	if (cfg->run_as.user[0] && checks_machine(ld) && !getpwnam(cfg->run_as.user))
		errf(ld, s, "run_as.user: no such user \"%s\"", cfg->run_as.user);
	s = get_str(ld, g, "run_as", "group", "", &cfg->run_as.group);
	check_group_exists(ld, s, "run_as.group", cfg->run_as.group);
}

struct xlines {
	const config_setting_t *hb_group, *hb_interval, *hb_timeout;
	const config_setting_t *restart_group, *max_retries, *backoff_initial;
};

static void load_heartbeat_restart(struct ld *ld, const config_setting_t *root, struct xlines *x)
{
	static const char *const hkeys[] = {"interval_ms", "timeout_ms", NULL};
	static const char *const rkeys[] = {"backoff_initial_ms", "backoff_max_ms", "start_ms", "max_retries",
					    "burst", "burst_window_ms", "stop_timeout_ms", NULL};
	struct sv_config *cfg = ld->cfg;
	const config_setting_t *g = get_group(ld, root, "", "heartbeat", hkeys);
	x->hb_group = g;
	x->hb_interval = get_int(ld, g, "heartbeat", "interval_ms", 2000, 1, MAX_DURATION_MS,
				 &cfg->heartbeat.interval_ms);
	x->hb_timeout = get_int(ld, g, "heartbeat", "timeout_ms", 10000, 1, MAX_DURATION_MS,
				&cfg->heartbeat.timeout_ms);

	g = get_group(ld, root, "", "restart", rkeys);
	x->restart_group = g;
	x->backoff_initial = get_int(ld, g, "restart", "backoff_initial_ms", 100, 1, MAX_DURATION_MS,
				     &cfg->restart.backoff_initial_ms);
	get_int(ld, g, "restart", "backoff_max_ms", 30000, 1, MAX_DURATION_MS, &cfg->restart.backoff_max_ms);
	get_int(ld, g, "restart", "start_ms", 1000, 0, MAX_DURATION_MS, &cfg->restart.start_ms);
	x->max_retries = get_int(ld, g, "restart", "max_retries", 5, 0, MAX_BIG, &cfg->restart.max_retries);
	get_int(ld, g, "restart", "burst", 10, 0, PROC_BURST_LIMIT, &cfg->restart.burst);
	get_int(ld, g, "restart", "burst_window_ms", 60000, 1, MAX_DURATION_MS, &cfg->restart.burst_window_ms);
	get_int(ld, g, "restart", "stop_timeout_ms", 10000, 0, MAX_DURATION_MS, &cfg->restart.stop_timeout_ms);
}

bool config_listen_valid(const char *l)
{
	const char *colon = strrchr(l, ':');
	bool ok = colon && colon > l;
	if (ok && l[0] == '[')
		ok = colon[-1] == ']' && colon - l > 2;
	else if (ok)
		ok = memchr(l, ':', (size_t)(colon - l)) == NULL;
	if (!ok)
		return false;
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	return colon[1] && !*end && errno == 0 && port >= 1 && port <= 65535 && isdigit((unsigned char)colon[1]);
}

bool config_listen_loopback(const char *l)
{
	const char *colon = strrchr(l, ':');
	size_t n = colon ? (size_t)(colon - l) : strlen(l);
	if (n >= 2 && l[0] == '[' && l[n - 1] == ']')
		return n == 5 && memcmp(l, "[::1]", 5) == 0;
	return (n == 9 && strncasecmp(l, "localhost", 9) == 0) || (n > 4 && strncmp(l, "127.", 4) == 0);
}

/* http.token_file: a secret only the daemon's user may read, long enough
 * not to be guessed.  The content is read again by the master when it
 * starts the web child (master_web.c); here only its shape is checked. */
static void check_token_file(struct ld *ld, const config_setting_t *s, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		errf(ld, s, "http.token_file: cannot read %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	char buf[CONFIG_TOKEN_MAX + 2];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	n = n < 0 ? 0 : n;
	buf[n] = '\0';
	size_t len = strcspn(buf, "\r\n");
	explicit_bzero(buf, sizeof(buf));
	if (!S_ISREG(st.st_mode))
		errf(ld, s, "http.token_file: %s is not a regular file", path);
	else if (st.st_mode & 077)
		errf(ld, s, "http.token_file: %s is readable by others (mode %03o): chmod 600 it", path,
		     (unsigned)(st.st_mode & 0777));
	else if (len < CONFIG_TOKEN_MIN || len > CONFIG_TOKEN_MAX)
		errf(ld, s, "http.token_file: the token in %s must be %d to %d bytes on its first line", path,
		     CONFIG_TOKEN_MIN, CONFIG_TOKEN_MAX);
}

static void check_pem_file(struct ld *ld, const config_setting_t *s, const char *key, const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		errf(ld, s, "http.%s: cannot read %s: %s", key, path, strerror(errno));
		return;
	}
	char line[128];
	bool pem = false;
	while (!pem && fgets(line, sizeof(line), f))
		pem = strncmp(line, "-----BEGIN ", 11) == 0;
	fclose(f);
	if (!pem)
		errf(ld, s, "http.%s: %s is not a PEM file", key, path);
}

static const char *const http_action_names[] = {
	"start", "stop", "restart", "pause", "resume", "scale", "dead retry", "dead purge",
	"reload", "drain", "forget", "shutdown", NULL,
};
static const char *const http_default_actions[] = {
	"start", "stop", "restart", "pause", "resume", "scale", "dead retry", NULL,
};

static bool http_action_known(const char *a)
{
	for (size_t i = 0; http_action_names[i]; i++)
		if (strcmp(a, http_action_names[i]) == 0)
			return true;
	return false;
}

/* The web child's user: never root; only root can switch to another. */
static void check_http_user(struct ld *ld, const config_setting_t *s)
{
	struct sv_config *cfg = ld->cfg;
	if (!cfg->http.user[0])
		return; /* as root: nobody (master_web.c says so at start) */
	if (!checks_machine(ld))
		return;
	struct passwd *pw = getpwnam(cfg->http.user);
	if (!pw)
		errf(ld, s, "http.user: no such user \"%s\"", cfg->http.user);
	else if (pw->pw_uid == 0)
		errf(ld, s, "http.user: \"%s\" is root: the web child never runs as root", cfg->http.user);
	else if (geteuid() != 0 && pw->pw_uid != geteuid())
		errf(ld, s, "http.user: only root can run the web child as \"%s\"", cfg->http.user);
}

static void load_http(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = {"listen", "user", "token_file", "hosts", "tls_cert", "tls_key",
					   "actions", "metrics_token", NULL};
	struct sv_config *cfg = ld->cfg;
	const config_setting_t *g = get_group(ld, root, "", "http", keys);
	const config_setting_t *ls = get_str(ld, g, "http", "listen", "", &cfg->http.listen);
	const char *l = cfg->http.listen;
	if (l[0] && !config_listen_valid(l))
		errf(ld, ls, "http.listen must be \"HOST:PORT\" (e.g. \"127.0.0.1:8080\") or \"\", not \"%s\"", l);
	cfg->http.loopback = l[0] && config_listen_loopback(l);
	if (l[0] && cfg->metrics.listen[0] && strcmp(l, cfg->metrics.listen) == 0)
		errf(ld, ls, "http.listen and metrics.listen are the same address: the console serves "
			     "/metrics already, leave metrics.listen empty");

	const config_setting_t *s = get_str(ld, g, "http", "user", "", &cfg->http.user);
	check_http_user(ld, s);

	char *tmp = NULL;
	const config_setting_t *ts = get_str(ld, g, "http", "token_file", "", &tmp);
	cfg->http.token_file = resolve_path(ld, tmp);
	free(tmp);
	if (cfg->http.token_file[0] && checks_machine(ld))
		check_token_file(ld, ts, cfg->http.token_file);

	s = get_strlist(ld, g, "http", "hosts", &cfg->http.hosts);
	for (size_t i = 0; i < cfg->http.hosts.n; i++)
		if (!cfg->http.hosts.v[i][0] || strpbrk(cfg->http.hosts.v[i], " \t\r\n/"))
			errf(ld, s, "http.hosts: \"%s\" is not a host name (HOST or HOST:PORT)", cfg->http.hosts.v[i]);

	const char *keynames[2] = {"tls_cert", "tls_key"};
	char **files[2] = {&cfg->http.tls_cert, &cfg->http.tls_key};
	const config_setting_t *fs[2];
	for (int i = 0; i < 2; i++) {
		tmp = NULL;
		fs[i] = get_str(ld, g, "http", keynames[i], "", &tmp);
		*files[i] = resolve_path(ld, tmp);
		free(tmp);
		if ((*files[i])[0] && checks_machine(ld))
			check_pem_file(ld, fs[i], keynames[i], *files[i]);
	}
	if (!cfg->http.tls_cert[0] != !cfg->http.tls_key[0])
		errf(ld, fs[0] ? fs[0] : fs[1], "http.tls_cert and http.tls_key go together");
	if (l[0] && !cfg->http.loopback) {
		if (!cfg->http.tls_cert[0])
			errf(ld, ls, "http.listen %s is not a loopback address: set http.tls_cert and http.tls_key "
				     "(a token must not cross the network in clear)", l);
		if (!cfg->http.token_file[0])
			errf(ld, ls, "http.listen %s is not a loopback address: set http.token_file (everything "
				     "but /metrics needs the token there)", l);
	}

	s = get_strlist(ld, g, "http", "actions", &cfg->http.actions);
	if (!s) {
		struct strlist def = {.v = (char **)http_default_actions, .n = 7};
		strlist_copy(&cfg->http.actions, &def);
	}
	for (size_t i = 0; i < cfg->http.actions.n; i++)
		if (!http_action_known(cfg->http.actions.v[i]))
			errf(ld, s, "http.actions: unknown action \"%s\" (start, stop, restart, pause, resume, scale, "
				    "dead retry, dead purge, reload, drain, forget, shutdown)",
			     cfg->http.actions.v[i]);
	get_bool(ld, g, "http", "metrics_token", false, &cfg->http.metrics_token);
	if (cfg->http.metrics_token && !cfg->http.token_file[0])
		errf(ld, g, "http.metrics_token needs http.token_file");
}

static void load_retention_metrics_log(struct ld *ld, const config_setting_t *root)
{
	static const char *const tkeys[] = {"trim_acked", "delete_idle_streams", "keep_ms", "dead_keep_ms",
					    "events_keep_ms", NULL};
	static const char *const mkeys[] = {"listen", NULL};
	static const char *const lkeys[] = {"level", "format", "file", NULL};
	struct sv_config *cfg = ld->cfg;
	const config_setting_t *g = get_group(ld, root, "", "retention", tkeys);
	get_bool(ld, g, "retention", "trim_acked", true, &cfg->retention.trim_acked);
	get_bool(ld, g, "retention", "delete_idle_streams", false, &cfg->retention.delete_idle_streams);
	get_int(ld, g, "retention", "keep_ms", 3600000, 0, DAY_MS - 1, &cfg->retention.keep_ms);
	get_int(ld, g, "retention", "dead_keep_ms", 7 * DAY_MS, 1, MAX_KEEP_MS, &cfg->retention.dead_keep_ms);
	get_int(ld, g, "retention", "events_keep_ms", 0, 0, MAX_KEEP_MS, &cfg->retention.events_keep_ms);

	g = get_group(ld, root, "", "metrics", mkeys);
	const config_setting_t *s = get_str(ld, g, "metrics", "listen", "", &cfg->metrics.listen);
	if (cfg->metrics.listen[0] && !config_listen_valid(cfg->metrics.listen))
		errf(ld, s, "metrics.listen must be \"HOST:PORT\" (e.g. \"127.0.0.1:9464\") or \"\", not \"%s\"",
		     cfg->metrics.listen);

	g = get_group(ld, root, "", "log", lkeys);
	char *tmp = NULL;
	s = get_str(ld, g, "log", "level", "info", &tmp);
	cfg->log.level = LOG_INFO;
	if (log_level_parse(tmp, &cfg->log.level) < 0) {
		cfg->log.level = LOG_INFO;
		errf(ld, s, "log.level must be debug, info, warn or error, not \"%s\"", tmp);
	}
	free(tmp);
	tmp = NULL;
	s = get_str(ld, g, "log", "format", "logfmt", &tmp);
	cfg->log.format = LOG_FMT_LOGFMT;
	if (log_format_parse(tmp, &cfg->log.format) < 0) {
		cfg->log.format = LOG_FMT_LOGFMT;
		errf(ld, s, "log.format must be logfmt or json, not \"%s\"", tmp);
	}
	free(tmp);
	tmp = NULL;
	get_str(ld, g, "log", "file", "", &tmp);
	cfg->log.file = resolve_path(ld, tmp);
	free(tmp);
}

static void tool_free(struct tool_config *t)
{
	free(t->name);
	strlist_free(&t->command);
	strlist_free(&t->env);
	free(t->cwd);
}

static void load_tools(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = {"name", "command", "timeout_ms", "max_output", "env", "cwd",
					   "rlimits", "mode", "concurrency", "start_timeout_ms", "max_calls",
					   "max_rss_mb", NULL};
	static const char *const rkeys[] = {"cpu_s", "as_mb", "nofile", NULL};
	struct sv_config *cfg = ld->cfg;
	config_setting_t *list = member(root, "tools");
	if (!list)
		return;
	int t = config_setting_type(list);
	if (!(t == CONFIG_TYPE_LIST || (t == CONFIG_TYPE_ARRAY && config_setting_length(list) == 0))) {
		errf(ld, list, "tools must be a list ( { ... }, ... ), not %s", type_name(t));
		return;
	}
	int n = config_setting_length(list);
	cfg->tools = util_xcalloc((size_t)n, sizeof(*cfg->tools));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		char where[32];
		snprintf(where, sizeof(where), "tools[%d]", i);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
			errf(ld, e, "%s must be a group { name = ...; command = [...]; }", where);
			continue;
		}
		check_keys(ld, e, where, keys);
		struct tool_config *tc = &cfg->tools[cfg->ntools++];
		tc->line = (int)config_setting_source_line(e);

		const config_setting_t *s = get_str(ld, e, where, "name", "", &tc->name);
		if (!s && !member(e, "name"))
			errf(ld, e, "%s: missing required key \"name\"", where);
		else if (s && !tc->name[0])
			errf(ld, s, "%s.name must not be empty", where);
		else if (s) {
			for (size_t j = 0; j + 1 < cfg->ntools; j++)
				if (strcmp(cfg->tools[j].name, tc->name) == 0) {
					errf(ld, s, "duplicate tool name \"%s\" (first defined at line %d)",
					     tc->name, cfg->tools[j].line);
					break;
				}
		}

		s = get_strlist(ld, e, where, "command", &tc->command);
		if (!member(e, "command")) {
			errf(ld, e, "%s: missing required key \"command\"", where);
		} else if (s && tc->command.n == 0) {
			errf(ld, s, "%s.command must not be empty", where);
		} else if (s && checks_machine(ld)) {
			const char *c0 = tc->command.v[0];
			struct stat st;
			if (c0[0] != '/')
				errf(ld, s, "%s.command: \"%s\" is not an absolute path", where, c0);
			else if (stat(c0, &st) < 0)
				errf(ld, s, "%s.command: %s: %s", where, c0, strerror(errno));
			else if (!S_ISREG(st.st_mode) || access(c0, X_OK) < 0)
				errf(ld, s, "%s.command: %s is not an executable file", where, c0);
		}
		int64_t v;
		get_int(ld, e, where, "timeout_ms", 5000, 1, MAX_DURATION_MS, &tc->timeout_ms);
		get_int(ld, e, where, "max_output", 65536, 1, 64 * 1024 * 1024, &tc->max_output);
		s = get_strlist(ld, e, where, "env", &tc->env);
		for (size_t j = 0; j < tc->env.n; j++) {
			const char *eq = strchr(tc->env.v[j], '=');
			if (!eq || eq == tc->env.v[j])
				errf(ld, s, "%s.env[%zu] must be \"NAME=VALUE\"", where, j);
		}
		s = get_str(ld, e, where, "cwd", "/", &tc->cwd);
		if (tc->cwd[0] != '/')
			errf(ld, s, "%s.cwd must be an absolute path, not \"%s\"", where, tc->cwd);
		char rw[48];
		snprintf(rw, sizeof(rw), "%s.rlimits", where);
		const config_setting_t *rg = get_group(ld, e, where, "rlimits", rkeys);
		get_int(ld, rg, rw, "cpu_s", 0, 0, MAX_DURATION_MS / 1000, &v);
		tc->rlimit_cpu_s = v;
		get_int(ld, rg, rw, "as_mb", 0, 0, INT64_C(16777216), &v);
		tc->rlimit_as_mb = v;
		get_int(ld, rg, rw, "nofile", 0, 0, INT64_C(1048576), &v);
		tc->rlimit_nofile = v;

		char *mode = NULL;
		s = get_str(ld, e, where, "mode", "exec", &mode);
		if (strcmp(mode, "exec") == 0)
			tc->mode = TOOL_EXEC;
		else if (strcmp(mode, "persistent") == 0)
			tc->mode = TOOL_PERSISTENT;
		else
			errf(ld, s, "%s.mode must be \"exec\" or \"persistent\", not \"%s\"", where, mode);
		free(mode);
		/* The handler's settings mean nothing to an exec tool: refuse
		 * them there rather than ignore them silently. */
		const config_setting_t *ps[4];
		ps[0] = get_int(ld, e, where, "concurrency", 1, 1, MAX_COUNT, &tc->concurrency);
		ps[1] = get_int(ld, e, where, "start_timeout_ms", 10000, 1, MAX_DURATION_MS, &tc->start_timeout_ms);
		ps[2] = get_int(ld, e, where, "max_calls", 0, 0, INT64_C(1000000000), &tc->max_calls);
		ps[3] = get_int(ld, e, where, "max_rss_mb", 0, 0, 1048576, &tc->max_rss_mb);
		for (size_t k = 0; k < ARRAY_SIZE(ps) && tc->mode == TOOL_EXEC; k++)
			if (ps[k])
				errf(ld, ps[k], "%s.%s applies to persistent tools only (mode = \"persistent\")", where,
				     config_setting_name(ps[k]));
	}
}

static void pool_free(struct pool_config *p)
{
	free(p->name);
	free(p->group);
	strlist_free(&p->streams);
	strlist_free(&p->patterns);
	strlist_free(&p->tools);
	free(p->sqlite_path);
}

struct pool_lines {
	const config_setting_t *entry, *name, *block, *claim, *maxdel, *sqlite, *tools;
};

static void check_tool_overlap(struct ld *ld, const struct pool_lines *pl);

static void check_sqlite_dirs(struct ld *ld, const struct pool_lines *pl);

static void load_pools(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = {"name", "kind", "count", "group", "streams", "batch", "block_ms",
					   "claim_idle_ms", "max_deliveries", "reducer", "max_rss_mb",
					   "sqlite_path", "discover_ms", "read_keys", "idle_ms",
					   "idle_check_rate", "tools", "snapshot_interval_ms", NULL};
	struct sv_config *cfg = ld->cfg;
	config_setting_t *list = member(root, "pools");
	if (!list)
		return;
	int t = config_setting_type(list);
	if (!(t == CONFIG_TYPE_LIST || (t == CONFIG_TYPE_ARRAY && config_setting_length(list) == 0))) {
		errf(ld, list, "pools must be a list ( { ... }, ... ), not %s", type_name(t));
		return;
	}
	int n = config_setting_length(list);
	cfg->pools = util_xcalloc((size_t)n, sizeof(*cfg->pools));
	struct pool_lines *pl = util_xcalloc((size_t)n, sizeof(*pl));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		char where[32];
		snprintf(where, sizeof(where), "pools[%d]", i);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
			errf(ld, e, "%s must be a group { name = ...; kind = ...; }", where);
			continue;
		}
		check_keys(ld, e, where, keys);
		struct pool_lines *L = &pl[cfg->npools];
		struct pool_config *p = &cfg->pools[cfg->npools++];
		p->line = (int)config_setting_source_line(e);
		L->entry = e;

		const config_setting_t *s = get_str(ld, e, where, "name", "", &p->name);
		L->name = s;
		const char *why;
		if (!member(e, "name")) {
			errf(ld, e, "%s: missing required key \"name\"", where);
		} else if (s && (why = bad_name(p->name))) {
			errf(ld, s, "%s.name \"%s\" %s", where, p->name, why);
		} else if (s) {
			for (size_t j = 0; j + 1 < cfg->npools; j++)
				if (strcmp(cfg->pools[j].name, p->name) == 0) {
					errf(ld, s, "duplicate pool name \"%s\" (first defined at line %d)",
					     p->name, cfg->pools[j].line);
					break;
				}
		}

		char *kind = NULL;
		bool kind_ok = false;
		s = get_str(ld, e, where, "kind", "", &kind);
		if (!member(e, "kind"))
			errf(ld, e, "%s: missing required key \"kind\"", where);
		else if (s && strcmp(kind, "persistence") == 0)
			p->kind = POOL_PERSISTENCE, kind_ok = true;
		else if (s && strcmp(kind, "tool") == 0)
			p->kind = POOL_TOOL, kind_ok = true;
		else if (s)
			errf(ld, s, "%s.kind must be \"persistence\" or \"tool\", not \"%s\"", where, kind);
		free(kind);
		bool pers = p->kind == POOL_PERSISTENCE;

		get_int(ld, e, where, "count", 1, 0, MAX_COUNT, &p->count);

		char *group = NULL;
		s = get_str(ld, e, where, "group", pers ? "persist@{node}" : "tools", &group);
		p->group = replace_node(group, cfg->node);
		free(group);
		if (!p->group[0])
			errf(ld, s, "%s.group must not be empty", where);

		s = get_strlist(ld, e, where, "streams", &p->streams);
		if (s && p->streams.n > 0) {
			char kp[48];
			snprintf(kp, sizeof(kp), "%s.streams", where);
			check_streams(ld, s, kp, &p->streams);
			split_streams(ld, s, kp, &p->streams, &p->patterns);
		} else {
			strlist_free(&p->streams);
			strlist_copy(&p->streams, &cfg->streams);
			strlist_copy(&p->patterns, &cfg->patterns);
		}
		get_int(ld, e, where, "discover_ms", 1000, 100, 600000, &p->discover_ms);
		get_int(ld, e, where, "read_keys", 16, 1, 1000, &p->read_keys);
		get_int(ld, e, where, "idle_ms", 10000, 100, DAY_MS, &p->idle_ms);
		get_int(ld, e, where, "idle_check_rate", 1000, 1, 1000000, &p->idle_check_rate);

		get_int(ld, e, where, "batch", pers ? 256 : 16, 1, 100000, &p->batch);
		L->block = get_int(ld, e, where, "block_ms", 2000, 1, MAX_DURATION_MS, &p->block_ms);
		L->claim = get_int(ld, e, where, "claim_idle_ms", 30000, 1, MAX_DURATION_MS, &p->claim_idle_ms);
		L->maxdel = get_int(ld, e, where, "max_deliveries", 3, 1, MAX_BIG, &p->max_deliveries);
		get_int(ld, e, where, "max_rss_mb", 0, 0, 1048576, &p->max_rss_mb);
		s = get_int(ld, e, where, "snapshot_interval_ms", 250, 0, 3600000, &p->snapshot_interval_ms);
		if (s && kind_ok && !pers)
			errf(ld, s, "%s: snapshot_interval_ms applies to persistence pools only", where);

		char *red = NULL;
		s = get_str(ld, e, where, "reducer", "response", &red);
		p->reducer = REDUCER_RESPONSE;
		if (strcmp(red, "response") == 0)
			p->reducer = REDUCER_RESPONSE;
		else if (strcmp(red, "merge") == 0)
			p->reducer = REDUCER_MERGE;
		else
			errf(ld, s, "%s: unknown reducer \"%s\" (expected \"response\" or \"merge\")", where, red);
		free(red);
		if (s && kind_ok && !pers)
			errf(ld, s, "%s: reducer applies to persistence pools only", where);

		char *sp = NULL;
		s = get_str(ld, e, where, "sqlite_path", "", &sp);
		L->sqlite = s;
		if (s && kind_ok && !pers)
			errf(ld, s, "%s: sqlite_path applies to persistence pools only", where);
		if (pers) /* "" = sqlite.path */
			p->sqlite_path = sp[0] ? resolve_path(ld, sp) : util_xstrdup(cfg->sqlite.path);
		free(sp);

		s = get_strlist(ld, e, where, "tools", &p->tools);
		L->tools = s;
		p->tools_given = s != NULL;
		if (s && kind_ok && pers) {
			errf(ld, s, "%s: tools applies to tool pools only", where);
		} else if (s && p->tools.n == 0) {
			errf(ld, s, "%s.tools must name at least one tool (leave it out to serve every tool)", where);
		} else if (s) {
			for (size_t j = 0; j < p->tools.n; j++) {
				if (!config_find_tool(cfg, p->tools.v[j]))
					errf(ld, s, "%s.tools: no tool named \"%s\" in tools", where, p->tools.v[j]);
				for (size_t k = 0; k < j; k++)
					if (strcmp(p->tools.v[j], p->tools.v[k]) == 0) {
						errf(ld, s, "%s.tools: duplicate tool \"%s\"", where, p->tools.v[j]);
						break;
					}
			}
		}
	}

	/* Cross-checks with the heartbeat, redis and restart settings. */
	for (size_t i = 0; i < cfg->npools; i++) {
		struct pool_config *p = &cfg->pools[i];
		struct pool_lines *L = &pl[i];
		const char *nm = p->name && p->name[0] ? p->name : "?";
		if (p->block_ms > cfg->heartbeat.interval_ms)
			errf(ld, L->block ? L->block : L->entry,
			     "pool %s: block_ms (%" PRId64 ") must not exceed heartbeat.interval_ms (%" PRId64 ")",
			     nm, p->block_ms, cfg->heartbeat.interval_ms);
		if (p->block_ms >= cfg->redis.command_timeout_ms)
			errf(ld, L->block ? L->block : L->entry,
			     "pool %s: block_ms (%" PRId64 ") must be less than redis.command_timeout_ms (%" PRId64 ")",
			     nm, p->block_ms, cfg->redis.command_timeout_ms);
		if (p->claim_idle_ms < cfg->heartbeat.timeout_ms)
			errf(ld, L->claim ? L->claim : L->entry,
			     "pool %s: claim_idle_ms (%" PRId64 ") must be at least heartbeat.timeout_ms (%" PRId64 ")",
			     nm, p->claim_idle_ms, cfg->heartbeat.timeout_ms);
		if (p->max_deliveries >= cfg->restart.max_retries)
			errf(ld, L->maxdel ? L->maxdel : L->entry,
			     "pool %s: max_deliveries (%" PRId64 ") must be less than restart.max_retries (%" PRId64
			     "), so a poison entry is dead-lettered before the pool goes FATAL",
			     nm, p->max_deliveries, cfg->restart.max_retries);
		if (p->kind == POOL_PERSISTENCE && p->sqlite_path) {
			for (size_t j = 0; j < i; j++) {
				const struct pool_config *q = &cfg->pools[j];
				if (q->kind == POOL_PERSISTENCE && q->sqlite_path &&
				    strcmp(q->sqlite_path, p->sqlite_path) == 0) {
					errf(ld, L->sqlite ? L->sqlite : L->entry,
					     "persistence pools %s and %s use the same SQLite file %s", q->name, nm,
					     p->sqlite_path);
					break;
				}
			}
		}
	}
	check_sqlite_dirs(ld, pl);
	check_tool_overlap(ld, pl);
	free(pl);
}

/* ---- tool pools that would both answer a call --------------------------- */

/* The literal text of a pattern before its first wildcard, escapes
 * removed (malloc'd). */
static char *pattern_prefix(const char *pat)
{
	char *out = util_xstrdup(pat), *o = out;
	for (const char *p = pat; *p; p++) {
		if (*p == '*' || *p == '?' || *p == '[')
			break;
		if (*p == '\\' && p[1])
			p++;
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

bool config_pools_may_share_stream(const struct pool_config *a, const struct pool_config *b, char *example,
				   size_t len)
{
	for (size_t i = 0; i < a->streams.n; i++)
		if (config_strlist_has(&b->streams, a->streams.v[i]) || config_match_any(&b->patterns, a->streams.v[i])) {
			snprintf(example, len, "%s", a->streams.v[i]);
			return true;
		}
	for (size_t i = 0; i < b->streams.n; i++)
		if (config_match_any(&a->patterns, b->streams.v[i])) {
			snprintf(example, len, "%s", b->streams.v[i]);
			return true;
		}
	/* Two patterns: told apart only when neither literal prefix is a
	 * prefix of the other ("a:*" and "b:*"); anything subtler counts as
	 * an overlap. */
	for (size_t i = 0; i < a->patterns.n; i++)
		for (size_t j = 0; j < b->patterns.n; j++) {
			char *pa = pattern_prefix(a->patterns.v[i]), *pb = pattern_prefix(b->patterns.v[j]);
			size_t la = strlen(pa), lb = strlen(pb);
			bool may = strncmp(pa, pb, la < lb ? la : lb) == 0;
			free(pa);
			free(pb);
			if (may) {
				snprintf(example, len, "%s / %s", a->patterns.v[i], b->patterns.v[j]);
				return true;
			}
		}
	return false;
}

bool config_pool_serves(const struct pool_config *p, const char *name)
{
	return !p->tools_given || config_strlist_has(&p->tools, name);
}

/* A tool both pools serve (the first of a's list, or of the tools), or
 * NULL; "any tool" when neither names its tools and no tool is defined. */
static const char *common_tool(const struct sv_config *cfg, const struct pool_config *a,
			       const struct pool_config *b)
{
	if (!a->tools_given && !b->tools_given)
		return cfg->ntools ? cfg->tools[0].name : "any tool";
	const struct pool_config *named = a->tools_given ? a : b, *other = named == a ? b : a;
	for (size_t i = 0; i < named->tools.n; i++)
		if (config_pool_serves(other, named->tools.v[i]))
			return named->tools.v[i];
	return NULL;
}

/* Two tool pools reading one stream through different groups both get
 * every call on it: each would publish an output for the tools they both
 * serve (done marks are per call, so the second publish is skipped, but
 * which pool answers is a race).  Refused: the pools must name disjoint
 * tools, or share a group. */
static void check_tool_overlap(struct ld *ld, const struct pool_lines *pl)
{
	const struct sv_config *cfg = ld->cfg;
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct pool_config *p = &cfg->pools[i];
		if (p->kind != POOL_TOOL || !p->group || !p->name)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct pool_config *q = &cfg->pools[j];
			if (q->kind != POOL_TOOL || !q->group || !q->name || strcmp(q->group, p->group) == 0)
				continue;
			const char *tool = common_tool(cfg, q, p);
			char where[512];
			if (!tool || !config_pools_may_share_stream(q, p, where, sizeof(where)))
				continue;
			errf(ld, pl[i].tools ? pl[i].tools : pl[i].entry,
			     "tool pools %s and %s would both answer tool \"%s\" on %s through different groups "
			     "(%s, %s): give them disjoint pools[].tools, the same group, or disjoint streams",
			     q->name, p->name, tool, where, q->group, p->group);
			break;
		}
	}
}

/* ---- SQLite directories ------------------------------------------------ */

/* The user the workers run as: run_as when the daemon starts as root
 * (master.c drops to it there), else the daemon's own. */
struct dir_user {
	uid_t uid;
	gid_t gids[64];
	int ngids;
	const char *name;
};

static bool dir_user_get(const struct sv_config *cfg, struct dir_user *u)
{
	u->name = "the daemon's user";
	if (geteuid() != 0 || !cfg->run_as.user[0]) {
		u->uid = geteuid();
		u->gids[0] = getegid();
		int n = getgroups((int)ARRAY_SIZE(u->gids) - 1, u->gids + 1);
		u->ngids = 1 + (n > 0 ? n : 0);
		return true;
	}
	struct passwd *pw = getpwnam(cfg->run_as.user);
	if (!pw)
		return false; /* load_run_as said so */
	u->uid = pw->pw_uid;
	u->name = cfg->run_as.user;
	struct group *gr = cfg->run_as.group[0] ? getgrnam(cfg->run_as.group) : NULL;
	gid_t primary = gr ? gr->gr_gid : pw->pw_gid;
	int n = (int)ARRAY_SIZE(u->gids);
	if (getgrouplist(cfg->run_as.user, primary, u->gids, &n) < 0)
		n = (int)ARRAY_SIZE(u->gids); /* the first ones are enough here */
	u->ngids = n;
	return true;
}

/* Mode bits only (no ACLs): may u do want (of 07: r, w, x) in st? */
static bool dir_user_may(const struct dir_user *u, const struct stat *st, int want)
{
	if (u->uid == 0)
		return true;
	int bits = (int)st->st_mode & 07;
	if (st->st_uid == u->uid) {
		bits = ((int)st->st_mode >> 6) & 07;
	} else {
		for (int i = 0; i < u->ngids; i++)
			if (u->gids[i] == st->st_gid) {
				bits = ((int)st->st_mode >> 3) & 07;
				break;
			}
	}
	return (bits & want) == want;
}

/* Can u use dir: it exists, or u can create it with its missing parents?
 * NULL, or why u cannot create file in it (in buf).  Every existing component must be a
 * directory u may search, and the deepest existing one (dir itself when
 * it exists: SQLite creates -wal and -shm files beside the database) one
 * u may write to. */
static const char *dir_problem(const char *dir, const char *file, const struct dir_user *u, char *buf, size_t len)
{
	char *p = util_xstrdup(dir);
	size_t n = strlen(p);
	struct stat st, last;
	const char *why = NULL;
	bool any = false;
	char *deepest = NULL;
	for (size_t i = 1; i <= n && !why; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		char keep = p[i];
		p[i] = '\0';
		if (stat(p, &st) < 0) {
			if (errno != ENOENT)
				snprintf(buf, len, "cannot create %s: %s: %s", file, p, strerror(errno)), why = buf;
			p[i] = keep;
			break; /* missing from here on */
		}
		if (!S_ISDIR(st.st_mode))
			snprintf(buf, len, "cannot create %s: %s is not a directory", file, p), why = buf;
		else if (!dir_user_may(u, &st, 01))
			snprintf(buf, len, "%s cannot create %s: %s is not searchable", u->name, file, p), why = buf;
		last = st;
		any = true;
		free(deepest);
		deepest = util_xstrdup(p);
		p[i] = keep;
	}
	if (!why && any && !dir_user_may(u, &last, 03))
		snprintf(buf, len, "%s cannot create %s: %s is not writable", u->name, file, deepest), why = buf;
	free(deepest);
	free(p);
	return why;
}

/* The directory of path is usable (dir_problem), or an error at s. */
static void check_sqlite_dir(struct ld *ld, const config_setting_t *s, const char *what, const char *path,
			     const struct dir_user *u)
{
	char *copy = util_xstrdup(path);
	char *slash = strrchr(copy, '/');
	if (slash)
		*(slash == copy ? slash + 1 : slash) = '\0';
	char buf[PATH_MAX * 2 + 128];
	const char *why = dir_problem(slash ? copy : ".", path, u, buf, sizeof(buf));
	if (why)
		errf(ld, s, "%s: %s", what, why);
	free(copy);
}

/* Workers open their SQLite files after the privilege drop, and a
 * directory they cannot create makes them FATAL at start: -t (and a
 * start or reload) says so first, with the line.  Each directory once:
 * sqlite.path, and each persistence pool's own sqlite_path. */
static void check_sqlite_dirs(struct ld *ld, const struct pool_lines *pl)
{
	const struct sv_config *cfg = ld->cfg;
	struct dir_user u;
	if (!checks_machine(ld) || !cfg->sqlite.path || !dir_user_get(cfg, &u))
		return;
	check_sqlite_dir(ld, ld->sqlite_path, "sqlite.path", cfg->sqlite.path, &u);
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct pool_config *p = &cfg->pools[i];
		if (p->kind != POOL_PERSISTENCE || !p->sqlite_path || !pl[i].sqlite ||
		    strcmp(p->sqlite_path, cfg->sqlite.path) == 0)
			continue;
		char what[300];
		snprintf(what, sizeof(what), "pool %s: sqlite_path", p->name);
		check_sqlite_dir(ld, pl[i].sqlite, what, p->sqlite_path, &u);
	}
}

/* ---- load ------------------------------------------------------------- */

static void ld_free(struct ld *ld)
{
	for (size_t i = 0; i < ld->nfiles; i++) {
		free(ld->files[i].name);
		free(ld->files[i].text);
		free(ld->files[i].lines);
	}
	free(ld->files);
	free(ld->lits);
	free(ld->seen);
	for (size_t i = 0; i < ld->npend; i++) {
		free(ld->pend[i].file);
		free(ld->pend[i].text);
	}
	free(ld->pend);
	free(ld->dir_given);
	config_destroy(&ld->lc);
}

/* libconfig 1.5 calls exit() when an @include names a directory (its
 * flex scanner fails), so every include is checked first: each must be
 * a readable regular file, relative to the main file's directory (the
 * one include directory 1.5 has).  Returns 0, or -EINVAL with the
 * problems in errs as FILE:LINE: message. */
static int check_includes(struct ld *ld, const char *file, const char *dir, int depth)
{
	FILE *fp = fopen(file, "re");
	if (!fp)
		return 0; /* reported by the caller or by libconfig */
	/* A NUL byte makes it binary, not a configuration (and would cut the
	 * names checked below short of what libconfig opens). */
	int ch, lineno = 1, ret = 0;
	while ((ch = getc(fp)) != EOF) {
		if (ch == '\n')
			lineno++;
		if (ch == '\0') {
			errs_push(ld->errs, util_xasprintf("%s:%d: NUL byte in the configuration", file, lineno));
			fclose(fp);
			return -EINVAL;
		}
	}
	rewind(fp);
	char line[4096];
	lineno = 0;
	while (ret == 0 && fgets(line, sizeof(line), fp)) {
		lineno++;
		const char *p = line + strspn(line, " \t");
		if (strncmp(p, "@include", 8) != 0)
			continue;
		p += 8;
		p += strspn(p, " \t");
		const char *q = *p == '"' ? strchr(p + 1, '"') : NULL;
		if (!q)
			continue; /* malformed: libconfig reports the syntax error */
		char *name = util_xasprintf("%.*s", (int)(q - p - 1), p + 1);
		char *target = name[0] == '/' ? util_xasprintf("%s", name) : util_xasprintf("%s/%s", dir, name);
		struct stat st;
		const char *why = NULL;
		if (strlen(name) != (size_t)(q - p - 1) || strchr(name, '\\'))
			why = "unsupported characters in the file name";
		else if (stat(target, &st) < 0)
			why = strerror(errno);
		else if (!S_ISREG(st.st_mode))
			why = "not a regular file";
		else if (access(target, R_OK) < 0)
			why = strerror(errno);
		if (why) {
			errs_push(ld->errs, util_xasprintf("%s:%d: cannot include \"%s\": %s", file, lineno, name, why));
			ret = -EINVAL;
		} else if (depth >= 10) {
			errs_push(ld->errs, util_xasprintf("%s:%d: @include nested too deeply", file, lineno));
			ret = -EINVAL;
		} else if (check_includes(ld, target, dir, depth + 1) < 0) {
			ret = -EINVAL;
		}
		free(name);
		free(target);
	}
	fclose(fp);
	return ret;
}

static int load(struct ld *ld)
{
	struct sv_config *cfg = ld->cfg;
	const char *path = ld->path;

	/* Readable?  libconfig's own I/O error carries no file or reason. */
	struct stat st;
	FILE *fp = fopen(path, "r");
	int e = 0;
	if (!fp)
		e = errno;
	else if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode))
		e = EISDIR;
	if (fp)
		fclose(fp);
	if (e) {
		errs_push(ld->errs, util_xasprintf("%s: cannot read: %s", path, strerror(e)));
		return -e;
	}

	char *d = dir_of(path);
	char *real = realpath(d, NULL);
	if (real) {
		cfg->dir = real;
	} else {
		char cwd[PATH_MAX];
		if (d[0] != '/' && getcwd(cwd, sizeof(cwd))) {
			char *j = util_xasprintf("%s/%s", cwd, d);
			cfg->dir = path_normalize(j);
			free(j);
		} else {
			cfg->dir = path_normalize(d);
		}
	}
	ld->dir_given = d;

	config_set_include_dir(&ld->lc, cfg->dir);
	if (check_includes(ld, path, cfg->dir, 0) < 0)
		return -EINVAL;
	if (!config_read_file(&ld->lc, path)) {
		const char *ef = config_error_file(&ld->lc);
		const char *et = config_error_text(&ld->lc);
		if (config_error_type(&ld->lc) == CONFIG_ERR_FILE_IO && !ef) {
			errs_push(ld->errs, util_xasprintf("%s: cannot read: %s", path, et ? et : "I/O error"));
			return -EIO;
		}
		char *f = display_file(ld, ef);
		errs_push(ld->errs, util_xasprintf("%s:%d: %s", f, config_error_line(&ld->lc), et ? et : "syntax error"));
		free(f);
		return -EINVAL;
	}

	const config_setting_t *root = config_root_setting(&ld->lc);
	scan_literals(ld, root);
	check_keys(ld, root, "", top_keys);

	const config_setting_t *s;
	char *tmp = NULL;

	s = get_str(ld, root, "", "node", "", &tmp);
	if (!tmp[0]) {
		char host[256];
		util_hostname(host, sizeof(host));
		cfg->node = util_xstrdup(host);
	} else {
		cfg->node = tmp;
		tmp = NULL;
		const char *why = bad_name(cfg->node);
		if (why)
			errf(ld, s, "node \"%s\" %s", cfg->node, why);
	}
	free(tmp);
	tmp = NULL;
	s = get_str(ld, root, "", "namespace", "sv", &cfg->namespace);
	if (!cfg->namespace[0])
		errf(ld, s, "namespace must not be empty");

	struct xlines x = {0};
	load_redis(ld, root);
	load_sqlite(ld, root);
	load_control(ld, root);
	load_run_as(ld, root);
	load_heartbeat_restart(ld, root, &x);

	s = get_strlist(ld, root, "", "streams", &cfg->streams);
	if (!member(root, "streams"))
		errf(ld, root, "missing required key \"streams\"");
	else if (s && cfg->streams.n == 0)
		errf(ld, s, "streams must list at least one stream");
	else if (s)
		check_streams(ld, s, "streams", &cfg->streams);
	/* Patterns leave the list: cfg->streams keeps the literal names. */
	split_streams(ld, s, "streams", &cfg->streams, &cfg->patterns);

	load_retention_metrics_log(ld, root);
	load_http(ld, root);
	load_tools(ld, root);
	load_pools(ld, root);

	/* Global cross-checks. */
	if (cfg->heartbeat.timeout_ms < 3 * cfg->heartbeat.interval_ms)
		errf(ld, x.hb_timeout ? x.hb_timeout : x.hb_interval ? x.hb_interval : x.hb_group ? x.hb_group : root,
		     "heartbeat.timeout_ms (%" PRId64 ") must be at least 3 x heartbeat.interval_ms (%" PRId64 ")",
		     cfg->heartbeat.timeout_ms, cfg->heartbeat.interval_ms);
	if (cfg->restart.backoff_initial_ms > cfg->restart.backoff_max_ms)
		errf(ld, x.backoff_initial ? x.backoff_initial : x.restart_group ? x.restart_group : root,
		     "restart.backoff_initial_ms (%" PRId64 ") must not exceed restart.backoff_max_ms (%" PRId64 ")",
		     cfg->restart.backoff_initial_ms, cfg->restart.backoff_max_ms);

	int r = ld->npend ? -EINVAL : 0;
	flush_pending(ld);
	return r;
}

static int load_as(const char *path, bool client, struct sv_config **out, struct config_errors *errs)
{
	struct config_errors local = {0};
	struct ld ld = {.client = client};
	*out = NULL;
	if (!errs)
		errs = &local;
	size_t n0 = errs->n;
	ld.errs = errs;
	ld.path = path;
	ld.cfg = util_xcalloc(1, sizeof(*ld.cfg));
	ld.cfg->path = util_xstrdup(path);
	config_init(&ld.lc);
	int r = load(&ld);
	if (r == 0 && errs->n > n0)
		r = -EINVAL;
	ld_free(&ld);
	config_errors_free(&local);
	if (r < 0) {
		config_free(ld.cfg);
		return r;
	}
	*out = ld.cfg;
	return 0;
}

int config_load(const char *path, struct sv_config **out, struct config_errors *errs)
{
	return load_as(path, false, out, errs);
}

int config_load_client(const char *path, struct sv_config **out, struct config_errors *errs)
{
	return load_as(path, true, out, errs);
}

void config_free(struct sv_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->dir);
	free(cfg->node);
	free(cfg->namespace);
	free(cfg->redis.url);
	redis_url_free(&cfg->redis.parsed);
	free(cfg->redis.password_file);
	if (cfg->redis.password) {
		explicit_bzero(cfg->redis.password, strlen(cfg->redis.password));
		free(cfg->redis.password);
	}
	free(cfg->redis.url_redacted);
	free(cfg->sqlite.path);
	free(cfg->control.socket);
	free(cfg->control.group);
	free(cfg->run_as.user);
	free(cfg->run_as.group);
	strlist_free(&cfg->streams);
	strlist_free(&cfg->patterns);
	for (size_t i = 0; i < cfg->npools; i++)
		pool_free(&cfg->pools[i]);
	free(cfg->pools);
	for (size_t i = 0; i < cfg->ntools; i++)
		tool_free(&cfg->tools[i]);
	free(cfg->tools);
	free(cfg->metrics.listen);
	free(cfg->http.listen);
	free(cfg->http.user);
	free(cfg->http.token_file);
	strlist_free(&cfg->http.hosts);
	free(cfg->http.tls_cert);
	free(cfg->http.tls_key);
	strlist_free(&cfg->http.actions);
	free(cfg->log.file);
	free(cfg);
}

/* ---- reload helpers ---------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

const char *config_files_group(const struct sv_config *cfg, char *buf, size_t len)
{
	if (cfg->control.group[0] || !cfg->http.listen[0] || cfg->http.user[0] || geteuid() != 0)
		return cfg->control.group;
	struct passwd *pw = getpwnam("nobody");
	struct group *gr = pw ? getgrgid(pw->pw_gid) : NULL;
	if (!gr || snprintf(buf, len, "%s", gr->gr_name) >= (int)len)
		return cfg->control.group;
	return buf;
}

const char *config_web_restart_key(const struct sv_config *old, const struct sv_config *new)
{
	if (!str_eq(old->http.listen, new->http.listen))
		return "http.listen";
	if (!str_eq(old->metrics.listen, new->metrics.listen))
		return "metrics.listen";
	if (!str_eq(old->http.user, new->http.user))
		return "http.user";
	if (!str_eq(old->http.tls_cert, new->http.tls_cert) || !str_eq(old->http.tls_key, new->http.tls_key))
		return "http.tls_cert";
	return NULL;
}

const char *config_restart_key_changed(const struct sv_config *old, const struct sv_config *new)
{
	if (!str_eq(old->node, new->node))
		return "node";
	if (!str_eq(old->namespace, new->namespace))
		return "namespace";
	if (!str_eq(old->redis.url, new->redis.url) || !str_eq(old->redis.password, new->redis.password) ||
	    !str_eq(old->redis.password_file, new->redis.password_file) ||
	    old->redis.connect_timeout_ms != new->redis.connect_timeout_ms ||
	    old->redis.command_timeout_ms != new->redis.command_timeout_ms)
		return "redis";
	if (!str_eq(old->sqlite.path, new->sqlite.path) || old->sqlite.synchronous != new->sqlite.synchronous ||
	    old->sqlite.busy_timeout_ms != new->sqlite.busy_timeout_ms)
		return "sqlite";
	if (!str_eq(old->control.socket, new->control.socket) || old->control.mode != new->control.mode ||
	    !str_eq(old->control.group, new->control.group))
		return "control";
	if (!str_eq(old->run_as.user, new->run_as.user) || !str_eq(old->run_as.group, new->run_as.group))
		return "run_as";
	if (!str_eq(old->log.file, new->log.file))
		return "log.file";
	return NULL;
}

static bool tool_equal(const struct tool_config *a, const struct tool_config *b)
{
	return str_eq(a->name, b->name) && strlist_equal(&a->command, &b->command) &&
	       a->timeout_ms == b->timeout_ms && a->max_output == b->max_output &&
	       strlist_equal(&a->env, &b->env) && str_eq(a->cwd, b->cwd) &&
	       a->rlimit_cpu_s == b->rlimit_cpu_s && a->rlimit_as_mb == b->rlimit_as_mb &&
	       a->rlimit_nofile == b->rlimit_nofile && a->mode == b->mode && a->concurrency == b->concurrency &&
	       a->start_timeout_ms == b->start_timeout_ms && a->max_calls == b->max_calls &&
	       a->max_rss_mb == b->max_rss_mb;
}

bool config_tools_equal(const struct sv_config *a, const struct sv_config *b)
{
	if (a->ntools != b->ntools)
		return false;
	for (size_t i = 0; i < a->ntools; i++) {
		const struct tool_config *tb = config_find_tool(b, a->tools[i].name);
		if (!tb || !tool_equal(&a->tools[i], tb))
			return false;
	}
	return true;
}

bool config_heartbeat_equal(const struct sv_config *a, const struct sv_config *b)
{
	return a->heartbeat.interval_ms == b->heartbeat.interval_ms &&
	       a->heartbeat.timeout_ms == b->heartbeat.timeout_ms;
}

bool config_pool_changed(const struct sv_config *old, const struct pool_config *a,
			 const struct sv_config *new, const struct pool_config *b)
{
	if (!str_eq(a->name, b->name) || a->kind != b->kind || !str_eq(a->group, b->group) ||
	    !strlist_equal(&a->streams, &b->streams) || a->batch != b->batch || a->block_ms != b->block_ms ||
	    a->claim_idle_ms != b->claim_idle_ms || a->max_deliveries != b->max_deliveries ||
	    a->reducer != b->reducer || a->max_rss_mb != b->max_rss_mb || !str_eq(a->sqlite_path, b->sqlite_path) ||
	    !strlist_equal(&a->patterns, &b->patterns) || a->discover_ms != b->discover_ms ||
	    a->read_keys != b->read_keys || a->idle_ms != b->idle_ms || a->idle_check_rate != b->idle_check_rate ||
	    a->snapshot_interval_ms != b->snapshot_interval_ms || a->tools_given != b->tools_given || !strlist_equal(&a->tools, &b->tools))
		return true;
	/* Workers beat at heartbeat.interval_ms and give their fencing key a
	 * TTL of timeout_ms: a running worker would keep the old values. */
	if (!config_heartbeat_equal(old, new))
		return true;
	if (a->kind == POOL_TOOL && !config_tools_equal(old, new))
		return true;
	return false;
}

const struct pool_config *config_find_pool(const struct sv_config *cfg, const char *name)
{
	for (size_t i = 0; cfg && name && i < cfg->npools; i++)
		if (cfg->pools[i].name && strcmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	return NULL;
}

const struct tool_config *config_find_tool(const struct sv_config *cfg, const char *name)
{
	for (size_t i = 0; cfg && name && i < cfg->ntools; i++)
		if (cfg->tools[i].name && strcmp(cfg->tools[i].name, name) == 0)
			return &cfg->tools[i];
	return NULL;
}

const char *config_pool_kind_name(enum pool_kind k)
{
	return k == POOL_TOOL ? "tool" : "persistence";
}

const char *config_tool_mode_name(enum tool_mode m)
{
	return m == TOOL_PERSISTENT ? "persistent" : "exec";
}
