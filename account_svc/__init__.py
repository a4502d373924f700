"""account_svc: sign-up, login, rotating refresh tokens, profiles and user lookup."""
