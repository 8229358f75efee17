#include "config/config.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum key_type {
	T_PATH,
	T_STRING,
	T_HOSTPORT,
	T_RELAY_URL,
	T_HTTP_URL,
	T_ADDRESS,
	T_INT,
	T_LIMITS,
	T_CIDRS,
	T_HOSTS_OR_CIDRS,
	T_BOOL,
	T_DURATION,
	T_SIZE,
	T_LEVEL,
};

struct key_def {
	const char *name;
	enum key_type type;
	const char *def;  /* NULL: no default */
	int64_t min, max; /* INT, DURATION, SIZE */
	bool built;
};

#define DAY_S (24 * 3600)
#define YEARS (100 * 366)
#define MIB   (1024 * 1024)

/* Not const: mt_config_mark_built() flips `built` as features land. */
static struct key_def keys[] = {
    {"data", T_PATH, NULL, 0, 0, true},
    {"db", T_STRING, NULL, 0, 0, true},
    {"http", T_HOSTPORT, "127.0.0.1:8025", 0, 0, true},
    /* Caps on the API's connections (src/http/server.c; defaults in lib/limits.h). */
    {"http_max_connections", T_INT, "1024", 1, MT_HTTP_CONNECTIONS_MAX, true},
    {"http_max_connections_per_ip", T_INT, "64", 1, MT_HTTP_CONNECTIONS_MAX, true},
    {"http_header_timeout", T_DURATION, "10s", 1, 3600, true},
    {"http_request_timeout", T_DURATION, "60s", 1, 3600, true},
    {"http_idle_timeout", T_DURATION, "30s", 1, 3600, true},
    {"dropbox", T_HOSTPORT, NULL, 0, 0, false},
    {"relay", T_RELAY_URL, NULL, 0, 0, true},
    {"relay_password_file", T_PATH, NULL, 0, 0, true},
    {"relay_from", T_ADDRESS, NULL, 0, 0, true},
    {"relay_campaign_max", T_INT, "50", 0, 1000000, true},
    {"relay_user_limits", T_LIMITS, NULL, 0, 0, true},
    /* The first pause of an account after a throttle or quota reply (engine/governor.h). */
    {"throttle_pause", T_DURATION, "60s", 1, MT_GOVERNOR_PAUSE_MAX_S, true},
    {"ca_file", T_PATH, NULL, 0, 0, true},
    {"allow_private_hosts", T_CIDRS, "", 0, 0, true},
    {"no_auth_hosts", T_HOSTS_OR_CIDRS, "", 0, 0, true},
    /* Webhook receivers that may be sent plain http (engine/webhooks.h); every other is https. */
    {"webhook_http_hosts", T_HOSTS_OR_CIDRS, "", 0, 0, true},
    {"allow_plaintext_auth", T_BOOL, "no", 0, 1, true},
    {"dropbox_domain", T_STRING, NULL, 0, 0, false},
    {"dropbox_cert", T_PATH, NULL, 0, 0, false},
    {"dropbox_key", T_PATH, NULL, 0, 0, false},
    {"public_url", T_HTTP_URL, NULL, 0, 0, true},
    {"retry_expiry", T_DURATION, "24h", 60, 365 * DAY_S, true},
    {"imap_max_connections", T_INT, "2", 1, 16, true},
    {"record_retention_days", T_INT, "365", 1, YEARS, true},
    {"outbox_retention_days", T_INT, "30", 0, YEARS, true},
    /* The SMTP client caps a message at MT_SMTP_MESSAGE_MAX after encoding, and base64 grows
     * attachments by a third: accepting more than 3/4 of it would queue mail that cannot go. */
    {"max_message_bytes", T_SIZE, "25MiB", 1024, MT_SMTP_MESSAGE_MAX / 4 * 3, true},
    {"smtp_sessions_per_account", T_INT, "2", 1, 64, true},
    {"smtp_max_inflight", T_INT, "100", 1, MT_SMTP_SESSION_QUEUE_MAX, true},
    /* The pause before the attempt that confirms an auth or certificate failure of a custom
     * SMTP account (docs/sending.md, the disconnect story). */
    {"smtp_confirm_delay", T_DURATION, "10s", 1, 3600, true},
    /* OAuth clients (engine/oauth_flow.h); the endpoints default to the providers' own
     * (Microsoft's tenant-specific or national-cloud endpoints, a test's local server). */
    {"oauth_google_client_id", T_STRING, NULL, 0, 0, true},
    {"oauth_google_client_secret_file", T_PATH, NULL, 0, 0, true},
    {"oauth_google_auth_url", T_HTTP_URL, NULL, 0, 0, true},
    {"oauth_google_token_url", T_HTTP_URL, NULL, 0, 0, true},
    {"oauth_microsoft_client_id", T_STRING, NULL, 0, 0, true},
    {"oauth_microsoft_client_secret_file", T_PATH, NULL, 0, 0, true},
    {"oauth_microsoft_auth_url", T_HTTP_URL, NULL, 0, 0, true},
    {"oauth_microsoft_token_url", T_HTTP_URL, NULL, 0, 0, true},
    {"log_level", T_LEVEL, "info", 0, 0, true},
    {"http_cert", T_PATH, NULL, 0, 0, false},
    {"http_key", T_PATH, NULL, 0, 0, false},
    {"secret_key_file", T_PATH, NULL, 0, 0, true},
};

#define KEY_COUNT (sizeof(keys) / sizeof(keys[0]))

struct slot {
	bool set;
	char *value;  /* normalised text */
	char *origin; /* "FILE:LINE", "MAILTRAIL_KEY", "--flag" */
	int64_t num;
	struct mt_cidr_list cidrs;
	char **hosts; /* lower-case names, no trailing dot */
	size_t host_count;
	struct mt_config_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
};

struct mt_config {
	struct slot slots[KEY_COUNT];
};

static const struct mt_cidr_list empty_cidrs = {NULL, 0};

static int key_index(const char *name, size_t len)
{
	for (size_t i = 0; i < KEY_COUNT; i++) {
		if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
			return (int)i;
	}
	return -1;
}

static void slot_clear(struct slot *slot)
{
	free(slot->value);
	free(slot->origin);
	mt_cidr_list_free(&slot->cidrs);
	for (size_t i = 0; i < slot->host_count; i++)
		free(slot->hosts[i]);
	free(slot->hosts);
	memset(slot, 0, sizeof(*slot));
}

struct mt_config *mt_config_new(void)
{
	return calloc(1, sizeof(struct mt_config));
}

void mt_config_free(struct mt_config **config)
{
	if (*config == NULL)
		return;
	for (size_t i = 0; i < KEY_COUNT; i++)
		slot_clear(&(*config)->slots[i]);
	free(*config);
	*config = NULL;
}

/* Moves every set slot of `from` into `to`, replacing what `to` had. */
static void config_merge(struct mt_config *to, struct mt_config *from)
{
	for (size_t i = 0; i < KEY_COUNT; i++) {
		if (!from->slots[i].set)
			continue;
		slot_clear(&to->slots[i]);
		to->slots[i] = from->slots[i];
		memset(&from->slots[i], 0, sizeof(from->slots[i]));
	}
}

/* Reasons for a bad value are formatted here; the caller prefixes the location. */
static _Thread_local char reason_buf[MT_ERROR_TEXT_MAX];

static const char *reasonf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *reasonf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason_buf, sizeof(reason_buf), fmt, ap);
	va_end(ap);
	return reason_buf;
}

/* Error texts quote user input: keep it short and printable so a hostile file cannot put
 * control characters on the operator's terminal. */
static void quote_for_error(char *out, size_t size, const char *s, size_t len)
{
	size_t max = size > 4 ? size - 4 : 0, o = 0;
	for (size_t i = 0; i < len && o < max; i++) {
		unsigned char c = (unsigned char)s[i];
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	if (o < len && max > 0 && o == max) {
		out[o++] = '.';
		out[o++] = '.';
		out[o++] = '.';
	}
	out[o] = '\0';
}

static bool parse_digits(const char *s, size_t len, int64_t *out)
{
	if (len == 0 || len > 18)
		return false;
	int64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

static bool is_ldh_host(const char *s, size_t len)
{
	if (len == 0 || len > MT_HOSTNAME_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && !(c == '-' && label > 0) && c != '_')
			return false;
		if (++label > 63)
			return false;
	}
	return s[len - 1] != '-';
}

static bool parse_port(const char *s, size_t len, bool allow_zero, uint16_t *port_r)
{
	int64_t v;
	if (len > 5 || !parse_digits(s, len, &v) || v > 65535 || (v == 0 && !allow_zero))
		return false;
	*port_r = (uint16_t)v;
	return true;
}

/* HOST:PORT or [IPV6]:PORT. Port 0 is accepted for listen addresses: "any free port". */
static bool parse_hostport(const char *s, bool allow_zero, char *host, size_t host_size,
                           uint16_t *port_r)
{
	const char *colon;
	const char *h;
	size_t hlen;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return false;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
		char tmp[INET6_ADDRSTRLEN + 1];
		unsigned char addr[16];
		if (hlen == 0 || hlen >= sizeof(tmp))
			return false;
		memcpy(tmp, h, hlen);
		tmp[hlen] = '\0';
		if (inet_pton(AF_INET6, tmp, addr) != 1)
			return false;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return false;
		h = s;
		hlen = (size_t)(colon - s);
		if (!is_ldh_host(h, hlen))
			return false;
	}
	if (!parse_port(colon + 1, strlen(colon + 1), allow_zero, port_r))
		return false;
	if (host != NULL) {
		if (hlen >= host_size)
			return false;
		memcpy(host, h, hlen);
		host[hlen] = '\0';
	}
	return true;
}

int mt_relay_url_parse(const char *url, struct mt_relay_url *out, const char **error_r)
{
	memset(out, 0, sizeof(*out));
	const char *rest;
	if (strncasecmp(url, "smtp://", 7) == 0) {
		rest = url + 7;
	} else if (strncasecmp(url, "smtps://", 8) == 0) {
		rest = url + 8;
		out->implicit_tls = true;
	} else {
		*error_r = "expected smtp://USER@HOST:PORT or smtps://USER@HOST:PORT";
		return -1;
	}
	size_t len = strlen(rest);
	if (len > 0 && rest[len - 1] == '/')
		len--;
	if (memchr(rest, '/', len) != NULL || memchr(rest, '?', len) != NULL ||
	    memchr(rest, '#', len) != NULL) {
		*error_r = "a relay URL has no path or query";
		return -1;
	}
	const char *at = NULL;
	for (size_t i = 0; i < len; i++) {
		if (rest[i] == '@')
			at = rest + i;
	}
	const char *hostport = rest;
	if (at != NULL) {
		size_t ulen = (size_t)(at - rest);
		if (memchr(rest, ':', ulen) != NULL) {
			*error_r = "no password in the relay URL: use relay_password_file";
			return -1;
		}
		if (ulen == 0 || ulen > MT_SASL_USER_MAX) {
			*error_r = "bad user name in the relay URL";
			return -1;
		}
		memcpy(out->user, rest, ulen);
		out->user[ulen] = '\0';
		hostport = at + 1;
	}
	char hp[MT_HOSTNAME_MAX + 16];
	size_t hplen = len - (size_t)(hostport - rest);
	if (hplen >= sizeof(hp)) {
		*error_r = "relay host too long";
		return -1;
	}
	memcpy(hp, hostport, hplen);
	hp[hplen] = '\0';
	if (!parse_hostport(hp, false, out->host, sizeof(out->host), &out->port)) {
		*error_r = "expected HOST:PORT after the scheme (smtp://USER@HOST:PORT)";
		return -1;
	}
	return 0;
}

static bool valid_http_url(const char *s)
{
	const char *rest;
	if (strncasecmp(s, "https://", 8) == 0)
		rest = s + 8;
	else if (strncasecmp(s, "http://", 7) == 0)
		rest = s + 7;
	else
		return false;
	size_t hlen = strcspn(rest, "/?#");
	if (hlen == 0 || memchr(rest, '@', hlen) != NULL)
		return false;
	for (const char *p = rest; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return false;
	}
	char hp[MT_HOSTNAME_MAX + 16];
	if (hlen >= sizeof(hp))
		return false;
	memcpy(hp, rest, hlen);
	hp[hlen] = '\0';
	uint16_t port;
	if (parse_hostport(hp, false, NULL, 0, &port))
		return true;
	if (hp[0] == '[') {
		char tmp[INET6_ADDRSTRLEN + 1];
		unsigned char addr[16];
		if (hlen < 3 || hp[hlen - 1] != ']' || hlen - 2 >= sizeof(tmp))
			return false;
		memcpy(tmp, hp + 1, hlen - 2);
		tmp[hlen - 2] = '\0';
		return inet_pton(AF_INET6, tmp, addr) == 1;
	}
	return is_ldh_host(hp, hlen);
}

/* A plain check: the full address rules live in src/mime, which config must not depend on. */
static bool valid_address(const char *s)
{
	const char *at = strchr(s, '@');
	if (at == NULL || at == s || strchr(at + 1, '@') != NULL)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c == 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
			return false;
	}
	const char *domain = at + 1;
	return strchr(domain, '.') != NULL && is_ldh_host(domain, strlen(domain));
}

static bool parse_limits(const char *s, struct slot *slot)
{
	static const struct {
		const char *name;
		int64_t seconds;
	} windows[] = {{"minute", 60}, {"hour", 3600}, {"day", DAY_S}};
	slot->limit_count = 0;
	const char *p = s;
	for (;;) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, ",");
		size_t end = len;
		while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
			end--;
		const char *slash = memchr(p, '/', end);
		if (slash == NULL || slot->limit_count == MT_SEND_LIMITS_MAX)
			return false;
		int64_t n;
		if (!parse_digits(p, (size_t)(slash - p), &n) || n < 1 || n > 100000000)
			return false;
		const char *w = slash + 1;
		size_t wlen = end - (size_t)(w - p);
		int64_t seconds = 0;
		for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
			if (strlen(windows[i].name) == wlen &&
			    strncasecmp(windows[i].name, w, wlen) == 0)
				seconds = windows[i].seconds;
		}
		if (seconds == 0)
			return false;
		for (size_t i = 0; i < slot->limit_count; i++) {
			if (slot->limits[i].window_s == seconds)
				return false;
		}
		slot->limits[slot->limit_count].limit = n;
		slot->limits[slot->limit_count].window_s = seconds;
		slot->limit_count++;
		if (p[len] == '\0')
			return true;
		p += len + 1;
	}
}

/* N s|m|h|d; a plain N is seconds. */
static bool parse_duration(const char *s, int64_t *out)
{
	size_t len = strlen(s);
	int64_t unit = 1;
	if (len > 0) {
		switch (s[len - 1]) {
		case 's':
			unit = 1, len--;
			break;
		case 'm':
			unit = 60, len--;
			break;
		case 'h':
			unit = 3600, len--;
			break;
		case 'd':
			unit = DAY_S, len--;
			break;
		default:
			break;
		}
	}
	int64_t n;
	if (!parse_digits(s, len, &n) || n > INT64_MAX / unit)
		return false;
	*out = n * unit;
	return true;
}

/* N, NK, NM, NG, NKiB, NMiB, NGiB (binary multiples: a mail size is not a disk size). */
static bool parse_size(const char *s, int64_t *out)
{
	size_t digits = strspn(s, "0123456789");
	const char *suffix = s + digits;
	int64_t unit;
	if (*suffix == '\0')
		unit = 1;
	else if (strcasecmp(suffix, "K") == 0 || strcasecmp(suffix, "KiB") == 0)
		unit = 1024;
	else if (strcasecmp(suffix, "M") == 0 || strcasecmp(suffix, "MiB") == 0)
		unit = MIB;
	else if (strcasecmp(suffix, "G") == 0 || strcasecmp(suffix, "GiB") == 0)
		unit = (int64_t)1024 * MIB;
	else
		return false;
	int64_t n;
	if (!parse_digits(s, digits, &n) || n > INT64_MAX / unit)
		return false;
	*out = n * unit;
	return true;
}

static char *lower_dup(const char *s)
{
	char *copy = strdup(s);
	if (copy != NULL) {
		for (char *p = copy; *p != '\0'; p++) {
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		}
	}
	return copy;
}

static bool parse_hosts_or_cidrs(const char *s, struct slot *slot, const char **reason_r)
{
	static const char separators[] = ", \t";
	size_t count = 0;
	for (const char *p = s + strspn(s, separators); *p != '\0'; p += strspn(p, separators)) {
		p += strcspn(p, separators);
		count++;
	}
	if (count > MT_CIDR_LIST_MAX) {
		*reason_r = reasonf("more than %d entries", MT_CIDR_LIST_MAX);
		return false;
	}
	/* CIDR entries go through the list parser; names are kept apart */
	char cidr_text[MT_CONFIG_VALUE_MAX + 1];
	size_t cidr_len = 0;
	slot->hosts = count > 0 ? calloc(count, sizeof(char *)) : NULL;
	if (count > 0 && slot->hosts == NULL) {
		*reason_r = "out of memory";
		return false;
	}
	for (const char *p = s + strspn(s, separators); *p != '\0'; p += strspn(p, separators)) {
		size_t len = strcspn(p, separators);
		struct mt_cidr cidr;
		if (mt_cidr_parse(p, len, &cidr) == 0) {
			if (cidr_len + len + 2 > sizeof(cidr_text)) {
				*reason_r = "too long";
				return false;
			}
			memcpy(cidr_text + cidr_len, p, len);
			cidr_len += len;
			cidr_text[cidr_len++] = ' ';
		} else {
			size_t hlen = len;
			if (hlen > 1 && p[hlen - 1] == '.')
				hlen--;
			if (!is_ldh_host(p, hlen)) {
				char shown[72];
				quote_for_error(shown, sizeof(shown), p, len);
				*reason_r =
				    reasonf("not a host name, address or CIDR: \"%s\"", shown);
				return false;
			}
			char name[MT_HOSTNAME_MAX + 1];
			memcpy(name, p, hlen);
			name[hlen] = '\0';
			slot->hosts[slot->host_count] = lower_dup(name);
			if (slot->hosts[slot->host_count] == NULL) {
				*reason_r = "out of memory";
				return false;
			}
			slot->host_count++;
		}
		p += len;
	}
	cidr_text[cidr_len] = '\0';
	if (mt_cidr_list_parse(cidr_text, &slot->cidrs, reason_r) < 0)
		return false;
	return true;
}

static const char *type_hint(enum key_type type)
{
	switch (type) {
	case T_PATH:
		return "expected a file path";
	case T_STRING:
		return "expected a value";
	case T_HOSTPORT:
		return "expected HOST:PORT";
	case T_RELAY_URL:
		return "expected smtp://USER@HOST:PORT";
	case T_HTTP_URL:
		return "expected an http:// or https:// URL";
	case T_ADDRESS:
		return "expected an email address";
	case T_INT:
		return "expected a whole number";
	case T_LIMITS:
		return "expected limits like 500/hour, 2000/day (minute, hour or day, each once)";
	case T_CIDRS:
		return "expected a list of addresses or CIDRs";
	case T_HOSTS_OR_CIDRS:
		return "expected a list of host names, addresses or CIDRs";
	case T_BOOL:
		return "expected yes or no";
	case T_DURATION:
		return "expected a duration like 30s, 15m, 24h, 7d";
	case T_SIZE:
		return "expected a size like 25MiB, 512K or 1048576";
	case T_LEVEL:
		return "expected debug, info, warn or error";
	}
	return "bad value";
}

/* Checks `raw` against the key's type and fills `slot` (value, num, lists). */
static int parse_value(const struct key_def *def, const char *raw, struct slot *slot,
                       const char **reason_r)
{
	const char *value = raw;
	int64_t num = 0;
	char *normalised = NULL;

	if (strlen(raw) > MT_CONFIG_VALUE_MAX) {
		*reason_r = reasonf("%s: value too long (at most %d bytes)", def->name,
		                    MT_CONFIG_VALUE_MAX);
		return -1;
	}
	if (mt_str_has_crlf(raw)) {
		*reason_r = reasonf("%s: line break in the value", def->name);
		return -1;
	}
	bool ok = true;
	const char *detail = NULL;
	switch (def->type) {
	case T_PATH:
	case T_STRING:
		ok = raw[0] != '\0';
		break;
	case T_HOSTPORT: {
		uint16_t port;
		ok = parse_hostport(raw, true, NULL, 0, &port);
		num = port;
		break;
	}
	case T_RELAY_URL: {
		struct mt_relay_url url;
		ok = mt_relay_url_parse(raw, &url, &detail) == 0;
		break;
	}
	case T_HTTP_URL:
		ok = valid_http_url(raw);
		break;
	case T_ADDRESS:
		ok = valid_address(raw);
		if (ok)
			value = normalised = lower_dup(raw);
		break;
	case T_INT:
		ok = parse_digits(raw, strlen(raw), &num);
		break;
	case T_LIMITS:
		ok = parse_limits(raw, slot);
		break;
	case T_CIDRS:
		ok = mt_cidr_list_parse(raw, &slot->cidrs, &detail) == 0;
		break;
	case T_HOSTS_OR_CIDRS:
		ok = parse_hosts_or_cidrs(raw, slot, &detail);
		break;
	case T_BOOL:
		if (strcasecmp(raw, "yes") == 0 || strcasecmp(raw, "true") == 0 ||
		    strcasecmp(raw, "on") == 0 || strcmp(raw, "1") == 0)
			num = 1, value = "yes";
		else if (strcasecmp(raw, "no") == 0 || strcasecmp(raw, "false") == 0 ||
		         strcasecmp(raw, "off") == 0 || strcmp(raw, "0") == 0)
			num = 0, value = "no";
		else
			ok = false;
		break;
	case T_DURATION:
		ok = parse_duration(raw, &num);
		break;
	case T_SIZE:
		ok = parse_size(raw, &num);
		break;
	case T_LEVEL: {
		static const char *const levels[] = {"debug", "info", "warn", "error"};
		ok = false;
		for (size_t i = 0; i < 4; i++) {
			if (strcasecmp(raw, levels[i]) == 0) {
				value = levels[i];
				num = (int64_t)i;
				ok = true;
			}
		}
		break;
	}
	}
	if (ok && (def->type == T_INT || def->type == T_DURATION || def->type == T_SIZE) &&
	    (num < def->min || num > def->max)) {
		*reason_r = reasonf("%s: %s is out of range (%lld to %lld)", def->name, raw,
		                    (long long)def->min, (long long)def->max);
		free(normalised);
		return -1;
	}
	if (!ok) {
		char shown[72];
		quote_for_error(shown, sizeof(shown), raw, strlen(raw));
		if (raw[0] == '\0' && detail == NULL)
			*reason_r = reasonf("%s: empty value", def->name);
		else if (detail != NULL)
			*reason_r = reasonf("%s: %s", def->name, detail);
		else
			*reason_r =
			    reasonf("%s: %s: \"%s\"", def->name, type_hint(def->type), shown);
		free(normalised);
		return -1;
	}
	slot->value = normalised != NULL ? normalised : strdup(value);
	slot->num = num;
	if (slot->value == NULL) {
		*reason_r = "out of memory";
		return -1;
	}
	return 0;
}

/* Sets one key into `config` (a staging copy); on failure the slot is left empty. */
static int set_slot(struct mt_config *config, int index, const char *value, const char *origin,
                    const char **reason_r)
{
	struct slot fresh;
	memset(&fresh, 0, sizeof(fresh));
	if (parse_value(&keys[index], value, &fresh, reason_r) < 0) {
		slot_clear(&fresh);
		return -1;
	}
	fresh.origin = strdup(origin);
	if (fresh.origin == NULL) {
		slot_clear(&fresh);
		*reason_r = "out of memory";
		return -1;
	}
	fresh.set = true;
	slot_clear(&config->slots[index]);
	config->slots[index] = fresh;
	return 0;
}

static void errorf(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errorf(char *error, size_t error_size, const char *fmt, ...)
{
	if (error == NULL || error_size == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(error, error_size, fmt, ap);
	va_end(ap);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One `key = value` line (without its line ending). 0 skip/ok, -1 with reason. */
static int parse_line(struct mt_config *stage, const char *line, size_t len, const char *origin,
                      unsigned lineno, unsigned first_line[KEY_COUNT], const char **reason_r)
{
	if (memchr(line, '\0', len) != NULL) {
		*reason_r = "NUL byte in the line";
		return -1;
	}
	if (memchr(line, '\r', len) != NULL) {
		*reason_r = "stray carriage return in the line";
		return -1;
	}
	size_t pos = 0;
	while (pos < len && is_blank(line[pos]))
		pos++;
	if (pos == len || line[pos] == '#')
		return 0;
	const char *eq = memchr(line + pos, '=', len - pos);
	if (eq == NULL) {
		*reason_r = "missing '=' (expected key = value)";
		return -1;
	}
	size_t key_end = (size_t)(eq - line);
	while (key_end > pos && is_blank(line[key_end - 1]))
		key_end--;
	int index = key_index(line + pos, key_end - pos);
	if (index < 0) {
		char shown[72];
		quote_for_error(shown, sizeof(shown), line + pos, key_end - pos);
		*reason_r = key_end == pos ? "missing key before '='"
		                           : reasonf("unknown key \"%s\"", shown);
		return -1;
	}
	if (first_line[index] != 0) {
		*reason_r = reasonf("duplicate key \"%s\" (first set on line %u)", keys[index].name,
		                    first_line[index]);
		return -1;
	}
	first_line[index] = lineno;

	size_t v = (size_t)(eq - line) + 1;
	while (v < len && is_blank(line[v]))
		v++;
	size_t vstart = v, vend;
	if (v < len && line[v] == '"') {
		const char *close = memchr(line + v + 1, '"', len - v - 1);
		if (close == NULL) {
			*reason_r = "unterminated quoted value";
			return -1;
		}
		vstart = v + 1;
		vend = (size_t)(close - line);
		size_t after = vend + 1;
		while (after < len && is_blank(line[after]))
			after++;
		if (after < len && line[after] != '#') {
			*reason_r = "text after the closing quote";
			return -1;
		}
	} else {
		vend = v;
		while (vend < len && !(line[vend] == '#' && vend > v && is_blank(line[vend - 1])))
			vend++;
		while (vend > vstart && is_blank(line[vend - 1]))
			vend--;
	}
	if (vend - vstart > MT_CONFIG_VALUE_MAX) {
		*reason_r = reasonf("%s: value too long (at most %d bytes)", keys[index].name,
		                    MT_CONFIG_VALUE_MAX);
		return -1;
	}
	char value[MT_CONFIG_VALUE_MAX + 1];
	memcpy(value, line + vstart, vend - vstart);
	value[vend - vstart] = '\0';
	return set_slot(stage, index, value, origin, reason_r);
}

int mt_config_load_text(struct mt_config *config, const char *name, const char *text, size_t len,
                        char *error, size_t error_size)
{
	struct mt_config *stage = mt_config_new();
	if (stage == NULL) {
		errorf(error, error_size, "%s: out of memory", name);
		return -1;
	}
	unsigned first_line[KEY_COUNT];
	memset(first_line, 0, sizeof(first_line));
	size_t pos = 0;
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		pos = 3;
	unsigned lineno = 0;
	while (pos < len) {
		lineno++;
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		size_t line_len = end - pos;
		if (line_len > 0 && text[end - 1] == '\r')
			line_len--;
		const char *reason = NULL;
		if (line_len > MT_CONFIG_LINE_MAX) {
			errorf(error, error_size, "%s:%u: line too long (at most %d bytes)", name,
			       lineno, MT_CONFIG_LINE_MAX);
			mt_config_free(&stage);
			return -1;
		}
		char origin[MT_ERROR_TEXT_MAX];
		snprintf(origin, sizeof(origin), "%s:%u", name, lineno);
		if (parse_line(stage, text + pos, line_len, origin, lineno, first_line, &reason) <
		    0) {
			errorf(error, error_size, "%s: %s", origin, reason);
			mt_config_free(&stage);
			return -1;
		}
		pos = end + 1;
	}
	config_merge(config, stage);
	mt_config_free(&stage);
	return 0;
}

int mt_config_load_file(struct mt_config *config, const char *path, char *error, size_t error_size)
{
	/* The whole file is read first so that a broken line leaves no half-applied settings. */
	const size_t max = (size_t)MT_CONFIG_LINE_MAX * 256;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		errorf(error, error_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		errorf(error, error_size, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	char *text = malloc(max + 1);
	if (text == NULL) {
		errorf(error, error_size, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, text + len, max + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			errorf(error, error_size, "%s: %s", path, strerror(errno));
			close(fd);
			free(text);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			errorf(error, error_size, "%s: file too large (at most %zu bytes)", path,
			       max);
			close(fd);
			free(text);
			return -1;
		}
	}
	close(fd);
	int ret = mt_config_load_text(config, path, text, len, error, error_size);
	free(text);
	return ret;
}

int mt_config_load_env(struct mt_config *config, char *const *envp, char *error, size_t error_size)
{
	static const char prefix[] = "MAILTRAIL_";
	const size_t plen = sizeof(prefix) - 1;
	struct mt_config *stage = mt_config_new();
	if (stage == NULL) {
		errorf(error, error_size, "out of memory");
		return -1;
	}
	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
		const char *entry = envp[i];
		if (strncmp(entry, prefix, plen) != 0)
			continue;
		/* MAILTRAIL_TEST_* shorten timers for the test suites; they are no settings. */
		if (strncmp(entry, "MAILTRAIL_TEST_", 15) == 0)
			continue;
		const char *eq = strchr(entry, '=');
		if (eq == NULL)
			continue;
		size_t nlen = (size_t)(eq - entry);
		char name[128], key[128];
		if (nlen >= sizeof(name)) {
			errorf(error, error_size, "%.*s...: unknown setting", 64, entry);
			mt_config_free(&stage);
			return -1;
		}
		memcpy(name, entry, nlen);
		name[nlen] = '\0';
		/* only the upper-case spelling: MAILTRAIL_http would be a typo, not a setting */
		bool upper = true;
		size_t klen = nlen - plen;
		for (size_t k = 0; k < klen; k++) {
			char c = name[plen + k];
			if (c >= 'a' && c <= 'z')
				upper = false;
			key[k] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
		key[klen] = '\0';
		int index = upper ? key_index(key, klen) : -1;
		if (index < 0) {
			char shown[136];
			quote_for_error(shown, sizeof(shown), name, nlen);
			errorf(error, error_size, "%s: unknown setting", shown);
			mt_config_free(&stage);
			return -1;
		}
		const char *reason = NULL;
		if (set_slot(stage, index, eq + 1, name, &reason) < 0) {
			errorf(error, error_size, "%s: %s", name, reason);
			mt_config_free(&stage);
			return -1;
		}
	}
	config_merge(config, stage);
	mt_config_free(&stage);
	return 0;
}

int mt_config_set(struct mt_config *config, const char *key, const char *value, const char *origin,
                  char *error, size_t error_size)
{
	int index = key_index(key, strlen(key));
	if (index < 0) {
		char shown[72];
		quote_for_error(shown, sizeof(shown), key, strlen(key));
		errorf(error, error_size, "%s: unknown setting \"%s\"", origin, shown);
		return -1;
	}
	const char *reason = NULL;
	if (set_slot(config, index, value, origin, &reason) < 0) {
		errorf(error, error_size, "%s: %s", origin, reason);
		return -1;
	}
	return 0;
}

void mt_config_each_unbuilt(const struct mt_config *config,
                            void (*warn)(const char *key, const char *origin, void *ctx), void *ctx)
{
	for (size_t i = 0; i < KEY_COUNT; i++) {
		if (config->slots[i].set && !keys[i].built)
			warn(keys[i].name, config->slots[i].origin, ctx);
	}
}

void mt_config_mark_built(const char *key, bool built)
{
	int index = key_index(key, strlen(key));
	if (index >= 0)
		keys[index].built = built;
}

bool mt_config_key_built(const char *key)
{
	int index = key_index(key, strlen(key));
	return index >= 0 && keys[index].built;
}

bool mt_config_key_known(const char *key)
{
	return key_index(key, strlen(key)) >= 0;
}

size_t mt_config_key_count(void)
{
	return KEY_COUNT;
}

const char *mt_config_key_name(size_t index)
{
	return index < KEY_COUNT ? keys[index].name : NULL;
}

static const struct slot *find_slot(const struct mt_config *config, const char *key, int *index_r)
{
	int index = key_index(key, strlen(key));
	*index_r = index;
	if (index < 0 || config == NULL || !config->slots[index].set)
		return NULL;
	return &config->slots[index];
}

bool mt_config_is_set(const struct mt_config *config, const char *key)
{
	int index;
	return find_slot(config, key, &index) != NULL;
}

const char *mt_config_origin(const struct mt_config *config, const char *key)
{
	int index;
	const struct slot *slot = find_slot(config, key, &index);
	return slot != NULL ? slot->origin : NULL;
}

const char *mt_config_str(const struct mt_config *config, const char *key)
{
	int index;
	const struct slot *slot = find_slot(config, key, &index);
	if (slot != NULL)
		return slot->value;
	return index >= 0 ? keys[index].def : NULL;
}

int64_t mt_config_int(const struct mt_config *config, const char *key)
{
	int index;
	const struct slot *slot = find_slot(config, key, &index);
	if (slot != NULL)
		return slot->num;
	if (index < 0 || keys[index].def == NULL)
		return 0;
	/* defaults are parsed on demand; the table's defaults are checked by the unit tests */
	struct slot def;
	memset(&def, 0, sizeof(def));
	const char *reason;
	int64_t num = parse_value(&keys[index], keys[index].def, &def, &reason) == 0 ? def.num : 0;
	slot_clear(&def);
	return num;
}

bool mt_config_bool(const struct mt_config *config, const char *key)
{
	return mt_config_int(config, key) != 0;
}

const struct mt_cidr_list *mt_config_cidrs(const struct mt_config *config, const char *key)
{
	int index;
	const struct slot *slot = find_slot(config, key, &index);
	/* every CIDR-typed default is the empty list */
	return slot != NULL ? &slot->cidrs : &empty_cidrs;
}

bool mt_config_host_listed(const struct mt_config *config, const char *key, const char *host,
                           const struct sockaddr *addr_or_null)
{
	int index;
	const struct slot *slot = find_slot(config, key, &index);
	if (slot == NULL)
		return false;
	if (host != NULL) {
		size_t len = strlen(host);
		if (len > 1 && host[len - 1] == '.')
			len--;
		for (size_t i = 0; i < slot->host_count; i++) {
			if (strlen(slot->hosts[i]) == len &&
			    strncasecmp(slot->hosts[i], host, len) == 0)
				return true;
		}
		/* a host typed as a literal address is matched by the CIDR entries too */
		struct sockaddr_in6 sin6;
		struct sockaddr_in sin;
		memset(&sin6, 0, sizeof(sin6));
		memset(&sin, 0, sizeof(sin));
		if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
			sin.sin_family = AF_INET;
			if (mt_cidr_list_contains(&slot->cidrs, (const struct sockaddr *)&sin))
				return true;
		} else if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
			sin6.sin6_family = AF_INET6;
			if (mt_cidr_list_contains(&slot->cidrs, (const struct sockaddr *)&sin6))
				return true;
		}
	}
	return addr_or_null != NULL && mt_cidr_list_contains(&slot->cidrs, addr_or_null);
}

size_t mt_config_limits(const struct mt_config *config, const char *key,
                        struct mt_config_limit out[MT_SEND_LIMITS_MAX])
{
	int index;
	const struct slot *slot = find_slot(config, key, &index);
	if (slot == NULL || keys[index].type != T_LIMITS)
		return 0;
	memcpy(out, slot->limits, slot->limit_count * sizeof(out[0]));
	return slot->limit_count;
}
