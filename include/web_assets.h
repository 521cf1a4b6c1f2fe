/* web_assets: the console's files (web/), embedded in the binary.
 * STUB of helper W until helper U's generated version lands: same
 * interface (web-spec.md "The console"); drop this file then. */
#ifndef SV_WEB_ASSETS_H
#define SV_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
	const char *path;          /* "/", "/static/app.js" */
	const char *content_type;
	const unsigned char *data;
	size_t len;
};
/* NULL if none. */
const struct web_asset *web_asset_find(const char *path);

#endif
