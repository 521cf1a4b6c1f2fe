/* STUB of helper W: a minimal console page until helper U's generated
 * web_assets.c (web/embed.py) lands; drop this file then. */
#include "web_assets.h"

#include <string.h>

static const unsigned char index_html[] =
	"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>streamvisor</title></head>\n"
	"<body><h1>streamvisor</h1><p>The console is not built in yet; the API is under /api/v1/.</p></body></html>\n";

static const struct web_asset assets[] = {
	{"/", "text/html; charset=utf-8", index_html, sizeof(index_html) - 1},
};

const struct web_asset *web_asset_find(const char *path)
{
	for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
		if (!strcmp(assets[i].path, path))
			return &assets[i];
	return NULL;
}
