-- The one request of bench/forward_auth.py: GET with the key as a Bearer token and the client's address as the
-- first hop of X-Forwarded-For (the key's allowlist needs it). Both come from the environment, never a file.
wrk.method = "GET"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION")
wrk.headers["X-Forwarded-For"] = os.getenv("BENCH_FORWARDED_FOR")
