/* One IMAP FETCH answer of the sync (engine/imap_sync.h) into the matcher's message: the header
 * fields and the first bytes of the text parsed by src/mime (encoded words, identity, snippet),
 * the attachments from BODYSTRUCTURE (names decoded by src/mime), so that nothing beyond
 * MT_IMAP_TEXT_FETCH_BYTES of a message is ever downloaded.
 *
 * Ownership: the message's arrays are allocated; matcher_message_free() releases them. */
#ifndef MT_ENGINE_IMAP_MESSAGE_H
#define MT_ENGINE_IMAP_MESSAGE_H

#include "proto/imap_fetch.h"
#include "store/store_message.h"

/* The FETCH items the sync asks for (BODY.PEEK only: \Seen is never set). */
extern const char imap_message_fetch_items[];

/* 0, or -1 with *error_r when the answer holds no usable header block (the message is skipped
 * and the reason logged; it never stops the folder). */
int imap_message_convert(const struct imap_fetch *fetch, struct store_message *msg_r,
                         const char **error_r);

#endif
