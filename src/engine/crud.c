#include "engine/crud.h"

#include "store/store.h"

#include <stdarg.h>
#include <stdio.h>

void crud_set_at(struct crud_outcome *outcome, enum crud_verdict verdict, const char *code,
                 const char *field, const char *fmt, ...)
{
	outcome->verdict = verdict;
	outcome->code = code;
	outcome->field = field;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(outcome->reason, sizeof(outcome->reason), fmt, ap);
	va_end(ap);
}

void crud_set(struct crud_outcome *outcome, enum crud_verdict verdict, const char *fmt, ...)
{
	outcome->verdict = verdict;
	outcome->code = NULL;
	outcome->field = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(outcome->reason, sizeof(outcome->reason), fmt, ap);
	va_end(ap);
}

void crud_from_store(struct crud_outcome *outcome, int rc)
{
	outcome->reason[0] = '\0';
	outcome->code = NULL;
	outcome->field = NULL;
	switch (rc) {
	case 0:
		outcome->verdict = CRUD_OK;
		break;
	case STORE_NOT_FOUND:
		outcome->verdict = CRUD_NOT_FOUND;
		break;
	case STORE_CONFLICT:
		outcome->verdict = CRUD_CONFLICT;
		break;
	case STORE_INVALID:
		outcome->verdict = CRUD_BAD_CURSOR;
		break;
	default:
		crud_set(outcome, CRUD_FAILED, "the store failed; nothing was changed");
		break;
	}
}
