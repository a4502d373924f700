"""The chat router: the consistent-hash ring of chat servers, and the RouterService."""
