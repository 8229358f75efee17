/* Orgs and their domains. */
#include "store/store_org.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <string.h>

static int put_domains(struct store_tx *tx, const char *op, const struct store_org *org)
{
	if (org->domain_count > MT_ORG_DOMAINS_MAX)
		return store_invalid(op, "too many domains");
	for (size_t i = 0; i < org->domain_count; i++) {
		/* A repeated domain is the caller's slip, not a conflict: keep the first. */
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(org->domains[k], org->domains[i]) == 0;
		if (seen)
			continue;
		struct db_stmt *s = db_prepare(
		    tx->db, "INSERT INTO org_domains (org_id, domain, pos) VALUES (?, ?, ?)");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_text(s, 1, org->id);
		db_bind_text(s, 2, org->domains[i]);
		db_bind_int64(s, 3, (int64_t)i);
		if (db_step(s) != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
	}
	return 0;
}

int store_org_create(struct store_tx *tx, struct store_org *org)
{
	static const char op[] = "store_org_create";
	if (store_need_write(tx, op) < 0)
		return -1;
	store_new_id("org", org->id);
	org->created_at = mt_wall_s();
	int rc = 0;
	struct db_stmt *s = db_prepare(tx->db, "INSERT INTO orgs (id, name, custom_smtp, imap_sync,"
	                                       " bcc_sync, created_at) VALUES (?, ?, ?, ?, ?, ?)");
	if (s == NULL) {
		rc = store_fail(tx, op);
	} else {
		db_bind_text(s, 1, org->id);
		db_bind_text(s, 2, org->name);
		db_bind_int64(s, 3, org->custom_smtp);
		db_bind_int64(s, 4, org->imap_sync);
		db_bind_int64(s, 5, org->bcc_sync);
		db_bind_int64(s, 6, org->created_at);
		if (db_step(s) != DB_DONE)
			rc = store_fail(tx, op);
		db_finish(s);
	}
	if (rc == 0)
		rc = put_domains(tx, op, org);
	return rc;
}

int store_org_get(struct store_tx *tx, const char *org_id, struct store_org *org_r)
{
	static const char op[] = "store_org_get";
	memset(org_r, 0, sizeof(*org_r));
	struct db_stmt *s = db_prepare(tx->db, "SELECT id, name, custom_smtp, imap_sync, bcc_sync,"
	                                       " created_at FROM orgs WHERE id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	store_col_copy(s, 0, org_r->id, sizeof(org_r->id));
	store_col_copy(s, 1, org_r->name, sizeof(org_r->name));
	org_r->custom_smtp = db_column_int64(s, 2) != 0;
	org_r->imap_sync = db_column_int64(s, 3) != 0;
	org_r->bcc_sync = db_column_int64(s, 4) != 0;
	org_r->created_at = db_column_int64(s, 5);
	db_finish(s);

	s = db_prepare(tx->db, "SELECT domain FROM org_domains WHERE org_id = ? ORDER BY pos");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	while ((rc = db_step(s)) == DB_ROW && org_r->domain_count < MT_ORG_DOMAINS_MAX) {
		store_col_copy(s, 0, org_r->domains[org_r->domain_count],
		               sizeof(org_r->domains[0]));
		org_r->domain_count++;
	}
	if (rc < 0)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

int store_org_update(struct store_tx *tx, const struct store_org *org)
{
	static const char op[] = "store_org_update";
	if (store_need_write(tx, op) < 0)
		return -1;
	int rc = 0;
	struct db_stmt *s = db_prepare(tx->db, "UPDATE orgs SET custom_smtp = ?, imap_sync = ?,"
	                                       " bcc_sync = ? WHERE id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, org->custom_smtp);
	db_bind_int64(s, 2, org->imap_sync);
	db_bind_int64(s, 3, org->bcc_sync);
	db_bind_text(s, 4, org->id);
	if (db_step(s) != DB_DONE)
		rc = store_fail(tx, op);
	else if (db_changes(tx->db) == 0)
		rc = STORE_NOT_FOUND;
	db_finish(s);
	if (rc == 0) {
		s = db_prepare(tx->db, "DELETE FROM org_domains WHERE org_id = ?");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_text(s, 1, org->id);
		if (db_step(s) != DB_DONE)
			rc = store_fail(tx, op);
		db_finish(s);
	}
	if (rc == 0)
		rc = put_domains(tx, op, org);
	return rc;
}
