/* removed once conn.c and tls.c exist */
int mt_proto_placeholder(void);
int mt_proto_placeholder(void)
{
	return 0;
}
