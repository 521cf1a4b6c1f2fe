/* web_assets: the web console's files (web/index.html, app.css, app.js),
 * compiled into streamvisord so the web child serves them without
 * reading anything from disk: no install path to get wrong, no file a
 * local user could swap, and the console always matches the daemon's API.
 *
 * The table is generated at build time by web/embed.py (a meson
 * custom_target, web_assets.c in the build dir).  index.html is served at
 * "/", every other file at "/static/NAME".  Lookups are by exact path,
 * after percent-decoding and without the query string. */
#ifndef SV_WEB_ASSETS_H
#define SV_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
	const char *path;          /* "/", "/static/app.js" */
	const char *content_type;  /* "text/javascript; charset=utf-8" */
	const unsigned char *data; /* the file's bytes (followed by a NUL not counted in len) */
	size_t len;
};

/* The asset served at path, or NULL if none. */
const struct web_asset *web_asset_find(const char *path);

/* The number of assets, and the i-th (NULL past the end): for tests. */
size_t web_asset_count(void);
const struct web_asset *web_asset_at(size_t i);

#endif
