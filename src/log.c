/* log: one-line structured logging (logfmt or JSON) for the master, and the
 * relay of worker lines that reach the master through pipes.
 *
 * Every line is built in memory and written with a single write() call, so
 * lines from several processes sharing a pipe or an O_APPEND file never
 * interleave (below PIPE_BUF for pipes).  Nothing here may crash the
 * process: when a line cannot be formatted (allocation failure), it is
 * dropped.  errno is preserved across every call. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util.h"

/* A message (or any single value) is cut to this many bytes. */
#define LOG_MSG_MAX 4000
/* Room for a message escaped at worst (6 bytes per byte) plus the keys. */
#define LOG_LINE_MAX 32768

static struct {
	char proc[64];
	enum log_level level;
	enum log_format fmt;
	int fd;          /* 2 = stderr */
	bool owned;      /* fd was opened by log_open */
	bool child;      /* log_open_child: JSON lines to fd 2 */
	char *path;      /* log_open's file, for log_reopen */
} L = {.level = LOG_INFO, .fmt = LOG_FMT_LOGFMT, .fd = 2};

static char line_buf[LOG_LINE_MAX];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* ---- UTF-8 ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Cut len so that s[0..len) does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = len, back = 0;
	while (i > 0 && back < 3 && (u[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0 || u[i - 1] < 0xc0)
		return len;
	/* u[i-1] is a lead byte: keep its sequence only if it is whole. */
	size_t need = u[i - 1] >= 0xf0 ? 4 : u[i - 1] >= 0xe0 ? 3 : 2;
	return back + 1 >= need ? len : i - 1;
}

/* Copy of s[0..len) as valid UTF-8 (invalid bytes become U+FFFD), cut to
 * LOG_MSG_MAX bytes of input.  NULL on allocation failure. */
static char *utf8_dup(const char *s, size_t len)
{
	if (len > LOG_MSG_MAX)
		len = utf8_cut(s, LOG_MSG_MAX);
	char *d = malloc(len * 3 + 1);
	if (!d)
		return NULL;
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t k = u[i] ? utf8_seq(u + i, len - i) : 0;
		if (k) {
			memcpy(d + o, u + i, k);
			o += k;
			i += k;
		} else {
			memcpy(d + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	d[o] = '\0';
	return d;
}

/* ---- line buffer ---------------------------------------------------- */

struct lbuf {
	char *p;
	size_t len, cap;
	bool full;
};

static void lb_putn(struct lbuf *b, const char *s, size_t n)
{
	if (b->full || b->cap - b->len < n) {
		b->full = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void lb_puts(struct lbuf *b, const char *s) { lb_putn(b, s, strlen(s)); }

static void lb_putc(struct lbuf *b, char c) { lb_putn(b, &c, 1); }

/* logfmt key: [A-Za-z0-9_.:/-], anything else becomes '_'. */
static void lb_key(struct lbuf *b, const char *k)
{
	if (!*k)
		lb_putc(b, '_');
	for (size_t i = 0; k[i] && i < 128; i++) {
		char c = k[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' ||
			  c == '/' || c == ':';
		lb_putc(b, ok ? c : '_');
	}
}

static bool needs_quotes(const char *s, size_t len)
{
	if (len == 0)
		return true;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == '=' || c == '"' || c == 0x7f)
			return true;
	}
	return false;
}

/* logfmt value: quoted when it holds a space, '=', '"' or a control
 * character; escapes \" \\ \n \r \t and \u00XX; invalid UTF-8 becomes
 * U+FFFD.  Cut to LOG_MSG_MAX bytes. */
static void lb_value(struct lbuf *b, const char *s, size_t len)
{
	if (len > LOG_MSG_MAX)
		len = utf8_cut(s, LOG_MSG_MAX);
	bool q = needs_quotes(s, len);
	if (q)
		lb_putc(b, '"');
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned char c = u[i];
		if (c < 0x80) {
			switch (c) {
			case '"': lb_puts(b, "\\\""); break;
			case '\\': lb_puts(b, q ? "\\\\" : "\\"); break;
			case '\n': lb_puts(b, "\\n"); break;
			case '\r': lb_puts(b, "\\r"); break;
			case '\t': lb_puts(b, "\\t"); break;
			default:
				if (c < 0x20 || c == 0x7f) {
					char esc[8];
					snprintf(esc, sizeof(esc), "\\u%04x", c);
					lb_puts(b, esc);
				} else {
					lb_putc(b, (char)c);
				}
			}
			i++;
			continue;
		}
		size_t k = utf8_seq(u + i, len - i);
		if (k) {
			lb_putn(b, s + i, k);
			i += k;
		} else {
			lb_puts(b, "\xef\xbf\xbd");
			i++;
		}
	}
	if (q)
		lb_putc(b, '"');
}

static void lb_kv(struct lbuf *b, const char *k, const char *v, size_t vlen)
{
	/* A pair that does not fit is left out whole. */
	size_t mark = b->len;
	lb_putc(b, ' ');
	lb_key(b, k);
	lb_putc(b, '=');
	lb_value(b, v, vlen);
	if (b->full) {
		b->len = mark;
	}
}

/* ---- records -------------------------------------------------------- */

struct rec {
	const char *ts;          /* formatted time, or NULL for now */
	enum log_level level;
	const char *proc;
	long long pid;
	const char *msg;
	size_t msglen;
	const char *func;        /* NULL = none */
	const char *const *kv;   /* NULL-terminated key, value list, or NULL */
	json_t *extra;           /* object of further keys (relay), or NULL */
};

static const char *const reserved[] = {"ts", "level", "proc", "pid", "msg"};

static bool is_reserved(const char *k)
{
	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
		if (!strcmp(k, reserved[i]))
			return true;
	return false;
}

static void fmt_ts(char *buf, size_t len)
{
	int64_t ms = util_wall_ms();
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&s, &tm)) {
		snprintf(buf, len, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static const char *cur_proc(void)
{
	if (L.proc[0])
		return L.proc;
	return program_invocation_short_name ? program_invocation_short_name : "streamvisor";
}

static void out_line(const char *buf, size_t len)
{
	for (;;) {
		ssize_t n = write(L.fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
}

static void emit_logfmt(const struct rec *r, const char *ts)
{
	struct lbuf b = {.p = line_buf, .cap = sizeof(line_buf) - 1};
	char pid[32];
	snprintf(pid, sizeof(pid), "%lld", r->pid);
	lb_puts(&b, "ts=");
	lb_value(&b, ts, strlen(ts));
	lb_puts(&b, " level=");
	lb_puts(&b, level_names[r->level]);
	lb_puts(&b, " proc=");
	lb_value(&b, r->proc, strlen(r->proc));
	lb_puts(&b, " pid=");
	lb_puts(&b, pid);
	lb_puts(&b, " msg=");
	lb_value(&b, r->msg, r->msglen);
	if (b.full)
		return; /* cannot happen: the message alone always fits */
	if (r->func)
		lb_kv(&b, "func", r->func, strlen(r->func));
	for (size_t i = 0; r->kv && r->kv[i] && r->kv[i + 1]; i += 2) {
		if (is_reserved(r->kv[i])) {
			char k[140];
			snprintf(k, sizeof(k), "_%.128s", r->kv[i]);
			lb_kv(&b, k, r->kv[i + 1], strlen(r->kv[i + 1]));
		} else {
			lb_kv(&b, r->kv[i], r->kv[i + 1], strlen(r->kv[i + 1]));
		}
	}
	if (r->extra) {
		const char *k;
		json_t *v;
		json_object_foreach(r->extra, k, v) {
			if (json_is_string(v)) {
				lb_kv(&b, k, json_string_value(v), json_string_length(v));
			} else {
				char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
				if (s) {
					lb_kv(&b, k, s, strlen(s));
					free(s);
				}
			}
		}
	}
	b.full = false;
	b.cap++; /* the byte kept for the newline */
	lb_putc(&b, '\n');
	out_line(b.p, b.len);
}

/* Set key to a sanitized string; returns 0 or -ENOMEM. */
static int jset_str(json_t *o, const char *k, const char *v, size_t len)
{
	char *s = utf8_dup(v, len);
	if (!s)
		return -ENOMEM;
	json_t *j = json_string(s);
	free(s);
	return json_object_set_new(o, k, j) == 0 ? 0 : -ENOMEM;
}

/* Object key: sanitized like a logfmt key (keeps both formats alike). */
static int jkey(char *dst, size_t len, const char *k, bool prefix)
{
	struct lbuf b = {.p = dst, .cap = len - 1};
	if (prefix)
		lb_putc(&b, '_');
	lb_key(&b, k);
	if (b.full)
		return -ENAMETOOLONG;
	dst[b.len] = '\0';
	return 0;
}

static void emit_json(const struct rec *r, const char *ts)
{
	json_t *o = json_object();
	if (!o)
		return;
	int bad = 0;
	char key[160];
	bad |= jset_str(o, "ts", ts, strlen(ts));
	bad |= json_object_set_new(o, "level", json_string(level_names[r->level]));
	bad |= jset_str(o, "proc", r->proc, strlen(r->proc));
	bad |= json_object_set_new(o, "pid", json_integer(r->pid));
	bad |= jset_str(o, "msg", r->msg, r->msglen);
	if (r->func)
		bad |= jset_str(o, "func", r->func, strlen(r->func));
	for (size_t i = 0; !bad && r->kv && r->kv[i] && r->kv[i + 1]; i += 2) {
		if (jkey(key, sizeof(key), r->kv[i], is_reserved(r->kv[i])) < 0)
			continue;
		bad |= jset_str(o, key, r->kv[i + 1], strlen(r->kv[i + 1]));
	}
	if (r->extra && !bad) {
		const char *k;
		json_t *v;
		json_object_foreach(r->extra, k, v) {
			if (jkey(key, sizeof(key), k, is_reserved(k)) < 0)
				continue;
			bad |= json_object_set(o, key, v);
		}
	}
	if (bad) {
		json_decref(o);
		return;
	}
	size_t cap = sizeof(line_buf) - 1;
	size_t n = json_dumpb(o, line_buf, cap, JSON_COMPACT);
	if (n > 0 && n <= cap) {
		line_buf[n] = '\n';
		out_line(line_buf, n + 1);
	} else if (n > cap) {
		char *big = malloc(n + 1);
		if (big && json_dumpb(o, big, n, JSON_COMPACT) == n) {
			big[n] = '\n';
			out_line(big, n + 1);
		}
		free(big);
	}
	json_decref(o);
}

static void emit(const struct rec *r)
{
	char ts[64];
	if (!r->ts)
		fmt_ts(ts, sizeof(ts));
	const char *t = r->ts ? r->ts : ts;
	if (L.child || L.fmt == LOG_FMT_JSON)
		emit_json(r, t);
	else
		emit_logfmt(r, t);
}

/* ---- public API ----------------------------------------------------- */

static void set_proc(const char *proc)
{
	if (proc)
		snprintf(L.proc, sizeof(L.proc), "%s", proc);
}

static void close_file(void)
{
	if (L.owned && L.fd >= 0)
		close(L.fd);
	L.owned = false;
	L.fd = 2;
	free(L.path);
	L.path = NULL;
}

int log_open(const char *proc, enum log_level level, enum log_format fmt, const char *file)
{
	int saved = errno;
	set_proc(proc);
	log_set_level(level);
	L.child = false;
	log_set_format(fmt);
	if (!file || !*file) {
		close_file();
		errno = saved;
		return 0;
	}
	char *path = strdup(file);
	if (!path) {
		errno = saved;
		return -ENOMEM;
	}
	int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		int err = errno;
		free(path);
		errno = saved;
		return -err;
	}
	close_file();
	L.fd = fd;
	L.owned = true;
	L.path = path;
	errno = saved;
	return 0;
}

void log_open_child(const char *proc, enum log_level level)
{
	int saved = errno;
	close_file();
	set_proc(proc);
	log_set_level(level);
	L.child = true;
	errno = saved;
}

void log_set_level(enum log_level level)
{
	if ((int)level >= LOG_DEBUG && level <= LOG_ERROR)
		L.level = level;
}

void log_set_format(enum log_format fmt)
{
	if (fmt == LOG_FMT_LOGFMT || fmt == LOG_FMT_JSON)
		L.fmt = fmt;
}

enum log_level log_get_level(void) { return L.level; }

int log_reopen(void)
{
	if (!L.path || !L.owned)
		return 0;
	int saved = errno;
	int fd = open(L.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		int err = errno;
		log_write(LOG_ERROR, __func__, KV("file", L.path), "cannot reopen the log file: %s",
			  strerror(err));
		errno = saved;
		return -err;
	}
	close(L.fd);
	L.fd = fd;
	errno = saved;
	return 0;
}

void log_close(void)
{
	int saved = errno;
	close_file();
	L.child = false;
	errno = saved;
}

int log_level_parse(const char *s, enum log_level *out)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (!strcmp(s, level_names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (!strcmp(s, "warning")) {
		*out = LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

int log_format_parse(const char *s, enum log_format *out)
{
	if (!s)
		return -EINVAL;
	if (!strcmp(s, "logfmt")) {
		*out = LOG_FMT_LOGFMT;
		return 0;
	}
	if (!strcmp(s, "json")) {
		*out = LOG_FMT_JSON;
		return 0;
	}
	return -EINVAL;
}

const char *log_level_name(enum log_level l)
{
	if ((int)l < LOG_DEBUG || l > LOG_ERROR)
		return "unknown";
	return level_names[l];
}

static void vwrite(enum log_level level, const char *func, const char *const *kv,
		   const char *fmt, va_list ap)
{
	char msg[LOG_MSG_MAX + 1];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(msg) ? (size_t)n : utf8_cut(msg, LOG_MSG_MAX);
	struct rec r = {
		.level = level,
		.proc = cur_proc(),
		.pid = (long long)getpid(),
		.msg = msg,
		.msglen = len,
		.func = (func && (level >= LOG_WARN || level == LOG_DEBUG)) ? func : NULL,
		.kv = kv,
	};
	emit(&r);
}

void log_write(enum log_level level, const char *func, const char *const *kv,
	       const char *fmt, ...)
{
	if ((int)level < LOG_DEBUG || level > LOG_ERROR)
		level = LOG_ERROR;
	if (level < L.level)
		return;
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vwrite(level, func, kv, fmt, ap);
	va_end(ap);
	errno = saved;
}

void fatal(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwrite(LOG_ERROR, NULL, NULL, fmt, ap);
	va_end(ap);
	exit(code);
}

static void relay_raw(const char *line, size_t len, const char *child_proc, int child_pid)
{
	if (LOG_WARN < L.level)
		return;
	struct rec r = {
		.level = LOG_WARN,
		.proc = child_proc ? child_proc : "?",
		.pid = child_pid,
		.msg = line,
		.msglen = len,
	};
	emit(&r);
}

/* The message of an error record, for the owner of the child (its last
 * error is shown in status): at most len - 1 bytes, cut at a character,
 * control characters as '?'.  jansson checked the UTF-8. */
static void copy_error_msg(char *out, size_t outlen, const char *msg, size_t len)
{
	if (!out || !outlen)
		return;
	if (len > outlen - 1)
		len = utf8_cut(msg, outlen - 1);
	for (size_t i = 0; i < len; i++)
		out[i] = (unsigned char)msg[i] < 0x20 || msg[i] == 0x7f ? '?' : msg[i];
	out[len] = '\0';
}

int log_relay(const char *line, const char *child_proc, int child_pid, char *errmsg, size_t errlen)
{
	int level = -1;
	if (!line)
		return level;
	int saved = errno;
	size_t len = strlen(line);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	size_t sp = 0;
	while (sp < len && (line[sp] == ' ' || line[sp] == '\t'))
		sp++;
	if (sp == len)
		goto out; /* a blank line carries nothing */

	json_t *o = NULL;
	if (line[sp] == '{')
		o = json_loadb(line, len, 0, NULL);
	json_t *jl = json_object_get(o, "level");
	json_t *jm = json_object_get(o, "msg");
	if (!json_is_object(o) || !json_is_string(jl) || !json_is_string(jm)) {
		json_decref(o);
		relay_raw(line, len, child_proc, child_pid);
		level = LOG_WARN;
		goto out;
	}
	enum log_level lvl;
	if (log_level_parse(json_string_value(jl), &lvl) < 0)
		lvl = LOG_INFO;
	level = (int)lvl;
	if (lvl == LOG_ERROR)
		copy_error_msg(errmsg, errlen, json_string_value(jm), json_string_length(jm));
	if (lvl < L.level) {
		json_decref(o);
		goto out;
	}
	json_t *jts = json_object_get(o, "ts");
	json_t *jp = json_object_get(o, "proc");
	json_t *jpid = json_object_get(o, "pid");
	char *ts = json_is_string(jts) ? utf8_dup(json_string_value(jts),
						  json_string_length(jts)) : NULL;
	struct rec r = {
		.ts = ts,
		.level = lvl,
		.proc = json_is_string(jp) ? json_string_value(jp) :
			(child_proc ? child_proc : "?"),
		.pid = json_is_integer(jpid) ? (long long)json_integer_value(jpid) : child_pid,
		.msg = json_string_value(jm),
		.msglen = json_string_length(jm),
	};
	/* Everything but the core keys travels on as extra keys. */
	json_t *extra = json_object();
	if (extra) {
		const char *k;
		json_t *v;
		json_object_foreach(o, k, v) {
			if (!is_reserved(k))
				json_object_set(extra, k, v);
		}
		r.extra = extra;
		emit(&r);
		json_decref(extra);
	}
	free(ts);
	json_decref(o);
out:
	errno = saved;
	return level;
}
