/* The failure classes every engine reports (DESIGN.md §2): the API's error `class`, the exit code
 * of `smtp-check`, a metric label. */
#ifndef MT_LIB_FAILURE_H
#define MT_LIB_FAILURE_H

#include <stdbool.h>

enum mt_failure_class {
	MT_CLASS_NONE = 0,
	MT_CLASS_CONN,
	MT_CLASS_TLS,
	MT_CLASS_AUTH,
	MT_CLASS_PROTO,
	MT_CLASS_RESP,
	MT_CLASS_THROTTLE,
	MT_CLASS_QUOTA,
	MT_CLASS_INTERNAL,
	MT_CLASS_COUNT
};

/* "conn", "tls", ...; "ok" for MT_CLASS_NONE. */
const char *mt_class_name(enum mt_failure_class cls);
/* Exit codes of the check commands: 0 ok, 10 conn ... 17 internal. */
int mt_class_exit_code(enum mt_failure_class cls);

#endif
