/* What SMTP and IMAP accounts share in the store: the names their enums are stored as, the checks
 * before a save, and the statements that read, switch off and disconnect an account, run on
 * either table through its store_account_kind (store_internal.h). */
#include "store/sql.h"
#include "store/store_internal.h"
#include "store/store_webhook.h"

#include <string.h>

const char *const store_account_state_names[STORE_ACCOUNT_NAMES] = {
    [STORE_ACCOUNT_OFF] = "off",
    [STORE_ACCOUNT_CONNECTED] = "connected",
    [STORE_ACCOUNT_DISCONNECTED] = "disconnected",
};
const char *const store_security_names[STORE_SECURITY_NAMES] = {
    [STORE_SECURITY_STARTTLS] = "starttls",
    [STORE_SECURITY_TLS] = "tls",
    [STORE_SECURITY_NONE] = "none",
};
const char *const store_auth_names[STORE_AUTH_NAMES] = {
    [STORE_AUTH_PASSWORD] = "password",
    [STORE_AUTH_XOAUTH2] = "xoauth2",
    [STORE_AUTH_NONE] = "none",
};
#define NAMES(table) (table), sizeof(table) / sizeof((table)[0])

const char *store_account_state_name(enum store_account_state state)
{
	return sql_name(NAMES(store_account_state_names), state, STORE_ACCOUNT_OFF);
}

const char *store_security_name(enum store_security security)
{
	return sql_name(NAMES(store_security_names), security, STORE_SECURITY_STARTTLS);
}

const char *store_auth_name(enum store_auth auth)
{
	return sql_name(NAMES(store_auth_names), auth, STORE_AUTH_PASSWORD);
}

static int parse_name(const char *const *names, size_t count, const char *name, unsigned *out)
{
	for (size_t i = 0; name != NULL && i < count; i++) {
		if (strcmp(names[i], name) == 0) {
			*out = (unsigned)i;
			return 0;
		}
	}
	return -1;
}

int store_security_parse(const char *name, enum store_security *security_r)
{
	unsigned v;
	if (parse_name(NAMES(store_security_names), name, &v) < 0)
		return -1;
	*security_r = (enum store_security)v;
	return 0;
}

int store_auth_parse(const char *name, enum store_auth *auth_r)
{
	unsigned v;
	if (parse_name(NAMES(store_auth_names), name, &v) < 0)
		return -1;
	*auth_r = (enum store_auth)v;
	return 0;
}

/* A known state, a sealed secret within its buffer, a write transaction, and the user in the
 * org. */
static int put_check(struct store_tx *tx, const char *op, enum store_account_state state,
                     size_t sealed_secret_len, size_t sealed_secret_max, const char *org_id,
                     const char *user_id)
{
	if ((unsigned)state > STORE_ACCOUNT_DISCONNECTED)
		return store_invalid(op, "unknown account state");
	if (sealed_secret_len > sealed_secret_max)
		return store_invalid(op, "sealed secret too long");
	/* Accounts are reached through their user: a foreign user id is not found here. */
	return store_write_for_user(tx, op, org_id, user_id);
}

int store_account_read(struct store_tx *tx, const char *op, const struct store_account_kind *kind,
                       const char *org_id, const char *user_id, void *row, size_t row_size)
{
	memset(row, 0, row_size);
	int rc = sql_get(tx, op, kind->select, SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)),
	                 kind->table, row);
	if (rc != 0)
		return rc;
	char *at = row;
	return sql_list(tx, op, kind->items.select, SQL_ARGS(SQL_TEXT(user_id)), kind->items.table,
	                at + kind->items.offset, kind->items.max,
	                (size_t *)(void *)(at + kind->items.count_offset));
}

int store_account_put(struct store_tx *tx, const char *op, const struct store_account_kind *kind,
                      struct store_account_save save, const char *upsert, const struct db_arg *args)
{
	if (save.item_count > kind->items.max)
		return store_invalid(op, kind->items.too_many);
	int rc = put_check(tx, op, save.state, save.sealed_secret_len, save.sealed_secret_max,
	                   save.org_id, save.user_id);
	if (rc == 0)
		rc = sql_change(tx, op, upsert, args);
	if (rc == 0)
		rc = kind->items.put(tx, op, save.account);
	if (rc != 0 || save.state == STORE_ACCOUNT_OFF)
		return rc;
	return store_webhook_account_event(tx, save.org_id, save.user_id, kind->protocol,
	                                   save.state == STORE_ACCOUNT_CONNECTED, save.last_error);
}

int store_account_off(struct store_tx *tx, const char *op, const struct store_account_kind *kind,
                      const char *org_id, const char *user_id)
{
	/* NULL rather than a zeroblob: nothing of the secret's length survives, and secure_delete
	 * (db_sqlite.c) zeroes the freed bytes. */
	return sql_change(tx, op, kind->off,
	                  SQL_ARGS(SQL_TEXT(store_account_state_names[STORE_ACCOUNT_OFF]),
	                           SQL_INT(kind->clock()), SQL_TEXT(user_id), SQL_TEXT(org_id)));
}

int store_account_disconnect(struct store_tx *tx, const char *op,
                             const struct store_account_kind *kind, const char *org_id,
                             const char *user_id, int64_t seen_updated_at,
                             const unsigned char *sealed_secret, size_t sealed_secret_len,
                             size_t sealed_secret_max, const char *reason)
{
	if (sealed_secret_len > sealed_secret_max)
		return store_invalid(op, "sealed secret too long");
	/* Every save seals afresh (a new nonce): the same sealed bytes are the same save. */
	bool with_secret = kind->disconnect_secret != NULL && sealed_secret_len > 0;
	struct db_arg args[] = {
	    SQL_TEXT(store_account_state_names[STORE_ACCOUNT_DISCONNECTED]),
	    SQL_TEXT(reason),
	    SQL_INT(kind->clock()),
	    SQL_TEXT(user_id),
	    SQL_TEXT(org_id),
	    SQL_TEXT(store_account_state_names[STORE_ACCOUNT_CONNECTED]),
	    SQL_INT(seen_updated_at),
	    with_secret ? SQL_BLOB(sealed_secret, sealed_secret_len)
	                : (struct db_arg){.type = DB_ARG_END},
	    {.type = DB_ARG_END},
	};
	int64_t n =
	    sql_exec(tx, op, with_secret ? kind->disconnect_secret : kind->disconnect, args);
	if (n == 1)
		return store_webhook_account_event(tx, org_id, user_id, kind->protocol, false,
		                                   reason);
	return n < 0 ? -1 : STORE_CONFLICT;
}
