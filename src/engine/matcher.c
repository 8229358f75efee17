/* The activity rules over the store's message and activity operations. */
#include "engine/matcher.h"
#include "lib/log.h"
#include "lib/str.h"
#include "mime/message.h"
#include "store/store.h"
#include "store/store_activity.h"
#include "store/store_message.h"
#include "store/store_never_log.h"
#include "store/store_org.h"
#include "store/store_profile.h"
#include "store/store_user.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- participants ---- */

struct participants {
	const char *addr[MT_MESSAGE_PARTICIPANTS_MAX];
	size_t count;
};

static void add_participant(struct participants *p, const char *address)
{
	if (address[0] == '\0' || p->count == MT_MESSAGE_PARTICIPANTS_MAX)
		return;
	for (size_t i = 0; i < p->count; i++) {
		if (strcmp(p->addr[i], address) == 0)
			return;
	}
	p->addr[p->count++] = address;
}

/* From, To, Cc, Bcc: every address once, in that order. */
static void collect_participants(const struct store_message *msg, struct participants *p)
{
	p->count = 0;
	add_participant(p, msg->from.address);
	for (size_t i = 0; i < msg->to_count; i++)
		add_participant(p, msg->to[i].address);
	for (size_t i = 0; i < msg->cc_count; i++)
		add_participant(p, msg->cc[i].address);
	for (size_t i = 0; i < msg->bcc_count; i++)
		add_participant(p, msg->bcc[i].address);
}

static const char *domain_of(const char *address)
{
	const char *at = strrchr(address, '@');
	return at != NULL ? at + 1 : address;
}

/* `domain` is `parent` or one of its subdomains; a label boundary is required, so
 * "evilstaffing.example" is not under "staffing.example". */
static bool domain_under(const char *domain, const char *parent)
{
	size_t dl = strlen(domain), pl = strlen(parent);
	if (pl == 0 || dl < pl)
		return false;
	if (strcmp(domain + dl - pl, parent) != 0)
		return false;
	return dl == pl || domain[dl - pl - 1] == '.';
}

/* An entry with '@' is an address, matched exactly; without, a domain with its subdomains. */
static bool entry_covers(const char *entry, const char *address)
{
	if (strchr(entry, '@') != NULL)
		return strcmp(entry, address) == 0;
	return domain_under(domain_of(address), entry);
}

static bool list_covers(const struct store_never_log *list, const char *address)
{
	for (size_t i = 0; i < list->count; i++) {
		if (entry_covers(list->entries[i], address))
			return true;
	}
	return false;
}

static bool org_covers(const struct store_org *org, const char *address)
{
	const char *domain = domain_of(address);
	for (size_t i = 0; i < org->domain_count; i++) {
		if (domain_under(domain, org->domains[i]))
			return true;
	}
	return false;
}

/* ---- logging ---- */

/* Whether a From address is a user's, remembered for the rest of the call: a chunk's mail
 * comes from few senders, and the question was one query per message. Direct-mapped; a
 * collision only costs the query again. */
struct from_memo {
	char address[MT_ADDRESS_MAX + 1];
	bool is_user;
};

/* Addresses that belong to no profile, remembered for the rest of the call: the mailbox owner's
 * own address is in nearly every message of a chunk (From in Sent, To in the Inbox). The call
 * writes no profile address, so what it learnt stays true until it returns. Direct-mapped. */
struct unmatched_memo {
	char address[MT_ADDRESS_MAX + 1];
};

/* The org and the lists that apply to this user, loaded once per call. */
struct rules {
	struct store_org org;
	struct store_never_log org_list, user_list;
	struct from_memo from[MT_MATCHER_FROM_MEMO];
	struct unmatched_memo unmatched[MT_MATCHER_UNMATCHED_MEMO];
};

static uint32_t address_hash(const char *address)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)address; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static size_t memo_slot(const char *address)
{
	return address_hash(address) % MT_MATCHER_FROM_MEMO;
}

static struct unmatched_memo *unmatched_slot(struct rules *rules, const char *address)
{
	return &rules->unmatched[address_hash(address) % MT_MATCHER_UNMATCHED_MEMO];
}

static bool known_unmatched(struct rules *rules, const char *address)
{
	const struct unmatched_memo *m = unmatched_slot(rules, address);
	return m->address[0] != '\0' && strcmp(m->address, address) == 0;
}

static void remember_unmatched(struct rules *rules, const char *address)
{
	struct unmatched_memo *m = unmatched_slot(rules, address);
	/* An address longer than the field is never remembered (so never confused). */
	if (mt_strlcpy(m->address, address, sizeof(m->address)) >= sizeof(m->address))
		m->address[0] = '\0';
}

/* store_address_is_user through the memo: 1, 0 or -1. */
static int from_is_user(struct store_tx *tx, const char *org_id, struct rules *rules,
                        const char *address)
{
	struct from_memo *m = &rules->from[memo_slot(address)];
	if (m->address[0] != '\0' && strcmp(m->address, address) == 0)
		return m->is_user;
	int rc = store_address_is_user(tx, org_id, address);
	if (rc < 0)
		return -1;
	/* An address longer than the field is never remembered (so never confused). */
	if (mt_strlcpy(m->address, address, sizeof(m->address)) >= sizeof(m->address))
		m->address[0] = '\0';
	m->is_user = rc == 1;
	return rc;
}

static void rules_free(struct rules *r)
{
	store_never_log_free(&r->org_list);
	store_never_log_free(&r->user_list);
	free(r);
}

static int rules_load(struct store_tx *tx, const char *org_id, const char *user_id,
                      struct rules **rules_r)
{
	/* Not calloc: ~30 KB, and the outbox asks once per message; the getters clear their
	 * parts themselves. */
	struct rules *r = malloc(sizeof(*r));
	if (r == NULL)
		return -1;
	r->org_list = (struct store_never_log){0};
	r->user_list = (struct store_never_log){0};
	for (size_t i = 0; i < MT_MATCHER_FROM_MEMO; i++)
		r->from[i].address[0] = '\0';
	for (size_t i = 0; i < MT_MATCHER_UNMATCHED_MEMO; i++)
		r->unmatched[i].address[0] = '\0';
	int rc = store_org_get(tx, org_id, &r->org);
	if (rc == 0)
		rc = store_never_log_get(tx, org_id, STORE_NEVER_LOG_ORG, NULL, &r->org_list);
	if (rc == 0 && user_id != NULL && user_id[0] != '\0')
		rc = store_never_log_get(tx, org_id, STORE_NEVER_LOG_USER, user_id, &r->user_list);
	if (rc != 0) {
		rules_free(r);
		return rc;
	}
	*rules_r = r;
	return 0;
}

/* Steps (4) to (6) once the message is to be logged. */
static int log_record(struct store_tx *tx, const char *org_id, const char *user_id,
                      enum store_source source, const struct store_message *msg,
                      struct rules *rules, const struct participants *parts,
                      struct matcher_result *result_r)
{
	int rc =
	    msg->from.address[0] != '\0' ? from_is_user(tx, org_id, rules, msg->from.address) : 0;
	if (rc < 0)
		return -1;
	result_r->type = rc == 1 ? STORE_EMAIL_SENT : STORE_EMAIL_RECEIVED;

	enum store_source stored;
	rc = store_message_lookup(tx, org_id, msg, result_r->key, &stored);
	bool existed = rc == 0;
	if (rc == STORE_NOT_FOUND)
		mt_strlcpy(result_r->key, msg->aliases[0], sizeof(result_r->key));
	else if (rc != 0)
		return -1;
	bool replaced = false, user_added = false;
	int64_t date = 0, record = 0;
	char thread_id[MT_ID_MAX];
	matcher_thread_id(org_id, msg, thread_id);
	rc = store_message_put(tx, org_id, result_r->key, source, result_r->type, thread_id, msg,
	                       &replaced, &date, &record);
	if (rc == 0 && user_id != NULL && user_id[0] != '\0')
		rc = store_message_add_user(tx, record, user_id, &user_added);
	/* Before the new activities are made, so that each change costs one feed position. */
	if (rc == 0 && existed && (replaced || user_added))
		rc = store_activities_touch(tx, org_id, record);
	if (rc != 0)
		return -1;

	/* Only the addresses that may belong to a profile are looked up. */
	const char *ask[MT_MESSAGE_PARTICIPANTS_MAX];
	bool found[MT_MESSAGE_PARTICIPANTS_MAX];
	size_t n = 0;
	for (size_t i = 0; i < parts->count; i++) {
		if (!known_unmatched(rules, parts->addr[i]))
			ask[n++] = parts->addr[i];
	}
	rc = store_activities_for_addresses(tx, org_id, record, date, ask, n,
	                                    &result_r->profiles_matched,
	                                    &result_r->activities_created, found);
	if (rc != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!found[i])
			remember_unmatched(rules, ask[i]);
	}
	return 0;
}

static int log_one(struct store_tx *tx, const char *org_id, const char *user_id,
                   enum store_source source, const struct store_message *msg, struct rules *rules,
                   struct participants *parts, struct matcher_result *result_r)
{
	memset(result_r, 0, sizeof(*result_r));
	if (msg->alias_count < 1 || msg->alias_count > MT_MESSAGE_ALIASES_MAX) {
		mt_log(MT_LOG_ERROR, "matcher.error", MT_KV("error", "message without identity"));
		return -1;
	}
	collect_participants(msg, parts);
	if (parts->count == 0) {
		result_r->outcome = MATCHER_NO_PARTICIPANTS;
		return 0;
	}
	bool never = false, internal = rules->org.domain_count > 0;
	for (size_t i = 0; i < parts->count && !never; i++) {
		never = list_covers(&rules->org_list, parts->addr[i]) ||
		        list_covers(&rules->user_list, parts->addr[i]);
		internal = internal && org_covers(&rules->org, parts->addr[i]);
	}
	if (never || internal) {
		result_r->outcome = never ? MATCHER_NEVER_LOG : MATCHER_INTERNAL_ONLY;
		return 0;
	}
	int rc = log_record(tx, org_id, user_id, source, msg, rules, parts, result_r);
	if (rc == 0)
		result_r->outcome = MATCHER_LOGGED;
	return rc;
}

int matcher_log_messages(struct store_tx *tx, const char *org_id, const char *user_id,
                         enum store_source source, const struct store_message *const *msgs,
                         size_t count, struct matcher_result *results_r)
{
	struct participants *parts = malloc(sizeof(*parts));
	if (parts == NULL)
		return -1;
	/* The org's settings cannot change inside the caller's transaction: read them once. */
	struct rules *rules = NULL;
	int rc = rules_load(tx, org_id, user_id, &rules);
	for (size_t i = 0; i < count && rc == 0; i++)
		rc = log_one(tx, org_id, user_id, source, msgs[i], rules, parts, &results_r[i]);
	if (rules != NULL)
		rules_free(rules);
	free(parts);
	return rc;
}

int matcher_log_message(struct store_tx *tx, const char *org_id, const char *user_id,
                        enum store_source source, const struct store_message *msg,
                        struct matcher_result *result_r)
{
	return matcher_log_messages(tx, org_id, user_id, source, &msg, 1, result_r);
}

/* ---- backfill ---- */

static int backfill_address(struct store_tx *tx, const char *org_id, const char *profile_id,
                            const char *address, const struct store_never_log *never,
                            size_t *created_r)
{
	size_t max = 64, count = 0;
	char(*keys)[MT_MESSAGE_KEY_MAX] = NULL;
	int rc;
	/* Grow until the answer fits: most addresses have a handful of records. */
	for (;;) {
		free(keys);
		keys = malloc(max * sizeof(*keys));
		if (keys == NULL)
			return -1;
		rc = store_message_keys_by_address(tx, org_id, address, keys, max, &count);
		if (rc != 0 || count < max || max == MT_BACKFILL_RECORDS_MAX)
			break;
		max = max * 4 < MT_BACKFILL_RECORDS_MAX ? max * 4 : MT_BACKFILL_RECORDS_MAX;
	}
	char(*parts)[MT_ADDRESS_MAX + 1] = NULL;
	if (rc == 0 && never->count > 0) {
		parts = malloc(MT_MESSAGE_PARTICIPANTS_MAX * sizeof(*parts));
		if (parts == NULL)
			rc = -1;
	}
	for (size_t i = 0; i < count && rc == 0; i++) {
		if (never->count > 0) {
			size_t n;
			rc = store_message_participants(tx, org_id, keys[i], parts,
			                                MT_MESSAGE_PARTICIPANTS_MAX, &n);
			bool skip = false;
			for (size_t k = 0; k < n && rc == 0 && !skip; k++)
				skip = list_covers(never, parts[k]);
			if (rc != 0 || skip)
				continue;
		}
		bool created;
		rc = store_activity_ensure(tx, org_id, profile_id, keys[i], &created);
		*created_r += created;
	}
	free(parts);
	free(keys);
	return rc;
}

int matcher_backfill_profile(struct store_tx *tx, const char *org_id, const char *profile_id,
                             size_t *created_r)
{
	*created_r = 0;
	struct store_profile *profile = malloc(sizeof(*profile));
	if (profile == NULL)
		return -1;
	int rc = store_profile_get(tx, org_id, profile_id, profile);
	struct store_never_log never = {0};
	if (rc == 0)
		rc = store_never_log_get(tx, org_id, STORE_NEVER_LOG_ORG, NULL, &never);
	for (size_t i = 0; i < profile->email_count && rc == 0; i++)
		rc =
		    backfill_address(tx, org_id, profile_id, profile->emails[i], &never, created_r);
	store_never_log_free(&never);
	free(profile);
	return rc;
}

/* ---- conversion ---- */

static struct store_mailbox *copy_mailboxes(const struct mime_mailbox *in, size_t count)
{
	if (count == 0)
		return NULL;
	struct store_mailbox *out = calloc(count, sizeof(*out));
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < count; i++) {
		mt_strlcpy(out[i].address, in[i].address, sizeof(out[i].address));
		mt_strlcpy(out[i].name, in[i].name, sizeof(out[i].name));
	}
	return out;
}

/* ---- threads ---- */

#define THREAD_PREFIX "thr_"
#define THREAD_CHARS  20 /* base32: 100 bits, as the other ids */
static const char thread_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

_Static_assert(STORE_THREAD_ROOT_BYTES == crypto_hash_sha256_BYTES, "the root is a SHA-256");

void matcher_set_thread_root(struct store_message *msg, const char *root)
{
	memset(msg->thread_root, 0, sizeof(msg->thread_root));
	if (root[0] != '\0')
		crypto_hash_sha256(msg->thread_root, (const unsigned char *)root, strlen(root));
}

static bool has_thread_root(const struct store_message *msg)
{
	static const unsigned char none[STORE_THREAD_ROOT_BYTES];
	return memcmp(msg->thread_root, none, sizeof(none)) != 0;
}

void matcher_thread_id(const char *org_id, const struct store_message *msg, char out[MT_ID_MAX])
{
	unsigned char root[STORE_THREAD_ROOT_BYTES];
	if (has_thread_root(msg))
		memcpy(root, msg->thread_root, sizeof(root));
	else
		crypto_hash_sha256(root, (const unsigned char *)msg->aliases[0],
		                   strlen(msg->aliases[0]));
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)org_id, strlen(org_id) + 1);
	crypto_hash_sha256_update(&st, root, sizeof(root));
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&st, digest);
	size_t n = sizeof(THREAD_PREFIX) - 1;
	memcpy(out, THREAD_PREFIX, n);
	/* 5 bits a character, most significant first */
	for (size_t i = 0; i < THREAD_CHARS; i++) {
		size_t bit = i * 5, byte = bit / 8, shift = bit % 8;
		unsigned v = ((unsigned)digest[byte] << 8 | digest[byte + 1]) >> (11 - shift);
		out[n++] = thread_alphabet[v & 31];
	}
	out[n] = '\0';
}

bool matcher_thread_id_valid(const char *text)
{
	size_t n = sizeof(THREAD_PREFIX) - 1;
	return strncmp(text, THREAD_PREFIX, n) == 0 && strlen(text + n) == THREAD_CHARS &&
	       strspn(text + n, thread_alphabet) == THREAD_CHARS;
}

/* ---- conversion ---- */

int matcher_message_from_summary(const struct mime_summary *summary, struct store_message *msg_r)
{
	memset(msg_r, 0, sizeof(*msg_r));
	msg_r->alias_count = mime_message_aliases(summary, msg_r->aliases);
	mt_strlcpy(msg_r->message_id, summary->message_id, sizeof(msg_r->message_id));
	mt_strlcpy(msg_r->in_reply_to, summary->in_reply_to, sizeof(msg_r->in_reply_to));
	matcher_set_thread_root(msg_r, mime_thread_root(summary));
	msg_r->date = summary->date;
	mt_strlcpy(msg_r->from.address, summary->from.address, sizeof(msg_r->from.address));
	mt_strlcpy(msg_r->from.name, summary->from.name, sizeof(msg_r->from.name));
	mt_strlcpy(msg_r->subject, summary->subject, sizeof(msg_r->subject));
	mt_strlcpy(msg_r->snippet, summary->snippet, sizeof(msg_r->snippet));

	struct store_mailbox *to = copy_mailboxes(summary->to, summary->to_count);
	struct store_mailbox *cc = copy_mailboxes(summary->cc, summary->cc_count);
	struct store_mailbox *bcc = copy_mailboxes(summary->bcc, summary->bcc_count);
	struct store_attachment *atts = NULL;
	if (summary->attachment_count > 0) {
		atts = calloc(summary->attachment_count, sizeof(*atts));
		for (size_t i = 0; atts != NULL && i < summary->attachment_count; i++) {
			const struct mime_attachment *a = &summary->attachments[i];
			mt_strlcpy(atts[i].name, a->name, sizeof(atts[i].name));
			mt_strlcpy(atts[i].type, a->type, sizeof(atts[i].type));
			atts[i].size = a->size;
		}
	}
	msg_r->to = to;
	msg_r->cc = cc;
	msg_r->bcc = bcc;
	msg_r->attachments = atts;
	msg_r->to_count = summary->to_count;
	msg_r->cc_count = summary->cc_count;
	msg_r->bcc_count = summary->bcc_count;
	msg_r->attachment_count = summary->attachment_count;
	if ((summary->to_count > 0 && to == NULL) || (summary->cc_count > 0 && cc == NULL) ||
	    (summary->bcc_count > 0 && bcc == NULL) ||
	    (summary->attachment_count > 0 && atts == NULL)) {
		matcher_message_free(msg_r);
		return -1;
	}
	return 0;
}

int matcher_message_prepare(struct store_message *msg)
{
	/* what matcher_thread_id() takes for a message without a root */
	if (msg->alias_count > 0 && !has_thread_root(msg))
		matcher_set_thread_root(msg, msg->aliases[0]);
	if (msg->columns != NULL)
		return 0;
	struct store_message_columns *columns = malloc(sizeof(*columns));
	if (columns == NULL || store_message_columns_build(msg, columns) < 0) {
		free(columns);
		return -1;
	}
	msg->columns = columns;
	return 0;
}

void matcher_message_free(struct store_message *msg)
{
	/* The arrays and the columns are const for the store's sake; here they are ours. */
	if (msg->columns != NULL) {
		struct store_message_columns *columns =
		    (struct store_message_columns *)msg->columns;
		store_message_columns_free(columns);
		free(columns);
		msg->columns = NULL;
	}
	free((void *)msg->to);
	free((void *)msg->cc);
	free((void *)msg->bcc);
	free((void *)msg->attachments);
	msg->to = msg->cc = msg->bcc = NULL;
	msg->attachments = NULL;
	msg->to_count = msg->cc_count = msg->bcc_count = msg->attachment_count = 0;
}
