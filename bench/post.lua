-- The one request both servers get in bench/http_verify.py: POST /v1/keys/verify with a JSON body.
-- The body and the Authorization header come from the environment, so that no key is written to a file.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION")
