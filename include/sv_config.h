/* config: load streamvisor.conf (libconfig), apply defaults, validate every
 * key and cross-check, and compare two configurations for a reload. */
#ifndef SV_SV_CONFIG_H
#define SV_SV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"
#include "redis_url.h"

enum pool_kind { POOL_PERSISTENCE = 0, POOL_TOOL };
enum reducer_kind { REDUCER_RESPONSE = 0, REDUCER_MERGE };
enum sqlite_sync { SV_SYNC_FULL = 0, SV_SYNC_NORMAL };
enum tool_mode { TOOL_EXEC = 0, TOOL_PERSISTENT };

/* v[n] is NULL, so a command list is an argv. */
struct strlist {
	char **v;
	size_t n;
};

struct pool_config {
	char *name;
	enum pool_kind kind;
	int64_t count;
	char *group;            /* "{node}" already replaced by the node name */
	struct strlist streams; /* resolved: the global list when not given;
				 * literal names only (escapes removed) */
	struct strlist patterns; /* the pattern entries, resolved like streams */
	int64_t discover_ms;    /* 1000: pattern discovery period */
	int64_t read_keys;      /* 16: most stream keys in one XREADGROUP */
	int64_t idle_ms;        /* 10000: a pattern stream without entries this
				 * long leaves the worker's active read set */
	int64_t idle_check_rate; /* 1000: idle pattern streams re-checked per
				  * second by the pool (shared by its workers) */
	int64_t batch;          /* persistence 256, tool 16 */
	int64_t block_ms;       /* 2000 */
	int64_t claim_idle_ms;  /* 30000 */
	int64_t max_deliveries; /* 3 */
	enum reducer_kind reducer; /* persistence only */
	int64_t snapshot_interval_ms; /* persistence: 250; an in-progress run's row
				       * at most this often (store.h, Checkpoints);
				       * 0 = at every batch */
	int64_t max_rss_mb;     /* 0 = off */
	char *sqlite_path;      /* persistence: resolved; default sqlite.path.
				 * tool pools: NULL */
	struct strlist tools;   /* tool pools: the tools it serves (issue 13);
				 * calls for others are acked without output and
				 * without touching their done key */
	bool tools_given;       /* false: serves every tool (tools empty) */
	int line;
};

struct tool_config {
	char *name;
	struct strlist command; /* argv; command.v[0] absolute */
	int64_t timeout_ms;     /* 5000 */
	int64_t max_output;     /* 65536 bytes */
	struct strlist env;     /* "K=V" */
	char *cwd;              /* "/" */
	int64_t rlimit_cpu_s, rlimit_as_mb, rlimit_nofile; /* 0 = unlimited */
	enum tool_mode mode;    /* exec: one process per call (default) */
	/* persistent only (issue 13, streamvisor-handlers(7)): */
	int64_t concurrency;    /* 1: calls in flight per handler, 1 .. 1000 */
	int64_t start_timeout_ms; /* 10000: from start to {"ready": true} */
	int64_t max_calls;      /* 0 = never: recycle after this many calls */
	int64_t max_rss_mb;     /* 0 = off: recycle over this RSS */
	int line;
};

struct sv_config {
	char *path;       /* the file given to config_load (as given) */
	char *dir;        /* its directory: relative paths resolve here */

	char *node;       /* default: host name */
	char *namespace;  /* "sv" */

	struct {
		char *url;            /* as written (may hold a password; never log it) */
		struct redis_url parsed;
		char *password_file;  /* resolved path or "" */
		char *password;       /* effective password (file wins over url) or NULL;
				       * parsed.password holds the same value */
		char *url_redacted;   /* safe for logs and status; shows ":***" when
				       * any password is used (url or file) */
		int64_t connect_timeout_ms;  /* 2000 */
		int64_t command_timeout_ms;  /* 10000 */
	} redis;
	struct {
		char *path;            /* resolved */
		enum sqlite_sync synchronous;
		int64_t busy_timeout_ms;
	} sqlite;
	struct {
		char *socket;          /* resolved */
		mode_t mode;           /* 0660 */
		char *group;           /* "" = none */
	} control;
	struct {
		char *user, *group;
	} run_as;
	struct {
		int64_t interval_ms, timeout_ms;
	} heartbeat;
	struct {
		int64_t backoff_initial_ms, backoff_max_ms, start_ms, max_retries;
		int64_t burst, burst_window_ms, stop_timeout_ms;
	} restart;
	struct strlist streams;   /* literal entries of the global list */
	struct strlist patterns;  /* its pattern entries */
	struct pool_config *pools;
	size_t npools;
	struct tool_config *tools;
	size_t ntools;
	struct {
		bool trim_acked;
		bool delete_idle_streams; /* pattern streams idle keep_ms and acked by
					   * every registered group are deleted */
		int64_t keep_ms, dead_keep_ms, events_keep_ms;
	} retention;
	struct {
		char *listen;  /* "" = off; served by the web child (GET /metrics only) */
	} metrics;
	struct {
		char *listen;        /* "HOST:PORT", "" = no console or API */
		bool loopback;       /* listen's host is a loopback address */
		char *user;          /* the web child's user ("" = the daemon's, not as root) */
		char *token_file;    /* resolved, "" = none: no login, no actions */
		struct strlist hosts;   /* more Host header values than the listen address */
		char *tls_cert, *tls_key; /* resolved PEM files, "" = plain HTTP */
		struct strlist actions; /* streamvisorctl commands the console may run */
		bool metrics_token;  /* GET /metrics needs the token too */
	} http;
	struct {
		enum log_level level;
		enum log_format format;
		char *file;    /* resolved, "" = stderr */
	} log;
};

/* Every problem found, each formatted "FILE:LINE: message" (semantic
 * errors sorted by file and line), or "FILE: cannot read: reason".  Append
 * only: pass a zeroed struct; free with config_errors_free. */
struct config_errors {
	char **v;
	size_t n;
};

/* Load and validate path.  On success returns 0 and *out (free with
 * config_free).  On failure returns -EINVAL (syntax or semantic errors,
 * all listed in errs) or -errno (file unreadable, also listed in errs). */
int config_load(const char *path, struct sv_config **out, struct config_errors *errs);
/* The same parse for streamvisorctl, which must work for a control.group
 * member who cannot read the daemon's secrets: the same grammar, keys,
 * ranges, cross-checks and FILE:LINE errors, but nothing outside the
 * configuration files is opened or looked up.  redis.password_file is
 * resolved and never opened (redis.password holds only the URL's, if
 * any); tool executables, run_as.user and the groups are not checked.
 * Returns as config_load. */
int config_load_client(const char *path, struct sv_config **out, struct config_errors *errs);
void config_free(struct sv_config *cfg);
void config_errors_free(struct config_errors *errs);

/* Reload scope.  Returns the name of the first restart-only key that
 * differs ("redis", "sqlite", "node", ...), or NULL when the new file may be
 * applied live. */
/* "HOST:PORT" with a numeric port 1..65535 ("[v6]:PORT" for IPv6). */
bool config_listen_valid(const char *listen);
/* Is listen's host 127.0.0.0/8, [::1] or localhost? */
bool config_listen_loopback(const char *listen);
/* The group given the SQLite files: control.group, so streamvisorctl
 * users and the web child's user (a member) read them; when it is empty
 * and the web child runs as nobody (root, http.listen, no http.user),
 * nobody's group, so the console can read snapshots.  buf holds that
 * name.  "" = leave the files' group alone. */
const char *config_files_group(const struct sv_config *cfg, char *buf, size_t len);
/* Does the web child need restarting for this reload (a listener, TLS,
 * its user)?  The key's name, or NULL. */
const char *config_web_restart_key(const struct sv_config *old, const struct sv_config *new);
#define CONFIG_TOKEN_MIN 16
#define CONFIG_TOKEN_MAX 4096

const char *config_restart_key_changed(const struct sv_config *old, const struct sv_config *new);
/* Whether a running worker of pool a must be restarted to run as pool b:
 * any pool setting except count differs (a reload resizes pools without
 * touching the other workers), or heartbeat settings differ (workers beat
 * at interval_ms and give their fencing key a TTL of timeout_ms), or, for
 * tool pools, any tool differs (config_tools_equal).  Log level/format,
 * restart and retention changes are NOT a reason. */
bool config_pool_changed(const struct sv_config *old, const struct pool_config *a,
			 const struct sv_config *new, const struct pool_config *b);
bool config_tools_equal(const struct sv_config *a, const struct sv_config *b);
bool config_heartbeat_equal(const struct sv_config *a, const struct sv_config *b);

const struct pool_config *config_find_pool(const struct sv_config *cfg, const char *name);
const struct tool_config *config_find_tool(const struct sv_config *cfg, const char *name);

const char *config_pool_kind_name(enum pool_kind k);
const char *config_tool_mode_name(enum tool_mode m);
/* Does the tool pool serve tool name (pools[].tools, or every tool when
 * not given)? */
bool config_pool_serves(const struct pool_config *p, const char *name);
/* Could an entry of some stream be read by both pools (a literal in both,
 * a literal matching the other's pattern, or two patterns not told apart
 * by their literal prefixes)?  Conservative: true when unsure. */
bool config_pools_may_share_stream(const struct pool_config *a, const struct pool_config *b, char *example,
				   size_t len);

/* Stream patterns (issue 11).  A `streams` entry holding an unescaped
 * '*', '?' or '[' is a pattern; '\\' escapes the one character after it.
 * Matching is Redis glob syntax (fnmatch(3), flags 0). */
bool config_is_pattern(const char *entry);
bool config_pattern_match(const char *pattern, const char *name);
/* Is s one of the list's entries (as written)? */
bool config_strlist_has(const struct strlist *l, const char *s);
/* Does name match one of the patterns? */
bool config_match_any(const struct strlist *patterns, const char *name);
/* A key streamvisor owns: everything under "NAMESPACE:" and every key
 * ending in ":dead".  Such keys never match a pattern. */
bool config_own_key(const struct sv_config *cfg, const char *name);

#endif
