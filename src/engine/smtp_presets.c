#include "engine/smtp_presets.h"

#include <string.h>

static const struct smtp_preset presets[] = {
    {
        .id = "gmail",
        .name = "Gmail / Google Workspace",
        .host = "smtp.gmail.com",
        .port = 587,
        .security = "starttls",
        .auth = "password",
        .limits = {{1500, "day"}},
        .limit_count = 1,
        .notes = "User name and from: your full address. Google removed \"less secure apps\": "
                 "use an app password (requires 2-Step Verification) or connect with Google "
                 "(OAuth). 1,500/day leaves room under Gmail's 2,000/day cap for your own "
                 "mail.",
        .oauth_auth_url = "https://accounts.google.com/o/oauth2/v2/auth",
        .oauth_token_url = "https://oauth2.googleapis.com/token",
        .oauth_scopes = "https://mail.google.com/",
        .oauth_provider = "google",
    },
    {
        .id = "microsoft365",
        .name = "Microsoft 365 / Outlook",
        .host = "smtp.office365.com",
        .port = 587,
        .security = "starttls",
        .auth = "password",
        .limits = {{30, "minute"}, {10000, "day"}},
        .limit_count = 2,
        .notes = "SMTP AUTH is switched off by default for Microsoft 365 mailboxes: an admin "
                 "must enable Authenticated SMTP for this mailbox, or connect with Microsoft "
                 "(OAuth), which also works with multi-factor authentication. Exchange Online "
                 "allows 30 messages a minute and 10,000 recipients a day.",
        .oauth_auth_url = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        .oauth_token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        .oauth_scopes = "https://outlook.office.com/SMTP.Send "
                        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
        .oauth_provider = "microsoft",
    },
    {
        .id = "intermedia",
        .name = "Intermedia Exchange",
        .host = NULL,
        .port = 587,
        .security = "starttls",
        .auth = "password",
        .limits = {{450, "hour"}},
        .limit_count = 1,
        .notes = "The SMTP server is in HostPilot under Mail Server > Mail Server Settings. "
                 "Port 587 (STARTTLS) or 465 (security tls). 450/hour leaves room under "
                 "Intermedia's 500/hour cap.",
    },
    {
        .id = "rackspace",
        .name = "Rackspace Email",
        .host = "secure.emailsrvr.com",
        .port = 587,
        .security = "starttls",
        .auth = "password",
        .limits = {{500, "hour"}},
        .limit_count = 1,
        .notes = "User name and from: your full address. Rackspace's bulk policy limits "
                 "similar mail to 250 recipients; 500/hour is a conservative pace.",
    },
    {
        .id = "fatcow",
        .name = "FatCow",
        .host = "smtp.fatcow.com",
        .port = 587,
        .security = "starttls",
        .auth = "password",
        .limits = {{500, "day"}},
        .limit_count = 1,
        .notes = "FatCow presents a self-signed certificate. Do not disable TLS: the check "
                 "fails with class tls and shows the certificate's fingerprint; if it is "
                 "FatCow's, save it as tls_fingerprint to pin it. 500/day leaves room under "
                 "FatCow's 600/day cap.",
    },
    {
        .id = "custom",
        .name = "Custom SMTP server",
        .host = NULL,
        .port = 587,
        .security = "starttls",
        .auth = "password",
        .limit_count = 0,
        .notes = "Ask your email provider for the SMTP server, port and security. Set a send "
                 "limit a little below your provider's.",
    },
};

const struct smtp_preset *smtp_presets(size_t *count_r)
{
	*count_r = sizeof(presets) / sizeof(presets[0]);
	return presets;
}

const struct smtp_preset *smtp_preset_find(const char *id)
{
	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (strcmp(presets[i].id, id) == 0)
			return &presets[i];
	return NULL;
}
