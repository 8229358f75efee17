/* How a mail connection is secured; shared by the SMTP and IMAP clients and the settings API. */
#ifndef MT_NET_SECURITY_H
#define MT_NET_SECURITY_H

enum mt_security {
	MT_SECURITY_NONE,     /* plaintext (only with the operator's consent for passwords) */
	MT_SECURITY_STARTTLS, /* plaintext greeting, then STARTTLS; never a silent downgrade */
	MT_SECURITY_TLS,      /* TLS from the first byte (ports 465 / 993) */
};

/* "none" / "starttls" / "tls"; -1 when unknown. */
int mt_security_parse(const char *name, enum mt_security *security_r);
const char *mt_security_name(enum mt_security security);

#endif
