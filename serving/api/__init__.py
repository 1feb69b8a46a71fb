"""The JSON API. Versioned by prefix, so a v2 can run beside v1 while clients move over."""

API_PREFIX = "/api/v1"
