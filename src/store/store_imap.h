/* IMAP accounts for auto sync (DESIGN.md §1 IMAP account), one per user, with a cursor per
 * watched folder. The sealed secret is src/crypto's bytes, stored and read back, never
 * plaintext. States, security and auth are store_smtp.h's. Operations run inside a store job.
 *
 * Ownership: the caller owns the structs it passes in and out; nothing is allocated here. */
#ifndef MT_STORE_STORE_IMAP_H
#define MT_STORE_STORE_IMAP_H

#include "lib/limits.h"
#include "store/store.h"
#include "store/store_smtp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A watched folder and how far it is synced: the UIDs up to last_uid under uidvalidity are
 * done (0: never synced). */
struct store_imap_folder {
	char name[MT_IMAP_MAILBOX_MAX]; /* as LIST gave it (modified UTF-7) */
	char role[MT_IMAP_ROLE_MAX];    /* "inbox", "sent", "" */
	int64_t uidvalidity;
	int64_t last_uid;
	int64_t highestmodseq;
	int64_t messages_synced;
};

struct store_imap_account {
	char user_id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	enum store_account_state state;
	char host[MT_HOST_FIELD_MAX + 1];
	int port;
	enum store_security security;
	enum store_auth auth;
	char username[MT_ADDRESS_MAX + 1];
	char tls_fingerprint[MT_TLS_FINGERPRINT_MAX];
	unsigned char sealed_secret[MT_SEALED_MAX]; /* never plaintext */
	size_t sealed_secret_len;
	int64_t since; /* first sync starts at this day (unix seconds, 00:00 UTC) */
	int64_t verified_at;
	int64_t last_sync_at;
	char last_error[MT_ERROR_TEXT_MAX];
	int64_t updated_at;
	struct store_imap_folder folders[MT_IMAP_FOLDERS_MAX];
	size_t folder_count;
};

/* An account to sync. */
struct store_imap_ref {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
};

/* STORE_NOT_FOUND when the user never set one up. Folders in the order saved. */
int store_imap_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_imap_account *account_r);
/* Inserts or replaces the account's settings and its folder list: a folder kept by name keeps
 * its cursor (a re-save resumes where sync stopped); others are dropped or start at zero. */
int store_imap_account_put(struct store_tx *tx, const struct store_imap_account *account);
/* State off, secret wiped (the other settings are kept for the form). */
int store_imap_account_off(struct store_tx *tx, const char *org_id, const char *user_id);
/* connected -> disconnected with `reason`, only while the account is still the one `seen`
 * (connected, same updated_at): 0 when this call changed it, STORE_CONFLICT otherwise. */
int store_imap_account_disconnect(struct store_tx *tx, const struct store_imap_account *seen,
                                  const char *reason);
/* The sync's own report: last_sync_at (0: unchanged) and last_error ("" clears it). Settings
 * and updated_at untouched. */
int store_imap_account_report(struct store_tx *tx, const char *user_id, int64_t last_sync_at,
                              const char *last_error);
/* A folder's cursor: set to (uidvalidity, last_uid, highestmodseq), messages_synced grown by
 * `synced` (0 resets it when `reset`). Only for an account still at `updated_at`: a cursor of
 * settings replaced meanwhile is not written (STORE_CONFLICT). */
int store_imap_folder_set(struct store_tx *tx, const char *user_id, int64_t updated_at,
                          const char *name, int64_t uidvalidity, int64_t last_uid,
                          int64_t highestmodseq, int64_t synced, bool reset);
/* Connected accounts of orgs whose imap_sync is on (at most `max`). */
int store_imap_accounts_to_sync(struct store_tx *tx, struct store_imap_ref *refs, size_t max,
                                size_t *count_r);

#endif
