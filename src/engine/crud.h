/* The outcome the engine's plain requests share — users and tokens, org settings, profiles,
 * activity pages, never-log lists: one set of verdicts, so that the API answers a missing
 * object, a conflict, a bad cursor or a full queue the same way whichever request it was (the
 * status codes are the API's: api_reply_outcome in src/http/api.c).
 *
 * Ownership: plain values, filled by the engine and handed to the caller's `done`. */
#ifndef MT_ENGINE_CRUD_H
#define MT_ENGINE_CRUD_H

#include "lib/limits.h"

enum crud_verdict {
	CRUD_OK,
	CRUD_INVALID,    /* the input breaks a rule (reason): nothing changed */
	CRUD_FORBIDDEN,  /* the caller may not do this at all (reason) */
	CRUD_REFUSED,    /* allowed in general, not in this case (reason): nothing changed */
	CRUD_NOT_FOUND,  /* absent, or another org's */
	CRUD_CONFLICT,   /* clashes with an existing object (an address that is another's) */
	CRUD_BAD_CURSOR, /* a list cursor that is not a next_cursor from an earlier page */
	CRUD_BUSY,       /* the store's queue is full: nothing was done, try again */
	CRUD_FAILED,     /* the store failed or memory ran out (reason): nothing was changed */
};

struct crud_outcome {
	enum crud_verdict verdict;
	char reason[MT_ERROR_TEXT_MAX]; /* INVALID, FORBIDDEN, REFUSED, FAILED */
	/* A stable machine code and the request field at fault (static strings; NULL: the
	 * verdict's generic code, no field). docs/api.md "Error codes". */
	const char *code;
	const char *field;
};

/* The outcome of a store job's result: 0, STORE_NOT_FOUND, STORE_CONFLICT, STORE_INVALID (the
 * store's only use of it is a cursor), anything else a failure. */
void crud_from_store(struct crud_outcome *outcome, int rc);
void crud_set(struct crud_outcome *outcome, enum crud_verdict verdict, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the error's code and field (static strings, NULL for none). */
void crud_set_at(struct crud_outcome *outcome, enum crud_verdict verdict, const char *code,
                 const char *field, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
