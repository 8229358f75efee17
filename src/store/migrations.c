/* Schema migrations: a versioned list of portable SQL (see db.h), applied at open inside one write
 * transaction and recorded in schema_migrations, so that two processes opening a new store at the
 * same time apply each migration once (the second waits for the write lock, then finds it done).
 * Never edit an applied migration: add the next one. */
#include "store/store_internal.h"
#include "store/sql.h"
#include "lib/str.h"

#include <stdio.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

/* Text compared by prefix (profiles.name_lower, the address columns) relies on byte order: the
 * PostgreSQL migration will need COLLATE "C" on those columns or a C-collated database. */
/* message_records as migrations 5 and 6 rebuild it (the source check spelled as comparisons),
 * before its primary key. */
#define RECORD_COLUMNS_DDL                                                                         \
	" org_id TEXT NOT NULL,"                                                                   \
	" key TEXT NOT NULL,"                                                                      \
	" source TEXT NOT NULL CHECK (source = 'addin' OR source = 'bcc' OR source = 'imap'"       \
	" OR source = 'outbox'),"                                                                  \
	" type TEXT NOT NULL CHECK (type = 'email_sent' OR type = 'email_received'),"              \
	" message_id TEXT NOT NULL,"                                                               \
	" date BIGINT NOT NULL,"                                                                   \
	" from_address TEXT NOT NULL,"                                                             \
	" from_name TEXT NOT NULL,"                                                                \
	" to_json TEXT NOT NULL,"                                                                  \
	" cc_json TEXT NOT NULL,"                                                                  \
	" bcc_json TEXT NOT NULL,"                                                                 \
	" subject TEXT NOT NULL,"                                                                  \
	" snippet TEXT NOT NULL,"                                                                  \
	" attachments_json TEXT NOT NULL,"                                                         \
	" participants TEXT NOT NULL,"                                                             \
	" first_seen BIGINT NOT NULL,"                                                             \
	" last_seen BIGINT NOT NULL,"
#define RECORD_COLUMNS                                                                             \
	"org_id, key, source, type, message_id, date, from_address, from_name, to_json, cc_json,"  \
	" bcc_json, subject, snippet, attachments_json, participants, first_seen, last_seen"

static const struct migration migrations[] = {
    {1, "initial",
     "CREATE TABLE orgs ("
     " id TEXT PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " custom_smtp INTEGER NOT NULL DEFAULT 0,"
     " imap_sync INTEGER NOT NULL DEFAULT 0,"
     " bcc_sync INTEGER NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL);"

     /* A child table rather than JSON: the matcher asks "is this domain internal" by index. */
     "CREATE TABLE org_domains ("
     " org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,"
     " domain TEXT NOT NULL,"
     " pos INTEGER NOT NULL,"
     " PRIMARY KEY (org_id, domain));"

     "CREATE TABLE users ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL REFERENCES orgs(id),"
     " email TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " role TEXT NOT NULL CHECK (role IN ('admin', 'user')),"
     " active INTEGER NOT NULL DEFAULT 1,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX users_org ON users (org_id, id);"

     /* Every address of a user (the email, is_primary = 1, and its aliases): the unique key is
      * what makes "this address already belongs to a user of the org" a constraint, and what
      * store_user_by_address looks up. A deactivated user keeps its addresses. */
     "CREATE TABLE user_addresses ("
     " org_id TEXT NOT NULL,"
     " address TEXT NOT NULL,"
     " user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
     " is_primary INTEGER NOT NULL,"
     " pos INTEGER NOT NULL,"
     " PRIMARY KEY (org_id, address));"
     "CREATE INDEX user_addresses_user ON user_addresses (user_id, pos);"

     "CREATE TABLE tokens ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL REFERENCES users(id),"
     " hash BYTEA NOT NULL UNIQUE,"
     " created_at BIGINT NOT NULL,"
     " revoked_at BIGINT);"
     "CREATE INDEX tokens_user ON tokens (user_id);"

     "CREATE TABLE profiles ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL REFERENCES orgs(id),"
     " kind TEXT NOT NULL CHECK (kind IN ('applicant', 'contact', 'employee')),"
     " name TEXT NOT NULL,"
     " name_lower TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX profiles_org ON profiles (org_id, id);"
     "CREATE INDEX profiles_org_name ON profiles (org_id, name_lower);"

     /* The index that finds the profiles of an address; several profiles may share one. */
     "CREATE TABLE profile_addresses ("
     " org_id TEXT NOT NULL,"
     " address TEXT NOT NULL,"
     " profile_id TEXT NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,"
     " pos INTEGER NOT NULL,"
     " PRIMARY KEY (org_id, address, profile_id));"
     "CREATE INDEX profile_addresses_profile ON profile_addresses (profile_id, pos);"

     "CREATE TABLE smtp_accounts ("
     " user_id TEXT PRIMARY KEY REFERENCES users(id),"
     " org_id TEXT NOT NULL,"
     " state TEXT NOT NULL CHECK (state IN ('off', 'connected', 'disconnected')),"
     " preset TEXT NOT NULL,"
     " host TEXT NOT NULL,"
     " port INTEGER NOT NULL,"
     " security TEXT NOT NULL,"
     " auth TEXT NOT NULL,"
     " username TEXT NOT NULL,"
     " from_address TEXT NOT NULL,"
     " tls_fingerprint TEXT NOT NULL,"
     " sealed_secret BYTEA,"
     " verified_at BIGINT NOT NULL,"
     " confirmation_message_id TEXT NOT NULL,"
     " last_error TEXT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX smtp_accounts_org ON smtp_accounts (org_id);"

     /* `limit` is a reserved word in both dialects, hence max_count. */
     "CREATE TABLE smtp_account_limits ("
     " user_id TEXT NOT NULL REFERENCES smtp_accounts(user_id) ON DELETE CASCADE,"
     " pos INTEGER NOT NULL,"
     " max_count BIGINT NOT NULL,"
     " window_s INTEGER NOT NULL,"
     " PRIMARY KEY (user_id, pos));"},

    /* Message records, activities and never-log lists (DESIGN.md §1). Logging one message
     * writes about twenty index entries, so the layout is lean: the record children (aliases,
     * participants, users), the activities and the small tables are WITHOUT ROWID (one b-tree
     * each instead of a table plus its key index; the PostgreSQL migration drops the clause),
     * the children carry no foreign key (written in the same operation as the record, deleted
     * explicitly), and a record's key, its first alias, is not repeated in message_aliases. */
    {2, "messages_activities",
     "CREATE TABLE message_records ("
     " org_id TEXT NOT NULL,"
     " key TEXT NOT NULL,"
     " source TEXT NOT NULL CHECK (source IN ('addin', 'bcc', 'imap', 'outbox')),"
     " type TEXT NOT NULL CHECK (type IN ('email_sent', 'email_received')),"
     " message_id TEXT NOT NULL,"
     " date BIGINT NOT NULL,"
     " from_address TEXT NOT NULL,"
     " from_name TEXT NOT NULL,"
     " to_json TEXT NOT NULL,"
     " cc_json TEXT NOT NULL,"
     " bcc_json TEXT NOT NULL,"
     " subject TEXT NOT NULL,"
     " snippet TEXT NOT NULL,"
     " attachments_json TEXT NOT NULL,"
     /* The addresses message_participants holds for this record, one a line (a normalised
      * address has no control character): erasure, purge and merge find a record's rows
      * there instead of through a second index on every participant row. */
     " participants TEXT NOT NULL,"
     " first_seen BIGINT NOT NULL,"
     " last_seen BIGINT NOT NULL,"
     " PRIMARY KEY (org_id, key));"
     "CREATE INDEX message_records_last_seen ON message_records (last_seen);"

     /* The other identities of a message, each pointing to its canonical key. */
     "CREATE TABLE message_aliases ("
     " org_id TEXT NOT NULL,"
     " alias TEXT NOT NULL,"
     " key TEXT NOT NULL,"
     " PRIMARY KEY (org_id, alias)) WITHOUT ROWID;"
     "CREATE INDEX message_aliases_key ON message_aliases (org_id, key);"

     /* The backfill index: which records an address took part in. */
     "CREATE TABLE message_participants ("
     " org_id TEXT NOT NULL,"
     " address TEXT NOT NULL,"
     " key TEXT NOT NULL,"
     " PRIMARY KEY (org_id, address, key)) WITHOUT ROWID;"

     "CREATE TABLE message_users ("
     " org_id TEXT NOT NULL,"
     " key TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " added_at BIGINT NOT NULL,"
     " PRIMARY KEY (org_id, key, user_id)) WITHOUT ROWID;"

     /* One row per (profile, message). `date` is the record's, copied so that a timeline page
      * is one index range; `seq` is the feed position (feed_counter). No foreign key to
      * profiles: store_profile_delete erases activities itself, and the parent check would be
      * one more random read per activity. Keyed by (org, message, profile), the rule that
      * makes an activity unique: the random `id` is only shown and ordered by (timeline), and
      * a b-tree of its own would be one more random write per activity. */
     "CREATE TABLE activities ("
     " org_id TEXT NOT NULL,"
     " key TEXT NOT NULL,"
     " profile_id TEXT NOT NULL,"
     " id TEXT NOT NULL,"
     " date BIGINT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " PRIMARY KEY (org_id, key, profile_id)) WITHOUT ROWID;"
     "CREATE UNIQUE INDEX activities_feed ON activities (org_id, seq);"
     "CREATE INDEX activities_timeline ON activities (org_id, profile_id, date, id);"

     /* One row per org. The writing transaction updates it for every feed position it takes,
      * which holds the row lock (PostgreSQL) or the write lock (SQLite) until commit, so
      * positions are handed out in commit order and a reader paging by `since` never steps
      * over a position that commits later. */
     "CREATE TABLE feed_counter ("
     " org_id TEXT PRIMARY KEY,"
     " value BIGINT NOT NULL) WITHOUT ROWID;"

     "CREATE TABLE never_log ("
     " org_id TEXT NOT NULL,"
     " scope TEXT NOT NULL CHECK (scope IN ('org', 'user')),"
     " user_id TEXT NOT NULL,"
     " entry TEXT NOT NULL,"
     " pos INTEGER NOT NULL,"
     " PRIMARY KEY (org_id, scope, user_id, entry)) WITHOUT ROWID;"},
    {3, "outbox",
     /* state: 0 queued, 1 held, 2 sending, 3 sent, 4 partial, 5 failed, 6 cancelled
      * (enum store_outbox_state); recipient state: 0 pending, 1 sent, 2 failed. */
     "CREATE TABLE outbox_messages ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " campaign_id TEXT NOT NULL DEFAULT '',"
     " state INTEGER NOT NULL,"
     " route TEXT NOT NULL,"
     " idempotency_key TEXT NOT NULL DEFAULT '',"
     " mail_from TEXT NOT NULL,"
     " from_address TEXT NOT NULL,"
     " from_name TEXT NOT NULL,"
     " subject TEXT NOT NULL,"
     " message_id TEXT NOT NULL,"
     " mailtrail_id TEXT NOT NULL,"
     " snippet TEXT NOT NULL,"
     " attachments_json TEXT NOT NULL DEFAULT '[]',"
     " body BYTEA,"
     " body_len BIGINT NOT NULL,"
     " attempts INTEGER NOT NULL DEFAULT 0,"
     " first_attempt_at BIGINT NOT NULL DEFAULT 0,"
     " next_attempt_at BIGINT NOT NULL,"
     " held_seconds BIGINT NOT NULL DEFAULT 0,"
     " last_error TEXT NOT NULL DEFAULT '',"
     " last_class TEXT NOT NULL DEFAULT '',"
     " lease_owner TEXT NOT NULL DEFAULT '',"
     " lease_token BIGINT NOT NULL DEFAULT 0,"
     " lease_expires BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " sent_at BIGINT NOT NULL DEFAULT 0);"
     "CREATE INDEX outbox_due ON outbox_messages (state, next_attempt_at);"
     "CREATE INDEX outbox_lease ON outbox_messages (lease_owner, state);"
     "CREATE INDEX outbox_idempotency ON outbox_messages (org_id, user_id, idempotency_key);"
     "CREATE TABLE outbox_recipients ("
     " message_id TEXT NOT NULL,"
     " pos INTEGER NOT NULL,"
     " address TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " kind INTEGER NOT NULL,"
     " state INTEGER NOT NULL,"
     " reply TEXT NOT NULL DEFAULT '',"
     " PRIMARY KEY (message_id, pos));"},
    {4, "outbox_lease_index",
     /* The claim's second look, sending rows whose lease ran out, must not walk every leased
      * message: with thousands claimed it did, on every claim. */
     "CREATE INDEX outbox_leases ON outbox_messages (state, lease_expires);"},
    /* The sender rewrites a message's row at its claim and at its result: with the 2 KB+ body
     * in the row, each of those rewrote a page per message. The body now lives apart, written
     * once. The due, held and lease indexes only hold the rows they are for (partial indexes,
     * in both dialects): a sent message leaves them instead of growing them forever, and a
     * state change touches one or two of them instead of three. Queries spell `state = 0` / `state
     * = 2` as literals so that the planner can use them. */
    {5, "storage_layout",
     "CREATE TABLE outbox_bodies ("
     " message_id TEXT PRIMARY KEY,"
     " body BYTEA NOT NULL);"
     "INSERT INTO outbox_bodies (message_id, body)"
     " SELECT id, body FROM outbox_messages WHERE body IS NOT NULL;"
     "ALTER TABLE outbox_messages DROP COLUMN body;"
     "DROP INDEX outbox_due;"
     "DROP INDEX outbox_lease;"
     "DROP INDEX outbox_leases;"
     "CREATE INDEX outbox_due ON outbox_messages (next_attempt_at) WHERE state = 0;"
     "CREATE INDEX outbox_lease ON outbox_messages (lease_owner) WHERE state = 2;"
     "CREATE INDEX outbox_held ON outbox_messages (user_id, next_attempt_at) WHERE state = 1;"
     "CREATE INDEX outbox_leases ON outbox_messages (lease_expires) WHERE state = 2;"
     /* For the per-state gauge only: an index on every state would be the one the planner
      * picks for `state = 0 AND ...`, ahead of the partial ones. */
     "CREATE INDEX outbox_final ON outbox_messages (state) WHERE state >= 3;"
     /* message_records again, with its source check spelled as comparisons: SQLite builds a
      * temporary table for an IN list of four and more, on every insert. */
     "CREATE TABLE message_records_v5 (" RECORD_COLUMNS_DDL " PRIMARY KEY (org_id, key));"
     "INSERT INTO message_records_v5 (" RECORD_COLUMNS ") SELECT " RECORD_COLUMNS
     " FROM message_records;"
     "DROP TABLE message_records;"
     "ALTER TABLE message_records_v5 RENAME TO message_records;"
     "CREATE INDEX message_records_last_seen ON message_records (last_seen);"
     /* A profile id belongs to one org: the timeline index leads with the profile (every
      * compare went through 24 equal bytes of org id before it got to it). */
     "DROP INDEX activities_timeline;"
     "CREATE INDEX activities_timeline ON activities (profile_id, org_id, date, id);"},

    /* Message records get a number (`rid`, the rowid), and their children — aliases,
     * participants, users, activities — point to it instead of repeating (org, key): a key is
     * a Message-ID, 30 to 80 bytes, in five b-trees per message. The record's own unique key
     * and the children's lead with the value looked up (key, alias, address), then the org, so
     * a comparison is decided in its first bytes instead of after 24 equal bytes of org id.
     * profile_addresses keeps the org first (the profile search scans an address prefix in the
     * org); the timeline keeps its org column (without it SQLite's planner took the feed index
     * for "this profile's activities" and read the whole org). Tables are rebuilt (SQLite
     * cannot change a primary key in place); a record keeps its rowid as its number. The
     * PostgreSQL spelling of `rid INTEGER PRIMARY KEY` is an identity column. */
    {6, "record_numbers",
     "CREATE TABLE message_records_v6 (rid INTEGER PRIMARY KEY," RECORD_COLUMNS_DDL
     " UNIQUE (key, org_id));"
     "INSERT INTO message_records_v6 (rid, " RECORD_COLUMNS ") SELECT rowid, " RECORD_COLUMNS
     " FROM message_records;"

     "CREATE TABLE message_aliases_v6 ("
     " org_id TEXT NOT NULL,"
     " alias TEXT NOT NULL,"
     " rid BIGINT NOT NULL,"
     " PRIMARY KEY (alias, org_id)) WITHOUT ROWID;"
     "INSERT INTO message_aliases_v6 (org_id, alias, rid)"
     " SELECT a.org_id, a.alias, r.rid FROM message_aliases a"
     " JOIN message_records_v6 r ON r.key = a.key AND r.org_id = a.org_id;"

     "CREATE TABLE message_participants_v6 ("
     " org_id TEXT NOT NULL,"
     " address TEXT NOT NULL,"
     " rid BIGINT NOT NULL,"
     " PRIMARY KEY (address, org_id, rid)) WITHOUT ROWID;"
     "INSERT INTO message_participants_v6 (org_id, address, rid)"
     " SELECT p.org_id, p.address, r.rid FROM message_participants p"
     " JOIN message_records_v6 r ON r.key = p.key AND r.org_id = p.org_id;"

     /* A user id is one org's: the number alone says whose record it is. */
     "CREATE TABLE message_users_v6 ("
     " rid BIGINT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " added_at BIGINT NOT NULL,"
     " PRIMARY KEY (rid, user_id)) WITHOUT ROWID;"
     "INSERT INTO message_users_v6 (rid, user_id, added_at)"
     " SELECT r.rid, u.user_id, u.added_at FROM message_users u"
     " JOIN message_records_v6 r ON r.key = u.key AND r.org_id = u.org_id;"

     /* As is a profile id: (record, profile) is the activity's identity. */
     "CREATE TABLE activities_v6 ("
     " rid BIGINT NOT NULL,"
     " profile_id TEXT NOT NULL,"
     " org_id TEXT NOT NULL,"
     " id TEXT NOT NULL,"
     " date BIGINT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " PRIMARY KEY (rid, profile_id)) WITHOUT ROWID;"
     "INSERT INTO activities_v6 (rid, profile_id, org_id, id, date, seq, created_at,"
     " updated_at)"
     " SELECT r.rid, a.profile_id, a.org_id, a.id, a.date, a.seq, a.created_at, a.updated_at"
     " FROM activities a JOIN message_records_v6 r ON r.key = a.key AND r.org_id = a.org_id;"

     "DROP TABLE activities;"
     "DROP TABLE message_users;"
     "DROP TABLE message_participants;"
     "DROP TABLE message_aliases;"
     "DROP TABLE message_records;"
     "ALTER TABLE message_records_v6 RENAME TO message_records;"
     "ALTER TABLE message_aliases_v6 RENAME TO message_aliases;"
     "ALTER TABLE message_participants_v6 RENAME TO message_participants;"
     "ALTER TABLE message_users_v6 RENAME TO message_users;"
     "ALTER TABLE activities_v6 RENAME TO activities;"
     "CREATE INDEX message_records_last_seen ON message_records (last_seen);"
     "CREATE INDEX message_aliases_rid ON message_aliases (rid);"
     "CREATE UNIQUE INDEX activities_feed ON activities (org_id, seq);"
     "CREATE INDEX activities_timeline ON activities (profile_id, org_id, date, id);"},

    /* The route is chosen when a message is sent, not when it is stored: the fields it decides
     * (From, Sender, Reply-To) and the identity go before the stored rest at delivery
     * (head_apart = 1); the user's own Reply-To is kept for that. Messages stored before keep
     * their whole MIME (head_apart = 0) and go as they are. */
    {7, "route_at_delivery",
     "ALTER TABLE outbox_messages ADD COLUMN reply_to_address TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE outbox_messages ADD COLUMN reply_to_name TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE outbox_messages ADD COLUMN head_apart INTEGER NOT NULL DEFAULT 0;"
     /* A message's attachments (name, type, size: its activity's) as rows, not as a JSON
      * string written at enqueue and parsed again when it is delivered. */
     "CREATE TABLE outbox_attachments ("
     " message_id TEXT NOT NULL,"
     " pos INTEGER NOT NULL,"
     " name TEXT NOT NULL,"
     " type TEXT NOT NULL,"
     " size BIGINT NOT NULL,"
     " PRIMARY KEY (message_id, pos)) WITHOUT ROWID;"
     "INSERT INTO outbox_attachments (message_id, pos, name, type, size)"
     " SELECT m.id, j.key, COALESCE(json_extract(j.value, '$.name'), ''),"
     " COALESCE(json_extract(j.value, '$.type'), ''), COALESCE(json_extract(j.value, '$.size'), 0)"
     " FROM outbox_messages m, json_each(m.attachments_json) j"
     " WHERE json_valid(m.attachments_json) AND m.attachments_json <> '[]';"},

    /* The send governor (engine/governor.h, store_governor.h): one slot per recipient sent or
     * reserved through an account, read per account and time (no primary key: a slot is found
     * by its account and time first); one row per account for its held mail's wake-up (a
     * partial index: only accounts with held mail are in it) and its pause after throttle or
     * quota replies. A message held by the governor names the account it waits for and since
     * when (its held time does not count against retry_expiry). */
    {8, "send_governor",
     "CREATE TABLE send_slots ("
     " account TEXT NOT NULL,"
     " at_ms BIGINT NOT NULL,"
     " message_id TEXT NOT NULL,"
     " lease_token BIGINT NOT NULL,"
     " address TEXT NOT NULL,"
     " pending INTEGER NOT NULL);"
     "CREATE INDEX send_slots_account ON send_slots (account, at_ms);"
     "CREATE TABLE send_governors ("
     " account TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " relay INTEGER NOT NULL,"
     " wake_at_ms BIGINT NOT NULL DEFAULT 0,"
     " paused_until_ms BIGINT NOT NULL DEFAULT 0,"
     " pauses INTEGER NOT NULL DEFAULT 0);"
     "CREATE INDEX send_governors_wake ON send_governors (wake_at_ms) WHERE wake_at_ms > 0;"
     "ALTER TABLE outbox_messages ADD COLUMN hold_key TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE outbox_messages ADD COLUMN held_since BIGINT NOT NULL DEFAULT 0;"},
    /* Notifications to users (engine/notify.h), read newest first by their time-ordered id;
     * and mail that must go through the relay whatever the user's account (a notice about
     * that account). A message held for its account's reconnect uses the governor's hold
     * columns (hold_key 'reconnect', held_since). */
    {9, "notifications",
     "CREATE TABLE notifications ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " kind TEXT NOT NULL,"
     " text TEXT NOT NULL,"
     " created_at BIGINT NOT NULL);"
     "CREATE INDEX notifications_user ON notifications (user_id, id);"
     "ALTER TABLE outbox_messages ADD COLUMN relay_only INTEGER NOT NULL DEFAULT 0;"},
    /* Campaigns (DESIGN.md §1 Campaign): one outbox message per recipient carries the
     * campaign's id (outbox_messages.campaign_id, there since version 3). state: 0 running,
     * 1 paused, 2 cancelled (enum store_campaign_state). A suppression is an address of the org
     * that unsubscribed; the token of each campaign message's List-Unsubscribe link leads to its
     * recipient (a random 128-bit value: it only unsubscribes, and only that address). */
    {10, "campaigns",
     "CREATE TABLE campaigns ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " idempotency_key TEXT NOT NULL DEFAULT '',"
     " state INTEGER NOT NULL,"
     " subject TEXT NOT NULL,"
     " total BIGINT NOT NULL,"
     " suppressed BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX campaigns_idempotency ON campaigns (org_id, user_id, idempotency_key);"
     "CREATE INDEX outbox_campaign ON outbox_messages (campaign_id, state)"
     " WHERE campaign_id <> '';"
     "CREATE TABLE suppressions ("
     " org_id TEXT NOT NULL,"
     " address TEXT NOT NULL,"
     " campaign_id TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (org_id, address));"
     "CREATE TABLE unsubscribe_tokens ("
     " token TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " campaign_id TEXT NOT NULL,"
     " address TEXT NOT NULL,"
     " created_at BIGINT NOT NULL);"},
    /* IMAP auto sync (DESIGN.md §1 IMAP account): one account per user, and per watched folder
     * its cursor (UIDs up to last_uid under uidvalidity are done). updated_at (milliseconds)
     * fences what the sync writes against a save or DELETE made meanwhile. Portable SQL: the
     * PostgreSQL driver runs the same text. */
    {11, "imap_accounts",
     "CREATE TABLE imap_accounts ("
     " user_id TEXT PRIMARY KEY REFERENCES users(id),"
     " org_id TEXT NOT NULL,"
     " state TEXT NOT NULL CHECK (state IN ('off', 'connected', 'disconnected')),"
     " host TEXT NOT NULL,"
     " port INTEGER NOT NULL,"
     " security TEXT NOT NULL,"
     " auth TEXT NOT NULL,"
     " username TEXT NOT NULL,"
     " tls_fingerprint TEXT NOT NULL,"
     " sealed_secret BYTEA,"
     " since BIGINT NOT NULL,"
     " verified_at BIGINT NOT NULL,"
     " last_sync_at BIGINT NOT NULL,"
     " last_error TEXT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX imap_accounts_state ON imap_accounts (state, org_id);"
     "CREATE TABLE imap_folders ("
     " user_id TEXT NOT NULL REFERENCES imap_accounts(user_id) ON DELETE CASCADE,"
     " name TEXT NOT NULL,"
     " pos INTEGER NOT NULL,"
     " role TEXT NOT NULL,"
     " uidvalidity BIGINT NOT NULL,"
     " last_uid BIGINT NOT NULL,"
     " highestmodseq BIGINT NOT NULL,"
     " messages_synced BIGINT NOT NULL,"
     " PRIMARY KEY (user_id, name));"},
    /* OAuth grants (issue 15): one per user, used by the user's xoauth2 accounts. Tokens and
     * the client secret sealed; updated_at (milliseconds) fences a refresh's write against a
     * new consent. */
    {12, "oauth_grants",
     "CREATE TABLE oauth_grants ("
     " id TEXT NOT NULL UNIQUE,"
     " org_id TEXT NOT NULL,"
     " user_id TEXT PRIMARY KEY REFERENCES users(id),"
     " provider TEXT NOT NULL,"
     " token_url TEXT NOT NULL,"
     " client_id TEXT NOT NULL,"
     " sealed_client_secret BYTEA,"
     " sealed_refresh_token BYTEA NOT NULL,"
     " sealed_access_token BYTEA,"
     " expires_at BIGINT NOT NULL,"
     " state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),"
     " revoked_reason TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX oauth_grants_expiring ON oauth_grants (expires_at) WHERE state = 'active';"},
    /* Authorisation-code flows started and not finished (issue 15): keyed by the SHA-256 of
     * their `state` (a one-time credential, not kept in clear), the PKCE verifier sealed. */
    {13, "oauth_flows",
     "CREATE TABLE oauth_flows ("
     " state_hash BYTEA PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL REFERENCES users(id),"
     " provider TEXT NOT NULL,"
     " purposes INTEGER NOT NULL,"
     " sealed_verifier BYTEA NOT NULL,"
     " created_at BIGINT NOT NULL);" /* milliseconds */
     "CREATE INDEX oauth_flows_user ON oauth_flows (user_id, created_at);"},
    /* GET /v1/messages: an org's or a user's messages, newest first (ids sort by time). */
    {14, "outbox_lists",
     "CREATE INDEX outbox_org_list ON outbox_messages (org_id, id);"
     "CREATE INDEX outbox_user_list ON outbox_messages (user_id, id);"},
    /* A profile's external_id: the CRM's own id for it, unique per org when set. */
    {15, "profile_external_id",
     "ALTER TABLE profiles ADD COLUMN external_id TEXT;"
     "CREATE UNIQUE INDEX profiles_external ON profiles (org_id, external_id)"
     " WHERE external_id IS NOT NULL;"},
    /* Org-level API keys (issue 16): a service's one secret that acts for any user of its
     * org. Kept as the SHA-256 of the key text, as user tokens are; scopes a bit set (1 read,
     * 2 send, 4 admin). created_by: the user or key that made it. */
    {16, "api_keys",
     "CREATE TABLE api_keys ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL REFERENCES orgs(id),"
     " name TEXT NOT NULL,"
     " scopes INTEGER NOT NULL,"
     " hash BYTEA NOT NULL UNIQUE,"
     " created_at BIGINT NOT NULL,"
     " created_by TEXT NOT NULL,"
     " revoked_at BIGINT);"
     "CREATE INDEX api_keys_org ON api_keys (org_id, created_at);"},
    /* Tombstones (issue 16): an activity that goes (its profile erased, a duplicate dropped
     * when two records of one message merge) leaves its id at a new feed position, so a CRM
     * upserting by id deletes it too. Positions come from feed_counter like the activities',
     * hence the same key; the retention job purges them by age. */
    {17, "activity_tombstones",
     "CREATE TABLE activity_tombstones ("
     " org_id TEXT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " id TEXT NOT NULL,"
     " profile_id TEXT NOT NULL,"
     " reason TEXT NOT NULL CHECK (reason IN ('profile_erased', 'merged')),"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (org_id, seq)) WITHOUT ROWID;"
     "CREATE INDEX activity_tombstones_age ON activity_tombstones (created_at);"},
    /* Conversations (docs/api.md "Threads"): on the record, the message its activities show —
     * our outbox id when we sent it, the Message-ID it replies to, its thread. NULL: none (and
     * thread_id NULL on records stored before this, until a source sees them again). No index:
     * a thread is read within one profile's timeline, which its own index bounds. */
    {18, "activity_threads",
     "ALTER TABLE message_records ADD COLUMN outbox_id TEXT;"
     "ALTER TABLE message_records ADD COLUMN in_reply_to TEXT;"
     "ALTER TABLE message_records ADD COLUMN thread_id TEXT;"},
    /* Webhooks (issue 16, docs/webhooks.md). 19, not 16: numbers 16 to 18 are taken by work
     * merged beside this one (the list needs only ascending versions). A webhook's cursor is a
     * position of its org's feed counter, which also numbers webhook_events: one ordered stream
     * of activities (read from the feed itself) and the other events. next_attempt_at and
     * lease_expires in milliseconds; lease_owner a node id (DATA/node.id). */
    {19, "webhooks",
     "CREATE TABLE webhooks ("
     " id TEXT PRIMARY KEY,"
     " org_id TEXT NOT NULL,"
     " url TEXT NOT NULL,"
     " events TEXT NOT NULL,"
     " sealed_secret BYTEA NOT NULL,"
     " active INTEGER NOT NULL,"
     " cursor BIGINT NOT NULL,"
     " attempts INTEGER NOT NULL,"
     " next_attempt_at BIGINT NOT NULL,"
     " last_status INTEGER NOT NULL,"
     " last_error TEXT NOT NULL,"
     " lease_owner TEXT NOT NULL,"
     " lease_expires BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL);"
     "CREATE INDEX webhooks_org ON webhooks (org_id, active);"
     "CREATE INDEX webhooks_due ON webhooks (next_attempt_at) WHERE active = 1;"
     /* Events other than activities, written by the transaction that made the change (only
      * while the org has an active webhook); seq from the org's feed counter. */
     "CREATE TABLE webhook_events ("
     " org_id TEXT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " type TEXT NOT NULL,"
     " object_id TEXT NOT NULL,"
     " payload TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (org_id, seq));"
     "CREATE INDEX webhook_events_age ON webhook_events (created_at);"
     "CREATE TABLE webhook_deliveries ("
     " id TEXT PRIMARY KEY,"
     " webhook_id TEXT NOT NULL,"
     " event_id TEXT NOT NULL,"
     " type TEXT NOT NULL,"
     " attempt INTEGER NOT NULL,"
     " status INTEGER NOT NULL,"
     " outcome TEXT NOT NULL,"
     " error TEXT NOT NULL,"
     " duration_ms BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL);"
     "CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);"
     "CREATE INDEX webhook_deliveries_age ON webhook_deliveries (created_at);"},
    /* IMAP sync (issue 14): a folder's highestmodseq now means "the HIGHESTMODSEQ of the
     * SELECT of the pass that completed the folder up to last_uid" and lets a pass skip its
     * UID SEARCH (engine/imap_cursor.h). Before, every chunk stored its pass's value, also an
     * unfinished pass's: those are forgotten (the next pass searches once and stores a true
     * one). */
    {20, "imap_modseq_complete_only", "UPDATE imap_folders SET highestmodseq = 0;"},
    /* Most messages come without an Idempotency-Key: their '' entries were a page of the index
     * written by nearly every commit of the outbox (bench/send-api: 1.6 of ~29 pages a commit)
     * for a lookup that never asks for ''. The lookup says `idempotency_key <> ''` so that the
     * planner may use the partial index. */
    {21, "outbox_idempotency_keyed_only",
     "DROP INDEX outbox_idempotency;"
     "CREATE INDEX outbox_idempotency ON outbox_messages (org_id, user_id, idempotency_key)"
     " WHERE idempotency_key <> '';"},
    /* A message's recipients in one b-tree (WITHOUT ROWID, as the record children; the
     * PostgreSQL migration drops the clause) instead of a table plus its key index: one insert
     * per recipient at enqueue, one b-tree at the result (1.3 pages a commit of bench/send-api
     * were the key index's). */
    {22, "outbox_recipients_one_tree",
     "CREATE TABLE outbox_recipients_v22 ("
     " message_id TEXT NOT NULL,"
     " pos INTEGER NOT NULL,"
     " address TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " kind INTEGER NOT NULL,"
     " state INTEGER NOT NULL,"
     " reply TEXT NOT NULL DEFAULT '',"
     " PRIMARY KEY (message_id, pos)) WITHOUT ROWID;"
     "INSERT INTO outbox_recipients_v22 (message_id, pos, address, name, kind, state, reply)"
     " SELECT message_id, pos, address, name, kind, state, reply FROM outbox_recipients;"
     "DROP TABLE outbox_recipients;"
     "ALTER TABLE outbox_recipients_v22 RENAME TO outbox_recipients;"},
};

#define MIGRATION_COUNT (sizeof(migrations) / sizeof(migrations[0]))

int store_schema_latest(void)
{
	return migrations[MIGRATION_COUNT - 1].version;
}

static _Thread_local char migrate_error[MT_ERROR_TEXT_MAX];

static int fail(struct db *db, const char *what, const char **error_r)
{
	snprintf(migrate_error, sizeof(migrate_error), "migration: %s: %s", what, db_errmsg(db));
	*error_r = migrate_error;
	db_rollback(db);
	return -1;
}

static int current_version(struct db *db, int *version_r)
{
	struct db_stmt *s =
	    db_prepare(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
	if (s == NULL)
		return -1;
	int rc = db_step(s);
	if (rc == DB_ROW)
		*version_r = (int)db_column_int64(s, 0);
	db_finish(s);
	return rc == DB_ROW ? 0 : -1;
}

int store_migrate(struct db *db, const char **error_r)
{
	return store_migrate_until(db, store_schema_latest(), error_r);
}

int store_migrate_until(struct db *db, int last, const char **error_r)
{
	if (db_begin(db, DB_TX_WRITE_DURABLE) < 0)
		return fail(db, "begin", error_r);
	if (db_exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
	                " version INTEGER PRIMARY KEY,"
	                " name TEXT NOT NULL,"
	                " applied_at BIGINT NOT NULL)") < 0)
		return fail(db, "schema_migrations", error_r);
	int version;
	if (current_version(db, &version) < 0)
		return fail(db, "version", error_r);
	if (version > store_schema_latest()) {
		/* An older binary must not write to a schema it does not know. */
		db_rollback(db);
		snprintf(migrate_error, sizeof(migrate_error),
		         "the store's schema (version %d) is newer than this program (%d)", version,
		         store_schema_latest());
		*error_r = migrate_error;
		return -1;
	}
	for (size_t i = 0; i < MIGRATION_COUNT; i++) {
		const struct migration *m = &migrations[i];
		if (m->version <= version || m->version > last)
			continue;
		if (db_exec(db, m->sql) < 0)
			return fail(db, m->name, error_r);
		struct db_stmt *s = db_prepare(
		    db,
		    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
		if (s == NULL)
			return fail(db, m->name, error_r);
		db_bind_args(
		    s, SQL_ARGS(SQL_INT(m->version), SQL_TEXT(m->name), SQL_INT(mt_wall_s())));
		int rc = db_step(s);
		db_finish(s);
		if (rc != DB_DONE)
			return fail(db, m->name, error_r);
	}
	if (db_commit(db) < 0)
		return fail(db, "commit", error_r);
	return 0;
}

int store_schema_version(struct store_tx *tx, int *version_r)
{
	if (current_version(tx->db, version_r) < 0)
		return store_fail(tx, "store_schema_version");
	return 0;
}
