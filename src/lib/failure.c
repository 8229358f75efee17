#include "lib/failure.h"

static const char *const class_names[MT_CLASS_COUNT] = {
    [MT_CLASS_NONE] = "ok",           [MT_CLASS_CONN] = "conn",   [MT_CLASS_TLS] = "tls",
    [MT_CLASS_AUTH] = "auth",         [MT_CLASS_PROTO] = "proto", [MT_CLASS_RESP] = "resp",
    [MT_CLASS_THROTTLE] = "throttle", [MT_CLASS_QUOTA] = "quota", [MT_CLASS_INTERNAL] = "internal",
};

const char *mt_class_name(enum mt_failure_class cls)
{
	if ((unsigned)cls >= MT_CLASS_COUNT)
		return "internal";
	return class_names[cls];
}

int mt_class_exit_code(enum mt_failure_class cls)
{
	if (cls == MT_CLASS_NONE)
		return 0;
	if ((unsigned)cls >= MT_CLASS_COUNT)
		return 17;
	return 9 + (int)cls; /* conn = 10 ... internal = 17 */
}
