"""feed_svc: posts, the follow graph, hybrid fanout, and paged and streamed home feeds."""
