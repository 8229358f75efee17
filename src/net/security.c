#include "net/security.h"

#include <string.h>

static const char *const security_names[] = {
    [MT_SECURITY_NONE] = "none",
    [MT_SECURITY_STARTTLS] = "starttls",
    [MT_SECURITY_TLS] = "tls",
};

int mt_security_parse(const char *name, enum mt_security *security_r)
{
	for (size_t i = 0; i < sizeof(security_names) / sizeof(security_names[0]); i++) {
		if (strcmp(name, security_names[i]) == 0) {
			*security_r = (enum mt_security)i;
			return 0;
		}
	}
	return -1;
}

const char *mt_security_name(enum mt_security security)
{
	return security_names[security];
}
