"""presence_svc: heartbeats, online/offline and last seen, streamed to the people who care."""
