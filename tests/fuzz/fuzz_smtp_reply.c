/* The reply parser fed in chunks whose sizes come from the first byte, with every complete reply
 * going through the EHLO capability parser, the classifier and the one-line formatter. */
#include "proto/smtp_caps.h"
#include "proto/smtp_classify.h"
#include "proto/smtp_reply.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reply(const struct smtp_reply *reply, int phase)
{
	if (reply->code < 200 || reply->code > 599 || reply->line_count == 0 ||
	    reply->line_count > MT_SMTP_REPLY_LINES_MAX)
		abort();
	for (unsigned i = 0; i < reply->line_count; i++) {
		if (strlen(reply->lines[i]) >= MT_SMTP_REPLY_LINE_MAX)
			abort();
	}
	struct smtp_caps caps;
	const char *error = NULL;
	int ret = smtp_caps_parse(reply, &caps, &error);
	if ((ret == 0) != (reply->code == 250) || (ret < 0 && error == NULL))
		abort();
	/* one phase per reply, rotating: every phase gets its turn without paying for ten text
	 * scans of each reply */
	struct smtp_verdict verdict = smtp_classify_reply(reply, (enum smtp_phase)phase);
	if ((verdict.cls == MT_CLASS_NONE) != (reply->code < 400))
		abort();
	char line[MT_SMTP_REPLY_TEXT_MAX + 1];
	smtp_reply_format(reply, line, sizeof(line));
	if (strlen(line) > MT_SMTP_REPLY_TEXT_MAX || strchr(line, '\r') || strchr(line, '\n'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = (size_t)(data[0] % 64) + 1;
	const char *input = (const char *)data + 1;
	size_t len = size - 1;

	struct smtp_reply_parser parser;
	smtp_reply_parser_init(&parser);
	int phase = data[0] / 64 * 3 % (SMTP_PHASE_QUIT + 1);
	size_t pos = 0;
	while (pos < len) {
		size_t chunk = len - pos < step ? len - pos : step;
		size_t used = 0;
		while (used < chunk) {
			size_t consumed = 0;
			const struct smtp_reply *reply = NULL;
			const char *error = NULL;
			int ret = smtp_reply_parser_feed(&parser, input + pos + used, chunk - used,
			                                 &consumed, &reply, &error);
			if (ret < 0) {
				if (error == NULL)
					abort();
				smtp_reply_parser_deinit(&parser);
				smtp_reply_parser_init(&parser);
				/* skip past the offending line, as a client would drop the
				 * connection */
				const char *lf = memchr(input + pos + used, '\n', chunk - used);
				used = lf != NULL ? (size_t)(lf - (input + pos)) + 1 : chunk;
				continue;
			}
			if (consumed > chunk - used)
				abort();
			if (ret == 0) {
				if (consumed != chunk - used)
					abort();
				used = chunk;
				break;
			}
			if (smtp_reply_parser_busy(&parser))
				abort();
			check_reply(reply, phase);
			phase = (phase + 1) % (SMTP_PHASE_QUIT + 1);
			used += consumed;
		}
		pos += chunk;
	}
	smtp_reply_parser_deinit(&parser);
	return 0;
}
