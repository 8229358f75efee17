/* Profiles and the address index. */
#include "store/store_profile.h"
#include "store/message_internal.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"applicant", "contact", "employee"};

/* Lower-cases UTF-8 for prefix search: ASCII, Latin-1, Latin Extended-A, basic Greek and
 * Cyrillic, which covers the names recruiters type; anything else is copied unchanged. The same
 * function is applied to names and queries, so matching stays consistent. */
static void lower_utf8(const char *in, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;
	while (*p != '\0') {
		unsigned cp;
		size_t len;
		if (p[0] < 0x80) {
			cp = p[0];
			len = 1;
		} else if ((p[0] & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
			cp = ((p[0] & 0x1fu) << 6) | (p[1] & 0x3fu);
			len = 2;
		} else {
			/* Longer sequences (and stray bytes) are copied as they are. */
			cp = 0;
			len = 1;
			while (p[len] != '\0' && (p[len] & 0xc0) == 0x80)
				len++;
		}
		if (len == 1 && cp >= 'A' && cp <= 'Z')
			cp += 32;
		else if (len == 2) {
			if ((cp >= 0xc0 && cp <= 0xde && cp != 0xd7) ||
			    (cp >= 0x391 && cp <= 0x3ab) || (cp >= 0x410 && cp <= 0x42f))
				cp += 32;
			else if (cp >= 0x400 && cp <= 0x40f)
				cp += 80;
			else if ((cp >= 0x100 && cp <= 0x137 && cp % 2 == 0 && cp != 0x130) ||
			         (cp >= 0x139 && cp <= 0x148 && cp % 2 == 1) ||
			         (cp >= 0x14a && cp <= 0x177 && cp % 2 == 0) ||
			         (cp >= 0x179 && cp <= 0x17e && cp % 2 == 1))
				cp += 1; /* Latin Extended-A: pairs, capital first */
			else if (cp == 0x178)
				cp = 0xff;
		}
		if (n + len >= size)
			break;
		if (len == 1 && cp != 0) {
			out[n++] = (char)cp;
		} else if (len == 2) {
			out[n++] = (char)(0xc0 | (cp >> 6));
			out[n++] = (char)(0x80 | (cp & 0x3f));
		} else {
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
	}
	out[n] = '\0';
}

/* The smallest string greater than every string starting with `prefix` (byte order): the prefix
 * with its last byte below 0xff incremented. False when there is none (all 0xff). */
static bool prefix_end(const char *prefix, char *out, size_t size)
{
	size_t n = mt_strlcpy(out, prefix, size);
	if (n >= size)
		return false;
	while (n > 0) {
		unsigned char c = (unsigned char)out[n - 1];
		if (c < 0xff) {
			out[n - 1] = (char)(c + 1);
			out[n] = '\0';
			return true;
		}
		n--;
	}
	return false;
}

#define PROFILE_ROW(F, G, T)                                                                       \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, NAME, "kind", kind, kind_names, STORE_PROFILE_APPLICANT)                              \
	G(T, TEXT, "name", name)                                                                   \
	G(T, TEXT, "external_id", external_id)                                                     \
	G(T, INT64, "created_at", created_at)                                                      \
	G(T, INT64, "updated_at", updated_at)
SQL_TABLE(profile_table, PROFILE_ROW, struct store_profile);
SQL_TEXT_TABLE(address_table, "address", MT_ADDRESS_MAX + 1);
SQL_TEXT_TABLE(id_table, "id", MT_ID_MAX);

static int put_addresses(struct store_tx *tx, const char *op, const struct store_profile *p)
{
	if (p->email_count > MT_PROFILE_EMAILS_MAX)
		return store_invalid(op, "too many addresses");
	for (size_t i = 0; i < p->email_count; i++) {
		if (!store_repeated(p->emails, sizeof(p->emails[0]), i) &&
		    sql_exec(tx, op,
		             "INSERT INTO profile_addresses (org_id, address, profile_id, pos)"
		             " VALUES (?, ?, ?, ?)",
		             SQL_ARGS(SQL_TEXT(p->org_id), SQL_TEXT(p->emails[i]), SQL_TEXT(p->id),
		                      SQL_INT(i))) < 0)
			return -1;
	}
	return 0;
}

/* "" is no external id: NULL, which the unique index leaves out. */
static struct db_arg external_arg(const struct store_profile *p)
{
	return p->external_id[0] != '\0' ? SQL_TEXT(p->external_id) : SQL_NULL;
}

int store_profile_create(struct store_tx *tx, struct store_profile *profile)
{
	static const char op[] = "store_profile_create";
	if ((unsigned)profile->kind > STORE_PROFILE_EMPLOYEE)
		return store_invalid(op, "unknown profile kind");
	if (store_new_row(tx, op, "prf", profile->id, &profile->created_at) < 0)
		return -1;
	profile->updated_at = profile->created_at;
	char name_lower[MT_NAME_MAX + 1];
	lower_utf8(profile->name, name_lower, sizeof(name_lower));
	/* A missing org is a foreign key violation: not found. */
	int rc = sql_insert(tx, op,
	                    "INSERT INTO profiles (id, org_id, kind, name, name_lower, external_id,"
	                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
	                    SQL_ARGS(SQL_TEXT(profile->id), SQL_TEXT(profile->org_id),
	                             SQL_TEXT(kind_names[profile->kind]), SQL_TEXT(profile->name),
	                             SQL_TEXT(name_lower), external_arg(profile),
	                             SQL_INT(profile->created_at), SQL_INT(profile->updated_at)));
	return rc == 0 ? put_addresses(tx, op, profile) : rc;
}

int store_profile_get(struct store_tx *tx, const char *org_id, const char *profile_id,
                      struct store_profile *profile_r)
{
	static const char op[] = "store_profile_get";
	memset(profile_r, 0, sizeof(*profile_r));
	int rc = sql_get(
	    tx, op, "SELECT " SQL_COLUMNS(PROFILE_ROW) " FROM profiles WHERE id = ? AND org_id = ?",
	    SQL_ARGS(SQL_TEXT(profile_id), SQL_TEXT(org_id)), &profile_table, profile_r);
	if (rc != 0)
		return rc;
	return sql_list(tx, op,
	                "SELECT address FROM profile_addresses WHERE profile_id = ? ORDER BY pos",
	                SQL_ARGS(SQL_TEXT(profile_id)), &address_table, profile_r->emails,
	                MT_PROFILE_EMAILS_MAX, &profile_r->email_count);
}

int store_profile_get_by_external(struct store_tx *tx, const char *org_id, const char *external_id,
                                  struct store_profile *profile_r)
{
	char id[MT_ID_MAX];
	memset(profile_r, 0, sizeof(*profile_r));
	int rc = sql_get(tx, "store_profile_get_by_external",
	                 "SELECT id FROM profiles WHERE org_id = ? AND external_id = ?",
	                 SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(external_id)), &id_table, id);
	return rc != 0 ? rc : store_profile_get(tx, org_id, id, profile_r);
}

int store_profiles_sharing(struct store_tx *tx, const char *org_id, const char *profile_id,
                           char (*ids_r)[MT_ID_MAX], size_t max, size_t *count_r)
{
	static const char op[] = "store_profiles_sharing";
	*count_r = 0;
	struct db_stmt *s = sql_prepare(
	    tx, op,
	    "SELECT DISTINCT b.profile_id FROM profile_addresses a"
	    " JOIN profile_addresses b ON b.address = a.address AND b.org_id = a.org_id"
	    " WHERE a.profile_id = ? AND a.org_id = ? AND b.profile_id <> a.profile_id"
	    " ORDER BY b.profile_id LIMIT ?",
	    SQL_ARGS(SQL_TEXT(profile_id), SQL_TEXT(org_id), SQL_INT(MT_LIST_LIMIT_MAX)));
	if (s == NULL)
		return -1;
	int rc;
	while ((rc = sql_step(tx, op, s)) == 1) {
		if (*count_r < max && sql_read(op, s, 0, &id_table, ids_r[*count_r]) < 0) {
			db_finish(s);
			return -1;
		}
		(*count_r)++;
	}
	return rc < 0 ? -1 : 0;
}

int store_profile_update(struct store_tx *tx, const struct store_profile *profile)
{
	static const char op[] = "store_profile_update";
	if ((unsigned)profile->kind > STORE_PROFILE_EMPLOYEE)
		return store_invalid(op, "unknown profile kind");
	char name_lower[MT_NAME_MAX + 1];
	lower_utf8(profile->name, name_lower, sizeof(name_lower));
	/* sql_insert for its outcomes: another profile's external_id is a conflict */
	int rc =
	    sql_insert(tx, op,
	               "UPDATE profiles SET kind = ?, name = ?, name_lower = ?, external_id = ?,"
	               " updated_at = ? WHERE id = ? AND org_id = ?",
	               SQL_ARGS(SQL_TEXT(kind_names[profile->kind]), SQL_TEXT(profile->name),
	                        SQL_TEXT(name_lower), external_arg(profile), SQL_INT(mt_wall_s()),
	                        SQL_TEXT(profile->id), SQL_TEXT(profile->org_id)));
	if (rc == 0 &&
	    sql_exec(tx, op, "DELETE FROM profile_addresses WHERE profile_id = ? AND org_id = ?",
	             SQL_ARGS(SQL_TEXT(profile->id), SQL_TEXT(profile->org_id))) < 0)
		rc = -1;
	return rc == 0 ? put_addresses(tx, op, profile) : rc;
}

int store_profile_delete(struct store_tx *tx, const char *org_id, const char *profile_id)
{
	static const char op[] = "store_profile_delete";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* The addresses before they go: they find the records to erase. */
	struct store_profile *p = malloc(sizeof(*p));
	if (p == NULL)
		return store_invalid(op, "out of memory");
	int rc = store_profile_get(tx, org_id, profile_id, p);
	if (rc != 0) {
		free(p);
		return rc;
	}
	/* Its activities leave tombstones in the feed (ids only), so a CRM mirroring them
	 * deletes its copies. */
	rc = store_activities_bury(tx, op, org_id,
	                           "SELECT id, profile_id FROM activities"
	                           " WHERE profile_id = ? AND org_id = ? ORDER BY seq",
	                           SQL_ARGS(SQL_TEXT(profile_id), SQL_TEXT(org_id)),
	                           "profile_erased", NULL);
	/* The explicit deletes keep the erasure visible here and independent of the backend's
	 * cascade support (the foreign keys cascade too). */
	static const char *const delete_sql[] = {
	    "DELETE FROM activities WHERE profile_id = ? AND org_id = ?",
	    "DELETE FROM profile_addresses WHERE profile_id = ? AND org_id = ?",
	    "DELETE FROM profiles WHERE id = ? AND org_id = ?",
	};
	for (size_t i = 0; i < sizeof(delete_sql) / sizeof(delete_sql[0]) && rc == 0; i++) {
		if (sql_exec(tx, op, delete_sql[i],
		             SQL_ARGS(SQL_TEXT(profile_id), SQL_TEXT(org_id))) < 0)
			rc = -1;
	}
	for (size_t i = 0; i < p->email_count && rc == 0; i++)
		rc = store_records_erase_orphans(tx, op, org_id, p->emails[i]);
	free(p);
	return rc;
}

/* Without a query: a range scan of (org_id, id). With one: the union of two index range scans,
 * names and addresses, each bounded by the prefix, so the cost follows the matches rather than
 * the org's size; comparing ranges instead of LIKE needs no escaping of % and _. */
static const char list_all_sql[] =
    "SELECT id FROM profiles WHERE org_id = ? AND id > ? ORDER BY id LIMIT ?";
static const char list_query_sql[] =
    "SELECT id FROM profiles WHERE org_id = ? AND name_lower >= ? AND name_lower < ? AND id > ?"
    " UNION"
    " SELECT profile_id FROM profile_addresses"
    " WHERE org_id = ? AND address >= ? AND address < ? AND profile_id > ?"
    " ORDER BY 1 LIMIT ?";

int store_profile_list(struct store_tx *tx, const char *org_id, const char *query,
                       const char *cursor, size_t limit, struct store_profile_list *list_r)
{
	static const char op[] = "store_profile_list";
	memset(list_r, 0, sizeof(*list_r));
	if (limit == 0)
		limit = MT_LIST_LIMIT_DEFAULT;
	if (limit > MT_LIST_LIMIT_MAX)
		limit = MT_LIST_LIMIT_MAX;
	if (cursor == NULL)
		cursor = "";
	char q[MT_ADDRESS_MAX + MT_NAME_MAX + 2], q_end[sizeof(q)];
	bool with_query = query != NULL && query[0] != '\0';
	if (with_query) {
		lower_utf8(query, q, sizeof(q));
		if (!prefix_end(q, q_end, sizeof(q_end)))
			with_query = false; /* only 0xff bytes: matches everything */
	}

	char(*ids)[MT_ID_MAX] = calloc(limit + 1, sizeof(*ids));
	list_r->items = calloc(limit, sizeof(*list_r->items));
	if (ids == NULL || list_r->items == NULL) {
		free(ids);
		free(list_r->items);
		list_r->items = NULL;
		return store_invalid(op, "out of memory");
	}
	/* One more than asked tells whether another page follows. */
	size_t n = 0;
	int rc = with_query
	             ? sql_list(tx, op, list_query_sql,
	                        SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(q), SQL_TEXT(q_end),
	                                 SQL_TEXT(cursor), SQL_TEXT(org_id), SQL_TEXT(q),
	                                 SQL_TEXT(q_end), SQL_TEXT(cursor), SQL_INT(limit + 1)),
	                        &id_table, ids, limit + 1, &n)
	             : sql_list(tx, op, list_all_sql,
	                        SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(cursor), SQL_INT(limit + 1)),
	                        &id_table, ids, limit + 1, &n);
	if (rc < 0) {
		free(ids);
		store_profile_list_free(list_r);
		return -1;
	}

	bool more = n > limit;
	if (more)
		n = limit;
	for (size_t i = 0; i < n; i++) {
		rc = store_profile_get(tx, org_id, ids[i], &list_r->items[list_r->count]);
		if (rc == STORE_NOT_FOUND)
			continue;
		if (rc != 0) {
			free(ids);
			store_profile_list_free(list_r);
			return -1;
		}
		list_r->count++;
	}
	if (more)
		mt_strlcpy(list_r->next_cursor, ids[n - 1], sizeof(list_r->next_cursor));
	free(ids);
	return 0;
}

void store_profile_list_free(struct store_profile_list *list)
{
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

int store_profiles_by_address(struct store_tx *tx, const char *org_id, const char *address,
                              char (*ids_r)[MT_ID_MAX], size_t max, size_t *count_r)
{
	static const char op[] = "store_profiles_by_address";
	*count_r = 0;
	struct db_stmt *s = sql_prepare(tx, op,
	                                "SELECT profile_id FROM profile_addresses"
	                                " WHERE org_id = ? AND address = ? ORDER BY profile_id",
	                                SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(address)));
	if (s == NULL)
		return -1;
	/* Every row is counted; the first `max` are kept. */
	int rc;
	size_t n = 0;
	while ((rc = sql_step(tx, op, s)) > 0) {
		if (n < max && sql_read(op, s, 0, &id_table, ids_r[n]) < 0) {
			db_finish(s);
			return -1;
		}
		n++;
	}
	if (rc == 0)
		*count_r = n;
	return rc;
}
