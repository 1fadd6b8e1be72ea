"""Who the caller is: API keys, their owners and scopes, rate limits."""
