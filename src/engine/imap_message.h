/* The IMAP FETCH answers of the sync (engine/imap_sync.h) into the matcher's messages: the header
 * fields and the first bytes of the text parsed by src/mime (encoded words, identity, snippet),
 * the attachments from BODYSTRUCTURE (names decoded by src/mime), so that nothing beyond
 * MT_IMAP_TEXT_FETCH_BYTES of a message is ever downloaded.
 *
 * In two steps, so that the event loop does only the cheap one: imap_batch_add() copies out of
 * an answer what the conversion needs (the header block, the text, the attachments' raw fields
 * from BODYSTRUCTURE); imap_batch_convert() parses them (GMime), on any one thread at a time —
 * the sync runs it on a worker (work/work.h).
 *
 * Ownership: a batch is its creator's; it copies everything it keeps (nothing points into the
 * answer afterwards). A converted message's arrays and columns (matcher_message_prepare(),
 * built here so that the store's writer does not) are allocated; matcher_message_free()
 * releases them. */
#ifndef MT_ENGINE_IMAP_MESSAGE_H
#define MT_ENGINE_IMAP_MESSAGE_H

#include "proto/imap_fetch.h"
#include "store/store_message.h"

#include <stddef.h>
#include <stdint.h>

/* The FETCH items the sync asks for (BODY.PEEK only: \Seen is never set). */
extern const char imap_message_fetch_items[];

struct imap_batch;

struct imap_batch *imap_batch_new(void);
void imap_batch_free(struct imap_batch **batch);
/* Forgets the answers, keeps the memory for the next chunk. */
void imap_batch_clear(struct imap_batch *batch);
size_t imap_batch_count(const struct imap_batch *batch);
uint32_t imap_batch_uid(const struct imap_batch *batch, size_t i);

/* 0; 1 with *error_r when the answer holds no usable header block (the message is skipped and
 * the reason logged; it never stops the folder); -1 when memory runs out. */
int imap_batch_add(struct imap_batch *batch, const struct imap_fetch *fetch, const char **error_r);
/* Message `i` as the matcher takes it. 0, or -1 with *error_r (static text) when src/mime reads
 * no message in it or memory runs out (the message is skipped). */
int imap_batch_convert(const struct imap_batch *batch, size_t i, struct store_message *msg_r,
                       const char **error_r);

#endif
