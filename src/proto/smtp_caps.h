/* EHLO capabilities (RFC 5321 §4.1.1.1 ehlo-line) from a parsed 250 reply:
 *   ehlo-line = ehlo-keyword *( SP ehlo-param )
 * Recognised: SIZE [n] (RFC 1870), PIPELINING (RFC 2920), STARTTLS (RFC 3207),
 * AUTH mech... and the old "AUTH=mech..." form (RFC 4954), 8BITMIME (RFC 6152),
 * SMTPUTF8 (RFC 6531), ENHANCEDSTATUSCODES (RFC 2034), CHUNKING (RFC 3030). Pure. */
#ifndef MT_PROTO_SMTP_CAPS_H
#define MT_PROTO_SMTP_CAPS_H

#include "proto/sasl.h"
#include "proto/smtp_reply.h"

#include <stdbool.h>
#include <stdint.h>

struct smtp_caps {
	bool pipelining;
	bool starttls;
	bool eightbitmime;
	bool smtputf8;
	bool enhancedstatuscodes;
	bool chunking;
	bool size;           /* SIZE advertised */
	uint64_t size_max;   /* its limit; 0 = none stated */
	unsigned auth_mechs; /* bit set of enum sasl_mech */
};

/* Fills *caps_r from an EHLO reply (the first line is the greeting, the rest keywords; unknown
 * keywords are ignored). Returns 0, or -1 with *error_r when the reply is not a 250. */
int smtp_caps_parse(const struct smtp_reply *ehlo_reply, struct smtp_caps *caps_r,
                    const char **error_r);

#endif
