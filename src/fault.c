/* fault: test-only fault-injection seams (see fault.h). */
#include "config.h"
#include "fault.h"

#if SV_FAULT_INJECTION
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool fault_active(const char *name, char *buf, size_t len)
{
	const char *dir = getenv("SV_FAULT_DIR");
	if (!dir || !*dir)
		return false;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	if (buf && len) {
		buf[0] = '\0';
		if (fgets(buf, (int)len, f))
			buf[strcspn(buf, "\r\n")] = '\0';
	}
	fclose(f);
	return true;
}
#else
typedef int fault_unused;
#endif
