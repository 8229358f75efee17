/* Orgs and their domains. */
#include "store/store_org.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"

#include <string.h>

#define ORG_ROW(F, G, T)                                                                           \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "name", name)                                                                   \
	G(T, BOOL, "custom_smtp", custom_smtp)                                                     \
	G(T, BOOL, "imap_sync", imap_sync)                                                         \
	G(T, BOOL, "bcc_sync", bcc_sync)                                                           \
	G(T, INT64, "created_at", created_at)
SQL_TABLE(org_table, ORG_ROW, struct store_org);
SQL_TEXT_TABLE(domain_table, "domain", MT_HOST_FIELD_MAX + 1);

static int put_domains(struct store_tx *tx, const char *op, const struct store_org *org)
{
	if (org->domain_count > MT_ORG_DOMAINS_MAX)
		return store_invalid(op, "too many domains");
	for (size_t i = 0; i < org->domain_count; i++) {
		if (!store_repeated(org->domains, sizeof(org->domains[0]), i) &&
		    sql_exec(
		        tx, op, "INSERT INTO org_domains (org_id, domain, pos) VALUES (?, ?, ?)",
		        SQL_ARGS(SQL_TEXT(org->id), SQL_TEXT(org->domains[i]), SQL_INT(i))) < 0)
			return -1;
	}
	return 0;
}

int store_org_create(struct store_tx *tx, struct store_org *org)
{
	static const char op[] = "store_org_create";
	int rc = sql_insert_new(
	    tx, op, "org", org->id, &org->created_at,
	    "INSERT INTO orgs (id, created_at, name, custom_smtp, imap_sync, bcc_sync)"
	    " VALUES (?, ?, ?, ?, ?, ?)",
	    SQL_ARGS(SQL_TEXT(org->name), SQL_INT(org->custom_smtp), SQL_INT(org->imap_sync),
	             SQL_INT(org->bcc_sync)));
	return rc == 0 ? put_domains(tx, op, org) : rc;
}

int store_org_get(struct store_tx *tx, const char *org_id, struct store_org *org_r)
{
	static const char op[] = "store_org_get";
	memset(org_r, 0, sizeof(*org_r));
	int rc = sql_get(tx, op, "SELECT " SQL_COLUMNS(ORG_ROW) " FROM orgs WHERE id = ?",
	                 SQL_ARGS(SQL_TEXT(org_id)), &org_table, org_r);
	if (rc != 0)
		return rc;
	return sql_list(tx, op, "SELECT domain FROM org_domains WHERE org_id = ? ORDER BY pos",
	                SQL_ARGS(SQL_TEXT(org_id)), &domain_table, org_r->domains,
	                MT_ORG_DOMAINS_MAX, &org_r->domain_count);
}

int store_org_update(struct store_tx *tx, const struct store_org *org)
{
	static const char op[] = "store_org_update";
	int rc = sql_change(tx, op,
	                    "UPDATE orgs SET custom_smtp = ?, imap_sync = ?, bcc_sync = ?"
	                    " WHERE id = ?",
	                    SQL_ARGS(SQL_INT(org->custom_smtp), SQL_INT(org->imap_sync),
	                             SQL_INT(org->bcc_sync), SQL_TEXT(org->id)));
	if (rc == 0 && sql_exec(tx, op, "DELETE FROM org_domains WHERE org_id = ?",
	                        SQL_ARGS(SQL_TEXT(org->id))) < 0)
		rc = -1;
	return rc == 0 ? put_domains(tx, op, org) : rc;
}
