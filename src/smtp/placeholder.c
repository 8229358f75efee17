/* removed once conn.c and tls.c exist */
int mt_smtp_placeholder(void);
int mt_smtp_placeholder(void)
{
	return 0;
}
