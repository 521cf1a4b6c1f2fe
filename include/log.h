/* log: one-line structured logging (logfmt or JSON) for the master, and
 * the relay of worker lines that reach the master through pipes. */
#ifndef SV_LOG_H
#define SV_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h> /* NULL, used by KV() */

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FMT_LOGFMT = 0, LOG_FMT_JSON };

/* Master (or a one-shot tool): write formatted lines to file (NULL or ""
 * = stderr).  proc is the "proc=" value ("master").  Returns 0 or -errno. */
int log_open(const char *proc, enum log_level level, enum log_format fmt, const char *file);
/* Worker/monitor child: write each record as one JSON object line to
 * stderr (a pipe to the master), which re-formats and relays it. */
void log_open_child(const char *proc, enum log_level level);
void log_set_level(enum log_level level);
void log_set_format(enum log_format fmt);
enum log_level log_get_level(void);
/* SIGUSR1: reopen log.file (no-op for stderr).  Returns 0 or -errno. */
int log_reopen(void);
void log_close(void);

/* Parse "debug|info|warn|error" / "logfmt|json"; return 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);
const char *log_level_name(enum log_level l);

/* The message is printf-formatted.  kv is NULL or a NULL-terminated list of
 * key, value strings appended as key=value. */
void log_write(enum log_level level, const char *func, const char *const *kv,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_write(LOG_DEBUG, __func__, NULL, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __func__, NULL, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __func__, NULL, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __func__, NULL, __VA_ARGS__)
/* With key/values: log_kv(LOG_INFO, KV("pool", p, "slot", s), "msg %d", n) */
#define KV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define log_kv(level, kv, ...) log_write(level, __func__, kv, __VA_ARGS__)

/* Start-up only: log at error and exit(code). */
void fatal(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Master: relay one line read from a child's stderr pipe.  A JSON object
 * line written by log_open_child() is re-formatted in the current format;
 * any other text (a tool's or the C runtime's stderr) is logged at warn
 * with proc=child_proc pid=child_pid.  Returns the line's level (-1: a
 * blank line); for a record at error level, its message is copied to
 * errmsg (when not NULL; at most errlen - 1 bytes, cut at a character,
 * control characters as '?'). */
int log_relay(const char *line, const char *child_proc, int child_pid, char *errmsg, size_t errlen);

#endif
