#include "engine/imap_sync_account.h"

#include "lib/str.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* The strings follow the struct and its folders in one block; `at` walks it. */
static const char *put_str(char **at, const char *s)
{
	size_t n = strlen(s) + 1;
	memcpy(*at, s, n);
	const char *copy = *at;
	*at += n;
	return copy;
}

struct imap_sync_account *imap_sync_account_new(const struct store_imap_account *a)
{
	size_t count =
	    a->folder_count <= MT_IMAP_FOLDERS_MAX ? a->folder_count : MT_IMAP_FOLDERS_MAX;
	size_t sealed = a->sealed_secret_len <= sizeof(a->sealed_secret) ? a->sealed_secret_len : 0;
	size_t size = sizeof(struct imap_sync_account) + count * sizeof(struct imap_sync_folder) +
	              sealed + strlen(a->user_id) + strlen(a->org_id) + strlen(a->host) +
	              strlen(a->username) + strlen(a->tls_fingerprint) + 5;
	for (size_t i = 0; i < count; i++)
		size += strlen(a->folders[i].name) + 1;
	struct imap_sync_account *s = calloc(1, size);
	if (s == NULL)
		return NULL;
	s->folders = (struct imap_sync_folder *)(s + 1);
	char *at = (char *)(s->folders + count);
	s->sealed_secret = (unsigned char *)at;
	memcpy(at, a->sealed_secret, sealed);
	s->sealed_secret_len = sealed;
	at += sealed;
	s->user_id = put_str(&at, a->user_id);
	s->org_id = put_str(&at, a->org_id);
	s->host = put_str(&at, a->host);
	s->username = put_str(&at, a->username);
	s->tls_fingerprint = put_str(&at, a->tls_fingerprint);
	s->state = a->state;
	s->port = a->port;
	s->security = a->security;
	s->auth = a->auth;
	s->since = a->since;
	s->verified_at = a->verified_at;
	s->last_sync_at = a->last_sync_at;
	s->updated_at = a->updated_at;
	s->folder_count = count;
	for (size_t i = 0; i < count; i++) {
		struct imap_sync_folder *f = &s->folders[i];
		f->name = put_str(&at, a->folders[i].name);
		mt_strlcpy(f->role, a->folders[i].role, sizeof(f->role));
		f->uidvalidity = a->folders[i].uidvalidity;
		f->last_uid = a->folders[i].last_uid;
		f->highestmodseq = a->folders[i].highestmodseq;
		f->messages_synced = a->folders[i].messages_synced;
	}
	return s;
}

void imap_sync_account_get(const struct imap_sync_account *s, struct store_imap_account *a)
{
	memset(a, 0, sizeof(*a));
	mt_strlcpy(a->user_id, s->user_id, sizeof(a->user_id));
	mt_strlcpy(a->org_id, s->org_id, sizeof(a->org_id));
	mt_strlcpy(a->host, s->host, sizeof(a->host));
	mt_strlcpy(a->username, s->username, sizeof(a->username));
	mt_strlcpy(a->tls_fingerprint, s->tls_fingerprint, sizeof(a->tls_fingerprint));
	memcpy(a->sealed_secret, s->sealed_secret, s->sealed_secret_len);
	a->sealed_secret_len = s->sealed_secret_len;
	a->state = s->state;
	a->port = s->port;
	a->security = s->security;
	a->auth = s->auth;
	a->since = s->since;
	a->verified_at = s->verified_at;
	a->last_sync_at = s->last_sync_at;
	a->updated_at = s->updated_at;
	a->folder_count = s->folder_count;
	for (size_t i = 0; i < s->folder_count; i++) {
		struct store_imap_folder *f = &a->folders[i];
		mt_strlcpy(f->name, s->folders[i].name, sizeof(f->name));
		mt_strlcpy(f->role, s->folders[i].role, sizeof(f->role));
		f->uidvalidity = s->folders[i].uidvalidity;
		f->last_uid = s->folders[i].last_uid;
		f->highestmodseq = s->folders[i].highestmodseq;
		f->messages_synced = s->folders[i].messages_synced;
	}
}

void imap_sync_account_wipe_secret(struct imap_sync_account *s)
{
	sodium_memzero(s->sealed_secret, s->sealed_secret_len);
	s->sealed_secret_len = 0;
}

void imap_sync_account_free(struct imap_sync_account **sp)
{
	if (*sp == NULL)
		return;
	imap_sync_account_wipe_secret(*sp);
	free(*sp);
	*sp = NULL;
}
