"""chat_svc: chat servers that own users by the consistent-hash ring and stream their inboxes."""
