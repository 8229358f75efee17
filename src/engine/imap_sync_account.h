/* The IMAP account as a sync session keeps it (engine/imap_sync.c) for its whole life: the
 * settings a login needs, the sealed secret and the folders' cursors, in one allocation sized
 * to fit. The store's struct store_imap_account is ~9.7 KB of fixed fields (four 1 KiB folder
 * names, a 4 KiB field for the sealed secret), most of an idle account's memory once held by
 * every session (bench/sync-idle); this is ~400 bytes for an INBOX.
 *
 * Ownership: imap_sync_account_new() copies everything; the caller frees the result with
 * imap_sync_account_free(), which wipes the sealed secret. Strings point into the same
 * allocation. */
#ifndef MT_ENGINE_IMAP_SYNC_ACCOUNT_H
#define MT_ENGINE_IMAP_SYNC_ACCOUNT_H

#include "store/store_imap.h"

#include <stddef.h>
#include <stdint.h>

struct imap_sync_folder {
	const char *name; /* as LIST gave it (modified UTF-7) */
	char role[MT_IMAP_ROLE_MAX];
	int64_t uidvalidity;
	int64_t last_uid;
	int64_t highestmodseq;
	int64_t messages_synced;
};

struct imap_sync_account {
	const char *user_id, *org_id, *host, *username, *tls_fingerprint;
	enum store_account_state state;
	int port;
	enum store_security security;
	enum store_auth auth;
	unsigned char *sealed_secret; /* never plaintext */
	size_t sealed_secret_len;
	int64_t since, verified_at, last_sync_at, updated_at;
	struct imap_sync_folder *folders;
	size_t folder_count;
};

/* NULL when out of memory. The account's last_error is not kept. */
struct imap_sync_account *imap_sync_account_new(const struct store_imap_account *account);
/* The store's form again (last_error ""), for account_imap_client() or the disconnect; the
 * caller wipes its sealed_secret when done. */
void imap_sync_account_get(const struct imap_sync_account *account,
                           struct store_imap_account *account_r);
/* Wipes and forgets the sealed secret (a halted session holds none). */
void imap_sync_account_wipe_secret(struct imap_sync_account *account);
void imap_sync_account_free(struct imap_sync_account **account);

#endif
