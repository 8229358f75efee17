/* removed once conn.c and tls.c exist */
int mt_net_placeholder(void);
int mt_net_placeholder(void)
{
	return 0;
}
